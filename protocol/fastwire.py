"""Hand-written ``struct`` helpers for the hot messages' fast paths.

The fast paths (``decode_produce_request``, ``encode_fetch_response``) read and write the same
bytes as the ``construct`` declarations, which stay the specification; tests hold every fast
path to its declaration. Readers work on a ``memoryview`` and raise ``ProtocolError`` only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .errors import ProtocolError

__all__ = ["I16", "I32", "I64", "check_count", "pack_string", "read_string"]

I16 = struct.Struct(">h")
I32 = struct.Struct(">i")
I64 = struct.Struct(">q")


def read_string(view: memoryview, position: int, *, nullable: bool) -> tuple[str | None, int]:
    """Read a classic (INT16-length) string at ``position``; return it and the next position."""
    if position + 2 > len(view):
        raise ProtocolError("truncated string length")
    (length,) = I16.unpack_from(view, position)
    position += 2
    if length < 0:
        if length == -1 and nullable:
            return None, position
        raise ProtocolError(f"invalid string length {length}")
    end = position + length
    if end > len(view):
        raise ProtocolError("string runs past the end of the message")
    try:
        return str(view[position:end], "utf-8"), end
    except UnicodeDecodeError:
        raise ProtocolError("string is not UTF-8") from None


def check_count(count: int, view: memoryview, position: int, what: str) -> None:
    """Reject an array count that is negative or larger than the bytes left."""
    if count < 0 or count > len(view) - position:
        raise ProtocolError(f"invalid {what} count {count}")


def read_records(view: memoryview, position: int) -> tuple[memoryview | None, int]:
    """Read an INT32-length records field at ``position`` as a view of ``view`` (no copy), or
    ``None`` for length -1; return it and the next position.

    :raises ProtocolError: the length is truncated, below -1 or past the end.
    """
    if position + 4 > len(view):
        raise ProtocolError("truncated records length")
    (length,) = I32.unpack_from(view, position)
    position += 4
    if length == -1:
        return None, position
    if 0 <= length <= len(view) - position:
        return view[position : position + length], position + length
    raise ProtocolError(f"invalid records length {length}")


def read_array(
    view: memoryview, position: int, what: str, read_item: Callable[[memoryview, int], tuple]
) -> tuple[list, int]:
    """Read a classic (INT32-count) array at ``position``, each item by
    ``read_item(view, position) -> (item, next position)``; return the items and the next
    position.

    :raises ProtocolError: the count is truncated, negative or larger than the bytes left.
    """
    if position + 4 > len(view):
        raise ProtocolError(f"truncated {what} count")
    (count,) = I32.unpack_from(view, position)
    position += 4
    check_count(count, view, position, what)
    items = []
    for _ in range(count):
        item, position = read_item(view, position)
        items.append(item)
    return items, position


def read_topics(
    view: memoryview, position: int, read_partition: Callable[[memoryview, int], tuple]
) -> tuple[list[tuple[str, list]], int]:
    """Read the ``[name, [partition]]`` topic array most requests and responses carry, each
    partition by ``read_partition``; return ``[(name, partitions)]`` and the next position."""

    def read_topic(view: memoryview, position: int) -> tuple:
        name, position = read_string(view, position, nullable=False)
        partitions, position = read_array(view, position, "partition", read_partition)
        return (name, partitions), position

    return read_array(view, position, "topic", read_topic)


def pack_string(out: bytearray, value: str | None) -> None:
    """Append a classic (INT16-length) string, or null for ``None``."""
    if value is None:
        out += b"\xff\xff"
        return
    raw = value.encode("utf-8")
    out += I16.pack(len(raw))
    out += raw
