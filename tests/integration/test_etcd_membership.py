"""Cluster membership of ``EtcdMetadataStore`` against a real etcd: what only etcd shows.

The contract (registrations, the controller election, fences, their events) runs in
``EtcdMetadataStoreContractTests`` (``test_etcd_store.py``). Here: the keys and their JSON, the
keepalive thread and the ``LeaseDeadline`` it feeds, a lease expiring when keepalives stop
(``pause_keepalives``, the test hook standing in for a paused process) with what follows from
it (``BrokerLost``, the controller moving to another broker with a larger epoch, the deposed
controller's and the re-registered leader's fenced writes failing), closing, and the resync of
membership after compaction. Waits poll with deadlines; the short leases (2 s) make them last
a few seconds.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import etcd3
import pytest
from twisted.logger import globalLogPublisher

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))

from cluster_helpers import broker, topic
from test_etcd_store import (
    TIMEOUT_S,
    Harness,
    messages,
    new_cluster_id,
    start_etcd,
    stored_keys,
)

from tmq.cluster.store import (
    BrokerIdInUse,
    BrokerLost,
    BrokerRegistered,
    ControllerChanged,
    ControllerFence,
    Fenced,
    LeaderFence,
)
from tmq.tools.processes import free_port

SHORT_TTL_S = 2


@pytest.fixture(scope="module")
def etcd_member():
    """One etcd for the module; tests keep apart by their cluster ids."""
    member = start_etcd()
    yield member
    member.stop()


@pytest.fixture
def harness():
    harness = Harness()
    yield harness
    harness.close_all()


@pytest.fixture
def logged():
    """The log events emitted during the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def eventually(check, what: str, timeout: float = TIMEOUT_S):
    """Poll ``check()`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def keepalive_threads(cluster_id: str) -> list[threading.Thread]:
    name = f"tmq-etcd-keepalive-{cluster_id}-"
    return [thread for thread in threading.enumerate() if name in thread.name]


def register_when_free(harness, store, broker_id: int, ttl: float = SHORT_TTL_S):
    """Register ``broker_id``, trying again while its previous lease has not expired."""

    def attempt():
        try:
            return harness.wait(store.register_broker(broker(broker_id), ttl))
        except BrokerIdInUse:
            return None

    return eventually(attempt, f"broker {broker_id} to be free")


class EtcdMembershipTests:
    def test_membership_keys_are_the_documented_json(self, etcd_member, harness):
        """brokers/<id> and controller hold the documented JSON under the broker's lease;
        their create_revision is the broker epoch and the controller epoch."""
        cluster_id = new_cluster_id()
        store = harness.open(etcd_member, cluster_id)
        registration = harness.wait(store.register_broker(broker(1, "r1"), 6))
        epoch = harness.wait(store.campaign(registration))
        stored = stored_keys(etcd_member, cluster_id)
        prefix = f"/tmq/{cluster_id}/"
        assert {key: document for key, (document, _) in stored.items()} == {
            prefix + "brokers/1": {
                "host": "broker-1.example",
                "port": 9091,
                "rack": "r1",
                "broker_epoch": registration.broker_epoch,
            },
            prefix + "controller": {"broker_id": 1, "controller_epoch": epoch},
        }
        broker_meta, controller_meta = (
            stored[prefix + "brokers/1"][1],
            stored[prefix + "controller"][1],
        )
        assert broker_meta.create_revision == registration.broker_epoch
        assert controller_meta.create_revision == epoch
        assert broker_meta.lease_id == controller_meta.lease_id == registration.lease_id != 0

    def test_keepalives_hold_the_lease_and_its_loss_is_seen(self, etcd_member, harness):
        """Keepalives keep a 2 s lease alive well past its TTL and move the deadline on; once
        they stop, lost fires when the deadline passes, etcd expires the lease, the key
        vanishes and another store's watchers see BrokerLost."""
        cluster_id = new_cluster_id()
        store, other = harness.open(etcd_member, cluster_id), harness.open(etcd_member, cluster_id)
        events = []
        other.watch(events.append)
        registration = harness.wait(store.register_broker(broker(1), SHORT_TTL_S))
        first_deadline = registration.deadline.deadline
        assert keepalive_threads(cluster_id)
        time.sleep(2 * SHORT_TTL_S)  # two TTLs: the lease lives on keepalives alone
        assert registration.valid(time.monotonic())
        assert registration.deadline.deadline > first_deadline + SHORT_TTL_S
        assert not registration.lost.called
        assert harness.wait(other.live_brokers()) == {1: registration.info}

        registration.pause_keepalives()
        paused_at = time.monotonic()
        reason = harness.wait(registration.lost)
        assert "deadline" in reason
        assert not registration.valid(time.monotonic())
        assert time.monotonic() - paused_at < SHORT_TTL_S + 1
        eventually(lambda: BrokerLost(1, registration.broker_epoch) in events, "BrokerLost")
        assert events == [
            BrokerRegistered(registration.info),
            BrokerLost(1, registration.broker_epoch),
        ]
        assert harness.wait(other.live_brokers()) == {}
        assert stored_keys(etcd_member, cluster_id) == {}
        eventually(lambda: not keepalive_threads(cluster_id), "the keepalive thread to end")

    def test_a_registration_is_lost_when_etcd_is_unreachable(self, tmp_path, harness):
        """With etcd gone, keepalives fail; the registration is lost once its deadline
        passes (within about TTL - 1 s of the last answered keepalive), saying why."""
        member = start_etcd(tmp_path / "etcd")
        try:
            store = harness.open(member, new_cluster_id(), timeout_s=1.0)
            registration = harness.wait(store.register_broker(broker(1), SHORT_TTL_S))
            member.stop()
            stopped_at = time.monotonic()
            reason = harness.wait(registration.lost)
            assert time.monotonic() - stopped_at < SHORT_TTL_S
            assert "the lease deadline passed: keepalives failed" in reason
            assert not registration.valid(time.monotonic())
        finally:
            harness.close_all()
            member.stop()

    def test_the_controller_moves_when_its_lease_expires(self, etcd_member, harness):
        """When the controller's lease expires, the controller key vanishes with it, the
        waiting campaigner (another store) becomes controller with a larger epoch, and the
        deposed controller's writes fenced with its old epoch fail with Fenced, writing
        nothing."""
        cluster_id = new_cluster_id()
        old_store, new_store = (harness.open(etcd_member, cluster_id) for _ in range(2))
        deposed = harness.wait(old_store.register_broker(broker(1), SHORT_TTL_S))
        old_epoch = harness.wait(old_store.campaign(deposed))
        harness.wait(
            old_store.create_topic(*topic("gpu", partitions=1), ControllerFence(old_epoch))
        )
        state = harness.wait(old_store.partition_states("gpu"))[0]
        successor = harness.wait(new_store.register_broker(broker(2), 6))
        events = []
        new_store.watch(events.append)
        waiting = new_store.campaign(successor)
        harness.settle(new_store)
        assert not waiting.called

        deposed.pause_keepalives()
        new_epoch = harness.wait(waiting)
        assert new_epoch > old_epoch
        assert events == [
            BrokerLost(1, deposed.broker_epoch),
            ControllerChanged(None, old_epoch),
            ControllerChanged(2, new_epoch),
        ]
        assert harness.wait(old_store.controller()) == (2, new_epoch)
        assert isinstance(harness.wait(deposed.lost), str)

        fence = ControllerFence(old_epoch)
        moved = replace(state, leader=2, leader_epoch=1)
        harness.wait_failure(
            old_store.update_partition_state("gpu", 0, moved, state.version, fence), Fenced
        )
        harness.wait_failure(old_store.create_topic(*topic("other"), fence), Fenced)
        assert harness.wait(new_store.partition_states("gpu")) == {0: state}
        assert list(harness.wait(new_store.topics())) == ["gpu"]
        harness.wait(
            new_store.update_partition_state(
                "gpu", 0, moved, state.version, ControllerFence(new_epoch)
            )
        )

    def test_a_leaders_isr_write_fails_after_it_registered_again(self, etcd_member, harness):
        """A leader whose lease expired registers again with a larger broker epoch; an ISR
        write fenced with its old epoch fails with Fenced and writes nothing, one with the new
        epoch succeeds."""
        cluster_id = new_cluster_id()
        store = harness.open(etcd_member, cluster_id)
        harness.wait(store.create_topic(*topic("gpu", partitions=1, brokers=(1, 2))))
        state = harness.wait(store.partition_states("gpu"))[0]
        leader = harness.wait(store.register_broker(broker(1), SHORT_TTL_S))
        old = LeaderFence(1, leader.broker_epoch)
        shrunk = harness.wait(
            store.update_partition_state("gpu", 0, replace(state, isr=(1,)), state.version, old)
        )
        leader.pause_keepalives()
        harness.wait(leader.lost)
        again = register_when_free(harness, store, 1)
        assert again.broker_epoch > leader.broker_epoch
        expanded = replace(shrunk, isr=(1, 2))
        harness.wait_failure(
            store.update_partition_state("gpu", 0, expanded, shrunk.version, old), Fenced
        )
        assert harness.wait(store.partition_states("gpu")) == {0: shrunk}
        new = LeaderFence(1, again.broker_epoch)
        stored = harness.wait(store.update_partition_state("gpu", 0, expanded, shrunk.version, new))
        assert stored.isr == (1, 2)

    def test_closing_revokes_the_lease_at_once(self, etcd_member, harness):
        """Closing a registration, or the store holding one, revokes its lease: the keys are
        gone at once (no TTL to wait), the lease is unknown to etcd and the keepalive thread
        has ended."""
        cluster_id = new_cluster_id()
        store = harness.open(etcd_member, cluster_id)
        first = harness.wait(store.register_broker(broker(1), 60))
        harness.wait(store.campaign(first))
        second = harness.wait(store.register_broker(broker(2), 60))
        harness.wait(first.close())
        assert list(stored_keys(etcd_member, cluster_id)) == [f"/tmq/{cluster_id}/brokers/2"]
        assert len(keepalive_threads(cluster_id)) == 1
        harness.wait(store.close())
        assert stored_keys(etcd_member, cluster_id) == {}
        assert keepalive_threads(cluster_id) == []
        client = etcd3.client(host="127.0.0.1", port=etcd_member.client_port, timeout=5)
        try:
            for registration in (first, second):
                assert client.get_lease_info(registration.lease_id).TTL == -1
        finally:
            client.close()

    def test_a_compacted_watch_resyncs_membership(self, tmp_path, harness, logged):
        """When the watch must resume from a compacted revision, the resync also sends the
        membership differences: the broker that left, the new controller, the new broker."""
        port = free_port()
        member = start_etcd(tmp_path / "etcd", port)
        cluster_id = new_cluster_id()
        prefix = f"/tmq/{cluster_id}/"
        try:
            store = harness.open(member, cluster_id)
            events = []
            store.watch(events.append)
            client = etcd3.client(host="127.0.0.1", port=member.client_port, timeout=5)
            gone_lease = client.lease(60)
            document = {"host": "h", "port": 1, "rack": None, "broker_epoch": 0}
            client.put(prefix + "brokers/1", json.dumps(document), lease=gone_lease)
            gone_epoch = client.get(prefix + "brokers/1")[1].create_revision
            eventually(lambda: events, "BrokerRegistered")
            client.close()
            member.stop()

            member = start_etcd(tmp_path / "etcd")  # on a port the store does not know
            client = etcd3.client(host="127.0.0.1", port=member.client_port, timeout=5)
            client.revoke_lease(gone_lease.id)
            lease = client.lease(60)
            client.put(prefix + "brokers/7", json.dumps(document), lease=lease)
            client.put(prefix + "controller", json.dumps({"broker_id": 7}), lease=lease)
            epoch = client.get(prefix + "brokers/7")[1].create_revision
            controller_epoch = client.get(prefix + "controller")[1].create_revision
            client.compact(client.get_response(prefix).header.revision)
            client.close()
            member.stop()

            member = start_etcd(tmp_path / "etcd", port)
            eventually(lambda: len(events) == 4, "the resync events")
            assert events == [
                BrokerRegistered(replace(broker(1), host="h", port=1, broker_epoch=gone_epoch)),
                BrokerLost(1, gone_epoch),
                ControllerChanged(7, controller_epoch),
                BrokerRegistered(replace(broker(7), host="h", port=1, broker_epoch=epoch)),
            ]
            assert harness.wait(store.controller()) == (7, controller_epoch)
            said = messages(logged, cluster_id)
            assert "etcd watch of {prefix}: {error}; reading everything" in said
        finally:
            harness.close_all()
            member.stop()
