"""Hand-written ``struct`` helpers for the hot messages' fast paths.

The fast paths (``decode_produce_request``, ``encode_fetch_response``) read and write the same
bytes as the ``construct`` declarations, which stay the specification; tests hold every fast
path to its declaration. Readers work on a ``memoryview`` and raise ``ProtocolError`` only.
"""

from __future__ import annotations

import struct

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


def pack_string(out: bytearray, value: str | None) -> None:
    """Append a classic (INT16-length) string, or null for ``None``."""
    if value is None:
        out += b"\xff\xff"
        return
    raw = value.encode("utf-8")
    out += I16.pack(len(raw))
    out += raw
