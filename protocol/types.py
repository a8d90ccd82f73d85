"""Kafka's primitive wire types as ``construct`` constructs.

Byte layouts (``org.apache.kafka.common.protocol.types.Type``):

=====================  ==========================================================================
INT8/16/32/64          big-endian, signed
BOOLEAN                one byte, 0 = false, anything else = true (written as 0 or 1)
UNSIGNED_VARINT        7 bits per byte, least significant group first, MSB set = more follows;
                       at most 5 bytes (a 32-bit value)
STRING                 INT16 length N, then N bytes of UTF-8; NULLABLE_STRING: N = -1 is null
BYTES                  INT32 length N, then N bytes; NULLABLE_BYTES: N = -1 is null
ARRAY                  INT32 count N, then N elements; nullable arrays: N = -1 is null
COMPACT_* (flexible)   the same with UNSIGNED_VARINT N + 1 in place of the length; 0 is null
TAG_BUFFER (flexible)  UNSIGNED_VARINT count, then per field UNSIGNED_VARINT tag,
                       UNSIGNED_VARINT size and ``size`` bytes; tags strictly increasing
=====================  ==========================================================================

Every construct here checks its lengths against what is left in the stream before reading, so
a hostile length can neither allocate nor loop beyond the size of the input; a bad value raises
``construct.ConstructError`` (turned into ``ProtocolError`` by ``tmq.protocol.schema``).
"""

from __future__ import annotations

from construct import (
    Construct,
    ExplicitError,
    Int8sb,
    Int16sb,
    Int32sb,
    Int64sb,
    StreamError,
    stream_read,
    stream_write,
)

__all__ = [
    "Bool",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "KafkaArray",
    "KafkaBytes",
    "KafkaString",
    "TaggedFields",
    "UnsignedVarint",
    "encode_unsigned_varint",
]

Int8 = Int8sb
Int16 = Int16sb
Int32 = Int32sb
Int64 = Int64sb

_INT16 = Int16sb
_INT32 = Int32sb
_MAX_UNSIGNED_VARINT_BYTES = 5


def encode_unsigned_varint(value: int) -> bytes:
    """Encode a non-negative int below 2**32 as Kafka's UNSIGNED_VARINT."""
    if not 0 <= value < 1 << 32:
        raise ExplicitError(f"unsigned varint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_unsigned_varint(stream, path) -> int:
    value = 0
    for shift in range(0, 7 * _MAX_UNSIGNED_VARINT_BYTES, 7):
        byte = stream_read(stream, 1, path)[0]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value
    raise ExplicitError(f"unsigned varint longer than {_MAX_UNSIGNED_VARINT_BYTES} bytes", path)


def _write(stream, data: bytes, path) -> None:
    stream_write(stream, data, len(data), path)


def _remaining(stream) -> int:
    """Bytes left in a seekable stream (construct parses from ``io.BytesIO``)."""
    here = stream.tell()
    end = stream.seek(0, 2)
    stream.seek(here)
    return end - here


class _UnsignedVarint(Construct):
    """UNSIGNED_VARINT, at most 5 bytes."""

    def _parse(self, stream, context, path):
        return _read_unsigned_varint(stream, path)

    def _build(self, obj, stream, context, path):
        _write(stream, encode_unsigned_varint(obj), path)
        return obj


UnsignedVarint = _UnsignedVarint()


class _Bool(Construct):
    """BOOLEAN: one byte, nonzero is true."""

    def _parse(self, stream, context, path):
        return stream_read(stream, 1, path) != b"\x00"

    def _build(self, obj, stream, context, path):
        stream_write(stream, b"\x01" if obj else b"\x00", 1, path)
        return obj

    def _sizeof(self, context, path):
        return 1


Bool = _Bool()


class _Length:
    """The length/count prefix shared by strings, bytes and arrays.

    Classic prefixes are INT16 (strings) or INT32 (bytes, arrays) with -1 meaning null; compact
    prefixes are UNSIGNED_VARINT N + 1 with 0 meaning null. ``read`` returns -1 for null.
    """

    __slots__ = ("classic", "compact", "nullable")

    def __init__(self, classic: Construct, *, nullable: bool, compact: bool):
        self.classic = classic
        self.nullable = nullable
        self.compact = compact

    def read(self, stream, path) -> int:
        if self.compact:
            length = _read_unsigned_varint(stream, path) - 1
        else:
            length = self.classic._parse(stream, None, path)
        if length == -1:
            if not self.nullable:
                raise ExplicitError("null value in a non-nullable field", path)
        elif length < 0:
            raise ExplicitError(f"negative length {length}", path)
        return length

    def write(self, length: int, stream, path) -> None:
        if length == -1 and not self.nullable:
            raise ExplicitError("None given for a non-nullable field", path)
        if self.compact:
            _write(stream, encode_unsigned_varint(length + 1), path)
        else:
            self.classic._build(length, stream, None, path)


class KafkaString(Construct):
    """STRING / NULLABLE_STRING / COMPACT_(NULLABLE_)STRING, as ``str`` (``None`` when null)."""

    def __init__(self, *, nullable: bool = False, compact: bool = False):
        super().__init__()
        self.length = _Length(_INT16, nullable=nullable, compact=compact)

    def _parse(self, stream, context, path):
        length = self.length.read(stream, path)
        if length == -1:
            return None
        raw = stream_read(stream, length, path)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ExplicitError(f"string is not UTF-8: {e}", path) from None

    def _build(self, obj, stream, context, path):
        if obj is None:
            self.length.write(-1, stream, path)
            return obj
        raw = obj.encode("utf-8")
        if not self.length.compact and len(raw) > 0x7FFF:
            raise ExplicitError(f"string of {len(raw)} bytes exceeds INT16 length", path)
        self.length.write(len(raw), stream, path)
        stream_write(stream, raw, len(raw), path)
        return obj


class KafkaBytes(Construct):
    """BYTES / NULLABLE_BYTES / RECORDS and their compact forms, as ``bytes`` (``None`` = null).

    Building accepts any bytes-like object (``bytes``, ``bytearray``, ``memoryview``); others
    are copied to ``bytes`` first (the fast paths are the way to avoid copies).
    """

    def __init__(self, *, nullable: bool = False, compact: bool = False):
        super().__init__()
        self.length = _Length(_INT32, nullable=nullable, compact=compact)

    def _parse(self, stream, context, path):
        length = self.length.read(stream, path)
        if length == -1:
            return None
        return stream_read(stream, length, path)

    def _build(self, obj, stream, context, path):
        if obj is None:
            self.length.write(-1, stream, path)
            return obj
        data = obj if isinstance(obj, bytes) else bytes(obj)
        self.length.write(len(data), stream, path)
        _write(stream, data, path)
        return obj


class KafkaArray(Construct):
    """ARRAY / COMPACT_ARRAY of ``subcon``, as a ``list`` (``None`` when null and nullable).

    The element count is checked against the bytes left before any element is read: every
    element of every Kafka array takes at least one byte.
    """

    def __init__(self, subcon: Construct, *, nullable: bool = False, compact: bool = False):
        super().__init__()
        self.subcon = subcon
        self.length = _Length(_INT32, nullable=nullable, compact=compact)

    def _parse(self, stream, context, path):
        count = self.length.read(stream, path)
        if count == -1:
            return None
        if count > _remaining(stream):
            raise StreamError(f"array of {count} elements is longer than the input", path)
        parse = self.subcon._parsereport
        return [parse(stream, context, path) for _ in range(count)]

    def _build(self, obj, stream, context, path):
        if obj is None:
            self.length.write(-1, stream, path)
            return obj
        self.length.write(len(obj), stream, path)
        build = self.subcon._build
        for item in obj:
            build(item, stream, context, path)
        return obj


class _TaggedFields(Construct):
    """TAG_BUFFER as ``{tag: raw bytes}``: tagged fields are kept, not interpreted.

    tmq declares no tagged fields of its own, so every tag is carried through unchanged (a
    client's optional extras survive a decode/encode round trip).
    """

    def _parse(self, stream, context, path):
        count = _read_unsigned_varint(stream, path)
        if count > _remaining(stream):
            raise StreamError(f"{count} tagged fields is more than the input holds", path)
        fields = {}
        previous = -1
        for _ in range(count):
            tag = _read_unsigned_varint(stream, path)
            if tag <= previous:
                raise ExplicitError(f"tagged field {tag} out of order", path)
            size = _read_unsigned_varint(stream, path)
            fields[tag] = stream_read(stream, size, path)
            previous = tag
        return fields

    def _build(self, obj, stream, context, path):
        fields = obj or {}
        _write(stream, encode_unsigned_varint(len(fields)), path)
        for tag in sorted(fields):
            raw = fields[tag]
            _write(stream, encode_unsigned_varint(tag), path)
            _write(stream, encode_unsigned_varint(len(raw)), path)
            _write(stream, raw, path)
        return obj


TaggedFields = _TaggedFields()
