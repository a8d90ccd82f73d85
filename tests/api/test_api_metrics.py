"""The API's ``/metrics`` (``tmq.api.metrics``) over the in-memory store, through treq's
``StubTreq``: requests counted by route template, method and status, durations per route,
database up."""

from __future__ import annotations

from memory_store import MemoryStore
from store_contract import SAMPLES, TEMP, A
from treq.testing import StubTreq

from tmq.api.app import TelemetryApi
from tmq.api.metrics import route_template
from tmq.ops.http import METRICS_CONTENT_TYPE


class Api:
    """An app on a clock the test moves."""

    def __init__(self):
        self.now = 100.0
        self.store = MemoryStore(SAMPLES)
        self.app = TelemetryApi(self.store, seconds=lambda: self.now)
        self.stub = StubTreq(self.app.resource())

    def request(self, method: str, path: str):
        response = self.stub.request(method, "http://api.test" + path, allow_redirects=False)
        self.stub.flush()
        answered = self.successful(response)
        body = self.successful(answered.content())
        return answered, body

    @staticmethod
    def successful(deferred):
        results = []
        deferred.addBoth(results.append)
        assert results, "the request did not finish"
        return results[0]

    def value(self, name: str, **labels) -> float:
        return self.app.api_metrics.registry.get_sample_value(name, labels) or 0.0


GPU_METRICS = "/api/v1/gpus/{gpu_id}/metrics"


class ApiMetricsTests:
    def test_metrics_are_served_as_prometheus_text(self):
        """GET /metrics answers 200 with the 0.0.4 text format, the API's families and the
        process metrics in it."""
        api = Api()
        response, body = api.request("GET", "/metrics")
        assert response.code == 200
        assert response.headers.getRawHeaders(b"content-type") == [METRICS_CONTENT_TYPE.encode()]
        for family in (b"tmq_api_database_up", b"process_cpu_seconds_total"):
            assert family in body

    def test_requests_are_counted_by_route_template(self):
        """Requests to two GPUs count under one route template, with method and status;
        an unknown GPU is a 404 on the same template, an unknown path is 'unmatched'."""
        api = Api()
        for gpu in (A, "GPU-unknown"):
            api.request("GET", f"/api/v1/gpus/{gpu}/metrics?metric_name={TEMP}")
        api.request("GET", "/nowhere/at/all")
        api.request("POST", "/api/v1/gpus")
        counted = "tmq_api_requests_total"
        assert api.value(counted, route=GPU_METRICS, method="GET", status="200") == 1
        assert api.value(counted, route=GPU_METRICS, method="GET", status="404") == 1
        assert api.value(counted, route="unmatched", method="GET", status="404") == 1
        assert api.value(counted, route="/api/v1/gpus", method="POST", status="405") == 1
        text = api.request("GET", "/metrics")[1]
        assert b"GPU-unknown" not in text and A.encode() not in text

    def test_durations_are_observed_per_route(self):
        """Each answered request is one duration observation of its route template."""
        api = Api()
        api.request("GET", "/healthz")
        api.request("GET", "/healthz")
        assert api.value("tmq_api_request_duration_seconds_count", route="/healthz") == 2

    def test_database_up_follows_the_store(self):
        """tmq_api_database_up is 1 while the store is available, 0 while it is down."""
        api = Api()
        assert api.value("tmq_api_database_up") == 1
        api.store.down = True
        assert api.value("tmq_api_database_up") == 0

    def test_route_templates_are_openapi_paths(self):
        """A werkzeug rule becomes its OpenAPI path."""
        assert route_template("/api/v1/gpus/<string:gpu_id>/latest") == (
            "/api/v1/gpus/{gpu_id}/latest"
        )
        assert route_template("/swagger/<path:rest>") == "/swagger/{rest}"
        assert route_template("/healthz") == "/healthz"
