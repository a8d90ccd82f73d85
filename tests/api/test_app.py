"""The Klein app of ``tmq.api.app`` over the in-memory store, driven by treq's ``StubTreq``
(no sockets, no reactor): every route, every kind of bad parameter, pagination edges, the
error shapes, 503s, the spec and the Swagger UI files."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from memory_store import MemoryStore
from store_contract import POWER, SAMPLES, TEMP, A
from treq.testing import StubTreq
from twisted.internet.defer import fail
from twisted.python.failure import Failure

from tmq.api import swagger
from tmq.api.app import TelemetryApi
from tmq.api.openapi import build_spec


def _fired(deferred):
    outcome = []
    deferred.addBoth(outcome.append)
    assert outcome, "the request did not finish"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


class Client:
    """GETs (or other methods) against the app: ``(status, headers, body)``."""

    def __init__(self, store):
        self.store = store
        self.stub = StubTreq(TelemetryApi(store).resource())

    def request(self, method: str, path: str):
        response = self._settle(
            self.stub.request(method, "http://api.test" + path, allow_redirects=False)
        )
        return response.code, response.headers, self._settle(response.content())

    def _settle(self, deferred):
        # A static file is produced in chunks, each written on a later flush.
        for _ in range(1000):
            if deferred.called:
                break
            self.stub.flush()
        return _fired(deferred)

    def get(self, path: str):
        status, headers, body = self.request("GET", path)
        return status, headers, body

    def json(self, path: str):
        status, headers, body = self.get(path)
        assert headers.getRawHeaders(b"content-type") == [b"application/json"], path
        return status, json.loads(body)


@pytest.fixture
def client():
    return Client(MemoryStore(SAMPLES))


GPU = f"/api/v1/gpus/{A}"


def error_of(client, path, status=400):
    got, body = client.json(path)
    assert got == status, (path, body)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]


class RouteTests:
    def test_gpus(self, client):
        """/api/v1/gpus answers the first page of GPUs with the default limit 50."""
        status, body = client.json("/api/v1/gpus")
        assert status == 200
        assert body["total"] == 3 and body["limit"] == 50 and body["offset"] == 0
        assert body["items"][0]["uuid"] == A

    def test_gpus_hostname_and_pages(self, client):
        """hostname filters; limit and offset page; an offset past the end is an empty
        page with the total."""
        assert [g["uuid"] for g in client.json("/api/v1/gpus?hostname=h2")[1]["items"]] == [
            "GPU-bbbbbbbb-0000-0000-0000-000000000002"
        ]
        status, body = client.json("/api/v1/gpus?limit=1&offset=2")
        assert status == 200 and len(body["items"]) == 1 and body["total"] == 3
        status, body = client.json("/api/v1/gpus?limit=1000&offset=1000000000")
        assert status == 200 and body["items"] == [] and body["total"] == 3

    def test_telemetry(self, client):
        """/telemetry pages a GPU's samples in a window, inclusive, optionally one metric."""
        status, body = client.json(
            f"{GPU}/telemetry?start_time=2025-07-18T20:00:10Z&end_time=2025-07-18T20:00:30Z"
            f"&metric_name={TEMP}&limit=2&offset=1"
        )
        assert status == 200 and body["total"] == 3
        assert [s["value"] for s in body["items"]] == [42.0, 43.0]

    def test_telemetry_times_with_offsets(self, client):
        """An RFC 3339 offset names the same instant as its UTC form."""
        utc = client.json(f"{GPU}/telemetry?start_time=2025-07-18T20:00:10Z")[1]
        shifted = client.json(f"{GPU}/telemetry?start_time={quote('2025-07-18T22:00:10+02:00')}")
        assert shifted == (200, utc)

    def test_metrics(self, client):
        """/metrics answers one aggregate, avg by default."""
        status, body = client.json(f"{GPU}/metrics?metric_name={TEMP}&aggregation=max")
        assert status == 200 and body["value"] == 60.0 and body["samples"] == 13
        status, body = client.json(f"{GPU}/metrics?metric_name={POWER}")
        assert body["aggregation"] == "avg" and body["samples"] == 11

    def test_metric_buckets(self, client):
        """interval gives paginated buckets."""
        status, body = client.json(f"{GPU}/metrics?metric_name={TEMP}&interval=1m&limit=1")
        assert status == 200 and body["total"] == 2 and body["interval_seconds"] == 60
        assert [b["start"] for b in body["items"]] == ["2025-07-18T20:00:00Z"]

    def test_latest(self, client):
        """/latest gives the newest sample of each metric, or of one."""
        status, body = client.json(f"{GPU}/latest")
        assert status == 200 and [s["metric_name"] for s in body["items"]] == [TEMP, POWER]
        status, body = client.json(f"{GPU}/latest?metric_name={POWER}")
        assert [s["value"] for s in body["items"]] == [111.5]

    def test_unknown_gpu_is_404(self, client):
        """Every per-GPU route answers 404 gpu_not_found for an unknown GPU."""
        for route in ("telemetry", f"metrics?metric_name={TEMP}", "latest"):
            error = error_of(client, f"/api/v1/gpus/GPU-nope/{route}", 404)
            assert error["code"] == "gpu_not_found" and error["details"] == {"gpu_id": "GPU-nope"}

    def test_health(self, client):
        """/healthz is ok; /readyz reports the schema version."""
        assert client.json("/healthz") == (200, {"status": "ok"})
        status, body = client.json("/readyz")
        assert status == 200 and body["status"] == "ready" and body["schema_version"] >= 1

    def test_unknown_path_and_method(self, client):
        """An unknown path is a JSON 404; a method other than GET a JSON 405 naming GET."""
        assert error_of(client, "/api/v2/nothing", 404)["code"] == "not_found"
        status, headers, body = client.request("POST", "/api/v1/gpus")
        assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"
        assert headers.getRawHeaders(b"allow") == [b"GET, HEAD"]


class DatabaseDownTests:
    def test_data_routes_and_readiness_answer_503(self, client):
        """With the store down, every data route and /readyz answer 503
        database_unavailable with the reason; /healthz stays 200."""
        client.store.down = True
        for path in (
            "/api/v1/gpus",
            f"{GPU}/telemetry",
            f"{GPU}/metrics?metric_name={TEMP}",
            f"{GPU}/latest",
            "/readyz",
        ):
            error = error_of(client, path, 503)
            assert error["code"] == "database_unavailable"
            assert "unreachable" in error["message"]
        assert client.json("/healthz")[0] == 200

    def test_recovers_when_the_store_answers_again(self, client):
        """The app keeps no state from a failure: once the store answers, so does it."""
        client.store.down = True
        assert client.json("/api/v1/gpus")[0] == 503
        client.store.down = False
        assert client.json("/api/v1/gpus")[0] == 200

    def test_bad_input_is_checked_before_the_store(self, client):
        """A bad parameter is a 400 even when the database is down."""
        client.store.down = True
        assert client.json("/api/v1/gpus?limit=0")[0] == 400

    def test_unexpected_error_is_a_logged_500(self, client, monkeypatch):
        """A failure that is not the database's is a JSON 500 saying it was logged."""
        logged = []
        from tmq.api import app

        monkeypatch.setattr(app._log, "failure", lambda *a, **k: logged.append(a))
        monkeypatch.setattr(client.store, "gpus", lambda query: fail(KeyError("bug")))
        error = error_of(client, "/api/v1/gpus", 500)
        assert error["code"] == "internal_error" and len(logged) == 1


BAD_PARAMETERS = [
    ("/api/v1/gpus?limit=0", "limit"),
    ("/api/v1/gpus?limit=1001", "limit"),
    ("/api/v1/gpus?limit=ten", "limit"),
    ("/api/v1/gpus?limit=", "limit"),
    ("/api/v1/gpus?limit=1.5", "limit"),
    ("/api/v1/gpus?offset=-1", "offset"),
    ("/api/v1/gpus?offset=1000000001", "offset"),
    ("/api/v1/gpus?offset=99999999999999999999", "offset"),
    ("/api/v1/gpus?hostname=" + "h" * 256, "hostname"),
    (f"{GPU}/telemetry?limit=10001", "limit"),
    (f"{GPU}/telemetry?metric_name=DCGM_FI_NOT_A_FIELD", "metric_name"),
    (f"{GPU}/telemetry?start_time=yesterday", "start_time"),
    (f"{GPU}/telemetry?start_time=2025-07-18", "start_time"),
    (f"{GPU}/telemetry?start_time=2025-07-18T20:00:00", "start_time"),
    (f"{GPU}/telemetry?end_time=2025-13-18T20:00:00Z", "end_time"),
    (f"{GPU}/telemetry?end_time=2025-02-30T20:00:00Z", "end_time"),
    (f"{GPU}/telemetry?end_time=2025-07-18T24:00:00Z", "end_time"),
    (f"{GPU}/telemetry?end_time=2025-07-18T20:00:60Z", "end_time"),
    (f"{GPU}/telemetry?end_time={quote('2025-07-18T20:00:00+25:00')}", "end_time"),
    (
        f"{GPU}/telemetry?start_time=2025-07-18T20:00:01Z&end_time=2025-07-18T20:00:00Z",
        "start_time",
    ),
    (f"{GPU}/metrics", "metric_name"),
    (f"{GPU}/metrics?metric_name={TEMP}&aggregation=median", "aggregation"),
    (f"{GPU}/metrics?metric_name={TEMP}&interval=0s", "interval"),
    (f"{GPU}/metrics?metric_name={TEMP}&interval=10", "interval"),
    (f"{GPU}/metrics?metric_name={TEMP}&interval=1w", "interval"),
    (f"{GPU}/metrics?metric_name={TEMP}&interval=367d", "interval"),
    (f"{GPU}/metrics?metric_name={TEMP}&interval=-1m", "interval"),
    (f"{GPU}/latest?limit=0", "limit"),
    (f"{GPU}/latest?metric_name=temperature", "metric_name"),
    ("/api/v1/gpus/" + "G" * 129 + "/latest", "gpu_id"),
    ("/api/v1/gpus/GPU-%07/latest", "gpu_id"),
    ("/api/v1/gpus?limit=%FF", "limit"),
]


class ValidationTests:
    @pytest.mark.parametrize(("path", "parameter"), BAD_PARAMETERS)
    def test_bad_parameter_is_a_400_naming_it(self, client, path, parameter):
        """Each bad parameter is a 400 whose details name the parameter and what is
        allowed, and whose message names the parameter."""
        error = error_of(client, path)
        assert error["details"]["parameter"] == parameter
        assert parameter in error["message"]
        if error["code"] == "invalid_parameter" and parameter != "gpu_id":
            assert error["details"]["allowed"]

    def test_missing_required_parameter(self, client):
        """metric_name is required on /metrics: missing_parameter, with the allowed
        values."""
        error = error_of(client, f"{GPU}/metrics?aggregation=min")
        assert error["code"] == "missing_parameter"
        assert TEMP in error["details"]["allowed"]

    def test_unknown_parameter(self, client):
        """A parameter the route does not take (a typo) is a 400 listing those it takes."""
        error = error_of(client, f"{GPU}/telemetry?metric={TEMP}")
        assert error["code"] == "unknown_parameter"
        assert "metric_name" in error["details"]["allowed"]

    def test_repeated_parameter(self, client):
        """A parameter given twice is a 400."""
        error = error_of(client, "/api/v1/gpus?limit=1&limit=2")
        assert error["details"] == {"parameter": "limit"}

    def test_edges_are_accepted(self, client):
        """The bounds themselves are allowed: limit 1 and 1000, offset 0, interval 1s and
        366d, a window of one instant, times with offsets and fractions."""
        for path in (
            "/api/v1/gpus?limit=1",
            "/api/v1/gpus?limit=1000&offset=0",
            f"{GPU}/metrics?metric_name={TEMP}&interval=1s",
            f"{GPU}/metrics?metric_name={TEMP}&interval=366d",
            f"{GPU}/telemetry?start_time=2025-07-18T20:00:00Z&end_time=2025-07-18T20:00:00Z",
            f"{GPU}/telemetry?start_time={quote('2025-07-18T20:00:00.123456789-05:30')}",
            f"{GPU}/telemetry?start_time=0001-01-01T00:00:00Z&end_time=9999-12-31T23:59:59Z",
        ):
            assert client.json(path)[0] == 200, path


class DocumentationTests:
    def test_openapi_json_is_the_generated_spec(self, client):
        """/openapi.json serves build_spec()."""
        status, body = client.json("/openapi.json")
        assert status == 200 and body == build_spec()

    def test_swagger_ui_is_served_locally(self, client):
        """/swagger/index.html loads the bundle's script and style from /swagger/, and the
        initializer points at ../openapi.json with no validator; the bundle files are
        found; a missing file is a 404; / and /swagger/ redirect to the UI."""
        status, headers, page = client.get("/swagger/index.html")
        assert status == 200 and b"text/html" in headers.getRawHeaders(b"content-type")[0]
        assert b'src="swagger-ui-bundle.js"' in page and b"http" not in page
        status, _, script = client.get("/swagger/swagger-initializer.js")
        assert status == 200 and b"../openapi.json" in script and b"validatorUrl: null" in script
        # A file's bytes come through a pull producer, which StubTreq's transport does not
        # drive: here the files are found; test_api_swagger_ui.py loads them in Chromium.
        for name in (
            b"swagger-ui-bundle.js",
            b"swagger-ui-standalone-preset.js",
            b"swagger-ui.css",
        ):
            asset = swagger.assets().getChild(name, None)
            assert asset.isfile() and asset.getsize() > 1000, name
        assert client.get("/swagger/swagger-ui-bundle.js.map.nope")[0] == 404
        for path in ("/", "/swagger/"):  # (werkzeug sends /swagger on to /swagger/)
            status, headers, _ = client.get(path)
            assert status == 302, path
            assert headers.getRawHeaders(b"location") == [b"/swagger/index.html"]
