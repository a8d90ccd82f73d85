"""Sparse indexes of one segment: offset -> file position, and timestamp -> offset.

On-disk formats (big-endian, no header, no checksum — an index is rebuilt from its ``.log``
whenever it is missing, malformed or may be stale after a crash):

``.index``      8-byte entries ``relative_offset INT32, position INT32``: the batch whose
                baseOffset is ``base_offset + relative_offset`` starts at byte ``position`` of
                the ``.log``. Both columns strictly increase.
``.timeindex``  12-byte entries ``timestamp INT64, relative_offset INT32``: ``timestamp`` is the
                largest record timestamp in the segment up to and including the batch at that
                offset. Both columns strictly increase.

An entry is added when more than ``index.interval.bytes`` of batches were appended since the
last one (Kafka's rule), so a lookup is a binary search followed by a short forward scan.
The whole index is held in memory (two ``array``s); appends go to the file as well.
Not thread-safe: one writer.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left, bisect_right

from .files import File

__all__ = ["CorruptIndex", "OffsetIndex", "TimeIndex"]


class CorruptIndex(Exception):
    """An index file that cannot be trusted; the segment rebuilds it from the log."""


class _Index:
    """Shared machinery: a file of fixed-size entries mirrored by two in-memory columns."""

    ENTRY: struct.Struct

    def __init__(self, file: File, base_offset: int):
        self.file = file
        self.base_offset = base_offset
        self._keys = array("q")
        self._values = array("q")

    def __len__(self) -> int:
        return len(self._keys)

    def _load(self) -> None:
        """Read the file into memory, checking that both columns strictly increase."""
        raw = self.file.read(0, self.file.size)
        if len(raw) % self.ENTRY.size:
            raise CorruptIndex(f"{self.file.path}: size {len(raw)} is not a whole entry count")
        for a, b in self.ENTRY.iter_unpack(raw):
            key, value = self._decode(a, b)
            if self._keys and (key <= self._keys[-1] or value <= self._values[-1]):
                raise CorruptIndex(f"{self.file.path}: entries out of order")
            self._keys.append(key)
            self._values.append(value)

    def _decode(self, a: int, b: int) -> tuple[int, int]:
        raise NotImplementedError

    def _encode(self, key: int, value: int) -> bytes:
        raise NotImplementedError

    def _add(self, key: int, value: int) -> None:
        if self._keys and (key <= self._keys[-1] or value <= self._values[-1]):
            raise ValueError(f"index entry ({key}, {value}) does not follow the last one")
        self.file.append(self._encode(key, value))
        self._keys.append(key)
        self._values.append(value)

    def truncate_entries(self, count: int) -> None:
        """Keep the first ``count`` entries, in memory and in the file."""
        del self._keys[count:]
        del self._values[count:]
        if self.file.size != count * self.ENTRY.size:
            # also drops bytes that were never loaded (an index being rebuilt)
            self.file.truncate(count * self.ENTRY.size)

    def reset(self) -> None:
        """Drop every entry (before a rebuild)."""
        self.truncate_entries(0)

    def last_entry(self) -> tuple[int, int] | None:
        if not self._keys:
            return None
        return self._keys[-1], self._values[-1]


class OffsetIndex(_Index):
    """Offset -> position of the batch holding it (see the module docstring)."""

    ENTRY = struct.Struct(">ii")

    @classmethod
    def load(cls, file: File, base_offset: int, log_size: int) -> OffsetIndex:
        """Load an index file and check it against the log's size.

        :raises CorruptIndex: malformed entries or positions past the end of the log.
        """
        index = cls(file, base_offset)
        index._load()
        if index._values and index._values[-1] >= log_size:
            raise CorruptIndex(f"{file.path}: points past the end of the log")
        if index._values and index._values[0] < 0:
            raise CorruptIndex(f"{file.path}: negative position")
        return index

    def _decode(self, relative_offset: int, position: int) -> tuple[int, int]:
        return self.base_offset + relative_offset, position

    def _encode(self, offset: int, position: int) -> bytes:
        return self.ENTRY.pack(offset - self.base_offset, position)

    def append(self, offset: int, position: int) -> None:
        """Record that the batch with baseOffset ``offset`` starts at ``position``."""
        self._add(offset, position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """The indexed ``(offset, position)`` closest below or at ``offset``; the segment start
        ``(base_offset, 0)`` when no entry is."""
        i = bisect_right(self._keys, offset)
        if i == 0:
            return self.base_offset, 0
        return self._keys[i - 1], self._values[i - 1]

    def truncate_to(self, offset: int) -> None:
        """Drop the entries of batches at or after ``offset``."""
        self.truncate_entries(bisect_left(self._keys, offset))

    def truncate_to_position(self, position: int) -> None:
        """Drop the entries pointing at or after byte ``position`` of the log."""
        self.truncate_entries(bisect_left(self._values, position))


class TimeIndex(_Index):
    """Timestamp -> offset (see the module docstring)."""

    ENTRY = struct.Struct(">qi")

    @classmethod
    def load(cls, file: File, base_offset: int, next_offset: int) -> TimeIndex:
        """Load a time index and check it against the segment's offsets.

        :raises CorruptIndex: malformed entries or offsets outside the segment.
        """
        index = cls(file, base_offset)
        index._load()
        if index._values and not base_offset <= index._values[-1] < next_offset:
            raise CorruptIndex(f"{file.path}: offsets outside the segment")
        return index

    def _decode(self, timestamp: int, relative_offset: int) -> tuple[int, int]:
        return timestamp, self.base_offset + relative_offset

    def _encode(self, timestamp: int, offset: int) -> bytes:
        return self.ENTRY.pack(timestamp, offset - self.base_offset)

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add ``(timestamp, offset)`` if ``timestamp`` is above the last entry's."""
        if not self._keys or timestamp > self._keys[-1]:
            self._add(timestamp, offset)

    def entry_before(self, timestamp: int) -> tuple[int, int] | None:
        """The last entry ``(timestamp, offset)`` whose timestamp is below ``timestamp``, or
        ``None``. Every record up to that entry's batch is older than ``timestamp``, so a
        forward scan from there finds the first record at or after it."""
        i = bisect_left(self._keys, timestamp)
        if i == 0:
            return None
        return self._keys[i - 1], self._values[i - 1]

    def truncate_to(self, offset: int) -> None:
        """Drop the entries of offsets at or after ``offset``."""
        self.truncate_entries(bisect_left(self._values, offset))
