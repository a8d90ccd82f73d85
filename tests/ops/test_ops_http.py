"""``tmq.ops.http``: the /metrics, /healthz, /readyz resource, its address parsing and its
listener (on a MemoryReactor: no socket)."""

from __future__ import annotations

import json

import pytest
from prometheus_client import Counter
from twisted.internet.testing import MemoryReactor
from twisted.web.test.requesthelper import DummyRequest

from tmq.ops.http import METRICS_CONTENT_TYPE, OpsResource, answer, listen, parse_address
from tmq.ops.metrics import new_registry


def render(resource: OpsResource, path: bytes, method: bytes = b"GET"):
    """``(status, content type, body)`` of one request to ``resource``."""
    request = DummyRequest(path.strip(b"/").split(b"/"))
    request.method = method
    request.path = path
    body = resource.render(request)
    return (
        request.responseCode or 200,
        request.responseHeaders.getRawHeaders(b"content-type")[0],
        body,
    )


@pytest.fixture
def registry():
    made = new_registry()
    Counter("tmq_test_things", "Things.", registry=made).inc(3)
    return made


class OpsResourceTests:
    def test_metrics_are_the_registry_in_the_text_format(self, registry):
        """GET /metrics answers 200 with the 0.0.4 text format of the registry, process
        metrics included."""
        status, content_type, body = render(OpsResource(registry, lambda: (True, "")), b"/metrics")
        assert (status, content_type) == (200, METRICS_CONTENT_TYPE.encode())
        assert b"tmq_test_things_total 3.0" in body
        assert b"process_cpu_seconds_total" in body

    def test_healthz_is_ok(self, registry):
        """GET /healthz answers 200 {"status": "ok"} whatever the readiness says."""
        resource = OpsResource(registry, lambda: (False, "busy"))
        status, content_type, body = render(resource, b"/healthz")
        assert (status, content_type, json.loads(body)) == (
            200,
            b"application/json",
            {"status": "ok"},
        )

    def test_readyz_follows_the_readiness_callable(self, registry):
        """GET /readyz: 200 ready while the callable says so, else 503 with its reason."""
        state = [(False, "loading the logs")]
        resource = OpsResource(registry, lambda: state[0])
        status, _, body = render(resource, b"/readyz")
        assert (status, json.loads(body)) == (
            503,
            {"status": "not ready", "reason": "loading the logs"},
        )
        state[0] = (True, "serving")
        status, _, body = render(resource, b"/readyz")
        assert (status, json.loads(body)) == (200, {"status": "ready"})

    def test_a_failing_readiness_check_is_not_ready(self, registry):
        """A readiness callable that raises makes /readyz a 503 naming the error."""

        def broken():
            raise RuntimeError("no state")

        result = answer(b"GET", b"/readyz", registry, broken)
        assert result.status == 503
        assert "no state" in json.loads(result.body)["reason"]

    def test_other_paths_are_404_json_and_other_methods_405(self, registry):
        """Any other path is a 404 JSON body naming it; POST is a 405 JSON body."""
        resource = OpsResource(registry, lambda: (True, ""))
        status, content_type, body = render(resource, b"/nothing")
        assert (status, content_type) == (404, b"application/json")
        assert json.loads(body) == {"error": "not found", "path": "/nothing"}
        status, _, body = render(resource, b"/metrics", b"POST")
        assert status == 405 and json.loads(body)["error"] == "method not allowed"


class AddressTests:
    @pytest.mark.parametrize(
        ("text", "address"),
        [
            ("127.0.0.1:9100", ("127.0.0.1", 9100)),
            (":9100", ("0.0.0.0", 9100)),
            ("[::1]:0", ("::1", 0)),
        ],
    )
    def test_host_port(self, text, address):
        """HOST:PORT parses; an empty host is every interface, brackets leave an IPv6 host."""
        assert parse_address(text) == address

    @pytest.mark.parametrize("text", ["9100", "host:", "host:http", "host:70000"])
    def test_bad_addresses_name_the_value(self, text):
        """Anything but HOST:PORT with a port up to 65535 is refused, quoting it."""
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(text)

    def test_listen_serves_the_resource_on_the_address(self, registry):
        """``listen`` listens on the given interface and port with a site whose root is the
        ops resource."""
        reactor = MemoryReactor()
        listen(reactor, "127.0.0.1:9100", registry, lambda: (True, ""))
        [(port, site, _backlog, interface)] = reactor.tcpServers
        assert (port, interface) == (9100, "127.0.0.1")
        assert isinstance(site.resource, OpsResource)
