"""A partition leader's view of its followers: their log end offsets, the high watermark, and
the ISR changes it must propose (DESIGN §4; kafka-notes §4.2-4.3). Sans-IO: times are
milliseconds passed in, the caller writes ISR changes to the metadata store.

One ``PartitionLeader`` lives for one leader epoch. Its rules, after Kafka's ``Partition``
and ``Replica``:

* **Reports.** A follower reports its log end offset (with the push stream of DESIGN §4, every
  ack does). A follower is *caught up* when its LEO equals the leader's, or was at least the
  leader's LEO at the previous report within ``lag_time_ms`` (``Replica.updateFetchState``):
  a report at ``>=`` the leader's LEO marks it caught up now, a report at ``>=`` the leader's
  LEO of its previous report marks it caught up at that previous time, and a follower level
  with the leader when the leader appends was caught up until then (an idle follower of a
  pushed stream sends no reports). Until its first report
  in this epoch a follower's LEO is unknown.
* **High watermark** = min(leader LEO, LEO of every member of the *maximal* ISR); it moves
  only forward, and only while the maximal ISR has at least ``min_insync`` members
  (KAFKA-15583). An unknown LEO holds it where it is.
* **Maximal ISR** (KIP-497): the committed ISR plus expansions proposed but not yet
  committed. An expansion counts at once (it only makes the HW harder to move); a shrink counts
  only once the store has committed it (``isr_committed``).
* **Expansion.** A follower outside the ISR joins when its LEO is at least the HW and at least
  the start offset of the current epoch (otherwise it could lead without committed data).
* **Shrink.** ``lagging(now)`` names the ISR followers not caught up for ``lag_time_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from tmq.storage.leader_epoch import UNDEFINED_EPOCH, LeaderEpochCache

__all__ = ["UNKNOWN", "FollowerProgress", "PartitionLeader", "Report", "divergence"]

#: A follower's log end offset before its first report in the epoch.
UNKNOWN = -1


def divergence(
    epochs: LeaderEpochCache, log_end_offset: int, fetch_offset: int, last_fetched_epoch: int
) -> tuple[int, int] | None:
    """``None`` when a follower at ``fetch_offset`` whose last batch has epoch
    ``last_fetched_epoch`` holds a prefix of this leader's log (the leader may push from
    ``fetch_offset``); otherwise the OffsetForLeaderEpoch answer it truncates by: this log's
    largest epoch at or below ``last_fetched_epoch`` and that epoch's end offset here."""
    if last_fetched_epoch == UNDEFINED_EPOCH:
        # no epoch, so no batch: an empty log, which every log extends
        return None if fetch_offset <= log_end_offset else (UNDEFINED_EPOCH, -1)
    epoch, end = epochs.end_offset_for(last_fetched_epoch, log_end_offset)
    if epoch == last_fetched_epoch and fetch_offset <= end:
        return None
    return epoch, end


@dataclass
class FollowerProgress:
    """What the leader knows of one follower."""

    log_end_offset: int = UNKNOWN
    last_caught_up_ms: int = 0
    #: The leader's LEO and the time at the follower's previous report.
    previous_leader_leo: int = UNKNOWN
    previous_report_ms: int = 0


class Report(NamedTuple):
    """The outcome of a follower's report: whether the high watermark moved, and the ISR to
    propose (write compare-and-swap, then call ``isr_committed``) when it should grow."""

    high_watermark_moved: bool
    expand_to: tuple[int, ...] | None


class PartitionLeader:
    """The leader's replication state for one partition and one leader epoch.

    :param broker_id: this leader.
    :param replicas: the assigned replicas (the leader among them).
    :param isr: the committed ISR as the store has it.
    :param epoch_start_offset: the log end offset when this epoch began.
    :param log_end_offset: the leader's LEO now.
    :param high_watermark: the HW the leader starts from (its checkpointed HW).
    :param min_insync: ``min.insync.replicas``.
    :param lag_time_ms: ``replica.lag.time.max.ms``.
    :param now_ms: the time now; followers count as caught up at this instant.
    """

    def __init__(
        self,
        *,
        broker_id: int,
        replicas: tuple[int, ...],
        isr: tuple[int, ...],
        epoch_start_offset: int,
        log_end_offset: int,
        high_watermark: int,
        min_insync: int,
        lag_time_ms: int,
        now_ms: int,
    ):
        if broker_id not in replicas:
            raise ValueError(f"leader {broker_id} is not a replica of {replicas}")
        self.broker_id = broker_id
        self.replicas = tuple(replicas)
        self.epoch_start_offset = epoch_start_offset
        self.log_end_offset = log_end_offset
        self.high_watermark = min(high_watermark, log_end_offset)
        self.min_insync = min_insync
        self.lag_time_ms = lag_time_ms
        self.isr = tuple(isr) if broker_id in isr else (broker_id, *isr)
        #: Followers whose joining the ISR is proposed, not yet committed.
        self._joining: tuple[int, ...] = ()
        self.followers = {
            replica: FollowerProgress(last_caught_up_ms=now_ms)
            for replica in replicas
            if replica != broker_id
        }
        self._advance()  # an ISR of one: the HW is the LEO at once (a stale checkpoint)

    # -- the ISR ------------------------------------------------------------------------------

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        """The committed ISR plus an expansion waiting for its write (KIP-497)."""
        return self.isr + tuple(r for r in self._joining if r not in self.isr)

    @property
    def enough_replicas(self) -> bool:
        """Whether acks=all may append now: the committed ISR has ``min_insync`` members."""
        return len(self.isr) >= self.min_insync

    def is_caught_up(self, follower: int, now_ms: int) -> bool:
        progress = self.followers[follower]
        return (
            progress.log_end_offset == self.log_end_offset
            or now_ms - progress.last_caught_up_ms <= self.lag_time_ms
        )

    def lagging(self, now_ms: int) -> tuple[int, ...]:
        """ISR followers not caught up for ``lag_time_ms``: propose the ISR without them."""
        return tuple(
            r for r in self.isr if r != self.broker_id and not self.is_caught_up(r, now_ms)
        )

    def isr_committed(self, isr: tuple[int, ...]) -> bool:
        """The store now holds ``isr`` (a shrink or an expansion this leader wrote, or a
        change read back); returns whether the HW moved."""
        self.isr = tuple(isr)
        self._joining = tuple(r for r in self._joining if r not in self.isr)
        return self._advance()

    def expansion_failed(self) -> None:
        """The expansion's write lost (the caller re-reads the store): stop counting it."""
        self._joining = ()

    # -- progress -----------------------------------------------------------------------------

    def appended(self, log_end_offset: int, now_ms: int) -> bool:
        """The leader's own log grew at ``now_ms``; returns whether the HW moved (an ISR of
        one). Followers level with the old log end were caught up until this instant: with
        pushed replication an idle follower sends no reports, so without this its last
        report, however old, would date its lag the moment writes resume."""
        for progress in self.followers.values():
            if progress.log_end_offset == self.log_end_offset:
                progress.last_caught_up_ms = max(progress.last_caught_up_ms, now_ms)
        self.log_end_offset = log_end_offset
        return self._advance()

    def report(self, follower: int, log_end_offset: int, now_ms: int) -> Report:
        """``follower`` has ``log_end_offset`` (durable per its flush policy)."""
        progress = self.followers.get(follower)
        if progress is None:
            raise ValueError(f"broker {follower} is not a follower of this partition")
        if log_end_offset > self.log_end_offset:
            raise ValueError(
                f"follower {follower} reports {log_end_offset}, beyond the leader's "
                f"{self.log_end_offset}"
            )
        if log_end_offset >= self.log_end_offset:
            progress.last_caught_up_ms = now_ms
        elif log_end_offset >= progress.previous_leader_leo >= 0:
            progress.last_caught_up_ms = max(
                progress.last_caught_up_ms, progress.previous_report_ms
            )
        progress.previous_leader_leo = self.log_end_offset
        progress.previous_report_ms = now_ms
        progress.log_end_offset = log_end_offset
        expand_to = None
        if (
            follower not in self.maximal_isr
            and log_end_offset >= self.high_watermark
            and log_end_offset >= self.epoch_start_offset
        ):
            expand_to = (*self.maximal_isr, follower)
            self._joining = (*self._joining, follower)
        return Report(self._advance(), expand_to)

    def _advance(self) -> bool:
        members = self.maximal_isr
        if len(members) < self.min_insync:
            return False
        candidate = self.log_end_offset
        for member in members:
            if member != self.broker_id:
                offset = self.followers[member].log_end_offset
                if offset == UNKNOWN:
                    return False
                candidate = min(candidate, offset)
        if candidate > self.high_watermark:
            self.high_watermark = candidate
            return True
        return False
