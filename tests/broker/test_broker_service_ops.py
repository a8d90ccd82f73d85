"""``BrokerService``'s operations side on a MemoryReactorClock (no socket): the
``--metrics-listen`` listener, readiness, and the metrics the service wires in."""

from __future__ import annotations

import json

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.web.test.requesthelper import DummyRequest

from tmq.broker.config import BrokerConfig
from tmq.broker.metrics import MeteredDispatcher
from tmq.cluster.store import MetadataStoreError
from tmq.service import BrokerService


def get(site, path: bytes) -> tuple[int, bytes]:
    request = DummyRequest(path.strip(b"/").split(b"/"))
    request.path = path
    body = site.resource.render(request)
    return request.responseCode or 200, body


@pytest.fixture
def service(tmp_path):
    config = BrokerConfig(
        data_dirs=(str(tmp_path / "data"),),
        listen_port=9092,
        metrics_listen="127.0.0.1:9100",
    )
    made = BrokerService(config, MemoryReactorClock())
    yield made
    if made.running:
        made.stopService()


class BrokerServiceOpsTests:
    def test_not_ready_before_start_and_ready_once_registered(self, service):
        """Readiness is false before the service starts; once the logs are loaded, the
        broker listens and it is registered (lease valid), /readyz answers 200 on the
        metrics listener; stopping makes it not ready again."""
        assert service.readiness() == (False, "stopped")
        service.startService()
        assert service.started.called
        servers = {port: site for port, site, _, _ in service.reactor.tcpServers}
        assert sorted(servers) == [9092, 9100]
        assert service.readiness() == (True, "serving")
        status, body = get(servers[9100], b"/readyz")
        assert (status, json.loads(body)) == (200, {"status": "ready"})
        service.stopService()
        assert service.readiness() == (False, "stopped")

    def test_an_expired_lease_is_not_ready(self, service):
        """A broker whose registration lease may have lapsed is not ready."""
        service.startService()
        service.broker.monotonic = lambda: float("inf")
        assert service.readiness() == (False, "the registration lease may have expired")

    def test_the_service_meters_requests_and_serves_its_registry(self, service):
        """The Kafka listener's dispatcher is metered into the service's registry, which is
        what /metrics serves, process metrics and broker families included."""
        service.startService()
        assert isinstance(service.factory.dispatcher, MeteredDispatcher)
        assert service.broker.metrics is service.metrics
        site = next(s for port, s, _, _ in service.reactor.tcpServers if port == 9100)
        status, body = get(site, b"/metrics")
        assert status == 200
        for family in (b"tmq_broker_leader_partitions", b"process_cpu_seconds_total"):
            assert family in body

    def test_without_metrics_listen_there_is_no_http_listener(self, tmp_path):
        """No --metrics-listen, no HTTP port."""
        config = BrokerConfig(data_dirs=(str(tmp_path / "data"),), listen_port=9092)
        service = BrokerService(config, MemoryReactorClock())
        service.startService()
        assert [port for port, *_ in service.reactor.tcpServers] == [9092]
        service.stopService()

    def test_a_failing_broker_stop_still_closes_the_store(self, service):
        """When stopping the broker fails, stopService still closes the metadata store (whose
        threads would otherwise keep the process from exiting) and the metrics listener,
        and reports the failure."""
        service.startService()
        store = service.broker.store

        def broken_stop():
            raise OSError("disk gone")

        service.broker.stop = broken_stop
        stopped = []
        service.ops_port.stopListening = lambda: stopped.append(True)
        outcome = []
        service.stopService().addBoth(outcome.append)
        assert isinstance(outcome[0].value, OSError)
        refused = []
        store.topics().addErrback(refused.append)  # a closed store refuses every call
        assert refused and refused[0].check(MetadataStoreError)
        assert stopped == [True]
