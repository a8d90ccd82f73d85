"""The broker's Prometheus metrics (``tmq.broker.metrics``) on the in-memory cluster: each
contract family moves when what it counts happens."""

from __future__ import annotations

import pytest
from memory_cluster import LAG_MS, fired, outcome
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

from tmq.broker import data_apis
from tmq.broker.handlers import build_dispatcher
from tmq.broker.metrics import BrokerMetrics, MeteredDispatcher
from tmq.broker.replica_fetcher import RETRY_S
from tmq.broker.server import BrokerFactory
from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode
from tmq.protocol.framing import encode_frame
from tmq.protocol.headers import RequestHeader, encode_request_header
from tmq.protocol.messages.produce import encode_produce_request
from tmq.protocol.records import Record, build_batch
from tmq.storage.flusher import Flusher


def value(metrics: BrokerMetrics, name: str, **labels) -> float:
    """A sample of ``metrics``' registry (0 when the series does not exist)."""
    return metrics.registry.get_sample_value(name, labels) or 0.0


def produce_frame(topic: str, values: list[bytes], correlation_id: int = 1) -> bytes:
    batch = build_batch([Record(i, 0, None, v) for i, v in enumerate(values)], base_timestamp=0)
    request = {
        "transactional_id": None,
        "acks": 1,
        "timeout_ms": 1000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    }
    header = encode_request_header(ApiKey.PRODUCE, 7, correlation_id, "test")
    return b"".join(encode_frame(header, *encode_produce_request(request, 7)))


def fetch_request(topic: str, offset: int = 0) -> dict:
    partition = {
        "partition": 0,
        "current_leader_epoch": -1,
        "fetch_offset": offset,
        "partition_max_bytes": 1 << 20,
    }
    return {
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 0,
        "max_bytes": 1 << 20,
        "topics": [{"topic": topic, "partitions": [partition]}],
    }


@pytest.fixture
def leader(cluster):
    """The leader of topic ``t`` (one partition, three replicas)."""
    cluster.create_topic("t")
    return cluster.leader("t")


class RequestMetricsTests:
    def test_a_produce_request_is_counted_timed_and_its_bytes_too(self, cluster, leader):
        """A Produce frame through a metered dispatcher counts requests_total{api=Produce},
        one duration observation, the batch's bytes and records in per topic."""
        metrics = leader.broker.metrics
        factory = BrokerFactory(
            MeteredDispatcher(build_dispatcher(leader.broker), metrics, cluster.clock.seconds),
            max_frame_bytes=1 << 20,
            max_in_flight=10,
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        frame = produce_frame("t", [b"one", b"two"])
        protocol.dataReceived(frame)
        cluster.settle()
        assert transport.value(), "the produce was answered"
        assert value(metrics, "tmq_broker_requests_total", api="Produce") == 1
        assert value(metrics, "tmq_broker_request_duration_seconds_count", api="Produce") == 1
        assert value(metrics, "tmq_broker_messages_in_total", topic="t") == 2
        assert 0 < value(metrics, "tmq_broker_bytes_in_total", topic="t") < len(frame)

    def test_a_delayed_response_is_timed_when_it_is_ready(self, cluster):
        """A response that comes later (a Deferred) is observed once it fires, with the
        time that passed."""
        metrics = BrokerMetrics()
        held = []

        class Holding:
            def dispatch(self, header, body):
                held.append(Deferred())
                return held[0]

        metered = MeteredDispatcher(Holding(), metrics, cluster.clock.seconds)
        response = metered.dispatch(RequestHeader(ApiKey.FETCH, 11, 1, "t", {}), memoryview(b""))
        assert value(metrics, "tmq_broker_requests_total", api="Fetch") == 1
        assert value(metrics, "tmq_broker_request_duration_seconds_count", api="Fetch") == 0
        cluster.clock.advance(0.3)
        held[0].callback([b"answer"])
        assert fired(response) == [b"answer"]
        assert value(metrics, "tmq_broker_request_duration_seconds_sum", api="Fetch") == (
            pytest.approx(0.3)
        )

    def test_fetch_counts_the_record_bytes_it_serves(self, cluster, leader):
        """A Fetch answering records adds their size to bytes_out_total{topic}."""
        outcome(cluster.produce(leader, "t", [b"a" * 100], acks=1))
        cluster.settle()
        response = data_apis.fetch(
            leader.broker, RequestHeader(ApiKey.FETCH, 11, 1, "t", {}), fetch_request("t")
        )
        served = len(response["responses"][0]["partitions"][0]["records"])
        assert served > 100
        assert value(leader.broker.metrics, "tmq_broker_bytes_out_total", topic="t") == served

    def test_a_refused_batch_adds_no_bytes(self, cluster, leader):
        """Only appended batches count: a refused one adds no bytes in."""
        leader.broker.partitions["t", 0].lease_valid = lambda: False
        refused = outcome(cluster.produce(leader, "t", [b"x"], acks=1))
        assert refused["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert value(leader.broker.metrics, "tmq_broker_bytes_in_total", topic="t") == 0

    def test_a_deleted_topic_loses_its_series(self, cluster, leader):
        """Deleting a topic drops its per-topic series."""
        outcome(cluster.produce(leader, "t", [b"x"], acks=1))
        assert value(leader.broker.metrics, "tmq_broker_bytes_in_total", topic="t") > 0
        fired(cluster.controller().broker.delete_topic("t"))
        cluster.settle()
        series = leader.broker.metrics.registry.get_sample_value(
            "tmq_broker_bytes_in_total", {"topic": "t"}
        )
        assert series is None


class StateGaugeTests:
    def test_leaders_under_replication_and_hw_lag(self, cluster, leader):
        """With both followers cut off, the leader's gauges show one led partition, under
        replicated once the ISR shrinks, and the records above the high watermark."""
        metrics = leader.broker.metrics
        metrics.watch(leader.broker, lambda: 0)
        assert value(metrics, "tmq_broker_leader_partitions") == 1
        assert value(metrics, "tmq_broker_under_replicated_partitions") == 0
        others = tuple(n.broker_id for n in cluster.nodes.values() if n is not leader)
        cluster.produce(leader, "t", [b"a", b"b"], acks=1)
        cluster.settle(cut=others)
        assert value(metrics, "tmq_broker_high_watermark_lag_messages") == 2
        cluster.wait(LAG_MS / 1000 + 3, cut=others)
        assert value(metrics, "tmq_broker_under_replicated_partitions") == 1
        assert value(metrics, "tmq_broker_high_watermark_lag_messages") == 0

    def test_gauges_are_zero_before_watch(self):
        """A registry scraped before the broker exists shows every gauge at 0."""
        metrics = BrokerMetrics()
        for name in (
            "tmq_broker_leader_partitions",
            "tmq_broker_under_replicated_partitions",
            "tmq_broker_high_watermark_lag_messages",
            "tmq_broker_connections",
        ):
            assert metrics.registry.get_sample_value(name) == 0

    def test_connections_are_read_when_scraped(self, leader):
        """tmq_broker_connections is whatever the connection count says at scrape time."""
        count = [3]
        leader.broker.metrics.watch(leader.broker, lambda: count[0])
        assert value(leader.broker.metrics, "tmq_broker_connections") == 3
        count[0] = 1
        assert value(leader.broker.metrics, "tmq_broker_connections") == 1


class IsrMetricsTests:
    def test_a_shrink_and_the_expansion_back_are_counted(self, cluster, leader):
        """A follower cut off beyond replica.lag.time.max.ms shrinks the ISR (one shrink);
        reconnected and caught up, it comes back (one expansion)."""
        metrics = leader.broker.metrics
        slow = next(n for n in cluster.nodes.values() if n is not leader)
        cluster.produce(leader, "t", [b"a"])
        assert value(metrics, "tmq_broker_isr_shrinks_total") == 0
        cluster.wait(LAG_MS / 1000 + 3, cut=(slow.broker_id,))
        assert value(metrics, "tmq_broker_isr_shrinks_total") == 1
        assert value(metrics, "tmq_broker_isr_expands_total") == 0
        cluster.settle()
        cluster.wait(RETRY_S * 2)
        assert slow.broker_id in leader.broker.partitions["t", 0].isr
        assert value(metrics, "tmq_broker_isr_expands_total") == 1


class FsyncMetricsTests:
    def test_each_flush_of_the_flusher_is_observed(self, cluster, leader):
        """The flusher reports each log flush's duration to the callback the broker service
        gives it (BrokerMetrics.fsynced)."""
        metrics = BrokerMetrics()
        ticks = iter([10.0, 10.004])
        flusher = Flusher("d", monotonic=lambda: next(ticks), on_flush=metrics.fsynced)
        flusher.run_round([leader.broker.partitions["t", 0].log])
        assert value(metrics, "tmq_broker_fsync_duration_seconds_count") == 1
        assert value(metrics, "tmq_broker_fsync_duration_seconds_bucket", le="0.005") == 1
        assert value(metrics, "tmq_broker_fsync_duration_seconds_bucket", le="0.0025") == 0
