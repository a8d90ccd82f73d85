"""RecordBatch v2: header layout and validation, CRC, in-place stamping, batch iteration,
the record codec, the builder, and fuzzing of every reader."""

from __future__ import annotations

import contextlib
import struct
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tmq.protocol.compression import Codec
from tmq.protocol.crc32c import crc32c
from tmq.protocol.errors import ProtocolError
from tmq.protocol.records import (
    HEADER,
    HEADER_SIZE,
    MAX_BATCH_SIZE,
    Record,
    RecordBatchHeader,
    TimestampType,
    append_record,
    batch_crc,
    batch_crc_ok,
    build_batch,
    decode_batch,
    decode_records,
    encode_records,
    iter_batches,
    read_batch_header,
    set_base_offset,
    set_partition_leader_epoch,
)

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
BASE_TIMESTAMP = 1_700_000_000_000
ALL_CODECS = pytest.mark.parametrize("codec", list(Codec), ids=lambda codec: codec.name)

headers_strategy = st.lists(
    st.tuples(st.text(max_size=12), st.none() | st.binary(max_size=12)), max_size=3
).map(tuple)
nullable_bytes = st.none() | st.binary(max_size=300)


@st.composite
def record_lists(draw, min_size=0, max_size=20):
    """Records with any deltas, keys, values and headers (as the records codec allows)."""
    return draw(
        st.lists(
            st.builds(Record, INT32, INT64, nullable_bytes, nullable_bytes, headers_strategy),
            min_size=min_size,
            max_size=max_size,
        )
    )


@st.composite
def batch_records(draw, max_size=20):
    """Records a batch can hold: offset deltas strictly increasing from 0 or more."""
    records = draw(record_lists(min_size=1, max_size=max_size))
    offsets = sorted(
        draw(st.sets(st.integers(0, 10_000), min_size=len(records), max_size=len(records)))
    )
    timestamps = st.integers(-(2**40), 2**40)
    return [
        record._replace(offset_delta=offset, timestamp_delta=draw(timestamps))
        for record, offset in zip(records, offsets, strict=True)
    ]


def sample_records(count: int = 5) -> list[Record]:
    """A small fixed batch's worth of records, with a null key and a header."""
    records = [Record(i, i * 3, b"key-%d" % i, b"value-%d" % i * 10) for i in range(count)]
    records[1] = records[1]._replace(key=None, headers=(("trace", b"abc"), ("empty", None)))
    return records


def sample_batch(**overrides) -> bytes:
    """A batch of ``sample_records()`` built with ``overrides`` to build_batch's defaults."""
    options = {"base_timestamp": BASE_TIMESTAMP, "base_offset": 100} | overrides
    return build_batch(sample_records(), **options)


def raw_header(**fields) -> bytes:
    """61 header bytes with valid defaults, ``fields`` overridden (CRC not computed)."""
    values = {
        "base_offset": 0,
        "batch_length": 49,
        "partition_leader_epoch": 0,
        "magic": 2,
        "crc": 0,
        "attributes": 0,
        "last_offset_delta": 0,
        "base_timestamp": 0,
        "max_timestamp": 0,
        "producer_id": -1,
        "producer_epoch": -1,
        "base_sequence": -1,
        "records_count": 0,
    } | fields
    return HEADER.pack(*(values[name] for name in RecordBatchHeader._fields))


def with_crc(batch: bytes | bytearray) -> bytes:
    """``batch`` with its CRC field recomputed over bytes [21, end)."""
    fixed = bytearray(batch)
    struct.pack_into(">I", fixed, 17, crc32c(fixed[21:]))
    return bytes(fixed)


class RecordBatchHeaderTests:
    def test_layout_is_61_bytes_at_kafka_offsets(self):
        """The header struct is 61 bytes with each field at the offset Kafka documents."""
        assert HEADER.format == ">qiibIhiqqqhii"
        assert HEADER_SIZE == HEADER.size == 61
        header = HEADER.pack(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
        expected = [
            (0, ">q", 1),
            (8, ">i", 2),
            (12, ">i", 3),
            (16, ">b", 4),
            (17, ">I", 5),
            (21, ">h", 6),
            (23, ">i", 7),
            (27, ">q", 8),
            (35, ">q", 9),
            (43, ">q", 10),
            (51, ">h", 11),
            (53, ">i", 12),
            (57, ">i", 13),
        ]
        for offset, fmt, value in expected:
            assert struct.unpack_from(fmt, header, offset) == (value,)

    def test_reads_the_fields_build_batch_wrote(self):
        """read_batch_header returns the fields given to build_batch and the computed ones."""
        batch = sample_batch(
            producer_id=7, producer_epoch=3, base_sequence=40, partition_leader_epoch=9
        )
        header = read_batch_header(batch)
        assert header.base_offset == 100
        assert header.batch_length == len(batch) - 12
        assert header.size == len(batch)
        assert header.partition_leader_epoch == 9
        assert header.magic == 2
        assert header.last_offset_delta == 4
        assert header.last_offset == 104
        assert header.base_timestamp == BASE_TIMESTAMP
        assert header.max_timestamp == BASE_TIMESTAMP + 12
        assert (header.producer_id, header.producer_epoch, header.base_sequence) == (7, 3, 40)
        assert header.last_sequence == 44
        assert header.records_count == 5

    @pytest.mark.parametrize(
        ("attributes", "codec", "timestamp_type", "transactional", "control"),
        [
            (0x00, Codec.NONE, TimestampType.CREATE_TIME, False, False),
            (0x04, Codec.ZSTD, TimestampType.CREATE_TIME, False, False),
            (0x0B, Codec.LZ4, TimestampType.LOG_APPEND_TIME, False, False),
            (0x11, Codec.GZIP, TimestampType.CREATE_TIME, True, False),
            (0x32, Codec.SNAPPY, TimestampType.CREATE_TIME, True, True),
            (0x40, Codec.NONE, TimestampType.CREATE_TIME, False, False),
        ],
    )
    def test_attribute_helpers(self, attributes, codec, timestamp_type, transactional, control):
        """Attribute bits 0-2, 3, 4 and 5 read as codec, timestamp type, transactional, control."""
        header = read_batch_header(raw_header(attributes=attributes))
        assert header.compression is codec
        assert header.timestamp_type is timestamp_type
        assert header.is_transactional is transactional
        assert header.is_control is control

    @pytest.mark.parametrize(
        ("base_sequence", "last_offset_delta", "expected"),
        [(-1, 4, -1), (0, 0, 0), (10, 4, 14), (2**31 - 2, 3, 1), (2**31 - 1, 1, 0)],
    )
    def test_last_sequence_wraps_like_kafka(self, base_sequence, last_offset_delta, expected):
        """last_sequence adds last_offset_delta, wraps past INT32 max to 0, and is -1 if unset."""
        header = read_batch_header(
            raw_header(base_sequence=base_sequence, last_offset_delta=last_offset_delta)
        )
        assert header.last_sequence == expected

    def test_reads_at_a_position_with_only_the_header_present(self):
        """A header is read at any position, and only its 61 bytes need to be present."""
        batch = sample_batch()
        header = read_batch_header(b"junk" + batch[:HEADER_SIZE], 4)
        assert header == read_batch_header(batch)

    @pytest.mark.parametrize(
        ("buffer", "position", "message"),
        [
            (raw_header()[:60], 0, "needs 61 bytes"),
            (raw_header(), 1, "needs 61 bytes"),
            (raw_header(), -1, "needs 61 bytes"),
            (raw_header(magic=1), 0, "magic 1"),
            (raw_header(magic=3), 0, "magic 3"),
            (raw_header(batch_length=48), 0, "batch length 48"),
            (raw_header(batch_length=-5), 0, "batch length -5"),
            (raw_header(batch_length=MAX_BATCH_SIZE - 11), 0, "outside"),
            (raw_header(records_count=-1), 0, "negative records count"),
            (raw_header(last_offset_delta=-1), 0, "negative last offset delta"),
            (raw_header(attributes=0x05), 0, "unknown compression codec 5"),
            (raw_header(attributes=0x07), 0, "unknown compression codec 7"),
        ],
        ids=[
            "short",
            "short-at-position",
            "negative-position",
            "magic-1",
            "magic-3",
            "length-48",
            "length-negative",
            "length-over-bound",
            "negative-count",
            "negative-last-offset-delta",
            "codec-5",
            "codec-7",
        ],
    )
    def test_invalid_header_is_a_protocol_error(self, buffer, position, message):
        """Each invalid header raises ProtocolError naming the problem."""
        with pytest.raises(ProtocolError, match=message):
            read_batch_header(buffer, position)

    def test_batch_size_bound_is_a_parameter(self):
        """max_batch_size bounds 12 + batchLength; the largest allowed size passes."""
        header = raw_header(batch_length=988)
        assert read_batch_header(header, max_batch_size=1000).size == 1000
        with pytest.raises(ProtocolError):
            read_batch_header(header, max_batch_size=999)


class BatchCrcTests:
    @ALL_CODECS
    def test_built_batch_has_a_valid_crc_over_bytes_21_to_end(self, codec):
        """build_batch's CRC is the CRC-32C of bytes [21, end), and batch_crc_ok accepts it."""
        batch = sample_batch(compression=codec)
        header = read_batch_header(batch)
        assert header.crc == crc32c(batch[21:]) == batch_crc(batch, 0, header)
        assert batch_crc_ok(batch, 0, header)
        assert batch_crc_ok(bytearray(batch), 0, header)
        assert batch_crc_ok(memoryview(batch), 0, header)

    @given(base_offset=INT64, epoch=INT32)
    def test_stamping_offset_and_epoch_in_place_keeps_the_crc(self, base_offset, epoch):
        """set_base_offset and set_partition_leader_epoch write in place; the CRC stays valid."""
        buffer = bytearray(b"prefix" + sample_batch())
        set_base_offset(buffer, 6, base_offset)
        set_partition_leader_epoch(buffer, 6, epoch)
        header = read_batch_header(buffer, 6)
        assert (header.base_offset, header.partition_leader_epoch) == (base_offset, epoch)
        assert batch_crc_ok(buffer, 6, header)
        assert bytes(buffer[22:]) == sample_batch()[16:]
        assert decode_batch(buffer, 6)[1] == sample_records()

    @given(data=st.data())
    def test_any_corrupted_byte_in_the_crc_range_is_detected(self, data):
        """Changing any byte in [21, end) makes batch_crc_ok false and decode_batch raise."""
        codec = data.draw(st.sampled_from(list(Codec)))
        batch = bytearray(sample_batch(compression=codec))
        header = read_batch_header(batch)
        index = data.draw(st.integers(min_value=21, max_value=len(batch) - 1))
        batch[index] ^= data.draw(st.integers(min_value=1, max_value=255))
        assert not batch_crc_ok(batch, 0, header)
        with pytest.raises(ProtocolError):
            decode_batch(batch)

    def test_corrupted_crc_field_is_detected(self):
        """A changed CRC field no longer matches the batch."""
        batch = bytearray(sample_batch())
        batch[18] ^= 0x01
        assert not batch_crc_ok(batch, 0, read_batch_header(batch))
        with pytest.raises(ProtocolError, match="CRC"):
            decode_batch(batch)

    def test_truncated_batch_is_a_protocol_error(self):
        """Checking the CRC of a batch cut short raises ProtocolError."""
        batch = sample_batch()
        header = read_batch_header(batch)
        with pytest.raises(ProtocolError, match="truncated"):
            batch_crc_ok(batch[:-1], 0, header)


class IterBatchesTests:
    @staticmethod
    def concatenated() -> tuple[bytes, list[int]]:
        """Three batches of different codecs back to back, and where each starts."""
        batches = [
            sample_batch(base_offset=0),
            sample_batch(base_offset=5, compression=Codec.GZIP),
            sample_batch(base_offset=10, compression=Codec.LZ4),
        ]
        starts = [0, len(batches[0]), len(batches[0]) + len(batches[1])]
        return b"".join(batches), starts

    def test_yields_every_batch_with_its_position(self):
        """Concatenated batches are yielded in order as (position, header)."""
        buffer, starts = self.concatenated()
        found = list(iter_batches(buffer))
        assert [position for position, _ in found] == starts
        assert [header.base_offset for _, header in found] == [0, 5, 10]
        for position, header in found:
            assert batch_crc_ok(buffer, position, header)

    @given(data=st.data())
    def test_truncated_tail_ends_the_iteration(self, data):
        """Cutting the buffer anywhere yields exactly the batches that are still complete."""
        buffer, starts = self.concatenated()
        ends = [*starts[1:], len(buffer)]
        cut = data.draw(st.integers(min_value=0, max_value=len(buffer)))
        found = [position for position, _ in iter_batches(buffer[:cut])]
        assert found == [start for start, end in zip(starts, ends, strict=True) if end <= cut]

    def test_empty_buffer_yields_nothing(self):
        """No bytes, no batches."""
        assert list(iter_batches(b"")) == []

    def test_invalid_complete_header_is_a_protocol_error(self):
        """A batch with a bad header after a good one raises ProtocolError when reached."""
        buffer = sample_batch() + raw_header(magic=1) + bytes(10)
        batches = iter_batches(buffer)
        assert next(batches)[0] == 0
        with pytest.raises(ProtocolError, match="magic"):
            next(batches)


class RecordCodecTests:
    def test_known_encoding(self):
        """Records encode to the bytes the format prescribes, worked out by hand."""
        records = [
            Record(0, 0, b"k", b"v"),
            Record(1, -1, None, b""),
            Record(64, 5, b"", None, (("h", b"x"), ("n", None))),
        ]
        expected = (
            bytes.fromhex("10 00 00 00 02 6b 02 76 00")
            + bytes.fromhex("0c 00 01 02 01 00 00")
            + bytes.fromhex("1c 00 0a 8001 00 01 04 02 68 02 78 02 6e 01")
        )
        assert encode_records(records) == expected
        assert decode_records(expected, 3) == records

    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(record_lists())
    def test_round_trip(self, records):
        """decode_records(encode_records(records)) gives the records back, as Record values."""
        decoded = decode_records(encode_records(records), len(records))
        assert decoded == records
        assert all(type(record) is Record for record in decoded)

    def test_round_trip_of_every_two_byte_varint(self):
        """Deltas and lengths around each varint size boundary, and every two-byte value."""
        boundaries = [0, -1, 63, 64, -64, -65, 8191, 8192, -8192, -8193, 2**31 - 1, -(2**31)]
        records = [Record(delta, delta, None, None) for delta in range(-8192, 8192)]
        records += [Record(delta, delta, bytes(abs(delta) % 9000), None) for delta in boundaries]
        records += [Record(0, 2**63 - 1, None, bytes(16384)), Record(0, -(2**63), b"", b"")]
        assert decode_records(encode_records(records), len(records)) == records

    def test_append_record_appends_the_length_then_the_rest(self):
        """append_record adds two pieces to what ``out`` holds: the length, then the record."""
        out = [b"before"]
        append_record(out, 0, 0, b"k", b"v", ())
        assert out == [b"before", bytes.fromhex("10"), bytes.fromhex("00 00 00 02 6b 02 76 00")]

    def test_accepts_bytearray_and_memoryview(self):
        """decode_records reads from a bytearray or memoryview as from bytes."""
        data = encode_records(sample_records())
        assert decode_records(bytearray(data), 5) == sample_records()
        assert decode_records(memoryview(b"xx" + data)[2:], 5) == sample_records()

    def test_zero_records(self):
        """An empty section holds zero records; any byte left over is an error."""
        assert decode_records(b"", 0) == []
        assert encode_records([]) == b""
        with pytest.raises(ProtocolError, match="left after"):
            decode_records(b"\x00", 0)

    def test_every_truncation_is_a_protocol_error(self):
        """Every proper prefix of a valid section raises ProtocolError."""
        data = encode_records(sample_records())
        for cut in range(len(data)):
            with pytest.raises(ProtocolError):
                decode_records(data[:cut], 5)

    def test_count_mismatch_is_a_protocol_error(self):
        """Declaring one record more or fewer than the section holds raises ProtocolError."""
        data = encode_records(sample_records())
        with pytest.raises(ProtocolError, match="truncated"):
            decode_records(data, 6)
        with pytest.raises(ProtocolError, match="left after 4 records"):
            decode_records(data, 4)
        with pytest.raises(ProtocolError, match="negative records count"):
            decode_records(data, -1)

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (bytes.fromhex("0c 00 00 00 03 00 00 00 00 00 00 00 00"), "negative key length -2"),
            (bytes.fromhex("0c 00 00 00 00 05 00 00 00 00 00 00 00"), "negative value length -3"),
            (bytes.fromhex("10 00 00 00 10 6b 02 76 00"), "truncated"),
            (bytes.fromhex("12 00 00 00 02 6b 02 76 00"), "ends at byte 9, its length says 10"),
            (bytes.fromhex("0e 00 00 00 02 6b 02 76 00 00"), "ends at byte"),
            (bytes.fromhex("01 00 00 00 00 00 00"), "ends at byte"),
            (bytes.fromhex("10 00 00 00 00 00 02 01 00"), "header key length -1"),
            (bytes.fromhex("0a 00 00 00 00 00 03 00 01"), "negative record headers count"),
            (bytes.fromhex("0c 00 00 00 00 00 02 02 ff 01 00 00"), "not UTF-8"),
            (bytes.fromhex("0c 00 00 00 00 00 02 00 03 00 00 00"), "header value length -2"),
            (bytes.fromhex("0c 00 00 00 00 00 02 00 40 00 00 00"), "header value length 32"),
            (bytes.fromhex("20 00") + bytes([0x80] * 10) + b"\x00" * 20, "longer than 10 bytes"),
            (bytes.fromhex("20 00 00 ff ff ff ff 1f 00 00 00") + bytes(21), "does not fit 32"),
            (bytes.fromhex("20 00 00 80 80 80 80 80 00 00 00") + bytes(21), "longer than 5"),
            (bytes.fromhex("80 80 80 80 80 80"), "longer than 5 bytes"),
        ],
        ids=[
            "key-length-minus-2",
            "value-length-minus-3",
            "key-past-end",
            "length-past-fields",
            "length-too-small-for-fields",
            "negative-record-length",
            "null-header-key",
            "negative-headers-count",
            "header-key-not-utf8",
            "header-value-length-minus-2",
            "header-value-past-end",
            "varlong-over-10-bytes",
            "varint-over-32-bits",
            "varint-over-5-bytes",
            "record-length-over-5-bytes",
        ],
    )
    def test_malformed_record_is_a_protocol_error(self, data, message):
        """Each malformed record raises ProtocolError naming the problem."""
        with pytest.raises(ProtocolError, match=message):
            decode_records(data, 1)

    @given(data=st.binary(max_size=200), count=st.integers(min_value=0, max_value=5))
    def test_random_bytes_raise_only_protocol_error(self, data, count):
        """Arbitrary bytes either decode as ``count`` records or raise ProtocolError."""
        try:
            records = decode_records(data, count)
        except ProtocolError:
            return
        assert len(records) == count

    @given(data=st.data())
    def test_mutated_section_raises_only_protocol_error(self, data):
        """A valid section with one byte changed decodes or raises ProtocolError."""
        section = bytearray(encode_records(sample_records()))
        index = data.draw(st.integers(min_value=0, max_value=len(section) - 1))
        section[index] = data.draw(st.integers(min_value=0, max_value=255))
        with contextlib.suppress(ProtocolError):
            decode_records(bytes(section), 5)

    def test_encode_refuses_values_outside_64_bits(self):
        """A timestamp delta beyond INT64 raises ValueError instead of encoding garbage."""
        with pytest.raises(ValueError, match="varlong"):
            encode_records([Record(0, 2**63, None, None)])


class BuildBatchTests:
    @ALL_CODECS
    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records=batch_records())
    def test_round_trip_for_every_codec(self, codec, records):
        """decode_batch(build_batch(records)) gives back the records and the header fields."""
        batch = build_batch(
            records, base_offset=42, base_timestamp=BASE_TIMESTAMP, compression=codec
        )
        header, decoded = decode_batch(batch)
        assert decoded == records
        assert header.compression is codec
        assert header.base_offset == 42
        assert header.size == len(batch)
        assert header.records_count == len(records)
        assert header.last_offset_delta == records[-1].offset_delta
        assert header.max_timestamp == BASE_TIMESTAMP + max(r.timestamp_delta for r in records)

    def test_producer_fields_and_flags(self):
        """Producer id, epoch, sequence, leader epoch and the attribute flags are written."""
        batch = sample_batch(
            compression=Codec.ZSTD,
            producer_id=2**40,
            producer_epoch=5,
            base_sequence=17,
            partition_leader_epoch=3,
            is_transactional=True,
            timestamp_type=TimestampType.LOG_APPEND_TIME,
        )
        header = read_batch_header(batch)
        assert (header.producer_id, header.producer_epoch, header.base_sequence) == (2**40, 5, 17)
        assert header.partition_leader_epoch == 3
        assert header.attributes == 0x04 | 0x08 | 0x10
        assert header.is_transactional
        assert not header.is_control
        assert header.timestamp_type is TimestampType.LOG_APPEND_TIME

    def test_defaults_mean_no_producer(self):
        """Without producer arguments the fields are -1 and the attributes are 0."""
        header = read_batch_header(build_batch(sample_records(), base_timestamp=0))
        assert (header.producer_id, header.producer_epoch, header.base_sequence) == (-1, -1, -1)
        assert (header.base_offset, header.partition_leader_epoch, header.attributes) == (0, -1, 0)

    @pytest.mark.parametrize(
        ("records", "options", "message"),
        [
            ([], {}, "at least one record"),
            ([Record(1, 0, None, None), Record(1, 0, None, None)], {}, "follows"),
            ([Record(-1, 0, None, None)], {}, "follows"),
            ([Record(2**31, 0, None, None)], {}, "out of range"),
            ([Record(0, 0, None, None)], {"producer_epoch": 2**15}, "out of range"),
            ([Record(0, 0, None, None)], {"compression": 5}, "5"),
            ([Record(0, 0, None, None)], {"timestamp_type": 2}, "2"),
        ],
        ids=[
            "empty",
            "repeated-offset",
            "negative-offset",
            "offset-over-int32",
            "epoch-over-int16",
            "unknown-codec",
            "unknown-timestamp-type",
        ],
    )
    def test_invalid_input_is_a_value_error(self, records, options, message):
        """build_batch refuses input that cannot form a valid batch with ValueError."""
        with pytest.raises(ValueError, match=message):
            build_batch(records, base_timestamp=0, **options)


class DecodeBatchTests:
    def test_reads_at_a_position_and_ignores_what_follows(self):
        """decode_batch decodes the batch at ``position``; bytes after it are not read."""
        batch = sample_batch(compression=Codec.SNAPPY)
        header, records = decode_batch(b"xyz" + batch + b"trailing", 3)
        assert header == read_batch_header(batch)
        assert records == sample_records()

    def test_records_made_as_the_reader_asks(self):
        """base_offset, base_timestamp, prefix and record_type make each record in one step:
        ``record_type(prefix + (base_offset + offset delta, base_timestamp + timestamp delta,
        key, value, headers))``, from a bytes, bytearray or memoryview buffer."""

        class Placed(NamedTuple):
            topic: str
            partition: int
            offset: int
            timestamp: int
            key: bytes | None
            value: bytes | None
            headers: tuple

        batch = sample_batch(compression=Codec.LZ4)
        expected = [
            Placed(
                "gpu", 3, 1000 + r.offset_delta, 7 + r.timestamp_delta, r.key, r.value, r.headers
            )
            for r in sample_records()
        ]
        for buffer in (batch, bytearray(batch), memoryview(b"x" + batch)[1:]):
            _, records = decode_batch(
                buffer,
                base_offset=1000,
                base_timestamp=7,
                prefix=("gpu", 3),
                record_type=Placed,
            )
            assert records == expected
            assert all(type(record) is Placed for record in records)

    def test_uncompressed_size_is_bounded(self):
        """max_bytes bounds an uncompressed records section as well."""
        records = [Record(0, 0, None, bytes(1000))]
        size = len(encode_records(records))
        batch = build_batch(records, base_timestamp=0)
        assert decode_batch(batch, max_bytes=size)[1] == records
        with pytest.raises(ProtocolError, match="exceed the limit"):
            decode_batch(batch, max_bytes=size - 1)

    def test_records_count_mismatch_is_a_protocol_error(self):
        """A header whose recordsCount disagrees with the records (CRC fixed up) is refused."""
        batch = bytearray(sample_batch())
        struct.pack_into(">i", batch, 57, 6)
        with pytest.raises(ProtocolError, match="truncated"):
            decode_batch(with_crc(batch))

    def test_decompressed_size_is_bounded(self):
        """max_bytes bounds the decompressed records section."""
        records = [Record(0, 0, None, bytes(100_000))]
        size = len(encode_records(records))
        batch = build_batch(records, base_timestamp=0, compression=Codec.GZIP)
        assert decode_batch(batch, max_bytes=size)[1] == records
        with pytest.raises(ProtocolError, match=f"more than {size - 1} bytes"):
            decode_batch(batch, max_bytes=size - 1)

    def test_corrupt_compressed_section_with_valid_crc_is_a_protocol_error(self):
        """Garbage in place of compressed records (CRC recomputed) raises ProtocolError."""
        batch = bytearray(sample_batch(compression=Codec.LZ4))
        batch[HEADER_SIZE + 8 :] = bytes(len(batch) - HEADER_SIZE - 8)
        with pytest.raises(ProtocolError, match="lz4"):
            decode_batch(with_crc(batch))

    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.binary(max_size=300))
    def test_random_bytes_raise_only_protocol_error(self, data):
        """Arbitrary bytes fed to read_batch_header and decode_batch raise only ProtocolError."""
        for reader in (read_batch_header, decode_batch):
            with contextlib.suppress(ProtocolError):
                reader(data)

    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_random_header_with_valid_crc_raises_only_protocol_error(self, data):
        """Random header fields and body, CRC made valid, decode or raise ProtocolError."""
        body = data.draw(st.binary(max_size=120))
        header = raw_header(
            batch_length=49 + len(body),
            attributes=data.draw(st.integers(0, 0x7F)),
            last_offset_delta=data.draw(st.integers(0, 10)),
            records_count=data.draw(st.integers(0, 10)),
        )
        with contextlib.suppress(ProtocolError):
            decode_batch(with_crc(header + body))

    @given(data=st.data())
    def test_single_byte_mutation_raises_only_protocol_error(self, data):
        """One changed byte anywhere in a valid batch: decoded unchanged or ProtocolError.

        Only the bytes outside the CRC (baseOffset, batchLength, partitionLeaderEpoch) can
        change without an error, and then the records still decode the same.
        """
        codec = data.draw(st.sampled_from(list(Codec)))
        batch = bytearray(sample_batch(compression=codec))
        index = data.draw(st.integers(min_value=0, max_value=len(batch) - 1))
        batch[index] ^= data.draw(st.integers(min_value=1, max_value=255))
        try:
            _, records = decode_batch(batch)
        except ProtocolError:
            return
        assert index < 8 or 12 <= index < 16
        assert records == sample_records()
