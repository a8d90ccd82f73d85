"""``tmq.telemetry.publisher`` on the bundled producer against the fake cluster: keys,
values, timestamps, rejects, pacing and delivery counts."""

from __future__ import annotations

from fake_kafka import FakeKafka, FakeNetwork
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from tmq.client.cluster import Cluster
from tmq.client.producer import Producer
from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode
from tmq.telemetry import publisher as publisher_module
from tmq.telemetry.codec import decode_sample
from tmq.telemetry.model import RowError, Sample
from tmq.telemetry.publisher import Publisher

T0 = 1_700_000_000.0


def sample(uuid: str = "GPU-a", metric: str = "DCGM_FI_DEV_GPU_UTIL", time_us: int = 1) -> Sample:
    return Sample(
        time_us, metric, 0, "nvidia0", uuid, "H100", "host-1", "", "", "", 42.0,
        {"DCGM_FI_DRIVER_VERSION": "535"},
    )  # fmt: skip


class PublisherTests(SynchronousTestCase):
    def setUp(self):
        self.kafka = FakeKafka(broker_ids=(1,))
        self.kafka.clock.advance(T0)
        self.network = FakeNetwork(self.kafka)
        self.kafka.create_topic("gpu", partitions=1)
        cluster = Cluster(self.kafka.clock, "broker-1:9092", connect=self.network.connect)
        self.producer = Producer(cluster, acks=1, linger_ms=5)
        self.rejected: list[RowError] = []

    def publisher(self, **kwargs) -> Publisher:
        return Publisher(
            self.kafka.clock, self.producer, "gpu", on_reject=self.rejected.append, **kwargs
        )

    def drive(self, coroutine, seconds: float = 0.01):
        done = ensureDeferred(coroutine)
        self.network.elapse(seconds)
        return self.successResultOf(done)

    def stored(self) -> list[tuple[bytes, Sample]]:
        return [(k, decode_sample(v)) for _, k, v in self.kafka.partitions[("gpu", 0)].records()]

    def test_source_times_keys_and_values(self):
        publisher = self.publisher(timestamps="source")
        samples = [sample(time_us=5_000_000), sample("GPU-b", time_us=6_000_000)]
        self.drive(publisher.publish(samples))
        stats = self.drive(publisher.finish())
        self.assertEqual(self.stored(), [(s.uuid.encode(), s) for s in samples])
        self.assertEqual((stats.read, stats.sent, stats.delivered, stats.failed), (2, 2, 2, 0))

    def test_now_stamps_and_keeps_each_series_times_distinct(self):
        publisher = self.publisher(timestamps="now")
        samples = [sample(), sample(), sample(metric="DCGM_FI_DEV_FB_USED")]
        self.drive(publisher.publish(samples))
        self.drive(publisher.finish())
        now_us = int(T0 * 1_000_000)
        times = [s.time_us for _, s in self.stored()]
        self.assertEqual(times, [now_us, now_us + 1, now_us])
        others = [s._replace(time_us=0) for _, s in self.stored()]
        self.assertEqual(others, [s._replace(time_us=0) for s in samples])

    def test_series_stamps_stay_bounded_and_distinct(self):
        """Past the bound, stamps from before now are forgotten (they cannot meet a new one),
        those of the current instant are kept, so a series still never repeats a time."""
        self.patch(publisher_module, "_KEYS_MAX", 2)
        publisher = self.publisher(timestamps="now")

        def publish(*uuids):  # no rate, a large window: done at once, the clock standing
            self.successResultOf(ensureDeferred(publisher.publish([sample(u) for u in uuids])))

        now_us = int(T0 * 1_000_000)
        publish("GPU-a", "GPU-b", "GPU-c")
        publish("GPU-a")  # over the bound, but every stamp is of this instant: all kept
        self.assertEqual(len(publisher._last_stamp), 3)
        self.kafka.clock.advance(1)
        publish("GPU-a", "GPU-a")  # the stamps of the instant before are forgotten
        self.assertEqual(len(publisher._last_stamp), 1)
        self.drive(publisher.finish())
        later_us = now_us + 1_000_000
        self.assertEqual([(k, s.time_us) for k, s in self.stored()], [
            (b"GPU-a", now_us), (b"GPU-b", now_us), (b"GPU-c", now_us),
            (b"GPU-a", now_us + 1), (b"GPU-a", later_us), (b"GPU-a", later_us + 1),
        ])  # fmt: skip

    def test_rejects_are_counted_and_handed_over(self):
        publisher = self.publisher()
        bad = RowError(3, "bad value 'x'", "raw")
        self.drive(publisher.publish([sample(), bad]))
        stats = self.drive(publisher.finish())
        self.assertEqual(self.rejected, [bad])
        self.assertEqual((stats.read, stats.sent, stats.rejected), (2, 1, 1))

    def test_rate_paces_the_chunks(self):
        publisher = self.publisher(rate=100)
        first = ensureDeferred(publisher.publish([sample(time_us=i) for i in range(50)]))
        self.network.elapse(0.49)
        self.assertNoResult(first)
        self.network.elapse(0.02)
        self.successResultOf(first)

    def test_delivery_failures_are_counted_with_the_first_error(self):
        publisher = self.publisher()
        self.kafka.brokers[1].fail_next(ApiKey.PRODUCE, ErrorCode.INVALID_RECORD)
        self.drive(publisher.publish([sample()]))
        stats = self.drive(publisher.finish())
        self.assertEqual((stats.delivered, stats.failed), (0, 1))
        self.assertIn("INVALID_RECORD", stats.first_error)

    def test_bad_settings_are_refused(self):
        with self.assertRaises(ValueError):
            self.publisher(timestamps="later")
        with self.assertRaises(ValueError):
            self.publisher(rate=0)
