"""Walk the record batches of a segment file and validate each one.

This is what recovery trusts and what ``tmq debug dump-log`` shows. A batch is valid when:

* its 61-byte header reads (magic 2, a sane batchLength, a known codec, see
  ``tmq.protocol.records.read_batch_header``) and the whole batch lies inside the file;
* it is no larger than ``max_batch_bytes``;
* its CRC32C matches (the CRC covers attributes to the end of the batch);
* ``recordsCount == lastOffsetDelta + 1`` (tmq never compacts, so batches are dense);
* its baseOffset is exactly the offset that follows the previous batch (baseOffset is outside
  the CRC: this catches a damaged one), and its partitionLeaderEpoch is not below the
  previous batch's — and, when the caller knows the partition's epochs (``epoch_at``, from the
  leader-epoch checkpoint, which is written before any batch of a new epoch), it is exactly
  the epoch in force at its baseOffset (partitionLeaderEpoch is outside the CRC too).

The walk stops at the first invalid byte range and reports it as a ``Corruption``. In
``lenient`` mode (for inspection tools) a batch whose header is readable but which breaks one
of the other rules is reported with its ``problem`` and the walk goes on after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tmq.protocol.errors import ProtocolError
from tmq.protocol.records import HEADER_SIZE, RecordBatchHeader, batch_crc_ok, read_batch_header

from .files import File

__all__ = ["Corruption", "ScannedBatch", "scan_batches"]


@dataclass(frozen=True)
class ScannedBatch:
    """A batch at ``position``; ``data`` is the whole batch when it was asked for, and
    ``problem`` says what is wrong with it (only ever set in lenient mode)."""

    position: int
    header: RecordBatchHeader
    data: bytes | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Corruption:
    """The first invalid byte range: everything from ``position`` on is unusable."""

    position: int
    reason: str


def scan_batches(
    file: File,
    *,
    position: int = 0,
    end: int | None = None,
    expected_offset: int | None = None,
    min_epoch: int = -1,
    max_batch_bytes: int,
    keep_data: bool = False,
    lenient: bool = False,
    epoch_at: Callable[[int], int] | None = None,
) -> Iterator[ScannedBatch | Corruption]:
    """Yield each valid batch from ``position`` to ``end`` (default: the file's size), then a
    ``Corruption`` if the walk stopped before ``end``.

    :param expected_offset: the baseOffset the first batch must have (``None``: any).
    :param min_epoch: the smallest partitionLeaderEpoch the first batch may carry.
    :param keep_data: include each batch's bytes in the result.
    :param lenient: report a readable batch that breaks a rule and go on (see module doc).
    :param epoch_at: the leader epoch a batch starting at an offset must carry.
    """
    end = file.size if end is None else end
    while position < end:
        if end - position < HEADER_SIZE:
            yield Corruption(position, f"truncated batch header: {end - position} bytes")
            return
        data = file.read(position, HEADER_SIZE)
        try:
            header = read_batch_header(data, max_batch_size=max_batch_bytes)
        except ProtocolError as error:
            yield Corruption(position, f"bad batch header: {error}")
            return
        if header.size > end - position:
            yield Corruption(
                position, f"truncated batch: {header.size} bytes, {end - position} in the file"
            )
            return
        data = file.read(position, header.size)
        problem = _problem(data, header, expected_offset, min_epoch, epoch_at)
        if problem is not None and not lenient:
            yield Corruption(position, problem)
            return
        yield ScannedBatch(position, header, data if keep_data else None, problem)
        expected_offset = header.last_offset + 1
        min_epoch = header.partition_leader_epoch
        position += header.size


def _problem(
    data: bytes,
    header: RecordBatchHeader,
    expected_offset: int | None,
    min_epoch: int,
    epoch_at: Callable[[int], int] | None,
) -> str | None:
    if len(data) != header.size:
        return "batch shorter than its header says"
    if not batch_crc_ok(data, 0, header):
        return f"CRC mismatch in the batch at offset {header.base_offset}"
    if header.records_count != header.last_offset_delta + 1:
        return (
            f"batch at offset {header.base_offset} holds {header.records_count} records "
            f"but spans {header.last_offset_delta + 1} offsets"
        )
    if expected_offset is not None and header.base_offset != expected_offset:
        return f"batch offset {header.base_offset} where {expected_offset} was expected"
    if header.partition_leader_epoch < min_epoch:
        return f"leader epoch {header.partition_leader_epoch} after epoch {min_epoch}"
    if epoch_at is not None and header.partition_leader_epoch != epoch_at(header.base_offset):
        return (
            f"leader epoch {header.partition_leader_epoch} at offset {header.base_offset}, "
            f"where the epoch checkpoint has {epoch_at(header.base_offset)}"
        )
    return None
