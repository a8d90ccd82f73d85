"""A partition this broker leads: the log, the leader epoch, the replication state (its
followers, the ISR, the high watermark), the idempotent-producer state, and who to wake when
data arrives or the high watermark moves.

One ``Partition`` lives for one leader epoch (a new epoch, even with this broker leading again,
makes a new one). Every leader action first checks ``lease_valid()`` (DESIGN §5): a broker
whose etcd lease may have expired appends nothing, advances no high watermark and serves no
fetch, from the instant the deadline passes, before it has heard of any new leader.

Not thread-safe: the reactor thread calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tmq.protocol.errors import ErrorCode, ProtocolError
from tmq.protocol.records import read_batch_header
from tmq.replication.leader import PartitionLeader, Report
from tmq.storage.errors import LogError
from tmq.storage.log import PartitionLog

from .producer_state import ProducerStateManager

__all__ = ["AppendOutcome", "Partition"]


@dataclass(frozen=True)
class AppendOutcome:
    """What happened to one partition's batch of a Produce request."""

    error: ErrorCode = ErrorCode.NONE
    base_offset: int = -1
    last_offset: int = -1
    message: str | None = None
    #: True when the batch was a retry of one already in the log (nothing was appended).
    duplicate: bool = False


class Partition:
    """One partition led by this broker in one leader epoch.

    :param replication: the followers, ISR and high watermark of this epoch.
    :param lease_valid: whether this broker may still act as leader (its lease deadline).
    :param clock_ms: milliseconds since the epoch (producer-state expiry, follower lag).
    """

    def __init__(
        self,
        topic: str,
        index: int,
        log: PartitionLog,
        *,
        leader_epoch: int,
        replication: PartitionLeader,
        producers: ProducerStateManager,
        lease_valid: Callable[[], bool],
        clock_ms: Callable[[], int],
    ):
        self.topic = topic
        self.index = index
        self.log = log
        self.leader_epoch = leader_epoch
        self.replication = replication
        self.producers = producers
        self.lease_valid = lease_valid
        self.clock_ms = clock_ms
        self._data_listeners: list[Callable[[], None]] = []
        self._high_watermark_listeners: list[Callable[[], None]] = []

    @property
    def key(self) -> tuple[str, int]:
        return self.topic, self.index

    @property
    def high_watermark(self) -> int:
        """Offsets below it are committed (readable by consumers)."""
        return self.replication.high_watermark

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def isr(self) -> tuple[int, ...]:
        """The committed ISR (what acks=all and min.insync count)."""
        return self.replication.isr

    def on_data(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every append (replication streams push)."""
        self._data_listeners.append(listener)

    def on_high_watermark(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever the high watermark moves (purgatory, streams)."""
        self._high_watermark_listeners.append(listener)

    def high_watermark_moved(self) -> None:
        for listener in list(self._high_watermark_listeners):
            listener()

    def check_epoch(self, current_leader_epoch: int) -> ErrorCode:
        """KIP-320 fencing: a client's epoch below ours is fenced, above ours unknown; a
        broker past its lease deadline leads nothing."""
        if not self.lease_valid():
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if current_leader_epoch < 0 or current_leader_epoch == self.leader_epoch:
            return ErrorCode.NONE
        if current_leader_epoch < self.leader_epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        return ErrorCode.UNKNOWN_LEADER_EPOCH

    def append(self, batch: bytes | memoryview) -> AppendOutcome:
        """Append one client batch as leader: the lease, idempotence checks, then the log.

        Never raises for bad input or a failed disk: the outcome carries the Kafka error.
        """
        if not self.lease_valid():
            return AppendOutcome(
                ErrorCode.NOT_LEADER_OR_FOLLOWER, message="this broker's lease may have expired"
            )
        try:
            header = read_batch_header(batch)
        except ProtocolError as error:
            return AppendOutcome(ErrorCode.CORRUPT_MESSAGE, message=str(error))
        now = self.clock_ms()
        verdict = self.producers.check(header, now)
        if verdict.duplicate:
            return AppendOutcome(
                base_offset=verdict.base_offset, last_offset=verdict.last_offset, duplicate=True
            )
        if verdict.error != ErrorCode.NONE:
            return AppendOutcome(verdict.error, message=verdict.message)
        try:
            info = self.log.append(batch, leader_epoch=self.leader_epoch)
        except LogError as error:
            return AppendOutcome(error.error_code, message=str(error))
        self.producers.record(
            header._replace(base_offset=info.base_offset, partition_leader_epoch=self.leader_epoch),
            now,
        )
        moved = self.replication.appended(self.log.log_end_offset, now)
        for listener in list(self._data_listeners):
            listener()
        if moved:
            self.high_watermark_moved()
        return AppendOutcome(base_offset=info.base_offset, last_offset=info.last_offset)

    def follower_reported(self, follower: int, log_end_offset: int) -> Report | None:
        """A follower's log ends at ``log_end_offset``: the high watermark and the ISR.
        ``None`` when the lease is gone (nothing is counted)."""
        if not self.lease_valid():
            return None
        report = self.replication.report(follower, log_end_offset, self.clock_ms())
        if report.high_watermark_moved:
            self.high_watermark_moved()
        return report

    def isr_committed(self, isr: tuple[int, ...]) -> None:
        """The store holds ``isr`` now (a write of ours, or one read back)."""
        if self.replication.isr_committed(tuple(isr)) and self.lease_valid():
            self.high_watermark_moved()
