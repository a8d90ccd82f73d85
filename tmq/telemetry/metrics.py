"""The producer's Prometheus metrics (their names are fixed by the operations contract), read
from a ``Publisher``'s counts when scraped: ``tmq_producer_records_sent_total`` (samples the
broker acknowledged), ``tmq_producer_rows_rejected_total`` (bad rows skipped) and
``tmq_producer_send_errors_total`` (samples the producer gave up on). ``cluster_readiness``
is the producer's readiness: connected to a broker."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from tmq.client import Cluster
from tmq.ops.metrics import new_registry

from .publisher import Publisher

__all__ = ["PublisherMetrics", "cluster_readiness"]


def cluster_readiness(cluster: Cluster) -> tuple[bool, str]:
    """Ready while a connection to some broker is open."""
    if cluster.connected:
        return True, "connected to a broker"
    return False, "not connected to any broker"


class PublisherMetrics(Collector):
    """The metrics of ``publisher``, on a registry of their own (``registry``, with the
    process metrics). Scrapes run on the reactor thread, as the publisher does."""

    def __init__(self, publisher: Publisher):
        self._publisher = publisher
        self.registry = new_registry()
        self.registry.register(self)

    def collect(self):
        stats = self._publisher.update()
        yield CounterMetricFamily(
            "tmq_producer_records_sent",
            "Samples produced and acknowledged by the broker.",
            value=stats.delivered,
        )
        yield CounterMetricFamily(
            "tmq_producer_rows_rejected", "Bad source rows skipped.", value=stats.rejected
        )
        yield CounterMetricFamily(
            "tmq_producer_send_errors",
            "Samples the producer gave up delivering.",
            value=stats.failed,
        )
