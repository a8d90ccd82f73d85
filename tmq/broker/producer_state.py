"""The idempotent-producer state of one partition, kept the way Kafka's broker keeps it.

Per producer id, the manager remembers the producer's epoch and the metadata of its last
``NUM_BATCHES_TO_RETAIN`` (5) batches in this partition: first and last sequence, first and last
offset, max timestamp. With that it answers, for each batch a client produces (``check``):

- **append**: the batch continues the producer's sequence (or the producer is new here);
- **duplicate**: the batch has the epoch and the exact sequence range of one of the last 5
  batches. It is a retry of a batch already in the log, so nothing is appended and the client is
  answered with the original offsets;
- **an error**: ``OUT_OF_ORDER_SEQUENCE_NUMBER`` (45) for a sequence gap, for a retry older than
  the last 5 batches, and for a new epoch whose first sequence is not 0;
  ``INVALID_PRODUCER_EPOCH`` (47) for an epoch below the producer's current one;
  ``INVALID_RECORD`` (87) for a producer id without a base sequence.

Batches without a producer id (``producer_id < 0``) are always appended and never recorded.

How the broker drives it (sans-IO: every time is passed in as ``now_ms``):

- Leader: ``check(header, now_ms)``; unless the verdict is a duplicate or an error, append the
  batch, then ``record(stored_header, now_ms)`` with the header as stored (offsets assigned).
- Follower: ``record`` every batch appended from the replication stream, without ``check``
  (Kafka's REPLICATION origin), so a producer's retry after a failover is answered as a
  duplicate by the new leader.
- Restart: ``rebuild(headers of every batch in the log, in offset order, now_ms)``.
- Truncation: there is no ``truncate_to``. The batches left may include some that had been
  pushed out of a producer's window of 5, or cleared by an epoch bump that was truncated away,
  and only the log can give them back: after ``PartitionLog.truncate_to`` removed batches the
  caller calls ``rebuild`` again. (Kafka reloads its latest producer snapshot below the new end
  and replays the log from there; tmq keeps no snapshots and replays the whole log.)
- Retention needs nothing: like Kafka, the state outlives the deleted segments until it expires.
- Expiry: ``remove_expired(now_ms)`` from a periodic call (Kafka checks every 10 minutes) drops
  producers inactive for ``expiration_ms`` (Kafka's ``producer.id.expiration.ms``, default one
  day). ``check`` and ``record`` already treat an expired producer as unknown, so verdicts do not
  depend on when the sweep ran.

Decisions where tmq differs from, or picks among, Kafka's behaviours:

- **Unknown producer, first sequence not 0: appended.** Since Kafka 2.5 (KIP-360) the broker
  accepts any sequence from a producer id it has no state for (expired, or its batches deleted by
  retention); before, it answered ``UNKNOWN_PRODUCER_ID`` (59). The clients tmq serves are
  written against the newer brokers, and 59 hurts both: librdkafka 2.x makes it a fatal producer
  error when the batch is a retry or not next in line, and kafka-python 3, which infers a broker
  older than 2.5 from tmq's API versions, resets its producer id and fails the batch. With no
  state there is nothing to deduplicate against either way.
- **Inactivity is measured on the broker's clock.** Kafka measures it from the batch's max
  timestamp, which for CreateTime is the client's clock, so a producer replaying old samples
  would lose its state at the next sweep. tmq uses ``now_ms`` at ``record``; a ``rebuild`` (the
  log stores no append times) stamps every producer it finds with its own ``now_ms``, so a
  restart never expires a producer early.
- No transactions: transactional batches are checked like idempotent ones; there is no ongoing
  transaction state and no control batch handling.

Not thread-safe: the reactor thread calls it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from tmq.protocol.errors import ErrorCode
from tmq.protocol.records import RecordBatchHeader

__all__ = [
    "DEFAULT_PRODUCER_ID_EXPIRATION_MS",
    "NO_PRODUCER_EPOCH",
    "NUM_BATCHES_TO_RETAIN",
    "BatchMetadata",
    "ProducerEntry",
    "ProducerStateManager",
    "Verdict",
]

NUM_BATCHES_TO_RETAIN = 5
"""Batches remembered per producer (Kafka's ``ProducerStateEntry.NUM_BATCHES_TO_RETAIN``)."""
DEFAULT_PRODUCER_ID_EXPIRATION_MS = 24 * 60 * 60 * 1000
"""Kafka's ``producer.id.expiration.ms`` default: one day."""
NO_PRODUCER_EPOCH = -1

_SEQUENCE_MODULUS = 1 << 31  # sequences run 0..INT32_MAX, then wrap to 0


class BatchMetadata(NamedTuple):
    """Where one batch of a producer landed, and the sequences it carried."""

    base_sequence: int
    last_sequence: int
    base_offset: int
    last_offset: int
    max_timestamp: int


class ProducerEntry(NamedTuple):
    """What a partition remembers of one producer id."""

    epoch: int
    #: The producer's last batches of ``epoch``, oldest first: at least 1, at most 5.
    batches: tuple[BatchMetadata, ...]
    #: ``now_ms`` of the last ``record`` (or of the ``rebuild`` that found the producer).
    last_activity_ms: int

    @property
    def last_sequence(self) -> int:
        """The sequence of the producer's last record in this partition."""
        return self.batches[-1].last_sequence


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a client's batch: append it when ``error`` is NONE and it is not a
    ``duplicate``.

    A duplicate carries the stored batch's offsets and max timestamp (the log append time for a
    LogAppendTime batch), to be answered with ``error`` NONE and nothing appended. (Kafka puts
    that timestamp in the response's ``log_append_time`` whatever the topic's timestamp type.)
    """

    error: ErrorCode = ErrorCode.NONE
    message: str | None = None
    duplicate: bool = False
    base_offset: int = -1
    last_offset: int = -1
    max_timestamp: int = -1


_APPEND = Verdict()


class ProducerStateManager:
    """The producer state of one partition (see the module docstring).

    :param expiration_ms: a producer with no batch recorded for this long is forgotten.
    :raises ValueError: ``expiration_ms`` is not positive.
    """

    def __init__(self, *, expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS):
        if expiration_ms <= 0:
            raise ValueError(f"expiration_ms must be positive, not {expiration_ms}")
        self.expiration_ms = expiration_ms
        self._producers: dict[int, ProducerEntry] = {}

    @property
    def entries(self) -> Mapping[int, ProducerEntry]:
        """A read-only view of the state: producer id -> entry, expired ones included until
        ``remove_expired`` drops them."""
        return MappingProxyType(self._producers)

    def check(self, header: RecordBatchHeader, now_ms: int) -> Verdict:
        """Decide what to do with a batch a client produced, as Kafka's leader does
        (``UnifiedLog.analyzeAndValidateProducerState``: the duplicate search, then
        ``ProducerAppendInfo.checkProducerEpoch`` and ``checkSequence``). Changes nothing.

        :param header: the batch's header as the client sent it (offsets not assigned yet).
        :param now_ms: the broker's clock, to tell expired producers.
        """
        producer_id = header.producer_id
        if producer_id < 0:
            return _APPEND
        base_sequence = header.base_sequence
        if base_sequence < 0:
            return Verdict(
                ErrorCode.INVALID_RECORD,
                f"producer {producer_id} sent a batch without a base sequence",
            )
        entry = self._live_entry(producer_id, now_ms)
        if entry is None:
            return _APPEND
        epoch = header.producer_epoch
        if epoch == entry.epoch:
            last_sequence = header.last_sequence
            for batch in entry.batches:
                if batch.base_sequence == base_sequence and batch.last_sequence == last_sequence:
                    return Verdict(
                        duplicate=True,
                        base_offset=batch.base_offset,
                        last_offset=batch.last_offset,
                        max_timestamp=batch.max_timestamp,
                    )
            expected = (entry.last_sequence + 1) % _SEQUENCE_MODULUS
            if base_sequence == expected or epoch == NO_PRODUCER_EPOCH:
                return _APPEND
            return Verdict(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"producer {producer_id} epoch {epoch}: sequence {base_sequence}, "
                f"expected {expected}",
            )
        if epoch < entry.epoch:
            return Verdict(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"producer {producer_id}: epoch {epoch} is older than epoch {entry.epoch}",
            )
        if base_sequence == 0 or entry.epoch == NO_PRODUCER_EPOCH:
            return _APPEND
        return Verdict(
            ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
            f"producer {producer_id}: new epoch {epoch} starts at sequence {base_sequence}, not 0",
        )

    def record(self, header: RecordBatchHeader, now_ms: int) -> None:
        """Remember a batch the log now holds, without checking it (a follower records what its
        leader sent, as Kafka's REPLICATION origin does). A new epoch replaces the producer's
        batches; a batch without a producer id is ignored.

        :param header: the stored batch's header, its base offset assigned.
        :param now_ms: the broker's clock: the producer's last activity.
        """
        producer_id = header.producer_id
        if producer_id < 0:
            return
        entry = self._live_entry(producer_id, now_ms)
        self._producers[producer_id] = _with_batch(entry, header, now_ms)

    def rebuild(self, headers: Iterable[RecordBatchHeader], now_ms: int) -> None:
        """Replace the state with the one the log's batches give, as after recording each of
        them at ``now_ms``. One pass that keeps only each producer's last 5 headers of its
        latest epoch.

        :param headers: the header of every batch in the log, in offset order.
        :param now_ms: the broker's clock: every producer found was active at this time.
        """
        windows: dict[int, deque[RecordBatchHeader]] = {}
        get = windows.get
        for header in headers:
            producer_id = header.producer_id
            if producer_id < 0:
                continue
            window = get(producer_id)
            if window is None or window[-1].producer_epoch != header.producer_epoch:
                windows[producer_id] = deque((header,), NUM_BATCHES_TO_RETAIN)
            else:
                window.append(header)
        self._producers = {
            producer_id: ProducerEntry(
                window[-1].producer_epoch, tuple(map(_metadata, window)), now_ms
            )
            for producer_id, window in windows.items()
        }

    def remove_expired(self, now_ms: int) -> int:
        """Forget the producers inactive for ``expiration_ms`` or longer; return how many.

        :param now_ms: the broker's clock.
        """
        expired = [
            producer_id
            for producer_id, entry in self._producers.items()
            if now_ms - entry.last_activity_ms >= self.expiration_ms
        ]
        for producer_id in expired:
            del self._producers[producer_id]
        return len(expired)

    def _live_entry(self, producer_id: int, now_ms: int) -> ProducerEntry | None:
        entry = self._producers.get(producer_id)
        if entry is None or now_ms - entry.last_activity_ms >= self.expiration_ms:
            return None
        return entry


def _metadata(header: RecordBatchHeader) -> BatchMetadata:
    """The metadata of the stored batch ``header``."""
    base_offset = header.base_offset
    return BatchMetadata(
        header.base_sequence,
        header.last_sequence,
        base_offset,
        base_offset + header.last_offset_delta,
        header.max_timestamp,
    )


def _with_batch(
    entry: ProducerEntry | None, header: RecordBatchHeader, now_ms: int
) -> ProducerEntry:
    """``entry`` (``None``: a producer not known) after the stored batch ``header``."""
    batch = _metadata(header)
    epoch = header.producer_epoch
    if entry is None or entry.epoch != epoch:
        return ProducerEntry(epoch, (batch,), now_ms)
    return ProducerEntry(epoch, (*entry.batches[1 - NUM_BATCHES_TO_RETAIN :], batch), now_ms)
