"""Producer against the fake cluster: batching, compression, acks, idempotence and retries."""

from __future__ import annotations

from fake_kafka import FakeKafka, FakeNetwork, FakePartition
from twisted.trial.unittest import SynchronousTestCase

from tmq.client import producer as producer_module
from tmq.client.cluster import Cluster
from tmq.client.errors import (
    BrokerResponseError,
    ClientClosedError,
    ConnectionFailedError,
    KafkaError,
    UnsupportedVersionError,
)
from tmq.client.partitioner import Partitioner
from tmq.client.producer import BufferFullError, Producer, RecordMetadata
from tmq.protocol.apis import ApiKey
from tmq.protocol.compression import Codec
from tmq.protocol.errors import ErrorCode
from tmq.protocol.records import decode_batch, iter_batches

T0 = 1_700_000_000_000


class ProducerTestCase(SynchronousTestCase):
    """A two-broker fake cluster with topic ``gpu`` (partition 0 led by 1, partition 1 by 2)."""

    def setUp(self):
        self.kafka = FakeKafka(broker_ids=(1, 2))
        self.kafka.clock.advance(T0 / 1000)
        self.network = FakeNetwork(self.kafka)
        self.kafka.create_topic("gpu", partitions=2)
        self.cluster = Cluster(self.kafka.clock, "broker-1:9092", connect=self.network.connect)

    def producer(self, **kwargs) -> Producer:
        kwargs.setdefault("linger_ms", 5)
        return Producer(self.cluster, **kwargs)

    def settle(self, seconds: float = 0.0) -> None:
        self.network.advance(seconds)

    def elapse(self, seconds: float) -> None:
        self.network.elapse(seconds)

    def produce_requests(self, broker_id: int = 1) -> list:
        return self.kafka.brokers[broker_id].requests_of(ApiKey.PRODUCE)

    def batches(self, topic: str = "gpu", partition: int = 0) -> list:
        log = self.kafka.partitions[(topic, partition)].log
        return [decode_batch(log, position) for position, _ in iter_batches(log)]

    def values(self, topic: str = "gpu", partition: int = 0) -> list:
        return [v for _, _, v in self.kafka.partitions[(topic, partition)].records()]


class ProducerBatchingTests(ProducerTestCase):
    """Records are grouped per partition by linger time and batch size."""

    def test_one_record_is_delivered_with_its_offset(self):
        """A record resolves with topic, partition, offset and its CreateTime."""
        producer = self.producer()
        sent = producer.send("gpu", b"v", partition=0, timestamp_ms=T0 - 5)
        self.settle(0.005)
        self.assertEqual(self.successResultOf(sent), RecordMetadata("gpu", 0, 0, T0 - 5))
        self.assertEqual(self.values(), [b"v"])

    def test_records_linger_into_one_batch(self):
        """Records sent within ``linger_ms`` travel in one batch; nothing is sent earlier."""
        producer = self.producer(linger_ms=50)
        first = producer.send("gpu", b"a", partition=0)
        self.settle(0.02)
        second = producer.send("gpu", b"b", partition=0)
        self.settle(0.029)
        self.assertEqual(self.produce_requests(), [])
        self.settle(0.001)
        self.assertEqual(len(self.produce_requests()), 1)
        self.assertEqual([self.successResultOf(d).offset for d in (first, second)], [0, 1])
        ((header, records),) = self.batches()
        self.assertEqual(header.records_count, 2)
        self.assertEqual([r.value for r in records], [b"a", b"b"])

    def test_full_batch_is_sent_without_lingering(self):
        """A batch reaching ``batch_bytes`` goes at once; the next record starts a new batch."""
        producer = self.producer(linger_ms=1000, batch_bytes=250)
        sent = [producer.send("gpu", bytes(60), partition=0) for _ in range(3)]
        self.settle()
        self.assertEqual(len(self.produce_requests()), 1)
        self.assertEqual(self.successResultOf(sent[0]).offset, 0)
        self.assertNoResult(sent[2])
        self.settle(1)
        self.assertEqual([len(records) for _, records in self.batches()], [2, 1])

    def test_oversized_record_is_sent_alone(self):
        """A record larger than ``batch_bytes`` still travels, in a batch of its own."""
        producer = self.producer(linger_ms=1000, batch_bytes=100)
        sent = producer.send("gpu", bytes(500), partition=0)
        self.settle()
        self.assertEqual(self.successResultOf(sent).offset, 0)

    def test_one_request_per_leader_one_batch_per_partition(self):
        """Partitions with the same leader share a request; each leader gets its own."""
        self.kafka.create_topic("shared", partitions=2, leaders=[1, 1])
        producer = self.producer()
        sends = [
            producer.send("shared", b"x", partition=0),
            producer.send("shared", b"y", partition=1),
            producer.send("gpu", b"z", partition=1),
        ]
        self.settle(0.005)
        for d in sends:
            self.successResultOf(d)
        (request,) = self.produce_requests(1)
        ((topic,),) = [request.topic_data]
        self.assertEqual(sorted(p.index for p in topic.partition_data), [0, 1])
        (other,) = self.produce_requests(2)
        self.assertEqual(other.topic_data[0].name, "gpu")

    def test_keys_choose_partitions_with_murmur2(self):
        """A keyed record goes to the murmur2 partition of its key."""
        producer = self.producer()
        keys = [f"GPU-{i}".encode() for i in range(8)]
        sends = [producer.send("gpu", b"v", key=k) for k in keys]
        self.settle(0.005)
        expected = [Partitioner().partition(k, 2) for k in keys]
        self.assertEqual([self.successResultOf(d).partition for d in sends], expected)

    def test_keys_follow_a_new_partition_count(self):
        """Once the topic has more partitions, a key goes to its partition of the new count
        (the partition remembered for a key belongs to the metadata it was computed with)."""
        producer = self.producer()
        keys = [f"GPU-{i}".encode() for i in range(8)]
        before = [producer.send("gpu", b"v", key=k) for k in keys]
        self.settle(0.005)
        old = [Partitioner().partition(k, 2) for k in keys]
        self.assertEqual([self.successResultOf(d).partition for d in before], old)
        for index in (2, 3):
            self.kafka.partitions[("gpu", index)] = FakePartition("gpu", index, 1, [1])
        refreshed = self.cluster.refresh_metadata()
        self.settle()
        self.successResultOf(refreshed)
        after = [producer.send("gpu", b"v", key=k) for k in keys]
        self.settle(0.005)
        new = [Partitioner().partition(k, 4) for k in keys]
        self.assertNotEqual(new, old)
        self.assertEqual([self.successResultOf(d).partition for d in after], new)

    def test_remembered_keys_are_bounded(self):
        """Past ``_MAX_ROUTES`` keys a topic's remembered partitions are forgotten, and keys
        still go to their murmur2 partitions."""
        self.patch(producer_module, "_MAX_ROUTES", 3)
        producer = self.producer()
        keys = [f"GPU-{i}".encode() for i in range(10)] * 2
        sends = [producer.send("gpu", b"v", key=k) for k in keys]
        self.settle(0.005)
        expected = [Partitioner().partition(k, 2) for k in keys]
        self.assertEqual([self.successResultOf(d).partition for d in sends], expected)
        self.assertLessEqual(len(producer._routes["gpu"][1]), 3)

    def test_headers_and_timestamps_round_trip(self):
        """Keys, headers and per-record timestamps arrive as sent."""
        producer = self.producer()
        producer.send("gpu", b"1", key=b"k", partition=0, headers=[("h", b"v")], timestamp_ms=T0)
        producer.send("gpu", None, partition=0, headers=[("n", None)], timestamp_ms=T0 + 7)
        self.settle(0.005)
        ((header, records),) = self.batches()
        self.assertEqual(
            [(r.key, r.value, r.headers) for r in records],
            [(b"k", b"1", (("h", b"v"),)), (None, None, (("n", None),))],
        )
        self.assertEqual([header.base_timestamp + r.timestamp_delta for r in records], [T0, T0 + 7])

    def test_flush_sends_now_and_waits_for_delivery(self):
        """``flush`` ignores the linger and fires once every earlier record is resolved."""
        producer = self.producer(linger_ms=60_000)
        sent = producer.send("gpu", b"a", partition=0)
        flushed = producer.flush()
        self.assertNoResult(flushed)
        self.settle()
        self.assertIsNone(self.successResultOf(flushed))
        self.successResultOf(sent)
        self.assertIsNone(self.successResultOf(producer.flush()))

    def test_close_delivers_then_refuses(self):
        """``close`` delivers what is queued, then ``send`` fails; no timer is left behind."""
        producer = self.producer(linger_ms=60_000)
        sent = producer.send("gpu", b"a", partition=0)
        closed = producer.close()
        self.settle()
        self.successResultOf(closed)
        self.successResultOf(sent)
        self.failureResultOf(producer.send("gpu", b"b"), ClientClosedError)
        self.assertEqual(self.kafka.clock.getDelayedCalls(), [])

    def test_close_timeout_fails_what_is_left(self):
        """With a timeout, records still undelivered when it passes fail ClientClosedError."""
        producer = self.producer()
        self.settle()
        for broker in self.kafka.brokers.values():
            broker.up = False
        sent = producer.send("gpu", b"a")
        closed = producer.close(timeout_ms=2000)
        self.settle(1)
        self.assertNoResult(closed)
        self.settle(1)
        self.successResultOf(closed)
        self.failureResultOf(sent, ClientClosedError)
        self.assertEqual(self.kafka.clock.getDelayedCalls(), [])

    def test_buffer_limit(self):
        """Past ``max_buffered_bytes`` of undelivered records, ``send`` fails at once."""
        producer = self.producer(max_buffered_bytes=100)
        producer.send("gpu", bytes(50), partition=0)
        self.failureResultOf(producer.send("gpu", bytes(50), partition=0), BufferFullError)
        self.settle(0.005)
        self.assertEqual(producer.buffered_bytes, 0)

    def test_buffered_below_waits_for_deliveries(self):
        """``buffered_below`` fires once deliveries bring the buffer down to its limit."""
        producer = self.producer(linger_ms=5)
        self.assertIsNone(self.successResultOf(producer.buffered_below(0)))
        producer.send("gpu", bytes(50), partition=0)
        below = producer.buffered_below(10)
        self.assertNoResult(below)
        self.settle(0.005)
        self.assertIsNone(self.successResultOf(below))

    def test_buffered_below_fails_on_close(self):
        """A producer closing releases back-pressure waiters with ClientClosedError."""
        producer = self.producer()
        self.settle()
        for broker in self.kafka.brokers.values():
            broker.up = False
        sent = producer.send("gpu", bytes(50), partition=0)
        below = producer.buffered_below(0)
        producer.close(timeout_ms=1000)
        self.failureResultOf(below, ClientClosedError)
        self.settle(1)
        self.failureResultOf(sent, ClientClosedError)

    def test_record_over_max_request_bytes_is_refused(self):
        """A record that can never fit a request fails MESSAGE_TOO_LARGE without being sent."""
        producer = self.producer(max_request_bytes=1000)
        failure = self.failureResultOf(producer.send("gpu", bytes(2000)), BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.MESSAGE_TOO_LARGE)

    def test_partition_out_of_range(self):
        """An explicit partition the topic does not have fails the record."""
        producer = self.producer()
        sent = producer.send("gpu", b"a", partition=7)
        self.settle()
        failure = self.failureResultOf(sent, BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)


class ProducerCallbackTests(ProducerTestCase):
    """``produce`` reports outcomes through a callback instead of a Deferred."""

    def test_on_delivery_gets_metadata(self):
        """Each record's callback gets ``(None, metadata)`` in send order."""
        producer = self.producer()
        outcomes = []
        for value in (b"a", b"b"):
            producer.produce(
                "gpu",
                value,
                partition=0,
                timestamp_ms=T0,
                on_delivery=lambda e, m: outcomes.append((e, m)),
            )
        self.assertEqual(outcomes, [])
        self.settle(0.005)
        self.assertEqual(outcomes, [(None, RecordMetadata("gpu", 0, i, T0)) for i in range(2)])

    def test_on_delivery_gets_the_error(self):
        """A record that fails for good calls back with ``(error, None)``."""
        producer = self.producer()
        outcomes = []
        producer.produce("gpu", b"a", partition=7, on_delivery=lambda e, m: outcomes.append((e, m)))
        self.settle()
        ((error, metadata),) = outcomes
        self.assertIsInstance(error, BrokerResponseError)
        self.assertEqual(error.error_code, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        self.assertIsNone(metadata)

    def test_without_callback_flush_still_waits(self):
        """Records produced without a callback are still delivered and awaited by ``flush``."""
        producer = self.producer(linger_ms=60_000)
        producer.produce("gpu", b"a", partition=0)
        flushed = producer.flush()
        self.assertNoResult(flushed)
        self.settle()
        self.successResultOf(flushed)
        self.assertEqual(self.values(), [b"a"])

    def test_outcomes_are_counted(self):
        """``delivered_count``, ``failed_count`` and ``last_error`` count every record."""
        producer = self.producer()
        for value in (b"a", b"b", b"c"):
            producer.produce("gpu", value, partition=0)
        producer.produce("gpu", b"d", partition=9)
        self.settle(0.005)
        self.assertEqual((producer.delivered_count, producer.failed_count), (3, 1))
        self.assertEqual(producer.last_error.error_code, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)

    def test_refusals_raise(self):
        """Closed producers, full buffers, oversized records and non-bytes values raise."""
        producer = self.producer(max_buffered_bytes=100, max_request_bytes=1000)
        self.assertRaises(BrokerResponseError, producer.produce, "gpu", bytes(2000))
        self.assertRaises(TypeError, producer.produce, "gpu", "text")
        producer.produce("gpu", bytes(50), partition=0)
        self.assertRaises(BufferFullError, producer.produce, "gpu", bytes(50), partition=0)
        producer.close()
        self.assertRaises(ClientClosedError, producer.produce, "gpu", b"x")
        self.settle(1)


class ProducerCompressionTests(ProducerTestCase):
    """Batches are compressed with the chosen codec and read back intact."""

    def test_every_codec_round_trips(self):
        """Each codec's batch carries its codec bit and decodes to the records sent."""
        for codec in Codec:
            topic = f"t-{codec.name.lower()}"
            self.kafka.create_topic(topic)
            producer = self.producer(compression=codec, acks=1)
            values = [f"{codec.name}-{i}".encode() * 20 for i in range(5)]
            sends = [producer.send(topic, v) for v in values]
            self.settle(0.005)
            for d in sends:
                self.successResultOf(d)
            ((header, records),) = self.batches(topic)
            self.assertEqual(header.compression, codec)
            self.assertEqual([r.value for r in records], values)

    def test_zstd_needs_produce_v7(self):
        """Against a broker offering Produce v6 at most, zstd batches fail as unsupported."""
        for broker in self.kafka.brokers.values():
            broker.api_versions[ApiKey.PRODUCE] = (0, 6)
        producer = self.producer(compression=Codec.ZSTD, acks=1)
        sent = producer.send("gpu", b"a", partition=0)
        self.settle(0.005)
        self.failureResultOf(sent, UnsupportedVersionError)


class ProducerAcksTests(ProducerTestCase):
    """acks=0 and acks=1 need no producer id; acks=0 gets no response."""

    def test_acks_zero_sends_without_waiting(self):
        """acks=0: the request says so, the broker answers nothing, records resolve with
        offset -1, and no InitProducerId is sent."""
        producer = self.producer(acks=0)
        sent = producer.send("gpu", b"a", partition=0)
        self.settle(0.005)
        self.assertEqual(self.successResultOf(sent).offset, -1)
        (request,) = self.produce_requests()
        self.assertEqual(request.acks, 0)
        self.assertEqual(self.values(), [b"a"])
        self.assertEqual(self.kafka.brokers[1].requests_of(ApiKey.INIT_PRODUCER_ID), [])

    def test_acks_one_is_not_idempotent(self):
        """acks=1: batches carry no producer id or sequence."""
        producer = self.producer(acks=1)
        producer.send("gpu", b"a", partition=0)
        self.settle(0.005)
        ((header, _),) = self.batches()
        self.assertEqual((header.producer_id, header.base_sequence), (-1, -1))
        self.assertEqual(self.produce_requests()[0].acks, 1)

    def test_invalid_settings(self):
        """acks outside -1/0/1, idempotence without acks=-1, or more than 5 in flight with
        idempotence are refused."""
        with self.assertRaises(ValueError):
            self.producer(acks=2)
        with self.assertRaises(ValueError):
            self.producer(acks=1, idempotent=True)
        with self.assertRaises(ValueError):
            self.producer(max_in_flight_per_partition=6)


class ProducerIdempotenceTests(ProducerTestCase):
    """Producer id, per-partition sequences, and retries that keep them."""

    def sequences(self, partition: int = 0) -> list:
        return [
            (h.producer_id, h.base_sequence, h.records_count)
            for h, _ in self.batches("gpu", partition)
        ]

    def test_batches_carry_producer_id_and_sequences(self):
        """InitProducerId comes first; each partition's batches count sequences from 0."""
        producer = self.producer()
        producer.send("gpu", b"a", partition=0)
        producer.send("gpu", b"b", partition=0)
        producer.send("gpu", b"c", partition=1)
        self.settle(0.005)
        producer.send("gpu", b"d", partition=0)
        self.settle(0.005)
        self.assertEqual(producer.producer_id, 4000)
        self.assertEqual(self.sequences(0), [(4000, 0, 2), (4000, 2, 1)])
        self.assertEqual(self.sequences(1), [(4000, 0, 1)])
        self.assertEqual(len(self.kafka.brokers[1].requests_of(ApiKey.INIT_PRODUCER_ID)), 1)

    def test_in_flight_batches_per_partition_are_bounded(self):
        """No more than ``max_in_flight_per_partition`` batches are unanswered at once."""
        self.kafka.brokers[1].mute(ApiKey.PRODUCE)
        producer = self.producer(linger_ms=0, batch_bytes=1, max_in_flight_per_partition=2)
        for i in range(5):
            producer.send("gpu", bytes([i]), partition=0)
        self.settle()
        self.assertEqual(len(self.produce_requests()), 2)

    def test_not_leader_refreshes_metadata_and_retries_on_the_new_leader(self):
        """NOT_LEADER_OR_FOLLOWER: metadata is refreshed and the batch goes, with the same
        sequence, to the new leader."""
        producer = self.producer()
        producer.send("gpu", b"a", partition=0)
        self.settle(0.005)
        self.kafka.brokers[1].fail_next(ApiKey.PRODUCE, ErrorCode.NOT_LEADER_OR_FOLLOWER)
        self.kafka.move_leader("gpu", 0, 2)
        sent = producer.send("gpu", b"b", partition=0)
        self.elapse(0.2)
        self.assertEqual(self.successResultOf(sent).offset, 1)
        _, refused = self.produce_requests(1)
        (retry,) = self.produce_requests(2)
        self.assertEqual(
            refused.topic_data[0].partition_data[0].records,
            retry.topic_data[0].partition_data[0].records,
        )
        self.assertEqual(self.sequences(), [(4000, 0, 1), (4000, 1, 1)])
        self.assertEqual(self.cluster.leader_for("gpu", 0), 2)

    def test_lost_response_retry_is_deduplicated(self):
        """A batch written but whose answer never came is retried with the same sequence; the
        broker recognises it and answers its original offset: one copy in the log."""
        self.cluster = Cluster(
            self.kafka.clock, "broker-1:9092", connect=self.network.connect, request_timeout_ms=1000
        )
        producer = self.producer(ack_timeout_ms=1000)
        self.settle()
        self.kafka.brokers[1].swallow_next(ApiKey.PRODUCE)
        sent = producer.send("gpu", b"once", partition=0)
        self.settle(0.005)
        self.settle(2)
        self.settle(0.1)
        self.assertEqual(self.successResultOf(sent).offset, 0)
        self.assertEqual(len(self.produce_requests()), 2)
        self.assertEqual(self.values(), [b"once"])

    def test_out_of_order_behind_a_failed_batch_is_retried_in_order(self):
        """When the first of several in-flight batches fails retriably, the broker answers the
        next ones OUT_OF_ORDER_SEQUENCE_NUMBER; all are sent again in sequence order and the
        log holds each record once, in order."""
        producer = self.producer(linger_ms=0, batch_bytes=1)
        self.settle()
        self.kafka.brokers[1].fail_next(ApiKey.PRODUCE, ErrorCode.NOT_ENOUGH_REPLICAS)
        sends = [producer.send("gpu", bytes([i]), partition=0) for i in range(3)]
        self.settle()
        self.assertEqual(self.values(), [])
        self.settle(0.1)
        self.assertEqual([self.successResultOf(d).offset for d in sends], [0, 1, 2])
        self.assertEqual(len(self.produce_requests()), 6)
        self.assertEqual(self.values(), [b"\x00", b"\x01", b"\x02"])
        self.assertEqual(self.sequences(), [(4000, 0, 1), (4000, 1, 1), (4000, 2, 1)])

    def test_out_of_order_for_the_expected_batch_takes_a_new_producer_id(self):
        """OUT_OF_ORDER_SEQUENCE_NUMBER for the batch the broker should expect fails it; the
        producer gets a new producer id and goes on from sequence 0."""
        producer = self.producer()
        self.settle()
        self.kafka.brokers[1].fail_next(ApiKey.PRODUCE, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
        lost = producer.send("gpu", b"lost", partition=0)
        self.settle(0.005)
        failure = self.failureResultOf(lost, BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
        later = producer.send("gpu", b"later", partition=0)
        self.settle(0.005)
        self.assertEqual(self.successResultOf(later).offset, 0)
        self.assertEqual(self.sequences(), [(4001, 0, 1)])

    def test_batches_behind_a_refused_one_are_stamped_again(self):
        """A batch refused for good (MESSAGE_TOO_LARGE) leaves no sequence gap: the batches
        in flight behind it come back out of order and are re-sent from its sequence."""
        producer = self.producer(linger_ms=0, batch_bytes=1)
        self.settle()
        self.kafka.brokers[1].fail_next(ApiKey.PRODUCE, ErrorCode.MESSAGE_TOO_LARGE)
        refused = producer.send("gpu", b"big", partition=0)
        behind = [producer.send("gpu", bytes([i]), partition=0) for i in range(2)]
        self.settle()
        self.settle(0.1)
        self.failureResultOf(refused, BrokerResponseError)
        self.assertEqual([self.successResultOf(d).offset for d in behind], [0, 1])
        self.assertEqual(len(self.produce_requests()), 5)
        self.assertEqual(self.sequences(), [(4000, 0, 1), (4000, 1, 1)])

    def test_unknown_producer_id_takes_a_new_one(self):
        """UNKNOWN_PRODUCER_ID fails the batch and a new producer id is used afterwards."""
        producer = self.producer()
        self.settle()
        self.kafka.brokers[1].fail_next(ApiKey.PRODUCE, ErrorCode.UNKNOWN_PRODUCER_ID)
        first = producer.send("gpu", b"a", partition=0)
        self.settle(0.005)
        self.failureResultOf(first, BrokerResponseError)
        second = producer.send("gpu", b"b", partition=0)
        self.settle(0.005)
        self.successResultOf(second)
        self.assertEqual(producer.producer_id, 4001)

    def test_init_producer_id_is_retried(self):
        """A retriable InitProducerId error is retried after a backoff."""
        self.kafka.brokers[1].fail_next(
            ApiKey.INIT_PRODUCER_ID, ErrorCode.COORDINATOR_NOT_AVAILABLE
        )
        producer = self.producer()
        sent = producer.send("gpu", b"a", partition=0)
        self.settle(0.005)
        self.assertNoResult(sent)
        self.settle(0.1)
        self.successResultOf(sent)

    def test_broker_without_init_producer_id_is_fatal(self):
        """Idempotence against a broker lacking InitProducerId fails every record, and later
        sends, with an error saying why."""
        for broker in self.kafka.brokers.values():
            del broker.api_versions[ApiKey.INIT_PRODUCER_ID]
        producer = self.producer()
        sent = producer.send("gpu", b"a", partition=0)
        self.settle(0.005)
        failure = self.failureResultOf(sent, KafkaError)
        self.assertIn("producer id", str(failure.value))
        self.failureResultOf(producer.send("gpu", b"b"), KafkaError)


class ProducerDeliveryTimeoutTests(ProducerTestCase):
    """Retries stop at the delivery timeout."""

    def test_unknown_topic_is_retried_until_the_timeout(self):
        """Records for a topic that does not exist wait for it, then fail
        UNKNOWN_TOPIC_OR_PARTITION at the delivery timeout."""
        producer = self.producer(delivery_timeout_ms=3000)
        sent = producer.send("missing", b"a")
        for _ in range(29):
            self.settle(0.1)
        self.assertNoResult(sent)
        self.settle(0.2)
        failure = self.failureResultOf(sent, BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)

    def test_topic_created_while_waiting(self):
        """A record for a topic created while it waits is delivered."""
        producer = self.producer()
        sent = producer.send("late", b"a")
        self.settle(0.005)
        self.kafka.create_topic("late")
        self.elapse(1)
        self.assertEqual(self.successResultOf(sent).topic, "late")

    def test_leader_election_is_waited_out_without_spinning(self):
        """While a partition has no leader, metadata is asked again only after a backoff; the
        record goes out once a leader is elected."""
        producer = self.producer(retry_backoff_ms=100)
        self.settle()
        self.kafka.move_leader("gpu", 0, -1)
        self.cluster.request_update()
        sent = producer.send("gpu", b"a", partition=0)
        self.elapse(1)
        self.assertNoResult(sent)
        asked = len(self.kafka.brokers[1].requests_of(ApiKey.METADATA))
        self.assertLessEqual(asked, 12)
        self.kafka.move_leader("gpu", 0, 2)
        self.elapse(0.2)
        self.assertEqual(self.successResultOf(sent).offset, 0)

    def test_unreachable_leader_fails_at_the_timeout(self):
        """With the leader unreachable, a record is retried and fails once its delivery
        timeout has passed, not before."""
        producer = self.producer(delivery_timeout_ms=2000, acks=1)
        self.settle()
        self.kafka.brokers[1].up = False
        self.kafka.brokers[1].drop_connections()
        sent = producer.send("gpu", b"a", partition=0)
        for _ in range(19):
            self.settle(0.1)
        self.assertNoResult(sent)
        for _ in range(3):
            self.settle(0.1)
        failure = self.failureResultOf(sent, KafkaError)
        self.assertIsInstance(failure.value, (ConnectionFailedError, BrokerResponseError))
