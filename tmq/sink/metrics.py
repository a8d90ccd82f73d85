"""The sink's Prometheus metrics (their names are fixed by the operations contract).

Read from the service when scraped: ``tmq_sink_records_consumed_total`` (records whose batch
was written), ``tmq_sink_rows_written_total`` (telemetry rows inserted),
``tmq_sink_dead_letters_total`` (from ``SinkStats``), ``tmq_sink_partitions_owned`` and
``tmq_sink_consumer_lag_messages{partition}`` (high watermark minus the next offset to
write, for each owned partition fetched at least once). Observed as it happens:
``tmq_sink_batch_duration_seconds``, one write transaction each.
"""

from __future__ import annotations

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tmq.ops.metrics import new_registry

__all__ = ["SinkMetrics"]

_BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class SinkMetrics(Collector):
    """The metrics of ``service`` (a ``SinkService``: ``stats``, ``owned``, ``lags()``), on
    a registry of their own (``registry``, with the process metrics)."""

    def __init__(self, service):
        self._service = service
        self.registry = new_registry()
        self.batch_duration = Histogram(
            "tmq_sink_batch_duration_seconds",
            "Time of one write transaction (a batch of every owned partition).",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)

    def collect(self):
        stats = self._service.stats
        yield CounterMetricFamily(
            "tmq_sink_records_consumed", "Records consumed and written.", value=stats.records
        )
        yield CounterMetricFamily(
            "tmq_sink_rows_written", "Telemetry rows inserted.", value=stats.inserted
        )
        yield CounterMetricFamily(
            "tmq_sink_dead_letters", "Records written as dead letters.", value=stats.dead_letters
        )
        yield GaugeMetricFamily(
            "tmq_sink_partitions_owned",
            "Partitions this instance owns.",
            value=len(self._service.owned),
        )
        lag = GaugeMetricFamily(
            "tmq_sink_consumer_lag_messages",
            "High watermark minus the next offset to write, per owned partition.",
            labels=["partition"],
        )
        for partition, behind in sorted(self._service.lags().items()):
            lag.add_metric([str(partition)], behind)
        yield lag
