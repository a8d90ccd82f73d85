"""The operations HTTP endpoint of a service: ``/metrics``, ``/healthz``, ``/readyz``.

``answer(method, path, registry, ready)`` decides a response (sans-IO: status, content type,
body); ``OpsResource`` is its twisted.web adapter, and ``listen`` serves it on ``HOST:PORT``:

* ``GET /metrics``: 200, the registry in the Prometheus text format 0.0.4;
* ``GET /healthz``: 200 ``{"status": "ok"}`` (liveness: the reactor serves requests);
* ``GET /readyz``: 200 ``{"status": "ready"}``, or 503 ``{"status": "not ready", "reason":
  ...}``, as the service's readiness callable says;
* any other path: 404 ``{"error": "not found", "path": ...}``; a method other than GET or
  HEAD: 405 ``{"error": "method not allowed", ...}``. HEAD is answered as GET, without body.

Neither access logs nor factory start/stop lines are logged: scrapes come every few seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

__all__ = [
    "METRICS_CONTENT_TYPE",
    "Answer",
    "OpsResource",
    "Readiness",
    "answer",
    "listen",
    "parse_address",
]

_log = Logger()

#: ``() -> (ready, reason)``: whether the service can do its work now, and why not.
Readiness = Callable[[], tuple[bool, str]]

#: The Content-Type of ``/metrics`` (text exposition format 0.0.4).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    """One HTTP response: status code, Content-Type, body."""

    status: int
    content_type: str
    body: bytes


def _json(status: int, value: dict) -> Answer:
    return Answer(status, _JSON, json.dumps(value).encode() + b"\n")


def answer(method: bytes, path: bytes, registry: CollectorRegistry, ready: Readiness) -> Answer:
    """The response to ``method path`` (see the module docstring). A readiness callable
    that raises counts as not ready, with the error as the reason."""
    if method not in (b"GET", b"HEAD"):
        return _json(405, {"error": "method not allowed", "allowed": ["GET", "HEAD"]})
    if path == b"/metrics":
        return Answer(200, METRICS_CONTENT_TYPE, generate_latest(registry))
    if path == b"/healthz":
        return _json(200, {"status": "ok"})
    if path == b"/readyz":
        try:
            is_ready, reason = ready()
        except Exception as error:
            _log.failure("the readiness check failed")
            is_ready, reason = False, f"readiness check failed: {error}"
        if is_ready:
            return _json(200, {"status": "ready"})
        return _json(503, {"status": "not ready", "reason": reason})
    return _json(404, {"error": "not found", "path": path.decode("utf-8", "replace")})


class OpsResource(Resource):
    """twisted.web adapter of ``answer`` (a leaf: it serves every path itself)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, ready: Readiness):
        super().__init__()
        self.registry = registry
        self.ready = ready

    def render(self, request) -> bytes:
        result = answer(request.method, request.path, self.registry, self.ready)
        request.setResponseCode(result.status)
        request.setHeader(b"content-type", result.content_type.encode())
        if result.status == 405:
            request.setHeader(b"allow", b"GET, HEAD")
        return result.body


class _QuietSite(Site):
    noisy = False

    def log(self, request) -> None:
        """No access log."""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``; an empty host: every interface) as ``(host, port)``.

    :raises ValueError: not HOST:PORT with a port from 0 to 65535.
    """
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"takes HOST:PORT, not {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def listen(reactor, address: str, registry: CollectorRegistry, ready: Readiness):
    """Serve ``OpsResource`` on ``address`` (``HOST:PORT``, port 0: any free one); the
    listening port (``stopListening`` it when the service stops).

    :raises ValueError: a bad address.
    :raises twisted.internet.error.CannotListenError: the port is taken.
    """
    host, port = parse_address(address)
    return reactor.listenTCP(port, _QuietSite(OpsResource(registry, ready)), interface=host)
