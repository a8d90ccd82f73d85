"""The broker's Prometheus metrics (their names are fixed by the operations contract).

Counted as things happen, at a cost of a dict lookup and an increment (never per record):

* ``tmq_broker_requests_total{api}`` and ``tmq_broker_request_duration_seconds{api}``: every
  request ``MeteredDispatcher`` passes on, counted when it arrives and timed until its
  response is ready (a delayed Produce or Fetch included);
* ``tmq_broker_bytes_in_total{topic}``, ``tmq_broker_messages_in_total{topic}``: batches a
  Produce appended (``appended``); ``tmq_broker_bytes_out_total{topic}``: record bytes a Fetch
  answered with (``fetched``);
* ``tmq_broker_isr_shrinks_total``, ``tmq_broker_isr_expands_total``: ISR changes the store
  accepted;
* ``tmq_broker_fsync_duration_seconds``: each log flush of the flusher threads (``fsynced``,
  thread-safe).

Read from the broker when scraped (``watch``): ``tmq_broker_leader_partitions``,
``tmq_broker_under_replicated_partitions`` (led partitions whose ISR is smaller than their
replica set), ``tmq_broker_high_watermark_lag_messages`` (the sum over led partitions of
log end offset minus high watermark) and ``tmq_broker_connections`` (open client
connections). They are 0 until ``watch`` is called.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.internet import defer

from tmq.ops.metrics import new_registry
from tmq.protocol.apis import API_BY_KEY

__all__ = ["BrokerMetrics", "MeteredDispatcher"]

_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class BrokerMetrics:
    """The metrics of one broker, on ``registry`` (a new one, with the process metrics, by
    default)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry = registry if registry is not None else new_registry()
        self._requests = Counter(
            "tmq_broker_requests", "Requests received, per Kafka API.", ["api"], registry=registry
        )
        self._durations = Histogram(
            "tmq_broker_request_duration_seconds",
            "Time from a request's arrival to its response being ready, per Kafka API.",
            ["api"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self._bytes_in = Counter(
            "tmq_broker_bytes_in",
            "Record batch bytes appended by Produce, per topic.",
            ["topic"],
            registry=registry,
        )
        self._messages_in = Counter(
            "tmq_broker_messages_in",
            "Records appended by Produce, per topic.",
            ["topic"],
            registry=registry,
        )
        self._bytes_out = Counter(
            "tmq_broker_bytes_out",
            "Record bytes served by Fetch, per topic.",
            ["topic"],
            registry=registry,
        )
        self.isr_shrinks = Counter(
            "tmq_broker_isr_shrinks", "ISR shrinks of led partitions.", registry=registry
        )
        self.isr_expands = Counter(
            "tmq_broker_isr_expands", "ISR expansions of led partitions.", registry=registry
        )
        self._fsyncs = Histogram(
            "tmq_broker_fsync_duration_seconds",
            "Time of one log flush (fsync) by a flusher thread.",
            buckets=_FSYNC_BUCKETS,
            registry=registry,
        )
        self._state = _StateCollector()
        registry.register(self._state)
        self._per_api: dict[int, tuple] = {}
        self._in: dict[str, tuple] = {}
        self._out: dict[str, object] = {}

    def for_api(self, api_key: int) -> tuple:
        """The (request counter, duration histogram) of ``api_key`` (``unknown`` for a key
        that is not a Kafka API)."""
        pair = self._per_api.get(api_key)
        if pair is None:
            api = API_BY_KEY.get(api_key)
            name = api.name if api is not None else "unknown"
            pair = self._per_api[api_key] = (
                self._requests.labels(name),
                self._durations.labels(name),
            )
        return pair

    def appended(self, topic: str, size: int, count: int) -> None:
        """Produce appended a batch of ``size`` bytes and ``count`` records to ``topic``."""
        pair = self._in.get(topic)
        if pair is None:
            pair = self._in[topic] = (self._bytes_in.labels(topic), self._messages_in.labels(topic))
        pair[0].inc(size)
        pair[1].inc(count)

    def fetched(self, topic: str, size: int) -> None:
        """A Fetch response carries ``size`` record bytes of ``topic``."""
        child = self._out.get(topic)
        if child is None:
            child = self._out[topic] = self._bytes_out.labels(topic)
        child.inc(size)

    def forget_topic(self, topic: str) -> None:
        """``topic`` was deleted: drop its series."""
        if self._in.pop(topic, None) is not None:
            self._bytes_in.remove(topic)
            self._messages_in.remove(topic)
        if self._out.pop(topic, None) is not None:
            self._bytes_out.remove(topic)

    def fsynced(self, seconds: float) -> None:
        """A flusher thread flushed one log in ``seconds`` (callable from any thread)."""
        self._fsyncs.observe(seconds)

    def watch(self, broker, connections: Callable[[], int]) -> None:
        """Read the scrape-time gauges from ``broker`` (its ``partitions``) and
        ``connections()`` (open client connections) from now on."""
        self._state.broker = broker
        self._state.connections = connections


class _StateCollector(Collector):
    """The gauges computed from the broker's state at each scrape."""

    def __init__(self):
        self.broker = None
        self.connections: Callable[[], int] = lambda: 0

    def collect(self):
        led = list(self.broker.partitions.values()) if self.broker is not None else []
        under = sum(1 for p in led if len(p.isr) < len(p.replication.replicas))
        lag = sum(max(0, p.log.log_end_offset - p.high_watermark) for p in led)
        yield GaugeMetricFamily(
            "tmq_broker_leader_partitions", "Partitions this broker leads.", value=len(led)
        )
        yield GaugeMetricFamily(
            "tmq_broker_under_replicated_partitions",
            "Led partitions whose ISR is smaller than their replica set.",
            value=under,
        )
        yield GaugeMetricFamily(
            "tmq_broker_high_watermark_lag_messages",
            "Sum over led partitions of log end offset minus high watermark.",
            value=lag,
        )
        yield GaugeMetricFamily(
            "tmq_broker_connections", "Open client connections.", value=self.connections()
        )


class MeteredDispatcher:
    """A ``Dispatcher`` seen through ``metrics``: each request counted and timed (on
    ``seconds``, the reactor's clock) per API. Everything else is the wrapped dispatcher's."""

    def __init__(self, dispatcher, metrics: BrokerMetrics, seconds: Callable[[], float]):
        self.dispatcher = dispatcher
        self._metrics = metrics
        self._seconds = seconds

    def dispatch(self, header, *args, **kwargs):
        """``Dispatcher.dispatch``, counted and timed."""
        requests, durations = self._metrics.for_api(header.api_key)
        requests.inc()
        started = self._seconds()
        try:
            response = self.dispatcher.dispatch(header, *args, **kwargs)
        except Exception:
            durations.observe(self._seconds() - started)
            raise
        if isinstance(response, defer.Deferred):
            return response.addBoth(self._done, durations, started)
        durations.observe(self._seconds() - started)
        return response

    def _done(self, result, durations, started: float):
        durations.observe(self._seconds() - started)
        return result
