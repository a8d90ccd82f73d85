"""Kafka RecordBatch v2 (magic 2): the batch header, its CRC, and the records inside.

A batch is a 61-byte header followed by the records section, which is compressed as one blob
when bits 0-2 of the attributes name a codec. All integers are big-endian::

    off len field                 notes
      0   8 baseOffset     INT64  the broker stamps it on append       (outside the CRC)
      8   4 batchLength    INT32  bytes after this field: size = 12 + batchLength
     12   4 partitionLeaderEpoch  the broker stamps it on append       (outside the CRC)
     16   1 magic          INT8   always 2
     17   4 crc            UINT32 CRC-32C of bytes [21, size)
     21   2 attributes     INT16  bits 0-2 codec, bit 3 timestamp type (1 = LogAppendTime),
                                  bit 4 transactional, bit 5 control, bit 6 delete horizon
     23   4 lastOffsetDelta INT32 offset of the last record minus baseOffset
     27   8 baseTimestamp  INT64  timestamp deltas are relative to it
     35   8 maxTimestamp   INT64
     43   8 producerId     INT64  -1 without idempotence
     51   2 producerEpoch  INT16  -1 without idempotence
     53   4 baseSequence   INT32  -1 without idempotence
     57   4 recordsCount   INT32
     61   . records

Each record is variable-length; VARINT and VARLONG are zigzag-encoded base-128 varints of at most
5 and 10 bytes::

    length VARINT (bytes after this field), attributes INT8 (unused, 0),
    timestampDelta VARLONG, offsetDelta VARINT,
    keyLength VARINT (-1 = null), key, valueLength VARINT (-1 = null), value,
    headersCount VARINT, then per header: keyLength VARINT, key (UTF-8),
    valueLength VARINT (-1 = null), value

Contracts:

- Every reader here raises ``ProtocolError``, and only that, for malformed bytes. Nothing reads
  past the buffer it was given, and no length read from the input makes it allocate more than
  the input holds (decompressed data is bounded by ``max_bytes``).
- The broker path never decodes records: it reads the header (``read_batch_header``), checks the
  CRC (``batch_crc_ok``) and stamps ``baseOffset`` and ``partitionLeaderEpoch`` in place
  (``set_base_offset``, ``set_partition_leader_epoch``), which leaves the CRC valid because both
  fields lie before the CRC-covered range.
- ``build_batch``, ``frame_batch``, ``encode_records`` and ``append_record`` trust their input
  and raise ``ValueError`` or ``TypeError`` for values that do not fit the format.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from .compression import DEFAULT_MAX_DECOMPRESSED_BYTES, Codec, compress, decompress
from .crc32c import crc32c
from .errors import ProtocolError
from .framing import MAX_FRAME_BYTES

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_BATCH_SIZE",
    "Header",
    "Record",
    "RecordBatchHeader",
    "TimestampType",
    "append_record",
    "batch_crc",
    "batch_crc_ok",
    "build_batch",
    "decode_batch",
    "decode_records",
    "encode_records",
    "frame_batch",
    "iter_batches",
    "read_batch_header",
    "set_base_offset",
    "set_partition_leader_epoch",
]

Buffer = bytes | bytearray | memoryview

HEADER = struct.Struct(">qiibIhiqqqhii")
"""The 61-byte batch header, fields in the order of ``RecordBatchHeader``."""
HEADER_SIZE = HEADER.size
MAGIC = 2
MAX_BATCH_SIZE = MAX_FRAME_BYTES
"""Default bound on one batch (``12 + batchLength``): a batch travels inside one frame."""

_LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes batchLength does not count
_MIN_BATCH_LENGTH = HEADER_SIZE - _LOG_OVERHEAD
_BASE_OFFSET = struct.Struct(">q")  # at offset 0
_PARTITION_LEADER_EPOCH = struct.Struct(">i")
_PARTITION_LEADER_EPOCH_OFFSET = 12
_CRC = struct.Struct(">I")
_CRC_OFFSET = 17
_CRC_START = 21  # the attributes field: the CRC covers [21, size)

_CODEC_MASK = 0x07
_TIMESTAMP_TYPE_FLAG = 0x08
_TRANSACTIONAL_FLAG = 0x10
_CONTROL_FLAG = 0x20
_MAX_CODEC = max(Codec)

_INT32_MAX = (1 << 31) - 1
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

_NULL_LENGTH = b"\x01"  # a length of -1, zigzag-encoded
_ONE_BYTE_VARINTS = tuple(bytes((raw,)) for raw in range(0x80))
_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__

Header = tuple[str, bytes | None]
"""A record header: a UTF-8 key and a nullable value."""


class TimestampType(enum.IntEnum):
    """Bit 3 of the batch attributes: who set the record timestamps."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class RecordBatchHeader(NamedTuple):
    """The 61-byte header of a RecordBatch v2, field for field (see the module docstring)."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies: ``12 + batch_length``."""
        return _LOG_OVERHEAD + self.batch_length

    @property
    def last_offset(self) -> int:
        """Offset of the batch's last record: ``base_offset + last_offset_delta``."""
        return self.base_offset + self.last_offset_delta

    @property
    def compression(self) -> Codec:
        """The codec of the records section (attribute bits 0-2).

        :raises ValueError: bits 0-2 hold no codec (``read_batch_header`` refuses such headers).
        """
        return Codec(self.attributes & _CODEC_MASK)

    @property
    def timestamp_type(self) -> TimestampType:
        """CreateTime or LogAppendTime (attribute bit 3)."""
        return TimestampType((self.attributes & _TIMESTAMP_TYPE_FLAG) >> 3)

    @property
    def is_transactional(self) -> bool:
        """Attribute bit 4: the batch belongs to a transaction."""
        return bool(self.attributes & _TRANSACTIONAL_FLAG)

    @property
    def is_control(self) -> bool:
        """Attribute bit 5: the batch holds control records (transaction markers)."""
        return bool(self.attributes & _CONTROL_FLAG)

    @property
    def last_sequence(self) -> int:
        """Sequence number of the last record, wrapping past INT32 max to 0 as Kafka does.

        -1 when the batch carries no sequence (``base_sequence`` is -1).
        """
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) % (_INT32_MAX + 1)


class Record(NamedTuple):
    """One record of a batch, with its offset and timestamp relative to the batch's base."""

    offset_delta: int
    timestamp_delta: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


def read_batch_header(
    buf: Buffer, position: int = 0, *, max_batch_size: int = MAX_BATCH_SIZE
) -> RecordBatchHeader:
    """Read and validate the batch header at ``position`` of ``buf``.

    Only the 61 header bytes need to be present; the rest of the batch is not looked at (use
    ``batch_crc_ok`` for that).

    :param buf: bytes holding the batch.
    :param position: where the batch starts.
    :param max_batch_size: the largest batch (``12 + batchLength``) accepted.
    :raises ProtocolError: fewer than 61 bytes, magic other than 2, a batch length below 49 or
        above the bound, a negative records count or last offset delta, or an unknown codec.
    """
    if position < 0 or len(buf) - position < HEADER_SIZE:
        raise ProtocolError(
            f"record batch header needs {HEADER_SIZE} bytes at position {position}, "
            f"buffer has {len(buf)}"
        )
    header = _new_tuple(RecordBatchHeader, HEADER.unpack_from(buf, position))
    if header.magic != MAGIC:
        raise ProtocolError(f"record batch magic {header.magic}, only magic 2 is supported")
    if not _MIN_BATCH_LENGTH <= header.batch_length <= max_batch_size - _LOG_OVERHEAD:
        raise ProtocolError(
            f"record batch length {header.batch_length} outside "
            f"{_MIN_BATCH_LENGTH}..{max_batch_size - _LOG_OVERHEAD}"
        )
    if header.records_count < 0:
        raise ProtocolError(f"negative records count {header.records_count}")
    if header.last_offset_delta < 0:
        raise ProtocolError(f"negative last offset delta {header.last_offset_delta}")
    if header.attributes & _CODEC_MASK > _MAX_CODEC:
        raise ProtocolError(f"unknown compression codec {header.attributes & _CODEC_MASK}")
    return header


def batch_crc(buf: Buffer, position: int, header: RecordBatchHeader) -> int:
    """Return the CRC-32C of the batch at ``position``: over its bytes [21, size).

    The range is handed to ``crc32c`` as a memoryview slice. With google-crc32c, whose C
    extension accepts only ``bytes``, that still costs one copy of the batch.

    :raises ProtocolError: ``buf`` ends before the batch does.
    """
    end = position + header.size
    if end > len(buf):
        raise ProtocolError(f"record batch of {header.size} bytes is truncated")
    with memoryview(buf) as view:
        return crc32c(view[position + _CRC_START : end])


def batch_crc_ok(buf: Buffer, position: int, header: RecordBatchHeader) -> bool:
    """Return whether the CRC stored in ``header`` matches the batch bytes at ``position``.

    :param header: the header ``read_batch_header(buf, position)`` returned.
    :raises ProtocolError: ``buf`` ends before the batch does.
    """
    return batch_crc(buf, position, header) == header.crc


def set_base_offset(buf: bytearray, position: int, base_offset: int) -> None:
    """Overwrite the baseOffset of the batch at ``position``, in place; the CRC stays valid."""
    _BASE_OFFSET.pack_into(buf, position, base_offset)


def set_partition_leader_epoch(buf: bytearray, position: int, epoch: int) -> None:
    """Overwrite the partitionLeaderEpoch of the batch at ``position``; the CRC stays valid."""
    _PARTITION_LEADER_EPOCH.pack_into(buf, position + _PARTITION_LEADER_EPOCH_OFFSET, epoch)


def iter_batches(
    buf: Buffer, *, max_batch_size: int = MAX_BATCH_SIZE
) -> Iterator[tuple[int, RecordBatchHeader]]:
    """Yield ``(position, header)`` for each complete batch in ``buf``, in order.

    A truncated batch at the end (a header or body cut short) ends the iteration without an
    error: a Fetch response may end with a partial batch when the batch is larger than the
    fetch size, and Kafka clients skip it the same way. CRCs are not checked here.

    :raises ProtocolError: a complete header that ``read_batch_header`` refuses.
    """
    position = 0
    end = len(buf)
    while end - position >= HEADER_SIZE:
        header = read_batch_header(buf, position, max_batch_size=max_batch_size)
        if header.size > end - position:
            return
        yield position, header
        position += header.size


def _read_varint(data: bytes, position: int, bits: int) -> tuple[int, int]:
    """Read the zigzag varint at ``position``; return its value and the position after it.

    The general decoder, for the varints of three bytes and more that the inlined fast paths of
    ``decode_records`` leave to it.

    :param bits: 32 for a VARINT (at most 5 bytes), 64 for a VARLONG (at most 10 bytes).
    :raises ProtocolError: more bytes than ``bits`` allows, or a value that does not fit.
    :raises IndexError: the data ends inside the varint.
    """
    raw = 0
    shift = 0
    limit = position + (bits + 6) // 7
    while position < limit:
        byte = data[position]
        position += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            if raw >> bits:
                raise ProtocolError(f"varint does not fit {bits} bits")
            return (raw >> 1) ^ -(raw & 1), position
        shift += 7
    raise ProtocolError(f"varint longer than {(bits + 6) // 7} bytes")


def _read_headers(data: bytes, position: int) -> tuple[tuple[Header, ...], int]:
    """Read the headers count and the headers of a record at ``position``.

    :returns: the headers and the position after them.
    :raises ProtocolError: a negative count, a null or non-UTF-8 key, or a bad length.
    :raises IndexError: the data ends inside the headers.
    """
    count, position = _read_varint(data, position, 32)
    if count < 0:
        raise ProtocolError(f"negative record headers count {count}")
    headers = []
    end = len(data)
    for _ in range(count):
        length, position = _read_varint(data, position, 32)
        if not 0 <= length <= end - position:
            raise ProtocolError(f"record header key length {length} out of bounds")
        try:
            key = data[position : position + length].decode()
        except UnicodeDecodeError:
            raise ProtocolError("record header key is not UTF-8") from None
        length, position = _read_varint(data, position + length, 32)
        if length == -1:
            value = None
        elif not 0 <= length <= end - position:
            raise ProtocolError(f"record header value length {length} out of bounds")
        else:
            value = data[position : position + length]
            position += length
        headers.append((key, value))
    return tuple(headers), position


def _two_byte_varint_table() -> tuple[tuple[int, ...] | None, ...]:
    """Return the values of all two-byte zigzag varints, as ``table[first][second]``.

    Rows exist for first bytes 0x80-0xFF (continuation bit set; the others are None) and hold
    the value for each second byte 0x00-0x7F: ``zigzag(low | second << 7)`` with
    ``low = first & 0x7F``, which is ``(low >> 1) + 64 * second`` for an even ``low`` and
    ``-(low >> 1) - 1 - 64 * second`` for an odd one.
    """
    rows: list[tuple[int, ...] | None] = [None] * 0x80
    for low in range(0x80):
        half = low >> 1
        if low & 1:
            rows.append(tuple(range(-half - 1, -half - 1 - 64 * 0x80, -64)))
        else:
            rows.append(tuple(range(half, half + 64 * 0x80, 64)))
    return tuple(rows)


# Lookup tables of the record decoder: a table lookup replaces the shifts and masks of a varint
# and of its zigzag decoding, which makes decoding ~50 % faster. The two-byte table holds 16384
# ints, about 600 KiB.
_ONE_BYTE_VALUES = tuple((raw >> 1) ^ -(raw & 1) for raw in range(0x80))
_TWO_BYTE_VALUES = _two_byte_varint_table()


def decode_records(
    data: Buffer,
    count: int,
    *,
    base_offset: int = 0,
    base_timestamp: int = 0,
    prefix: tuple = (),
    record_type: type[tuple] = Record,
) -> list:
    """Decode the uncompressed records section of a batch holding ``count`` records.

    By default each record is a ``Record`` of offset and timestamp deltas. A reader that wants
    records of its own makes them in the same step: each record is ``record_type`` (a tuple
    type, e.g. a ``NamedTuple``) made from ``prefix + (base_offset + offset delta,
    base_timestamp + timestamp delta, key, value, headers)``.

    :param data: exactly the records section; a ``bytearray`` or ``memoryview`` is copied to
        ``bytes`` first (the decoder is fastest on ``bytes``).
    :param count: the batch's recordsCount.
    :raises ProtocolError: a truncated or overlong varint, a negative length other than -1 for
        a key or value, a length past the end of a record or of ``data``, a record whose fields
        do not add up to its length, or fewer or more than ``count`` records.
    """
    if type(data) is not bytes:
        data = bytes(data)
    if count < 0:
        raise ProtocolError(f"negative records count {count}")
    end = len(data)
    records: list = []
    append = records.append
    new_record = _new_tuple
    one_byte = _ONE_BYTE_VALUES
    two_bytes = _TWO_BYTE_VALUES
    read_varint = _read_varint
    position = 0
    # The hot loop: one- and two-byte varints, the sizes real records use, are decoded inline
    # through the tables; longer ones go through _read_varint. Lengths are not checked as they
    # are read: a record whose fields overrun its length, or the data, fails the position check
    # at its end or raises IndexError (caught below) on a later read.
    try:
        for _ in range(count):
            raw = data[position]
            if raw < 0x80:
                record_end = position + 1 + one_byte[raw]
                position += 2  # the length and the attributes byte (unused)
            elif (second := data[position + 1]) < 0x80:
                record_end = position + 2 + two_bytes[raw][second]
                position += 3
            else:
                length, position = read_varint(data, position, 32)
                record_end = position + length
                position += 1

            raw = data[position]
            if raw < 0x80:
                timestamp_delta = one_byte[raw]
                position += 1
            elif (second := data[position + 1]) < 0x80:
                timestamp_delta = two_bytes[raw][second]
                position += 2
            else:
                timestamp_delta, position = read_varint(data, position, 64)

            raw = data[position]
            if raw < 0x80:
                offset_delta = one_byte[raw]
                position += 1
            elif (second := data[position + 1]) < 0x80:
                offset_delta = two_bytes[raw][second]
                position += 2
            else:
                offset_delta, position = read_varint(data, position, 32)

            raw = data[position]
            if raw < 0x80:
                length = one_byte[raw]
                position += 1
            elif (second := data[position + 1]) < 0x80:
                length = two_bytes[raw][second]
                position += 2
            else:
                length, position = read_varint(data, position, 32)
            if length >= 0:
                key = data[position : (position := position + length)]
            elif length == -1:
                key = None
            else:
                raise ProtocolError(f"negative key length {length}")

            raw = data[position]
            if raw < 0x80:
                length = one_byte[raw]
                position += 1
            elif (second := data[position + 1]) < 0x80:
                length = two_bytes[raw][second]
                position += 2
            else:
                length, position = read_varint(data, position, 32)
            if length >= 0:
                value = data[position : (position := position + length)]
            elif length == -1:
                value = None
            else:
                raise ProtocolError(f"negative value length {length}")

            if data[position]:
                headers, position = _read_headers(data, position)
            else:
                headers = ()
                position += 1
            if position != record_end:
                raise ProtocolError(
                    f"record {len(records)} ends at byte {position}, its length says {record_end}"
                )
            fields = (
                base_offset + offset_delta,
                base_timestamp + timestamp_delta,
                key,
                value,
                headers,
            )
            append(new_record(record_type, prefix + fields))
    except IndexError:
        raise ProtocolError(f"records section truncated in record {len(records)}") from None
    if position != end:
        raise ProtocolError(f"{end - position} bytes left after {count} records")
    return records


def _varint(value: int) -> bytes:
    """Return ``value`` zigzag-encoded (a VARINT and a VARLONG share the encoding).

    :raises ValueError: ``value`` does not fit 64 bits.
    """
    raw = (value << 1) ^ (value >> 63)
    if 0 <= raw < 0x80:
        return _ONE_BYTE_VARINTS[raw]
    if 0 <= raw < 0x4000:
        return bytes((raw & 0x7F | 0x80, raw >> 7))
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{value} does not fit a varlong")
    out = bytearray()
    while raw >= 0x80:
        out.append(raw & 0x7F | 0x80)
        raw >>= 7
    out.append(raw)
    return bytes(out)


#: The varints of 0 to 8191 (one or two bytes), the values records are made of.
_SMALL_VARINTS = tuple(_varint(value) for value in range(0x2000))
_SMALL_LIMIT = len(_SMALL_VARINTS)


def _encode_headers(headers: Sequence[Header]) -> bytes:
    """Return the headers count and the headers of a record, encoded."""
    parts = [_varint(len(headers))]
    for key, value in headers:
        encoded_key = key.encode()
        parts.append(_varint(len(encoded_key)))
        parts.append(encoded_key)
        if value is None:
            parts.append(_NULL_LENGTH)
        else:
            parts.append(_varint(len(value)))
            parts.append(value)
    return b"".join(parts)


def append_record(
    out: list[bytes],
    offset_delta: int,
    timestamp_delta: int,
    key: Buffer | None,
    value: Buffer | None,
    headers: Sequence[Header],
) -> None:
    """Append one encoded record to ``out`` as two pieces, its length and the rest;
    ``b"".join(out)`` is then the records section (a producer builds its batches this way, one
    record at a time, copying each record's bytes while they are still in cache).

    :raises ValueError: an offset or timestamp delta that does not fit 64 bits.
    :raises TypeError: a key, value or header of the wrong type.
    """
    # Every varint of a telemetry record (lengths, small deltas) is a table lookup.
    small = _SMALL_VARINTS
    if key is None:
        key_length, key = _NULL_LENGTH, b""
    else:
        size = len(key)
        key_length = small[size] if size < _SMALL_LIMIT else _varint(size)
    if value is None:
        value_length, value = _NULL_LENGTH, b""
    else:
        size = len(value)
        value_length = small[size] if size < _SMALL_LIMIT else _varint(size)
    if 0 <= timestamp_delta < _SMALL_LIMIT:
        timestamp = small[timestamp_delta]
    else:
        timestamp = _varint(timestamp_delta)
    offset = small[offset_delta] if 0 <= offset_delta < _SMALL_LIMIT else _varint(offset_delta)
    body = b"".join(
        (
            b"\x00",  # attributes
            timestamp,
            offset,
            key_length,
            key,
            value_length,
            value,
            _encode_headers(headers) if headers else b"\x00",
        )
    )
    size = len(body)
    out += (small[size] if size < _SMALL_LIMIT else _varint(size), body)


def encode_records(records: Iterable[Record]) -> bytes:
    """Encode ``records`` as an uncompressed records section (see the module docstring).

    :param records: records (or plain tuples in ``Record``'s field order) with bytes-like (or
        None) keys and values; header keys are ``str``.
    :raises ValueError: an offset or timestamp delta that does not fit 64 bits.
    :raises TypeError: a key, value or header of the wrong type.
    """
    out: list[bytes] = []
    for offset_delta, timestamp_delta, key, value, headers in records:
        append_record(out, offset_delta, timestamp_delta, key, value, headers)
    return b"".join(out)


def build_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    base_timestamp: int,
    compression: Codec = Codec.NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    is_transactional: bool = False,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
) -> bytes:
    """Return a complete RecordBatch v2 holding ``records``, CRC filled in.

    lastOffsetDelta is the last record's offset delta, maxTimestamp is ``base_timestamp`` plus
    the largest timestamp delta, and recordsCount is ``len(records)``. The records section is
    compressed with ``compression`` even when that does not make it smaller.

    :param records: at least one record (a ``Record`` or a plain tuple in its field order),
        offset deltas strictly increasing from >= 0.
    :param base_timestamp: the timestamp the records' timestamp deltas are relative to.
    :param timestamp_type: only sets attribute bit 3; maxTimestamp is still computed from the
        records (a broker that stamps LogAppendTime rewrites it, and then the CRC).
    :raises ValueError: no records, offset deltas out of order or outside INT32, or a field
        that does not fit its width.
    """
    if not records:
        raise ValueError("a record batch needs at least one record")
    previous = -1
    max_delta = records[0][1]
    for offset_delta, timestamp_delta, *_rest in records:
        if offset_delta <= previous:
            raise ValueError(f"offset delta {offset_delta} follows {previous}")
        previous = offset_delta
        if timestamp_delta > max_delta:
            max_delta = timestamp_delta
    return frame_batch(
        compress(Codec(compression), encode_records(records)),
        count=len(records),
        last_offset_delta=previous,
        base_timestamp=base_timestamp,
        max_timestamp=base_timestamp + max_delta,
        compression=compression,
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        partition_leader_epoch=partition_leader_epoch,
        is_transactional=is_transactional,
        timestamp_type=timestamp_type,
    )


def frame_batch(
    body: Buffer,
    *,
    count: int,
    last_offset_delta: int,
    base_timestamp: int,
    max_timestamp: int,
    compression: Codec = Codec.NONE,
    base_offset: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    is_transactional: bool = False,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
) -> bytes:
    """Return a complete RecordBatch v2 around ``body``, a records section already compressed
    with ``compression``, CRC filled in. The fields are written as given: ``build_batch``
    computes them from its records, a producer that appended records with ``append_record``
    knows them.

    :raises ValueError: a field that does not fit its width.
    """
    attributes = Codec(compression) | TimestampType(timestamp_type) << 3
    if is_transactional:
        attributes |= _TRANSACTIONAL_FLAG
    try:
        header = bytearray(
            HEADER.pack(
                base_offset,
                _MIN_BATCH_LENGTH + len(body),
                partition_leader_epoch,
                MAGIC,
                0,  # crc, filled in below
                attributes,
                last_offset_delta,
                base_timestamp,
                max_timestamp,
                producer_id,
                producer_epoch,
                base_sequence,
                count,
            )
        )
    except struct.error as error:
        raise ValueError(f"record batch field out of range: {error}") from None
    _CRC.pack_into(header, _CRC_OFFSET, crc32c(body, crc32c(header[_CRC_START:])))
    return b"".join((header, body))


def decode_batch(
    buf: Buffer,
    position: int = 0,
    *,
    max_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
    max_batch_size: int = MAX_BATCH_SIZE,
    base_offset: int = 0,
    base_timestamp: int = 0,
    prefix: tuple = (),
    record_type: type[tuple] = Record,
) -> tuple[RecordBatchHeader, list]:
    """Read, CRC-check, decompress and decode the batch at ``position`` of ``buf``.

    Bytes after the batch are ignored. The records section is copied once, to ``bytes``, and the
    CRC computed on that copy. ``base_offset``, ``base_timestamp``, ``prefix`` and
    ``record_type`` say what the records are made as (see ``decode_records``): ``Record``s by
    default.

    :param max_bytes: the largest decompressed records section accepted.
    :param max_batch_size: passed to ``read_batch_header``.
    :raises ProtocolError: a bad header, a truncated batch, a CRC mismatch, corrupt compressed
        data, or records that do not decode to exactly recordsCount records.
    """
    header = read_batch_header(buf, position, max_batch_size=max_batch_size)
    end = position + header.size
    if end > len(buf):
        raise ProtocolError(f"record batch of {header.size} bytes is truncated")
    with memoryview(buf) as view:
        checked_header = bytes(view[position + _CRC_START : position + HEADER_SIZE])
        section = bytes(view[position + HEADER_SIZE : end])
    if crc32c(section, crc32c(checked_header)) != header.crc:
        raise ProtocolError(f"record batch at offset {header.base_offset} fails its CRC")
    if header.attributes & _CODEC_MASK:
        section = decompress(header.compression, section, max_bytes)
    elif len(section) > max_bytes:
        raise ProtocolError(f"{len(section)} bytes exceed the limit of {max_bytes}")
    records = decode_records(
        section,
        header.records_count,
        base_offset=base_offset,
        base_timestamp=base_timestamp,
        prefix=prefix,
        record_type=record_type,
    )
    return header, records
