"""The API's Prometheus metrics (their names are fixed by the operations contract).

``tmq_api_requests_total{route,method,status}`` and
``tmq_api_request_duration_seconds{route}``: every request, counted and timed (from the
start of its rendering until its response is finished) by ``MeteredResource``. ``route`` is
the template of the route the path matches (``/api/v1/gpus/{gpu_id}/metrics``), or
``unmatched``: never the raw path, so there are as many series as routes. The method is one of
the few HTTP knows, or ``other``.

``tmq_api_database_up``: 1 while the store says its database is reachable, else 0 (read when
scraped).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

from prometheus_client import Counter, Gauge, Histogram
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, RoutingException

from tmq.ops.metrics import new_registry

__all__ = ["UNMATCHED", "ApiMetrics", "MeteredResource", "route_template"]

#: The route label of a path no route matches.
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"})
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^:<>]+)>")


def route_template(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path: ``/gpus/<string:gpu_id>`` -> ``/gpus/{gpu_id}``."""
    return _CONVERTER.sub(r"{\1}", rule)


class ApiMetrics:
    """The metrics of one API process, on a registry of their own (``registry``).

    :param url_map: the app's routes (what paths are matched against).
    :param database_up: whether the database is reachable now.
    :param seconds: the clock requests are timed on.
    """

    def __init__(self, url_map: Map, database_up: Callable[[], bool], seconds: Callable[[], float]):
        self.registry = registry = new_registry()
        self._url_map = url_map
        self.seconds = seconds
        self._templates = {rule.rule: route_template(rule.rule) for rule in url_map.iter_rules()}
        self.requests = Counter(
            "tmq_api_requests",
            "HTTP requests, per route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.durations = Histogram(
            "tmq_api_request_duration_seconds",
            "Time to answer a request, per route template.",
            ["route"],
            buckets=_BUCKETS,
            registry=registry,
        )
        up = Gauge(
            "tmq_api_database_up", "1 if the database is reachable, else 0.", registry=registry
        )
        up.set_function(lambda: 1 if database_up() else 0)

    def route_of(self, path: bytes) -> str:
        """The template of the route ``path`` matches as a GET, or ``UNMATCHED``."""
        adapter = self._url_map.bind("localhost")
        try:
            rule, _ = adapter.match(
                unquote(path.decode("utf-8", "replace")), "GET", return_rule=True
            )
        except (HTTPException, RoutingException):
            return UNMATCHED
        return self._templates.get(rule.rule, UNMATCHED)

    def finished(self, route: str, method: bytes, status: int, seconds: float) -> None:
        """Count one answered request."""
        name = method.decode("ascii", "replace").upper()
        self.requests.labels(route, name if name in _METHODS else "other", str(status)).inc()
        self.durations.labels(route).observe(seconds)


class MeteredResource(Resource):
    """``resource`` (a leaf serving every path, as Klein's is) with each request counted in
    ``metrics`` once its response is finished (or its connection lost)."""

    isLeaf = True

    def __init__(self, resource: Resource, metrics: ApiMetrics):
        super().__init__()
        self._resource = resource
        self._metrics = metrics

    def render(self, request):
        metrics = self._metrics
        route = metrics.route_of(request.path)
        started = metrics.seconds()

        def finished(_):
            metrics.finished(route, request.method, request.code, metrics.seconds() - started)

        request.notifyFinish().addBoth(finished)
        return self._resource.render(request)
