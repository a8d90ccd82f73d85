"""The sink's operations side: ``SinkMetrics`` (the contract's metric families, read from
the service when scraped) and ``SinkService.readiness``; no database, no broker (a Clock and
fakes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from tmq.client import Cluster
from tmq.sink.metrics import SinkMetrics
from tmq.sink.service import SinkService, SinkStats


@dataclass
class StubService:
    """What SinkMetrics reads of a SinkService."""

    stats: SinkStats = field(default_factory=SinkStats)
    owned: list[int] = field(default_factory=list)
    partition_lags: dict[int, int] = field(default_factory=dict)

    def lags(self) -> dict[int, int]:
        return self.partition_lags


def value(metrics: SinkMetrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


class SinkMetricsTests:
    def test_counters_follow_the_stats(self):
        """records_consumed, rows_written and dead_letters are the stats' totals."""
        service = StubService()
        metrics = SinkMetrics(service)
        assert value(metrics, "tmq_sink_records_consumed_total") == 0
        service.stats.records, service.stats.inserted, service.stats.dead_letters = 10, 9, 1
        assert value(metrics, "tmq_sink_records_consumed_total") == 10
        assert value(metrics, "tmq_sink_rows_written_total") == 9
        assert value(metrics, "tmq_sink_dead_letters_total") == 1

    def test_ownership_and_lag_per_partition(self):
        """partitions_owned counts the owned partitions; consumer_lag_messages has one
        series per partition whose lag is known."""
        service = StubService(owned=[0, 2, 3], partition_lags={0: 5, 2: 0})
        metrics = SinkMetrics(service)
        assert value(metrics, "tmq_sink_partitions_owned") == 3
        assert value(metrics, "tmq_sink_consumer_lag_messages", partition="0") == 5
        assert value(metrics, "tmq_sink_consumer_lag_messages", partition="2") == 0
        assert value(metrics, "tmq_sink_consumer_lag_messages", partition="3") is None

    def test_batch_durations_and_process_metrics(self):
        """Each write transaction is one batch_duration observation; the registry also
        carries the process metrics."""
        metrics = SinkMetrics(StubService())
        metrics.batch_duration.observe(0.2)
        assert value(metrics, "tmq_sink_batch_duration_seconds_count") == 1
        assert value(metrics, "tmq_sink_batch_duration_seconds_bucket", le="0.25") == 1
        assert value(metrics, "process_cpu_seconds_total") is not None


class FakeWriter:
    def __init__(self, started: Deferred):
        self.started = started

    def start(self) -> Deferred:
        return self.started


class FakeMembership:
    group = "g"
    topic = "gpu"
    instance_id = "sink-1"

    def __init__(self, heartbeat):
        self._heartbeat = heartbeat

    def heartbeat(self) -> Deferred:
        return self._heartbeat()


def sink(writer_started: Deferred, heartbeat) -> SinkService:
    clock = Clock()
    cluster = Cluster(clock, "127.0.0.1:9092", connect=lambda host, port, protocol: Deferred())
    return SinkService(clock, cluster, FakeWriter(writer_started), FakeMembership(heartbeat))


class SinkReadinessTests:
    def test_ready_once_the_database_answers_and_the_loop_runs(self):
        """Not ready before start, nor while the writer connects; ready once connected and
        heartbeating, consuming (even owning no partition yet)."""
        connected = Deferred()
        service = sink(connected, lambda: succeed(1))
        assert service.readiness() == (False, "not running")
        service.startService()
        assert service.readiness() == (False, "database: not connected yet")
        connected.callback(None)
        assert service.readiness() == (True, "consuming 0 partitions of gpu")

    def test_a_failed_heartbeat_is_not_ready(self):
        """A heartbeat that cannot reach the database makes the sink not ready, with the
        error as the reason."""
        service = sink(succeed(None), lambda: fail(OSError("connection refused")))
        service.startService()
        assert service.readiness() == (False, "database: connection refused")

    def test_the_service_has_its_own_registry(self):
        """Each SinkService instance has a registry of its own with the contract families."""
        first, second = sink(Deferred(), lambda: succeed(1)), sink(Deferred(), lambda: succeed(1))
        assert first.metrics.registry is not second.metrics.registry
        names = {family.name for family in first.metrics.registry.collect()}
        assert {
            "tmq_sink_records_consumed",
            "tmq_sink_rows_written",
            "tmq_sink_dead_letters",
            "tmq_sink_batch_duration_seconds",
            "tmq_sink_consumer_lag_messages",
            "tmq_sink_partitions_owned",
        } <= names
