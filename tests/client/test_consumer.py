"""Consumer against the fake cluster: resets, seeks, long polls, batch decoding, commits."""

from __future__ import annotations

import struct

from fake_kafka import FakeKafka, FakeNetwork
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tmq.client.cluster import Cluster
from tmq.client.consumer import Consumer, ConsumerRecord, TopicPartition, records_from_fetch
from tmq.client.errors import (
    BrokerResponseError,
    ClientClosedError,
    KafkaProtocolError,
    NoOffsetForPartitionError,
)
from tmq.protocol.apis import ApiKey
from tmq.protocol.compression import Codec
from tmq.protocol.errors import ErrorCode, ProtocolError
from tmq.protocol.records import (
    Record,
    TimestampType,
    batch_crc,
    build_batch,
    read_batch_header,
    set_base_offset,
)

T0 = 1_700_000_000_000
GPU0 = TopicPartition("gpu", 0)


def batch_of(values, *, base_offset=0, codec=Codec.NONE, keys=None, **kwargs) -> bytes:
    keys = keys or [None] * len(values)
    records = [Record(i, i, k, v, ()) for i, (k, v) in enumerate(zip(keys, values, strict=True))]
    batch = build_batch(records, base_timestamp=T0, compression=codec, **kwargs)
    stored = bytearray(batch)
    set_base_offset(stored, 0, base_offset)
    return bytes(stored)


def control_batch(base_offset: int) -> bytes:
    """A transaction marker batch: attribute bit 5 set, CRC recomputed."""
    stored = bytearray(batch_of([b"\x00\x00\x00\x01"], base_offset=base_offset))
    (attributes,) = struct.unpack_from(">h", stored, 21)
    struct.pack_into(">h", stored, 21, attributes | 0x20)
    struct.pack_into(">I", stored, 17, batch_crc(stored, 0, read_batch_header(stored)))
    return bytes(stored)


class RecordsFromFetchTests(SynchronousTestCase):
    """Decoding one partition's records bytes from a Fetch answer."""

    def test_whole_batches_decode_in_order(self):
        """Each record gets its offset, timestamp, key and value; the next offset follows the
        last batch."""
        data = batch_of([b"a", b"b"], keys=[b"k", None]) + batch_of([b"c"], base_offset=2)
        records, next_offset = records_from_fetch("gpu", 0, 0, data)
        self.assertEqual(records[0], ConsumerRecord("gpu", 0, 0, T0, b"k", b"a", ()))
        self.assertEqual(
            [(r.offset, r.timestamp, r.value) for r in records],
            [(0, T0, b"a"), (1, T0 + 1, b"b"), (2, T0, b"c")],
        )
        self.assertEqual(next_offset, 3)

    def test_a_view_of_the_response_decodes_alike(self):
        """The records of a Fetch answer come as a view of the response frame: they decode to
        the same ConsumerRecords, with bytes keys and values."""
        data = batch_of([b"a", b"b"], keys=[b"k", None]) + batch_of([b"c"], base_offset=2)
        viewed, next_offset = records_from_fetch("gpu", 0, 0, memoryview(b"frame" + data)[5:])
        self.assertEqual((viewed, next_offset), records_from_fetch("gpu", 0, 0, data))
        self.assertTrue(all(type(r) is ConsumerRecord and type(r.value) is bytes for r in viewed))

    def test_records_below_the_fetch_offset_are_skipped(self):
        """A fetch from the middle of a batch returns only the records from that offset on."""
        data = batch_of([b"a", b"b", b"c", b"d"], base_offset=10)
        records, next_offset = records_from_fetch("gpu", 0, 12, data)
        self.assertEqual([r.offset for r in records], [12, 13])
        self.assertEqual(next_offset, 14)

    def test_batches_wholly_below_are_passed_over(self):
        """A batch ending before the fetch offset contributes nothing."""
        data = batch_of([b"a", b"b"]) + batch_of([b"c"], base_offset=2)
        records, _ = records_from_fetch("gpu", 0, 2, data)
        self.assertEqual([r.value for r in records], [b"c"])

    def test_partial_trailing_batch_is_left_for_the_next_fetch(self):
        """Bytes of a batch cut short at the end are ignored; the next offset is the cut
        batch's first."""
        second = batch_of([b"c", b"d"], base_offset=2)
        for cut in (1, 30, 61, len(second) - 1):
            data = batch_of([b"a", b"b"]) + second[:cut]
            records, next_offset = records_from_fetch("gpu", 0, 0, data)
            self.assertEqual([r.value for r in records], [b"a", b"b"])
            self.assertEqual(next_offset, 2)

    def test_nothing_complete_keeps_the_offset(self):
        """Only a partial batch: no records, and the fetch offset stays."""
        records, next_offset = records_from_fetch("gpu", 0, 5, batch_of([b"x"], base_offset=5)[:40])
        self.assertEqual((records, next_offset), ([], 5))

    def test_control_batches_are_skipped(self):
        """Transaction markers are not records: skipped, and the offset moves past them."""
        data = batch_of([b"a"]) + control_batch(1) + batch_of([b"b"], base_offset=2)
        records, next_offset = records_from_fetch("gpu", 0, 0, data)
        self.assertEqual([(r.offset, r.value) for r in records], [(0, b"a"), (2, b"b")])
        self.assertEqual(next_offset, 3)

    def test_log_append_time_applies_to_every_record(self):
        """A LogAppendTime batch gives each record the batch's max timestamp."""
        data = batch_of([b"a", b"b"], timestamp_type=TimestampType.LOG_APPEND_TIME)
        records, _ = records_from_fetch("gpu", 0, 0, data)
        self.assertEqual([r.timestamp for r in records], [T0 + 1, T0 + 1])

    def test_every_codec_decompresses(self):
        """Compressed batches come back as their records."""
        for codec in Codec:
            records, _ = records_from_fetch("gpu", 0, 0, batch_of([b"x" * 100, b"y"], codec=codec))
            self.assertEqual([r.value for r in records], [b"x" * 100, b"y"])

    def test_corrupt_batch_is_a_protocol_error(self):
        """A batch failing its CRC raises ProtocolError."""
        data = bytearray(batch_of([b"abc"]))
        data[-1] ^= 0xFF
        with self.assertRaises(ProtocolError):
            records_from_fetch("gpu", 0, 0, bytes(data))


class ConsumerTestCase(SynchronousTestCase):
    """A two-broker fake cluster; topic ``gpu`` has partition 0 on broker 1, 1 on broker 2."""

    def setUp(self):
        self.kafka = FakeKafka(broker_ids=(1, 2))
        self.network = FakeNetwork(self.kafka)
        self.kafka.create_topic("gpu", partitions=2)
        self.cluster = Cluster(self.kafka.clock, "broker-1:9092", connect=self.network.connect)

    def consumer(self, partitions=(GPU0,), **kwargs) -> Consumer:
        consumer = Consumer(self.cluster, **kwargs)
        consumer.assign(partitions)
        return consumer

    def append(self, values, partition=0, **kwargs) -> None:
        log = self.kafka.partitions[("gpu", partition)]
        log.append(batch_of(values, **kwargs))
        self.kafka.wake_fetches()

    def poll(self, consumer: Consumer, timeout_ms: float = 1000) -> list:
        polled = consumer.poll(timeout_ms)
        self.network.flush()
        return [(r.offset, r.value) for r in self.successResultOf(polled)]

    def fetches(self, broker_id: int = 1) -> list:
        return self.kafka.brokers[broker_id].requests_of(ApiKey.FETCH)


class ConsumerPositionTests(ConsumerTestCase):
    """Where reading starts: reset policies, seeks, out-of-range offsets."""

    def test_earliest_reads_from_the_log_start(self):
        """``earliest``: ListOffsets asks for timestamp -2, then every record comes back."""
        self.append([b"a", b"b"])
        self.append([b"c"])
        consumer = self.consumer(auto_offset_reset="earliest")
        self.assertEqual(self.poll(consumer), [(0, b"a"), (1, b"b"), (2, b"c")])
        (listed,) = self.kafka.brokers[1].requests_of(ApiKey.LIST_OFFSETS)
        self.assertEqual(listed.topics[0].partitions[0].timestamp, -2)
        self.assertEqual(consumer.position(GPU0), 3)
        self.assertEqual(consumer.highwater(GPU0), 3)

    def test_latest_reads_only_new_records(self):
        """``latest`` starts at the end: old records are not returned, new ones are."""
        self.append([b"old"])
        consumer = self.consumer()
        self.assertEqual(self.poll(consumer, 0), [])
        self.network.flush()
        self.assertEqual(consumer.position(GPU0), 1)
        waiting = consumer.poll(5000)
        self.network.flush()
        self.assertNoResult(waiting)
        self.append([b"new"])
        self.network.flush()
        self.assertEqual([r.value for r in self.successResultOf(waiting)], [b"new"])

    def test_seek_inside_a_batch_skips_earlier_records(self):
        """After ``seek`` to an offset inside a batch, the fetch asks for that offset and the
        records before it in the batch are dropped."""
        self.append([b"a", b"b", b"c", b"d"])
        consumer = self.consumer()
        consumer.seek(GPU0, 2)
        self.assertEqual(self.poll(consumer), [(2, b"c"), (3, b"d")])
        self.assertEqual(self.fetches()[0].topics[0].partitions[0].fetch_offset, 2)
        self.assertEqual(self.kafka.brokers[1].requests_of(ApiKey.LIST_OFFSETS), [])

    def test_seek_drops_buffered_and_in_flight_data(self):
        """Records fetched for the old position are not returned after a seek."""
        self.append([b"a", b"b", b"c"])
        consumer = self.consumer()
        consumer.seek(GPU0, 0)
        consumer.poll(0)  # a fetch from 0 goes out
        consumer.seek(GPU0, 2)
        self.network.flush()
        self.assertEqual(self.poll(consumer), [(2, b"c")])

    def test_seek_to_beginning_and_end(self):
        """``seek_to_beginning`` and ``seek_to_end`` reset through ListOffsets."""
        self.append([b"a", b"b"])
        consumer = self.consumer()
        consumer.seek_to_beginning()
        self.assertEqual(self.poll(consumer), [(0, b"a"), (1, b"b")])
        consumer.seek_to_end(GPU0)
        self.assertEqual(self.poll(consumer, 0), [])
        self.network.flush()
        self.assertEqual(consumer.position(GPU0), 2)

    def test_out_of_range_offset_resets_by_policy(self):
        """OFFSET_OUT_OF_RANGE moves the position to the policy's end and reading goes on."""
        self.append([b"a", b"b"])
        consumer = self.consumer(auto_offset_reset="earliest")
        consumer.seek(GPU0, 100)
        self.assertEqual(self.poll(consumer), [(0, b"a"), (1, b"b")])

    def test_out_of_range_with_policy_none_is_reported(self):
        """With policy ``none`` an out-of-range offset fails ``poll`` until a seek."""
        self.append([b"a"])
        consumer = self.consumer(auto_offset_reset="none")
        consumer.seek(GPU0, 100)
        polled = consumer.poll(1000)
        self.network.flush()
        self.failureResultOf(polled, NoOffsetForPartitionError)
        consumer.seek(GPU0, 0)
        self.assertEqual(self.poll(consumer), [(0, b"a")])

    def test_no_position_with_policy_none_is_reported(self):
        """Policy ``none`` and no seek: ``poll`` fails at once."""
        consumer = self.consumer(auto_offset_reset="none")
        self.failureResultOf(consumer.poll(1000), NoOffsetForPartitionError)

    def test_seek_of_an_unassigned_partition_is_refused(self):
        """Only assigned partitions can be positioned."""
        consumer = self.consumer()
        with self.assertRaises(ValueError):
            consumer.seek(("gpu", 1), 0)
        with self.assertRaises(ValueError):
            consumer.seek(GPU0, -1)


class ConsumerFetchTests(ConsumerTestCase):
    """Long polls, batch boundaries, errors and the async iterator."""

    def test_fetch_request_follows_the_protocol(self):
        """The Fetch is sessionless, read_uncommitted, without leader epoch, with the limits
        asked for."""
        self.append([b"a"])
        consumer = self.consumer(max_wait_ms=250, min_bytes=10, max_partition_bytes=4096)
        consumer.seek(GPU0, 0)
        self.poll(consumer)
        fetch = self.fetches()[0]
        self.assertEqual(
            (fetch.replica_id, fetch.max_wait_ms, fetch.min_bytes, fetch.isolation_level),
            (-1, 250, 10, 0),
        )
        self.assertEqual((fetch.session_id, fetch.session_epoch), (0, -1))
        partition = fetch.topics[0].partitions[0]
        self.assertEqual(
            (partition.current_leader_epoch, partition.partition_max_bytes), (-1, 4096)
        )

    def test_poll_times_out_empty(self):
        """With nothing to read, ``poll`` fires with ``[]`` after its timeout."""
        consumer = self.consumer()
        polled = consumer.poll(300)
        self.network.flush()
        self.assertNoResult(polled)
        self.network.advance(0.3)
        self.assertEqual(self.successResultOf(polled), [])

    def test_long_poll_returns_when_data_arrives(self):
        """A waiting ``poll`` fires as soon as records reach the partition."""
        consumer = self.consumer(max_wait_ms=10_000)
        consumer.seek(GPU0, 0)
        polled = consumer.poll(30_000)
        self.network.advance(1)
        self.assertNoResult(polled)
        self.append([b"late"])
        self.network.flush()
        self.assertEqual([r.value for r in self.successResultOf(polled)], [b"late"])

    def test_partial_batch_is_fetched_again(self):
        """With a partition limit that cuts the second batch, the first poll returns the
        first batch and the next fetch starts at the cut batch."""
        self.append([b"a" * 50])
        self.append([b"b" * 50])
        consumer = self.consumer(max_partition_bytes=150)
        consumer.seek(GPU0, 0)
        self.assertEqual(self.poll(consumer), [(0, b"a" * 50)])
        self.assertEqual(self.poll(consumer), [(1, b"b" * 50)])
        offsets = [f.topics[0].partitions[0].fetch_offset for f in self.fetches()]
        self.assertEqual(offsets[:2], [0, 1])

    def test_compressed_batches_are_read(self):
        """Batches stored compressed are decompressed for the application."""
        for offset, codec in enumerate(Codec):
            self.append([codec.name.encode()], codec=codec, base_offset=offset)
        consumer = self.consumer()
        consumer.seek(GPU0, 0)
        self.assertEqual([v for _, v in self.poll(consumer)], [c.name.encode() for c in Codec])

    def test_max_records_bounds_a_poll(self):
        """A poll returns at most ``max_records``; the rest come next time."""
        self.append([bytes([i]) for i in range(5)])
        consumer = self.consumer(max_records=3)
        consumer.seek(GPU0, 0)
        self.assertEqual(len(self.poll(consumer)), 3)
        self.assertEqual(len(self.poll(consumer)), 2)

    def test_prefetch_fetches_ahead_while_few_records_are_buffered(self):
        """While fewer than ``prefetch_records`` are buffered, a poll also sends the next
        fetch; with enough buffered, it sends none."""
        self.append([bytes([i]) for i in range(5)])
        consumer = self.consumer(max_records=2, prefetch_records=3)
        consumer.seek(GPU0, 0)
        self.assertEqual(len(self.poll(consumer)), 2)
        self.assertEqual(len(self.fetches()), 1)
        self.assertEqual(len(self.poll(consumer)), 2)
        self.assertEqual(len(self.fetches()), 2)
        self.assertEqual(self.fetches()[1].topics[0].partitions[0].fetch_offset, 5)

    def test_reads_several_partitions_from_their_leaders(self):
        """Each partition is fetched from its own leader."""
        self.append([b"p0"], partition=0)
        self.append([b"p1"], partition=1)
        consumer = self.consumer([GPU0, ("gpu", 1)], auto_offset_reset="earliest")
        self.assertEqual(consumer.assignment(), [GPU0, TopicPartition("gpu", 1)])
        polled = consumer.poll(1000)
        self.network.flush()
        values = [r.value for r in self.successResultOf(polled)]
        values += [v for _, v in self.poll(consumer, 0)]
        self.assertEqual(sorted(values), [b"p0", b"p1"])
        self.assertTrue(self.fetches(1) and self.fetches(2))

    def test_not_leader_refreshes_metadata(self):
        """NOT_LEADER_OR_FOLLOWER: the consumer looks the leader up again and reads there."""
        self.append([b"a"])
        consumer = self.consumer()
        consumer.seek(GPU0, 0)
        self.assertEqual(self.poll(consumer), [(0, b"a")])
        self.kafka.move_leader("gpu", 0, 2)
        self.append([b"b"])
        polled = consumer.poll(5000)
        self.network.elapse(0.5)
        self.assertEqual([r.value for r in self.successResultOf(polled)], [b"b"])
        self.assertEqual(self.fetches(1)[-1].topics[0].partitions[0].fetch_offset, 1)
        self.assertEqual(len(self.fetches(2)), 1)

    def test_reset_follows_a_moved_leader(self):
        """ListOffsets answered NOT_LEADER_OR_FOLLOWER is asked again of the new leader."""
        self.append([b"a"])
        consumer = self.consumer(auto_offset_reset="earliest")
        looked_up = self.cluster.topic("gpu")
        self.network.flush()
        self.assertEqual(self.successResultOf(looked_up).partitions[0].leader, 1)
        self.kafka.move_leader("gpu", 0, 2)
        polled = consumer.poll(5000)
        self.network.elapse(0.5)
        self.assertEqual([r.value for r in self.successResultOf(polled)], [b"a"])
        self.assertEqual(len(self.kafka.brokers[1].requests_of(ApiKey.LIST_OFFSETS)), 1)
        self.assertEqual(len(self.kafka.brokers[2].requests_of(ApiKey.LIST_OFFSETS)), 1)

    def test_lost_connection_during_fetch_is_retried(self):
        """A Fetch lost with its connection is sent again after a backoff."""
        self.append([b"a"])
        consumer = self.consumer()
        consumer.seek(GPU0, 0)
        self.network.flush()
        self.kafka.brokers[1].mute(ApiKey.FETCH)
        polled = consumer.poll(5000)
        self.network.flush()
        self.kafka.brokers[1].muted.clear()
        self.kafka.brokers[1].drop_connections()
        self.network.elapse(0.5)
        self.assertEqual([r.value for r in self.successResultOf(polled)], [b"a"])
        self.assertEqual(len(self.fetches()), 2)

    def test_leader_election_is_waited_out_without_spinning(self):
        """While a partition has no leader, a waiting poll asks for metadata only after a
        backoff each time, and reads once a leader is elected."""
        self.append([b"a"])
        self.kafka.move_leader("gpu", 0, -1)
        consumer = self.consumer(retry_backoff_ms=100)
        consumer.seek(GPU0, 0)
        polled = consumer.poll(10_000)
        self.network.elapse(1)
        self.assertNoResult(polled)
        self.assertLessEqual(len(self.kafka.brokers[1].requests_of(ApiKey.METADATA)), 12)
        self.kafka.move_leader("gpu", 0, 1)
        self.network.elapse(0.2)
        self.assertEqual([r.value for r in self.successResultOf(polled)], [b"a"])

    def test_fatal_partition_error_fails_poll(self):
        """A non-retriable error code is reported by ``poll``."""
        self.kafka.brokers[1].fail_next(ApiKey.FETCH, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
        consumer = self.consumer()
        consumer.seek(GPU0, 0)
        polled = consumer.poll(1000)
        self.network.flush()
        failure = self.failureResultOf(polled, BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.TOPIC_AUTHORIZATION_FAILED)

    def test_corrupt_data_fails_poll(self):
        """A batch failing its CRC is reported as a protocol error, not returned."""
        log = self.kafka.partitions[("gpu", 0)]
        log.append(batch_of([b"abc"]))
        log.log[-1] ^= 0xFF
        consumer = self.consumer()
        consumer.seek(GPU0, 0)
        polled = consumer.poll(1000)
        self.network.flush()
        self.failureResultOf(polled, KafkaProtocolError)

    def test_async_iteration(self):
        """``async for`` over ``records()`` yields records as they arrive, until close."""
        consumer = self.consumer()
        consumer.seek(GPU0, 0)
        seen = []

        async def read():
            async for record in consumer.records(poll_timeout_ms=100):
                seen.append(record.value)
                if len(seen) == 3:
                    consumer.close()

        done = Deferred.fromCoroutine(read())
        self.append([b"a", b"b"])
        self.network.elapse(0.2)
        self.assertEqual(seen, [b"a", b"b"])
        self.append([b"c", b"d"])
        self.network.elapse(0.2)
        self.successResultOf(done)
        self.assertEqual(seen, [b"a", b"b", b"c"])

    def test_close_releases_a_waiting_poll(self):
        """``close`` fires a waiting poll with ``[]``; later polls fail."""
        consumer = self.consumer()
        polled = consumer.poll(10_000)
        consumer.close()
        self.assertEqual(self.successResultOf(polled), [])
        self.failureResultOf(consumer.poll(), ClientClosedError)


class ConsumerCommitTests(ConsumerTestCase):
    """Simple offset commits through the group coordinator."""

    def test_commit_then_committed(self):
        """Committed offsets are read back; a partition without one is ``None``."""
        consumer = self.consumer()
        committed = consumer.commit({GPU0: 42}, "sink")
        self.network.flush()
        self.assertIsNone(self.successResultOf(committed))
        body = self.kafka.brokers[1].requests_of(ApiKey.OFFSET_COMMIT)[0]
        self.assertEqual((body.generation_id, body.member_id), (-1, ""))
        read = consumer.committed("sink", [GPU0, ("gpu", 1)])
        self.network.flush()
        self.assertEqual(self.successResultOf(read), {GPU0: 42, TopicPartition("gpu", 1): None})

    def test_commit_follows_a_moved_coordinator(self):
        """NOT_COORDINATOR: the coordinator is looked up again and the commit retried there."""
        consumer = self.consumer()
        first = consumer.commit({GPU0: 1}, "sink")
        self.network.flush()
        self.successResultOf(first)
        self.kafka.coordinator_id = 2
        moved = consumer.commit({GPU0: 2}, "sink")
        self.network.elapse(0.5)
        self.successResultOf(moved)
        self.assertEqual(self.kafka.committed[("sink", "gpu", 0)], 2)
        self.assertEqual(len(self.kafka.brokers[2].requests_of(ApiKey.OFFSET_COMMIT)), 1)

    def test_commit_error_is_reported(self):
        """A non-retriable commit error fails the commit with its code."""
        self.kafka.brokers[1].fail_next(ApiKey.OFFSET_COMMIT, ErrorCode.OFFSET_METADATA_TOO_LARGE)
        consumer = self.consumer()
        committed = consumer.commit({GPU0: 1}, "sink")
        self.network.flush()
        failure = self.failureResultOf(committed, BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.OFFSET_METADATA_TOO_LARGE)
