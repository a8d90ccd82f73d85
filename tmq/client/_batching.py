"""The producer's sans-IO core: records waiting in per-partition batches, and each partition's
idempotent sequence stream.

``PartitionQueue`` holds one partition's batches: those waiting (new ones, and retries put back
in creation order) and those in flight (in send order). With idempotence it also owns the
partition's sequence numbers: which producer id they belong to, the next one to stamp and the
last one the broker acknowledged. It decides whether the head batch may go on the wire
(``may_send``) so that a partition's batches always reach the broker in sequence order.
"""

from __future__ import annotations

import bisect
from typing import Any

from tmq.protocol.compression import Codec, compress
from tmq.protocol.records import HEADER_SIZE, append_record, frame_batch

__all__ = [
    "SEQUENCE_MODULUS",
    "Batch",
    "Joined",
    "PartitionQueue",
    "PendingRecord",
]

SEQUENCE_MODULUS = 2**31
"""Sequence numbers wrap from INT32 max to 0, as Kafka's do."""


class Joined:
    """Where ``PartitionQueue.append`` put a record (plain ints, not an Enum: a member
    lookup on an Enum class costs more than the rest of ``append``)."""

    OPEN = 0  # joined the open batch
    NEW = 1  # started a new batch
    FULL = 2  # filled a batch


class PendingRecord:
    """A record waiting for its topic's metadata, before it can join a batch.

    :ivar index: the order of the ``send`` call, producer-wide (``flush`` counts with it).
    :ivar waiter: what learns the record's outcome: the Deferred of ``send``, the
        ``on_delivery`` callable of ``produce``, or ``None``.
    """

    __slots__ = (
        "headers",
        "index",
        "key",
        "partition",
        "sent_at",
        "size",
        "timestamp",
        "topic",
        "value",
        "waiter",
    )

    def __init__(
        self, topic, partition, key, value, headers, timestamp, index, sent_at, waiter, size
    ):
        self.topic: str = topic
        self.partition: int | None = partition
        self.key: bytes | None = key
        self.value: bytes | None = value
        self.headers: tuple = headers
        self.timestamp: int = timestamp
        self.index: int = index
        self.sent_at: float = sent_at
        self.waiter: Any = waiter
        self.size: int = size


class Batch:
    """The records of one partition that travel together, and their delivery state.

    Records are encoded as they join (``tmq.protocol.records.append_record``): a batch keeps
    their bytes, not the records, and per record only its send index; the records that have a
    waiter also keep ``(index, position, timestamp, waiter)`` in ``waiters``.

    :ivar serial: creation order within the partition; the queue is kept sorted by it.
    :ivar deadline: the delivery deadline of its first record.
    :ivar closed: no more records may join (full, or sent once).
    :ivar stamp: ``(producer id, epoch, base sequence)`` once stamped (idempotence).
    :ivar rewound: in flight, but its stamp was revoked; whatever answer comes back, it goes
        back to the queue to be stamped again.
    :ivar size: the estimated batch size (header and records).
    :ivar indices: the send indices of the records, ascending.
    :ivar records: the pieces of the records section, as the records join (emptied once
        encoded).
    :ivar body: the records section, compressed (kept to frame it again with a new stamp).
    :ivar encoded: the RecordBatch bytes, kept so that a retry sends the very same batch.
    """

    __slots__ = (
        "attempts",
        "base_timestamp",
        "body",
        "closed",
        "count",
        "created",
        "deadline",
        "encoded",
        "indices",
        "max_timestamp",
        "partition",
        "records",
        "retry_at",
        "rewound",
        "serial",
        "size",
        "stamp",
        "topic",
        "waiters",
    )

    def __init__(
        self,
        topic: str,
        partition: int,
        serial: int,
        created: float,
        deadline: float,
        base_timestamp: int,
    ):
        self.topic = topic
        self.partition = partition
        self.serial = serial
        self.created = created
        self.deadline = deadline
        self.base_timestamp = base_timestamp
        self.max_timestamp = base_timestamp
        self.records: list[bytes] = []
        self.count = 0
        self.indices: list[int] = []
        self.waiters: list[tuple[int, int, int, Any]] = []
        self.size = HEADER_SIZE
        self.closed = False
        self.attempts = 0
        self.retry_at = 0.0
        self.stamp: tuple[int, int, int] | None = None
        self.rewound = False
        self.body: bytes | None = None
        self.encoded: bytes | None = None

    @property
    def record_bytes(self) -> int:
        """The records' estimated sizes (what they hold of the producer buffer)."""
        return self.size - HEADER_SIZE

    @property
    def last_sequence(self) -> int:
        """The sequence number of the last record (the batch must be stamped)."""
        assert self.stamp is not None
        return (self.stamp[2] + self.count - 1) % SEQUENCE_MODULUS

    def __lt__(self, other: Batch) -> bool:
        return self.serial < other.serial

    def encode(self, codec: Codec) -> bytes:
        """Build (once per stamp) and return the RecordBatch v2 holding the records."""
        if self.encoded is None:
            if self.body is None:
                self.body = compress(codec, b"".join(self.records))
                self.records = []
            producer_id, producer_epoch, base_sequence = self.stamp or (-1, -1, -1)
            self.encoded = frame_batch(
                self.body,
                count=self.count,
                last_offset_delta=self.count - 1,
                base_timestamp=self.base_timestamp,
                max_timestamp=self.max_timestamp,
                compression=codec,
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                base_sequence=base_sequence,
            )
        return self.encoded


class PartitionQueue:
    """One partition's waiting and in-flight batches, and its sequence stream."""

    __slots__ = (
        "batch_bytes",
        "delivery_timeout_s",
        "in_flight",
        "last_acked",
        "next_sequence",
        "next_serial",
        "partition",
        "producer_epoch",
        "producer_id",
        "queue",
        "topic",
    )

    def __init__(
        self, topic: str, partition: int, *, batch_bytes: int, delivery_timeout_s: float
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.batch_bytes = batch_bytes
        self.delivery_timeout_s = delivery_timeout_s
        self.queue: list[Batch] = []
        self.in_flight: list[Batch] = []
        self.next_serial = 0
        self.producer_id = -1
        self.producer_epoch = -1
        self.next_sequence = 0
        self.last_acked = -1

    def append(self, key, value, headers, timestamp, index, now, sent_at, waiter, size) -> int:
        """Add a record, sent at ``sent_at``, to the last open batch, or to a new one if it
        would not fit.

        :returns: ``Joined.FULL`` when a batch became full (to be sent without lingering),
            ``Joined.NEW`` when the record started a batch (to be sent when its linger ends),
            else ``Joined.OPEN``.
        """
        batch = self.queue[-1] if self.queue else None
        full = False
        if batch is not None and not batch.closed and batch.size + size > self.batch_bytes:
            batch.closed = full = True
        joined = Joined.OPEN
        if batch is None or batch.closed:
            deadline = sent_at + self.delivery_timeout_s
            batch = Batch(self.topic, self.partition, self.next_serial, now, deadline, timestamp)
            self.next_serial += 1
            self.queue.append(batch)
            joined = Joined.NEW
        # The record joins the batch: encoded, and its send index (and waiter) kept.
        position = batch.count
        delta = timestamp - batch.base_timestamp
        append_record(batch.records, position, delta, key, value, headers)
        batch.count = position + 1
        batch.indices.append(index)
        if waiter is not None:
            batch.waiters.append((index, position, timestamp, waiter))
        if timestamp > batch.max_timestamp:
            batch.max_timestamp = timestamp
        batch.size += size
        if batch.size >= self.batch_bytes:
            batch.closed = full = True
        return Joined.FULL if full else joined

    def may_send(
        self, batch: Batch, *, max_in_flight: int, idempotent: bool, producer_id: int, epoch: int
    ) -> bool:
        """Whether the head ``batch`` may be sent now; adopts ``producer_id`` for the partition
        when the previous one's batches have all settled.

        With idempotence a retry goes out only right after what is already on the wire (its
        sequence must follow), and new batches wait while rewound ones are in flight or while
        another producer id's batches are outstanding.
        """
        if len(self.in_flight) >= max_in_flight:
            return False
        if not idempotent:
            return True
        if any(b.rewound for b in self.in_flight):
            return False
        if batch.stamp is not None:
            if self.in_flight:
                expected = (self.in_flight[-1].last_sequence + 1) % SEQUENCE_MODULUS
            else:
                expected = (self.last_acked + 1) % SEQUENCE_MODULUS
            return batch.stamp[2] == expected
        if producer_id < 0:
            return False
        if self.producer_id != producer_id:
            if self._stamped_outstanding():
                return False
            self.producer_id = producer_id
            self.producer_epoch = epoch
            self.next_sequence = 0
            self.last_acked = -1
        return True

    def start(self, *, idempotent: bool, codec: Codec) -> Batch:
        """Take the head batch into flight: stamp it (idempotence, first time) and encode it."""
        batch = self.queue.pop(0)
        batch.closed = True
        batch.attempts += 1
        if idempotent and batch.stamp is None:
            batch.stamp = (self.producer_id, self.producer_epoch, self.next_sequence)
            self.next_sequence = (self.next_sequence + batch.count) % SEQUENCE_MODULUS
            batch.encoded = None
        batch.encode(codec)
        self.in_flight.append(batch)
        return batch

    def finish(self, batch: Batch) -> bool:
        """Take ``batch`` out of flight; ``False`` if it was not in flight (abandoned)."""
        if batch not in self.in_flight:
            return False
        self.in_flight.remove(batch)
        return True

    def acknowledge(self, batch: Batch) -> None:
        """The broker wrote ``batch``: its sequence is the last acknowledged."""
        if batch.stamp is not None:
            self.last_acked = batch.last_sequence

    def earlier_unanswered(self, batch: Batch) -> bool:
        """Whether a batch before the stamped ``batch`` has not been acknowledged yet."""
        assert batch.stamp is not None
        return batch.stamp[2] != (self.last_acked + 1) % SEQUENCE_MODULUS

    def requeue(self, batch: Batch, now: float) -> None:
        """Put ``batch`` back in its place, to be sent again no earlier than ``retry_at``."""
        batch.rewound = False
        batch.retry_at = max(batch.retry_at, now)
        bisect.insort(self.queue, batch)

    def rewind(self, batch: Batch) -> None:
        """``batch`` will never be written: the batches behind it must not leave a sequence
        gap, so they lose their stamps and the next stamp is ``batch``'s sequence again."""
        assert batch.stamp is not None
        self.next_sequence = batch.stamp[2]
        for later in self.queue + self.in_flight:
            if later.serial > batch.serial and later.stamp is not None:
                later.stamp = None
                later.encoded = None
                later.rewound = later in self.in_flight

    def drop_all(self) -> list[Batch]:
        """Remove and return every waiting and in-flight batch."""
        batches = self.queue + self.in_flight
        self.queue = []
        self.in_flight = []
        return batches

    def _stamped_outstanding(self) -> bool:
        return any(b.stamp is not None or b.rewound for b in self.in_flight) or any(
            b.stamp is not None for b in self.queue
        )
