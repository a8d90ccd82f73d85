"""The REST API (DESIGN §7): a Klein app over a ``tmq.api.store.TelemetryStore``.

``TelemetryApi(store)`` holds the state; ``resource()`` is its Twisted web resource. Every
request is read and checked by ``tmq.api.validation`` before the store sees it, and every
answer is JSON:

* 200 with the route's body;
* 400 bad input, 404 unknown GPU or path, 405 wrong method, 503 database unavailable
  (``/readyz`` too), 500 anything else (logged): ``{"error": {"code", "message",
  "details"}}``.

``/metrics`` is the exception: the Prometheus text format (``tmq.api.metrics``; every request
counted per route template, method and status).

Nothing blocks the reactor: ``PostgresStore`` queries on txpostgres' asynchronous
connections.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from klein import Klein
from prometheus_client import generate_latest
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from werkzeug.exceptions import MethodNotAllowed, NotFound

from tmq.ops.http import METRICS_CONTENT_TYPE

from . import swagger
from .database import DatabaseUnavailable
from .metrics import ApiMetrics, MeteredResource
from .openapi import build_spec
from .store import TelemetryStore
from .validation import (
    GPU_LATEST,
    GPU_METRICS,
    GPU_TELEMETRY,
    GPUS,
    ApiError,
    GpuListQuery,
    LatestQuery,
    MetricsQuery,
    TelemetryQuery,
    parse_query,
)

__all__ = ["TelemetryApi"]

_log = Logger()


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _unavailable(reason: str) -> ApiError:
    return ApiError(503, "database_unavailable", f"database unavailable: {reason}", {})


class TelemetryApi:
    """The API over ``store`` (whose owner starts and stops what it reads).

    :param seconds: the clock requests are timed on (``tmq_api_request_duration_seconds``).
    """

    app = Klein()

    def __init__(self, store: TelemetryStore, *, seconds: Callable[[], float] = time.perf_counter):
        self._store = store
        self._spec = _json(build_spec())
        #: The Prometheus metrics of this API (``/metrics``).
        self.api_metrics = ApiMetrics(self.app.url_map, store.available, seconds)

    def resource(self):
        """The web resource of every route, each request counted in ``api_metrics``."""
        return MeteredResource(self.app.resource(), self.api_metrics)

    # -- plumbing ------------------------------------------------------------------------

    def _answer(self, request, work: Callable[[], Any]) -> Deferred[bytes]:
        """Run ``work`` (a body, or a Deferred of one) and write it, or the error, as JSON."""

        def ok(body: Any) -> bytes:
            request.setHeader(b"content-type", b"application/json")
            return body if isinstance(body, bytes) else _json(body)

        def error(failure: Failure) -> bytes:
            if failure.check(ApiError):
                problem = failure.value
            elif failure.check(DatabaseUnavailable):
                problem = _unavailable(str(failure.value))
            else:
                _log.failure(
                    "{method} {uri} failed", failure, method=request.method, uri=request.uri
                )
                problem = ApiError(500, "internal_error", "internal error (logged)", {})
            request.setResponseCode(problem.status)
            request.setHeader(b"content-type", b"application/json")
            return _json(problem.body())

        return maybeDeferred(work).addCallbacks(ok, error)

    @inlineCallbacks
    def _gpu(self, gpu_id: str):
        """``gpus.id`` of ``gpu_id``, or a 404."""
        gpu = yield self._store.gpu_id(gpu_id)
        if gpu is None:
            raise ApiError(404, "gpu_not_found", f"no GPU {gpu_id!r}", {"gpu_id": gpu_id})
        return gpu

    # -- data routes ---------------------------------------------------------------------

    @app.route("/api/v1/gpus", methods=["GET"])
    def gpus(self, request):
        @inlineCallbacks
        def work():
            query: GpuListQuery = parse_query(GPUS, request.args, None)
            return (yield self._store.gpus(query))

        return self._answer(request, work)

    @app.route("/api/v1/gpus/<string:gpu_id>/telemetry", methods=["GET"])
    def telemetry(self, request, gpu_id: str):
        @inlineCallbacks
        def work():
            query: TelemetryQuery = parse_query(GPU_TELEMETRY, request.args, gpu_id)
            gpu = yield self._gpu(query.gpu_id)
            return (yield self._store.telemetry(query, gpu))

        return self._answer(request, work)

    @app.route("/api/v1/gpus/<string:gpu_id>/metrics", methods=["GET"])
    def metrics(self, request, gpu_id: str):
        @inlineCallbacks
        def work():
            query: MetricsQuery = parse_query(GPU_METRICS, request.args, gpu_id)
            gpu = yield self._gpu(query.gpu_id)
            return (yield self._store.metrics(query, gpu))

        return self._answer(request, work)

    @app.route("/api/v1/gpus/<string:gpu_id>/latest", methods=["GET"])
    def latest(self, request, gpu_id: str):
        @inlineCallbacks
        def work():
            query: LatestQuery = parse_query(GPU_LATEST, request.args, gpu_id)
            gpu = yield self._gpu(query.gpu_id)
            return (yield self._store.latest(query, gpu))

        return self._answer(request, work)

    # -- health ----------------------------------------------------------------------------

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request):
        return self._answer(request, lambda: {"status": "ok"})

    @app.route("/readyz", methods=["GET"])
    def readyz(self, request):
        @inlineCallbacks
        def work():
            version = yield self._store.schema_version()
            return {"status": "ready", "schema_version": version}

        return self._answer(request, work)

    @app.route("/metrics", methods=["GET"])
    def prometheus_metrics(self, request):
        request.setHeader(b"content-type", METRICS_CONTENT_TYPE.encode())
        return generate_latest(self.api_metrics.registry)

    # -- documentation ---------------------------------------------------------------------

    @app.route("/openapi.json", methods=["GET"])
    def openapi(self, request):
        request.setHeader(b"content-type", b"application/json")
        return self._spec

    @app.route("/", methods=["GET"])
    def root(self, request):
        request.redirect(b"/swagger/index.html")
        return b""

    @app.route("/swagger/index.html", methods=["GET"])
    def swagger_index(self, request):
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return swagger.INDEX_HTML

    @app.route("/swagger/swagger-initializer.js", methods=["GET"])
    def swagger_initializer(self, request):
        request.setHeader(b"content-type", b"text/javascript; charset=utf-8")
        return swagger.INITIALIZER_JS

    @app.route("/swagger/", branch=True, methods=["GET"])
    def swagger_assets(self, request):
        if not any(request.postpath):  # the directory itself
            request.redirect(b"/swagger/index.html")
            return b""
        return swagger.assets()

    # -- errors ----------------------------------------------------------------------------

    @app.handle_errors(NotFound)
    def not_found(self, request, failure):
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"application/json")
        path = request.path.decode("utf-8", "replace")
        return _json(ApiError(404, "not_found", f"no route {path}", {}).body())

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request, failure):
        request.setResponseCode(405)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"allow", b"GET, HEAD")
        return _json(ApiError(405, "method_not_allowed", "only GET is served", {}).body())
