"""A partition as its leader sees it: the log, the leader epoch, the high watermark, the
idempotent-producer state, and who to wake when data arrives.

Single node (issue #4): this broker leads every partition and the high watermark is the log
end offset. Replication (#7) adds follower log end offsets and an ISR here; the callers
(produce, fetch, list offsets) already go through ``high_watermark`` and ``leader_epoch``.

Not thread-safe: the reactor thread calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tmq.protocol.errors import ErrorCode, ProtocolError
from tmq.protocol.records import read_batch_header
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
    """One partition led by this broker.

    :param clock_ms: milliseconds since the epoch (producer-state expiry).
    """

    def __init__(
        self,
        topic: str,
        index: int,
        log: PartitionLog,
        *,
        leader_epoch: int,
        producers: ProducerStateManager,
        clock_ms: Callable[[], int],
    ):
        self.topic = topic
        self.index = index
        self.log = log
        self.leader_epoch = leader_epoch
        self.producers = producers
        self.clock_ms = clock_ms
        self._listeners: list[Callable[[], None]] = []

    @property
    def high_watermark(self) -> int:
        """Offsets below it are committed (readable by consumers)."""
        return self.log.log_end_offset

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    def on_data(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every append (the fetch purgatory's wake-up)."""
        self._listeners.append(listener)

    def check_epoch(self, current_leader_epoch: int) -> ErrorCode:
        """KIP-320 fencing: a client's epoch below ours is fenced, above ours unknown."""
        if current_leader_epoch < 0 or current_leader_epoch == self.leader_epoch:
            return ErrorCode.NONE
        if current_leader_epoch < self.leader_epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        return ErrorCode.UNKNOWN_LEADER_EPOCH

    def append(self, batch: bytes | memoryview) -> AppendOutcome:
        """Append one client batch as leader: idempotence checks, then the log.

        Never raises for bad input or a failed disk: the outcome carries the Kafka error.
        """
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
        for listener in list(self._listeners):
            listener()
        return AppendOutcome(base_offset=info.base_offset, last_offset=info.last_offset)
