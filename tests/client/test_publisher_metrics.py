"""The producer's metrics (``tmq.telemetry.metrics``) over a ``Publisher`` on the fake
cluster: the contract's counters move with what is sent, rejected and lost; readiness is
being connected to a broker."""

from __future__ import annotations

from fake_kafka import FakeKafka, FakeNetwork
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from tmq.client.cluster import Cluster
from tmq.client.producer import Producer
from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode
from tmq.telemetry.metrics import PublisherMetrics, cluster_readiness
from tmq.telemetry.model import RowError, Sample
from tmq.telemetry.publisher import Publisher


def sample(time_us: int) -> Sample:
    return Sample(
        time_us, "DCGM_FI_DEV_GPU_UTIL", 0, "nvidia0", "GPU-a", "H100", "host-1", "", "", "",
        42.0, {},
    )  # fmt: skip


class PublisherMetricsTests(SynchronousTestCase):
    def setUp(self):
        self.kafka = FakeKafka(broker_ids=(1,))
        self.kafka.clock.advance(1_700_000_000)
        self.network = FakeNetwork(self.kafka)
        self.kafka.create_topic("gpu", partitions=1)
        self.cluster = Cluster(self.kafka.clock, "broker-1:9092", connect=self.network.connect)
        producer = Producer(self.cluster, acks=1, linger_ms=5)
        self.publisher = Publisher(self.kafka.clock, producer, "gpu", timestamps="source")
        self.metrics = PublisherMetrics(self.publisher)

    def value(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(name)

    def publish(self, items) -> None:
        done = ensureDeferred(self.publisher.publish(items))
        self.network.elapse(0.01)
        self.successResultOf(done)
        self.network.elapse(0.01)

    def test_sent_and_rejected_count_when_scraped(self):
        """Acknowledged samples count as records_sent, bad rows as rows_rejected, read
        from the publisher at scrape time."""
        self.assertEqual(self.value("tmq_producer_records_sent_total"), 0)
        self.publish([sample(1), RowError(2, "bad value", "raw"), sample(3)])
        self.assertEqual(self.value("tmq_producer_records_sent_total"), 2)
        self.assertEqual(self.value("tmq_producer_rows_rejected_total"), 1)
        self.assertEqual(self.value("tmq_producer_send_errors_total"), 0)

    def test_lost_samples_are_send_errors(self):
        """A sample the producer gives up on counts as a send error, not as sent."""
        self.kafka.brokers[1].fail_next(ApiKey.PRODUCE, ErrorCode.INVALID_RECORD)
        self.publish([sample(1)])
        self.assertEqual(self.value("tmq_producer_send_errors_total"), 1)
        self.assertEqual(self.value("tmq_producer_records_sent_total"), 0)

    def test_the_registry_has_the_process_metrics(self):
        """The producer's registry carries the process metrics too."""
        self.assertIsNotNone(self.value("process_cpu_seconds_total"))

    def test_ready_once_connected_to_a_broker(self):
        """Not ready before any broker connection; ready once one is open; not ready again
        when the broker drops it."""
        self.assertEqual(cluster_readiness(self.cluster), (False, "not connected to any broker"))
        self.publish([sample(1)])
        self.assertEqual(cluster_readiness(self.cluster), (True, "connected to a broker"))
        self.kafka.brokers[1].drop_connections()
        self.network.elapse(0.01)
        self.assertFalse(cluster_readiness(self.cluster)[0])
