"""One segment of a partition log: a ``.log`` file and its two sparse indexes.

A segment with base offset B is three files in the partition directory (``names``):
``B.log`` holds RecordBatch v2 batches back to back, exactly as appended (offsets already
assigned: the first batch's baseOffset is B and each batch starts at the offset after the
previous one); ``B.index`` and ``B.timeindex`` are the sparse indexes of ``index``.

Not thread-safe: one thread appends, reads and truncates. The flusher thread may call
``flush`` concurrently with appends (an fsync never conflicts with a write on the same fd), but
never concurrently with ``close``/``delete`` (``PartitionLog`` guarantees that).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from tmq.protocol.errors import ProtocolError
from tmq.protocol.records import (
    HEADER_SIZE,
    MAX_BATCH_SIZE,
    RecordBatchHeader,
    decode_batch,
    read_batch_header,
)

from .files import File, FileSystem
from .index import CorruptIndex, OffsetIndex, TimeIndex
from .names import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, segment_file
from .scan import Corruption, scan_batches

__all__ = ["LogSegment", "SegmentRecovery"]

#: No timestamp yet (Kafka's NO_TIMESTAMP).
NO_TIMESTAMP = -1


@dataclass(frozen=True)
class SegmentRecovery:
    """What ``LogSegment.recover`` found.

    :param truncated_bytes: bytes cut off the end of the ``.log`` (0 if it was all valid).
    :param reason: why the walk stopped early (``None`` if it was not truncated).
    """

    truncated_bytes: int
    reason: str | None


class LogSegment:
    """A segment (see the module docstring). Build one with ``create`` or ``open``.

    :param index_interval_bytes: bytes of batches between two index entries.
    """

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        base_offset: int,
        log: File,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
        *,
        index_interval_bytes: int,
    ):
        self.fs = fs
        self.directory = directory
        self.base_offset = base_offset
        self.log = log
        self.offset_index = offset_index
        self.time_index = time_index
        self.index_interval_bytes = index_interval_bytes
        #: The offset after the last batch: the segment's log end offset.
        self.next_offset = base_offset
        #: Largest record timestamp in the segment, and the baseOffset of its batch.
        self.max_timestamp = NO_TIMESTAMP
        self._offset_of_max_timestamp = base_offset
        #: maxTimestamp of the first batch (what ``segment.ms`` counts from).
        self.first_batch_timestamp = NO_TIMESTAMP
        self._bytes_since_index_entry = 0
        #: Set when a failed append could not be undone: the segment must not be used.
        self.broken = False

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def _open_files(cls, fs: FileSystem, directory: str, base_offset: int, **options) -> LogSegment:
        def path(suffix: str) -> str:
            return posixpath.join(directory, segment_file(base_offset, suffix))

        log = fs.open(path(LOG_SUFFIX))
        offset_index = OffsetIndex(fs.open(path(INDEX_SUFFIX)), base_offset)
        time_index = TimeIndex(fs.open(path(TIME_INDEX_SUFFIX)), base_offset)
        return cls(fs, directory, base_offset, log, offset_index, time_index, **options)

    @classmethod
    def create(
        cls, fs: FileSystem, directory: str, base_offset: int, *, index_interval_bytes: int
    ) -> LogSegment:
        """A new, empty segment (leftover files of the same name are emptied)."""
        segment = cls._open_files(
            fs, directory, base_offset, index_interval_bytes=index_interval_bytes
        )
        segment.log.truncate(0)
        segment.offset_index.reset()
        segment.time_index.reset()
        return segment

    @classmethod
    def open(
        cls, fs: FileSystem, directory: str, base_offset: int, *, index_interval_bytes: int
    ) -> tuple[LogSegment, SegmentRecovery | None]:
        """Open an existing segment after a clean shutdown.

        The indexes are loaded and checked, and the batches after the last index entry are
        walked to find the segment's end. If an index is missing or malformed, or that walk
        finds a bad batch, the segment is recovered instead and the recovery is returned.
        """
        segment = cls._open_files(
            fs, directory, base_offset, index_interval_bytes=index_interval_bytes
        )
        try:
            segment._load_indexes()
        except CorruptIndex:
            return segment, segment.recover()
        return segment, None

    @classmethod
    def open_and_recover(
        cls,
        fs: FileSystem,
        directory: str,
        base_offset: int,
        *,
        index_interval_bytes: int,
        epoch_at: Callable[[int], int] | None = None,
    ) -> tuple[LogSegment, SegmentRecovery]:
        """Open an existing segment that may hold unflushed data, and ``recover`` it."""
        segment = cls._open_files(
            fs, directory, base_offset, index_interval_bytes=index_interval_bytes
        )
        return segment, segment.recover(epoch_at=epoch_at)

    def _load_indexes(self) -> None:
        """Load both indexes, trusting them only if they agree with the log.

        Checks: each file is well formed (``index``); the last offset-index entry points at the
        batch it names; walking the batches after it, no entry is missing where Kafka's rule
        would have written one; the last time-index entry names a batch whose maxTimestamp is
        its timestamp. Anything else raises ``CorruptIndex`` and the segment is recovered.
        """
        self.offset_index = OffsetIndex.load(self.offset_index.file, self.base_offset, self.size)
        start_offset, start_position = self.offset_index.lookup(1 << 62)
        if start_position and self._base_offset_at(start_position) != start_offset:
            raise CorruptIndex(f"{self.offset_index.file.path}: last entry points elsewhere")
        for item in scan_batches(
            self.log,
            position=start_position,
            expected_offset=start_offset,
            max_batch_bytes=MAX_BATCH_SIZE,
        ):
            if isinstance(item, Corruption):
                raise CorruptIndex(f"{self.log.path}: {item.reason} at byte {item.position}")
            if self._bytes_since_index_entry > self.index_interval_bytes:
                raise CorruptIndex(f"{self.offset_index.file.path}: entries are missing")
            self._observe(item.header)
            self._bytes_since_index_entry += item.header.size
        self.time_index = TimeIndex.load(self.time_index.file, self.base_offset, self.next_offset)
        last = self.time_index.last_entry()
        if last is None and len(self.offset_index):
            raise CorruptIndex(f"{self.time_index.file.path}: entries are missing")
        if last is not None:
            if not self._time_entry_holds(*last):
                raise CorruptIndex(f"{self.time_index.file.path}: last entry does not match")
            if last[0] > self.max_timestamp:
                self.max_timestamp, self._offset_of_max_timestamp = last
        if self.size:
            self.first_batch_timestamp = self.batch_at(0).max_timestamp

    def _base_offset_at(self, position: int) -> int | None:
        """The baseOffset of a readable batch header at ``position``, else ``None``."""
        try:
            return self.batch_at(position).base_offset
        except ProtocolError:
            return None

    def _time_entry_holds(self, timestamp: int, offset: int) -> bool:
        """Whether the batch at ``offset`` has maxTimestamp ``timestamp`` (what a time-index
        entry claims)."""
        try:
            found = self._find_unchecked(offset)
        except ProtocolError:
            return False
        return (
            found is not None
            and found[1].base_offset == offset
            and (found[1].max_timestamp == timestamp)
        )

    # -- state ------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes in the ``.log``."""
        return self.log.size

    @property
    def is_empty(self) -> bool:
        return self.log.size == 0

    def _observe(self, header: RecordBatchHeader) -> None:
        """Account for a batch at the end of the segment (appended or found by a walk)."""
        if self.next_offset == self.base_offset:
            self.first_batch_timestamp = header.max_timestamp
        self.next_offset = header.last_offset + 1
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self._offset_of_max_timestamp = header.base_offset

    def _index(self, header: RecordBatchHeader, position: int) -> None:
        """Kafka's sparse-index rule: an entry for this batch once more than
        ``index_interval_bytes`` were appended since the last entry."""
        if self._bytes_since_index_entry > self.index_interval_bytes:
            self.offset_index.append(header.base_offset, position)
            self.time_index.maybe_append(self.max_timestamp, self._offset_of_max_timestamp)
            self._bytes_since_index_entry = 0
        self._bytes_since_index_entry += header.size

    # -- writing ----------------------------------------------------------------------------

    def append(self, batch: bytes | bytearray | memoryview, header: RecordBatchHeader) -> int:
        """Append one batch whose offsets are assigned (its baseOffset is ``next_offset``);
        return the position it was written at.

        :raises OSError: a write failed; the segment is as it was before the call. If even
            undoing a partial append failed, ``broken`` is set and the segment must not be
            used (the log goes offline; recovery repairs it at the next start).
        """
        position = self.log.append(batch)
        saved = (
            self.next_offset,
            self.max_timestamp,
            self._offset_of_max_timestamp,
            self.first_batch_timestamp,
            self._bytes_since_index_entry,
            len(self.offset_index),
            len(self.time_index),
        )
        try:
            self._observe(header)
            self._index(header, position)
        except OSError:
            self._undo_append(position, saved)
            raise
        return position

    def _undo_append(self, position: int, saved: tuple) -> None:
        (
            self.next_offset,
            self.max_timestamp,
            self._offset_of_max_timestamp,
            self.first_batch_timestamp,
            self._bytes_since_index_entry,
            offset_entries,
            time_entries,
        ) = saved
        try:
            self.log.truncate(position)
            self.offset_index.truncate_entries(offset_entries)
            self.time_index.truncate_entries(time_entries)
        except OSError:
            self.broken = True

    def truncate_to(self, offset: int) -> int:
        """Remove every batch whose last offset is at or after ``offset`` (so a batch holding
        ``offset`` goes entirely); return the number of bytes removed."""
        found = self.find(offset)
        if found is None:
            return 0
        position, header = found
        removed = self.size - position
        self.log.truncate(position)
        self.offset_index.truncate_to_position(position)
        self.time_index.truncate_to(header.base_offset)
        self._rescan_tail()
        return removed

    def _rescan_tail(self) -> None:
        """Recompute the end state from the last index entry (after a truncation)."""
        self.next_offset = self.base_offset
        self.max_timestamp = NO_TIMESTAMP
        self._offset_of_max_timestamp = self.base_offset
        self.first_batch_timestamp = NO_TIMESTAMP
        last = self.time_index.last_entry()
        if last is not None:
            self.max_timestamp, self._offset_of_max_timestamp = last
        start_offset, start_position = self.offset_index.lookup(1 << 62)
        if start_position:
            self.next_offset = start_offset
            self.first_batch_timestamp = self.batch_at(0).max_timestamp
        self._bytes_since_index_entry = 0
        position = start_position
        while position < self.size:
            header = self.batch_at(position)
            self._observe(header)
            self._bytes_since_index_entry += header.size
            position += header.size

    def recover(self, *, epoch_at: Callable[[int], int] | None = None) -> SegmentRecovery:
        """Rebuild both indexes by walking and validating every batch (``scan``); cut the
        ``.log`` at the first invalid byte.

        :param epoch_at: the leader epoch each batch must carry (from the epoch checkpoint).
        """
        self.offset_index.reset()
        self.time_index.reset()
        self.next_offset = self.base_offset
        self.max_timestamp = NO_TIMESTAMP
        self._offset_of_max_timestamp = self.base_offset
        self.first_batch_timestamp = NO_TIMESTAMP
        self._bytes_since_index_entry = 0
        for item in scan_batches(
            self.log,
            expected_offset=self.base_offset,
            max_batch_bytes=MAX_BATCH_SIZE,
            epoch_at=epoch_at,
        ):
            if isinstance(item, Corruption):
                truncated = self.size - item.position
                self.log.truncate(item.position)
                return SegmentRecovery(truncated, item.reason)
            self._observe(item.header)
            self._index(item.header, item.position)
        return SegmentRecovery(0, None)

    def flush(self, *, indexes: bool = True) -> None:
        """fsync the ``.log`` and, unless ``indexes`` is false, both indexes.

        The active segment's indexes need no fsync per commit: after a crash, recovery rebuilds
        the indexes of every segment from the recovery point on. They are synced when the
        segment rolls and at a clean shutdown, when later opens will trust them.
        """
        self.log.fsync()
        if indexes:
            self.offset_index.file.fsync()
            self.time_index.file.fsync()

    def close(self) -> None:
        self.log.close()
        self.offset_index.file.close()
        self.time_index.file.close()

    def delete(self) -> None:
        """Close and remove the three files."""
        self.close()
        for file in (self.log, self.offset_index.file, self.time_index.file):
            self.fs.unlink(file.path)

    # -- reading ----------------------------------------------------------------------------

    def batch_at(self, position: int) -> RecordBatchHeader:
        """The header of the batch at ``position`` (a position this segment wrote)."""
        return read_batch_header(self.log.read(position, HEADER_SIZE))

    def find(self, offset: int) -> tuple[int, RecordBatchHeader] | None:
        """``(position, header)`` of the first batch whose last offset is at or after
        ``offset``, or ``None`` if there is none in this segment.

        The index entry used is checked against the batch it points at; an entry that does
        not match (an index damaged on disk) makes the segment rebuild its indexes.
        """
        if offset >= self.next_offset:
            return None
        indexed, position = self.offset_index.lookup(offset)
        if position and self._base_offset_at(position) != indexed:
            self._reindex()
        return self._find_unchecked(offset)

    def _reindex(self) -> None:
        """Rebuild both indexes from the batch headers, for an index found damaged while the
        log is in use. The ``.log`` is never cut here (that is recovery's job, at load): a
        batch header that does not read ends the walk, and reads of it fail."""
        saved = (self.next_offset, self.max_timestamp, self._offset_of_max_timestamp)
        self.offset_index.reset()
        self.time_index.reset()
        self.next_offset = self.base_offset
        self.max_timestamp = NO_TIMESTAMP
        self._offset_of_max_timestamp = self.base_offset
        self._bytes_since_index_entry = 0
        position, size = 0, self.size
        while position < size:
            try:
                header = self.batch_at(position)
            except ProtocolError:
                self.next_offset, self.max_timestamp, self._offset_of_max_timestamp = saved
                return
            self._observe(header)
            self._index(header, position)
            position += header.size

    def _find_unchecked(self, offset: int) -> tuple[int, RecordBatchHeader] | None:
        _, position = self.offset_index.lookup(offset)
        size = self.size
        while position < size:
            header = self.batch_at(position)
            if header.last_offset >= offset:
                return position, header
            position += header.size
        return None

    def read_range(
        self, offset: int, max_bytes: int, max_offset: int
    ) -> tuple[int, int, int] | None:
        """``(position, size, first base offset)``: whole batches to serve a read at ``offset``.

        It starts with the batch holding ``offset`` (or the next one), takes only batches that
        start below ``max_offset``, and stops before ``max_bytes`` would be exceeded — but
        always holds at least one batch. ``None`` when no batch qualifies.
        """
        found = self.find(offset)
        if found is None or found[1].base_offset >= max_offset:
            return None
        start, header = found
        first = header.base_offset
        end = start + header.size
        size = self.size
        while end < size:
            header = self.batch_at(end)
            if header.base_offset >= max_offset or end + header.size - start > max_bytes:
                break
            end += header.size
        return start, end - start, first

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """``(offset, record timestamp)`` of the first record whose timestamp is at or after
        ``timestamp``, or ``None`` if no record of this segment is that recent.

        The time-index entry used is checked against its batch; a damaged one makes the
        segment rebuild its indexes.
        """
        if self.max_timestamp < timestamp:
            return None
        entry = self.time_index.entry_before(timestamp)
        if entry is not None and not self._time_entry_holds(*entry):
            self._reindex()
            entry = self.time_index.entry_before(timestamp)
        found = self.find(self.base_offset if entry is None else entry[1])
        if found is None:
            return None
        position, header = found
        size = self.size
        while position < size:
            header = self.batch_at(position)
            if header.max_timestamp >= timestamp:
                return _first_record_at_or_after(self.log.read(position, header.size), timestamp)
            position += header.size
        return None


def _first_record_at_or_after(batch: bytes, timestamp: int) -> tuple[int, int] | None:
    header, records = decode_batch(batch)
    if header.timestamp_type:  # LogAppendTime: every record carries maxTimestamp
        return header.base_offset, header.max_timestamp
    for record in records:
        record_timestamp = header.base_timestamp + record.timestamp_delta
        if record_timestamp >= timestamp:
            return header.base_offset + record.offset_delta, record_timestamp
    return None
