"""A follower's side of replication: how far it truncates before following a leader
(KIP-101, KIP-279), and ``FollowerPartition``, which appends what the leader pushes.

A follower must not keep records its new leader does not have: it asks the leader for the end
of its own latest epoch (OffsetForLeaderEpoch), the leader answers with the largest epoch it
knows at or below that one and where that epoch ends in its log, and the follower truncates to
the end of the last epoch both logs share. ``plan_truncation`` is one round of that exchange,
after Kafka's ``AbstractFetcherThread.getOffsetTruncationState``:

* the leader knows no such epoch (``UNDEFINED_EPOCH``): truncate to the high watermark (all a
  follower knows to be committed), done;
* the follower knows no epoch at all: truncate to the leader's end offset, done;
* the follower does not know the epoch the leader answered: truncate to the end of the
  follower's largest epoch below it, and ask again with the (now lower) latest epoch;
* otherwise truncate to the smaller of the two logs' ends of that epoch, done. (An epoch below
  the follower's first one "ends" at the follower's first offset: nothing is shared.)

Nothing is ever truncated below what both hold in common: the end offsets only shrink toward
the divergence point, and a follower's log end offset bounds every answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from tmq.protocol.errors import ErrorCode
from tmq.protocol.records import read_batch_header
from tmq.storage.leader_epoch import UNDEFINED_EPOCH, LeaderEpochCache
from tmq.storage.log import PartitionLog

__all__ = ["FollowerPartition", "StaleLeader", "Truncation", "plan_truncation"]


class Truncation(NamedTuple):
    """Truncate the log to ``offset`` (no-op when it is the log end offset); ``done``
    ``False``: ask the leader again with the log's new latest epoch."""

    offset: int
    done: bool


def plan_truncation(
    epochs: LeaderEpochCache,
    log_end_offset: int,
    high_watermark: int,
    leader_epoch: int,
    leader_end_offset: int,
) -> Truncation:
    """One round of the exchange: the follower's ``epochs`` and log end offset, its high
    watermark, and the leader's answer ``(leader_epoch, leader_end_offset)`` to the
    follower's latest epoch."""
    if leader_epoch == UNDEFINED_EPOCH:
        return Truncation(min(high_watermark, log_end_offset), True)
    # our largest epoch at or below the leader's, and where it ends in our log
    own_epoch, own_end = epochs.end_offset_for(leader_epoch, log_end_offset)
    if own_epoch == UNDEFINED_EPOCH:  # we know no epoch at or below the leader's
        return Truncation(min(leader_end_offset, log_end_offset), True)
    if own_epoch == leader_epoch:
        return Truncation(min(own_end, leader_end_offset, log_end_offset), True)
    return Truncation(min(own_end, log_end_offset), False)


class StaleLeader(Exception):
    """The leader's message carries an epoch other than the one this follower follows (a
    deposed leader, or a newer one this broker has not heard of yet); ``error_code`` says
    which (FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH)."""

    def __init__(self, error_code: ErrorCode, message: str):
        super().__init__(message)
        self.error_code = error_code


def _batches(data: bytes | memoryview) -> Iterator[memoryview]:
    view = memoryview(data)
    position = 0
    while position < len(view):
        header = read_batch_header(view, position)
        yield view[position : position + header.size]
        position += header.size


class FollowerPartition:
    """One partition this broker follows, in one leader epoch.

    It starts *truncating*: ``subscription()`` says where the log stands, and
    ``on_subscribed(answer)`` applies the leader's answer (truncating by ``plan_truncation``
    when the logs diverge) until the follower is *following*. Then ``on_push`` appends the
    leader's batches byte for byte, rebuilding the idempotent-producer state as it goes, and
    learns the high watermark (never above its own log end offset).

    :param producers: the partition's producer state (``record(header, now_ms)`` and
        ``rebuild(headers, now_ms)``), so a producer's retry after a failover is
        deduplicated by whichever replica leads next.
    """

    def __init__(
        self,
        topic: str,
        index: int,
        log: PartitionLog,
        *,
        leader_id: int,
        leader_epoch: int,
        high_watermark: int,
        producers: Any,
        clock_ms: Callable[[], int],
    ):
        self.topic = topic
        self.index = index
        self.log = log
        self.leader_id = leader_id
        self.leader_epoch = leader_epoch
        self.high_watermark = min(high_watermark, log.log_end_offset)
        self.producers = producers
        self.clock_ms = clock_ms
        self.following = False

    def subscription(self) -> dict:
        """This partition's entry of a ReplicaSubscribe request."""
        return {
            "topic": self.topic,
            "partition": self.index,
            "current_leader_epoch": self.leader_epoch,
            "fetch_offset": self.log.log_end_offset,
            "last_fetched_epoch": self.log.epochs.latest_epoch,
        }

    def _check_epoch(self, epoch: int) -> None:
        if epoch < self.leader_epoch:
            raise StaleLeader(
                ErrorCode.FENCED_LEADER_EPOCH,
                f"{self.topic}-{self.index}: leader epoch {epoch} is older than "
                f"{self.leader_epoch}",
            )
        if epoch > self.leader_epoch:
            raise StaleLeader(
                ErrorCode.UNKNOWN_LEADER_EPOCH,
                f"{self.topic}-{self.index}: leader epoch {epoch} is newer than "
                f"{self.leader_epoch}",
            )

    def on_subscribed(self, answer: Any) -> bool:
        """Apply the leader's answer for this partition (a ReplicaSubscribeResponse entry);
        returns whether the follower now follows (``False``: subscribe again).

        :raises StaleLeader: the answer's epoch is not ours.
        """
        self._check_epoch(answer.leader_epoch)
        if not answer.diverging:
            self.following = True
        else:
            plan = plan_truncation(
                self.log.epochs,
                self.log.log_end_offset,
                self.high_watermark,
                answer.diverging_epoch,
                answer.diverging_end_offset,
            )
            if plan.offset < self.log.log_end_offset:
                self.log.truncate_to(plan.offset)
                self.producers.rebuild(self.log.batch_headers(), self.clock_ms())
            else:
                self.log.truncate_to(plan.offset)  # drops epochs that wrote nothing
            self.following = False
        self.high_watermark = min(max(self.high_watermark, 0), self.log.log_end_offset)
        self._learn(answer.high_watermark)
        return self.following

    def restart_at(self, leader_log_start: int) -> None:
        """The leader's log starts above this log's end (retention deleted what this
        follower has): empty the log, start it at ``leader_log_start`` and subscribe again."""
        self.log.restart_at(leader_log_start)
        self.producers.rebuild((), self.clock_ms())
        self.high_watermark = leader_log_start
        self.following = False

    def on_push(self, leader_epoch: int, high_watermark: int, records: bytes | memoryview) -> int:
        """Append the pushed batches; returns the log end offset to acknowledge.

        :raises StaleLeader: the push's epoch is not ours (nothing is appended).
        :raises tmq.storage.errors.LogError: a batch the log refuses (out of place, corrupt,
            a stale epoch); the batches before it stay appended.
        """
        self._check_epoch(leader_epoch)
        if not self.following:
            raise StaleLeader(
                ErrorCode.NOT_LEADER_OR_FOLLOWER,
                f"{self.topic}-{self.index}: push before the subscription was settled",
            )
        now = self.clock_ms()
        for batch in _batches(records or b""):
            info = self.log.append_replicated(batch)
            header = read_batch_header(batch)._replace(base_offset=info.base_offset)
            if header.producer_id >= 0:
                self.producers.record(header, now)
        self._learn(high_watermark)
        return self.log.log_end_offset

    def _learn(self, leader_high_watermark: int) -> None:
        self.high_watermark = max(
            self.high_watermark, min(leader_high_watermark, self.log.log_end_offset)
        )
