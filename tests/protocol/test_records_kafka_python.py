"""Cross-implementation vectors: RecordBatch v2 between tmq and kafka-python 3.0.12.

Batches built by kafka-python's ``DefaultRecordBatchBuilder`` decode with tmq to the same header
fields and records, and batches built by tmq are read by kafka-python's ``DefaultRecordBatch``
with a valid CRC and the same records.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from tmq.protocol.compression import Codec
from tmq.protocol.records import (
    Record,
    TimestampType,
    batch_crc,
    build_batch,
    decode_batch,
    iter_batches,
    read_batch_header,
    set_base_offset,
    set_partition_leader_epoch,
)

BASE_TIMESTAMP = 1_700_000_000_000
ALL_CODECS = pytest.mark.parametrize("codec", list(Codec), ids=lambda codec: codec.name)


def telemetry_records() -> list[Record]:
    """Compressible records (so kafka-python keeps the codec) with null keys and headers."""
    records = []
    for i in range(40):
        value = b'{"gpu":%d,"metric":"DCGM_FI_DEV_GPU_UTIL","value":%d}' % (i % 8, i * 7 % 101)
        key = None if i % 5 == 0 else b"host-%02d/gpu-%d" % (i % 3, i % 8)
        headers = (("source", b"dcgm"), ("trace", None)) if i % 4 == 0 else ()
        records.append(Record(i, i * 17 % 250, key, value, headers))
    return records


def kafka_python_batch(
    records: list[Record],
    codec: Codec,
    producer: tuple[int, int, int] = (-1, -1, -1),
    is_transactional: bool = False,
) -> bytes:
    """``records`` built into a batch by kafka-python's DefaultRecordBatchBuilder."""
    producer_id, producer_epoch, base_sequence = producer
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=is_transactional,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 30,
    )
    for record in records:
        metadata = builder.append(
            record.offset_delta,
            BASE_TIMESTAMP + record.timestamp_delta,
            record.key,
            record.value,
            list(record.headers),
        )
        assert metadata is not None
    return bytes(builder.build())


def kafka_python_records(batch: bytes, base_offset: int = 0) -> list[Record]:
    """The records kafka-python reads from ``batch``, as tmq Records (deltas recomputed)."""
    reader = DefaultRecordBatch(batch)
    assert reader.validate_crc()
    return [
        Record(
            record.offset - base_offset,
            record.timestamp - reader.first_timestamp,
            record.key,
            record.value,
            tuple(record.headers),
        )
        for record in reader
    ]


class KafkaPythonBuiltBatchTests:
    @ALL_CODECS
    def test_tmq_decodes_the_same_records_and_header(self, codec):
        """A kafka-python batch decodes with tmq to its records and header fields."""
        records = telemetry_records()
        batch = kafka_python_batch(records, codec, producer=(4321, 7, 100))
        header, decoded = decode_batch(batch)
        reader = DefaultRecordBatch(batch)
        assert decoded == records
        assert header.compression is codec
        assert header.compression == reader.compression_type
        assert header.size == reader.size_in_bytes == len(batch)
        assert header.base_offset == reader.base_offset == 0
        assert header.partition_leader_epoch == reader.leader_epoch
        assert header.last_offset_delta == reader.last_offset_delta == 39
        assert header.base_timestamp == reader.first_timestamp == BASE_TIMESTAMP
        assert header.max_timestamp == reader.max_timestamp == BASE_TIMESTAMP + 243
        assert (header.producer_id, header.producer_epoch, header.base_sequence) == (4321, 7, 100)
        assert header.last_sequence == reader.last_sequence == 139
        assert header.records_count == reader.records_count == 40
        assert not header.is_transactional
        assert header.timestamp_type is TimestampType.CREATE_TIME

    @ALL_CODECS
    def test_crc_equals_tmq_computation(self, codec):
        """The CRC kafka-python writes equals tmq's CRC-32C over bytes [21, end)."""
        batch = kafka_python_batch(telemetry_records(), codec)
        header = read_batch_header(batch)
        assert header.crc == DefaultRecordBatch(batch).crc == batch_crc(batch, 0, header)

    def test_transactional_flag(self):
        """kafka-python's transactional batch reads as transactional in tmq."""
        batch = kafka_python_batch(
            telemetry_records(), Codec.NONE, producer=(9, 1, 0), is_transactional=True
        )
        assert read_batch_header(batch).is_transactional

    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        records=st.lists(
            st.tuples(
                st.integers(0, 2**40),
                st.none() | st.binary(max_size=50),
                st.none() | st.binary(max_size=200),
                st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8))),
            ),
            min_size=1,
            max_size=15,
        ),
        codec=st.sampled_from(list(Codec)),
    )
    def test_random_records(self, records, codec):
        """Random keys, values, headers and timestamps survive kafka-python -> tmq."""
        expected = [
            Record(index, timestamp, key, value, tuple(headers))
            for index, (timestamp, key, value, headers) in enumerate(records)
        ]
        batch = kafka_python_batch(expected, codec)
        first = expected[0].timestamp_delta
        header, decoded = decode_batch(batch)
        assert header.base_timestamp == BASE_TIMESTAMP + first
        assert decoded == [r._replace(timestamp_delta=r.timestamp_delta - first) for r in expected]


class TmqBuiltBatchTests:
    @ALL_CODECS
    def test_kafka_python_reads_the_same_records_and_header(self, codec):
        """A tmq batch validates its CRC in kafka-python and yields the same records."""
        records = telemetry_records()
        batch = build_batch(
            records,
            base_offset=5000,
            base_timestamp=BASE_TIMESTAMP,
            compression=codec,
            producer_id=77,
            producer_epoch=2,
            base_sequence=2**31 - 10,
            partition_leader_epoch=4,
            is_transactional=True,
        )
        reader = DefaultRecordBatch(batch)
        assert reader.validate_crc()
        assert reader.magic == 2
        assert reader.compression_type == codec
        assert reader.base_offset == 5000
        assert reader.leader_epoch == 4
        assert reader.last_offset_delta == 39
        assert reader.records_count == 40
        assert reader.first_timestamp == BASE_TIMESTAMP
        assert reader.max_timestamp == BASE_TIMESTAMP + 243
        assert (reader.producer_id, reader.producer_epoch, reader.base_sequence) == (
            77,
            2,
            2**31 - 10,
        )
        assert reader.last_sequence == read_batch_header(batch).last_sequence == 29
        assert reader.is_transactional
        assert not reader.is_control_batch
        assert kafka_python_records(batch, base_offset=5000) == records

    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        values=st.lists(
            st.tuples(st.none() | st.binary(max_size=50), st.none() | st.binary(max_size=200)),
            min_size=1,
            max_size=15,
        ),
        codec=st.sampled_from(list(Codec)),
    )
    def test_random_records(self, values, codec):
        """Random keys and values survive tmq -> kafka-python under every codec."""
        records = [Record(i, i * 3, key, value) for i, (key, value) in enumerate(values)]
        batch = build_batch(records, base_timestamp=BASE_TIMESTAMP, compression=codec)
        assert kafka_python_records(batch) == records

    def test_stamped_batch_still_validates(self):
        """After tmq stamps baseOffset and partitionLeaderEpoch, kafka-python's CRC check passes."""
        batch = bytearray(build_batch(telemetry_records(), base_timestamp=BASE_TIMESTAMP))
        set_base_offset(batch, 0, 123_456)
        set_partition_leader_epoch(batch, 0, 17)
        reader = DefaultRecordBatch(bytes(batch))
        assert (reader.base_offset, reader.leader_epoch) == (123_456, 17)
        assert kafka_python_records(bytes(batch), base_offset=123_456) == telemetry_records()

    def test_batch_iteration_agrees_with_memory_records(self):
        """tmq's iter_batches and kafka-python's MemoryRecords split a fetch-like buffer alike.

        Both stop at the truncated batch at the end.
        """
        batches = [
            build_batch(
                telemetry_records(), base_offset=40 * n, base_timestamp=0, compression=codec
            )
            for n, codec in enumerate(Codec)
        ]
        buffer = b"".join(batches)[:-7]
        ours = [header.base_offset for _, header in iter_batches(buffer)]
        theirs = [batch.base_offset for batch in MemoryRecords(buffer)]
        assert ours == theirs == [0, 40, 80, 120]
