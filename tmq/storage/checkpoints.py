"""Small text files that record offsets, written so that a crash leaves the old or the new.

Formats (Kafka's, so its tools and habits carry over):

``OffsetCheckpoint`` (recovery points, high watermarks, log start offsets; one per data dir)::

    0                       version
    2                       number of entries
    gpu-telemetry 0 1200    topic partition offset
    gpu-telemetry 1 1187

``leader-epoch-checkpoint`` (one per partition)::

    0                       version
    2                       number of entries
    0 0                     leader_epoch start_offset
    3 1042

Every write goes to ``<file>.tmp``, is fsynced, renamed over the file and the directory is
fsynced (``write_atomically``). A file that does not parse raises ``CorruptCheckpoint``.
"""

from __future__ import annotations

import posixpath

from .files import FileSystem
from .names import TMP_SUFFIX

__all__ = [
    "CorruptCheckpoint",
    "read_epoch_checkpoint",
    "read_offset_checkpoint",
    "write_atomically",
    "write_epoch_checkpoint",
    "write_offset_checkpoint",
]

_VERSION = "0"


class CorruptCheckpoint(Exception):
    """A checkpoint file that does not have the expected format."""


def write_atomically(fs: FileSystem, path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``: write a temporary file, fsync, rename, fsync the dir."""
    temporary = path + TMP_SUFFIX
    fs.write_file(temporary, data)
    fs.rename(temporary, path)
    fs.fsync_dir(posixpath.dirname(path))


def _lines(fs: FileSystem, path: str, fields: int) -> list[list[str]]:
    try:
        text = fs.read_file(path).decode("ascii")
    except UnicodeDecodeError:
        raise CorruptCheckpoint(f"{path}: not ASCII text") from None
    lines = text.splitlines()
    if len(lines) < 2 or lines[0] != _VERSION or not lines[1].isdigit():
        raise CorruptCheckpoint(f"{path}: bad version or entry count")
    count = int(lines[1])
    entries = [line.split(" ") for line in lines[2:]]
    if len(entries) != count or any(len(entry) != fields for entry in entries):
        raise CorruptCheckpoint(f"{path}: expected {count} entries of {fields} fields")
    return entries


def _number(text: str, path: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CorruptCheckpoint(f"{path}: {text!r} is not a number") from None


def read_offset_checkpoint(fs: FileSystem, path: str) -> dict[tuple[str, int], int]:
    """``{(topic, partition): offset}``; empty if the file does not exist."""
    if not fs.exists(path):
        return {}
    result = {}
    for topic, partition, offset in _lines(fs, path, 3):
        result[topic, _number(partition, path)] = _number(offset, path)
    return result


def write_offset_checkpoint(fs: FileSystem, path: str, offsets: dict[tuple[str, int], int]) -> None:
    rows = [f"{topic} {part} {offset}" for (topic, part), offset in sorted(offsets.items())]
    write_atomically(fs, path, "\n".join([_VERSION, str(len(rows)), *rows, ""]).encode("ascii"))


def read_epoch_checkpoint(fs: FileSystem, path: str) -> list[tuple[int, int]]:
    """``[(leader_epoch, start_offset), ...]`` in file order; empty if there is no file."""
    if not fs.exists(path):
        return []
    return [(_number(e, path), _number(o, path)) for e, o in _lines(fs, path, 2)]


def write_epoch_checkpoint(fs: FileSystem, path: str, entries: list[tuple[int, int]]) -> None:
    rows = [f"{epoch} {offset}" for epoch, offset in entries]
    write_atomically(fs, path, "\n".join([_VERSION, str(len(rows)), *rows, ""]).encode("ascii"))
