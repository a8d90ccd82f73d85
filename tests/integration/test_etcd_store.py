"""``EtcdMetadataStore`` against a real etcd (``ThrowawayEtcd``), on a real reactor in a thread.

``EtcdMetadataStoreContractTests`` holds the etcd store to ``MetadataStoreContract`` (the
contract the local store keeps, ``tests/cluster/test_store_contract.py``), one etcd for the
module and a cluster id of its own per test. ``EtcdMetadataStoreTests`` checks what only the
etcd store shows: its keys and JSON values, events of other stores, a watch across etcd
restarts and compaction, an unreachable etcd, and closing.

The test thread never touches a store directly: ``OnReactor`` runs every call on the reactor
thread and hands back the Deferred, which ``wait`` reads there, with a timeout. Every etcd is
started by a helper process (``EtcdProcess``), never forked from this one while gRPC is busy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import etcd3
import pytest
from twisted.logger import globalLogPublisher
from twisted.python import threadable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))

from cluster_helpers import topic
from test_membership_contract import MembershipContract
from test_store_contract import MetadataStoreContract

from tmq.client.sync import shared_reactor_thread
from tmq.cluster.etcd_membership import EtcdRegistration
from tmq.cluster.etcd_store import EtcdMetadataStore
from tmq.cluster.store import (
    CommittedOffset,
    MetadataStoreError,
    PartitionState,
    PartitionStateChanged,
    TopicCreated,
    TopicDeleted,
)
from tmq.tools.processes import free_port

TIMEOUT_S = 30  # no wait of these tests takes this long unless something is broken

_RUN_ETCD = """
import sys
from tmq.tools.etcd import EtcdError, ThrowawayEtcd

try:
    member = ThrowawayEtcd(sys.argv[1] or None, client_port=int(sys.argv[2]) or None).start()
except EtcdError as error:
    print(str(error).replace("\\n", " "), flush=True)
    sys.exit(1)
print(member.client_port, flush=True)
sys.stdin.read()  # until the test closes stdin, or dies
member.stop()
"""


class EtcdProcess:
    """A ``ThrowawayEtcd`` (in ``directory``, on ``port``; default new ones) run by a helper
    process, stopped by ``stop`` or when this process dies.

    ``ThrowawayEtcd`` starts etcd with a ``preexec_fn``, so with a real ``fork()``, which runs
    gRPC's fork handlers: while this process has gRPC calls going (a store's watch), they
    sometimes break the child before it runs etcd (grpcio 1.85; about 3 forks in 100). The
    helper has no gRPC, and is started without a ``preexec_fn`` (no fork handlers run).
    """

    def __init__(self, directory: Path | None = None, port: int | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-c", _RUN_ETCD, str(directory or ""), str(port or 0)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # outside the repo: there ./tmq would shadow the installed tmq (no tmq.tools)
            cwd=tempfile.gettempdir(),
        )
        said = self.process.stdout.readline().strip()
        if not said.isdigit():
            self.stop()
            pytest.fail(f"etcd did not start: {said} (make test installs it, as root)")
        self.client_port = int(said)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def stop(self) -> None:
        """Stop etcd and the helper (again: nothing to do)."""
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(TIMEOUT_S)


def start_etcd(directory: Path | None = None, port: int | None = None) -> EtcdProcess:
    return EtcdProcess(directory, port)


@pytest.fixture(scope="module")
def etcd_member():
    """One etcd for the module; tests keep apart by their cluster ids."""
    member = start_etcd()
    yield member
    member.stop()


class OnReactor:
    """A store (or a registration) whose methods run on the reactor thread, returning what
    they return there (a Deferred, an unsubscribe function); called on the reactor thread
    itself (by a watcher), it calls straight through. Other attributes are read as they are;
    an ``OnReactor`` passed as an argument is unwrapped."""

    def __init__(self, store: EtcdMetadataStore | EtcdRegistration, runner):
        self.store = store
        self.runner = runner

    def __getattr__(self, name: str):
        method = getattr(self.store, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            args = tuple(arg.store if isinstance(arg, OnReactor) else arg for arg in args)
            if threadable.isInIOThread():
                return method(*args, **kwargs)
            (result,) = self.runner.submit(lambda: [method(*args, **kwargs)]).result(TIMEOUT_S)
            if name == "watch":
                return lambda: self.runner.call(result)
            return result

        return call


class Harness:
    """Opens stores on the shared reactor thread and waits for their Deferreds."""

    def __init__(self):
        self.runner = shared_reactor_thread()
        self.opened: list[OnReactor] = []

    def open(self, member: EtcdProcess, cluster_id: str, **options) -> OnReactor:
        endpoints = [("127.0.0.1", member.client_port)]

        def start():
            return EtcdMetadataStore(self.runner.reactor, endpoints, cluster_id, **options).open()

        (opening,) = self.runner.submit(lambda: [start()]).result(TIMEOUT_S)
        store = OnReactor(self.wait(opening), self.runner)
        self.opened.append(store)
        return store

    def wait(self, deferred):
        """The result of ``deferred`` (a registration comes wrapped in ``OnReactor``)."""
        result = self.runner.submit(lambda: deferred).result(TIMEOUT_S)
        return OnReactor(result, self.runner) if isinstance(result, EtcdRegistration) else result

    def wait_failure(self, deferred, *types):
        with pytest.raises(types) as raised:
            self.wait(deferred)
        return raised.value

    def settle(self, *stores: OnReactor) -> None:
        for store in stores or self.opened:
            self.wait(store.idle())

    def close_all(self) -> None:
        for store in self.opened:
            self.wait(store.close())


@pytest.fixture
def logged():
    """The log events emitted during the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def messages(logged: list[dict], cluster_id: str) -> list[str]:
    """The formats of the etcd store's log messages about ``cluster_id``."""
    prefix = f"/tmq/{cluster_id}/"
    return [event["log_format"] for event in logged if event.get("prefix") == prefix]


def stored_keys(member: EtcdProcess, cluster_id: str) -> dict[str, tuple[dict, object]]:
    """Every key of the cluster, read with a plain etcd client: its JSON and its metadata."""
    client = etcd3.client(host="127.0.0.1", port=member.client_port, timeout=5)
    try:
        return {
            meta.key.decode(): (json.loads(value), meta)
            for value, meta in client.get_prefix(f"/tmq/{cluster_id}/")
        }
    finally:
        client.close()


def new_cluster_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def pool_threads(store: OnReactor) -> list[threading.Thread]:
    name = f"tmq-etcd-{store.store.cluster_id}"
    return [thread for thread in threading.enumerate() if name in thread.name]


class EtcdMetadataStoreContractTests(MetadataStoreContract, MembershipContract):
    """The ``MetadataStore`` contract (with membership), held by ``EtcdMetadataStore``."""

    @pytest.fixture(autouse=True)
    def _harness(self, etcd_member):
        self.member = etcd_member
        self.harness = Harness()
        yield
        self.harness.close_all()

    def make_store(self, tmp_path) -> OnReactor:
        self.cluster_id = new_cluster_id()
        return self.open_store()

    def open_store(self) -> OnReactor:
        return self.harness.open(self.member, self.cluster_id)

    def wait(self, deferred):
        return self.harness.wait(deferred)

    def wait_failure(self, deferred, *types):
        return self.harness.wait_failure(deferred, *types)

    def settle(self) -> None:
        self.harness.settle()


@pytest.fixture
def harness():
    harness = Harness()
    yield harness
    harness.close_all()


class EtcdMetadataStoreTests:
    def test_values_are_json_at_the_documented_keys(self, etcd_member, harness):
        """Every key is where the module docstring says, its value the documented JSON (a
        plain etcd client reads it); a partition state's version is its key's mod_revision;
        group names are percent-encoded."""
        cluster_id = new_cluster_id()
        store = harness.open(etcd_member, cluster_id)
        spec, states = topic("gpu", partitions=2, configs={"retention.ms": "1000"})
        harness.wait(store.create_topic(spec, states))
        current = harness.wait(store.partition_states("gpu"))[1]
        updated = harness.wait(
            store.update_partition_state("gpu", 1, replace(current, isr=(2,)), current.version)
        )
        committed = CommittedOffset(7, "m", 3, 1_764_338_400_000)
        harness.wait(store.commit_offsets("a/b", {("gpu", 0): committed}))
        harness.wait(store.commit_offsets("grüße", {("gpu", 1): CommittedOffset(9)}))
        harness.wait(store.allocate_producer_ids(1000))

        stored = stored_keys(etcd_member, cluster_id)
        created = stored[f"/tmq/{cluster_id}/topics/gpu"][1].create_revision
        prefix = f"/tmq/{cluster_id}/"
        assert {key: document for key, (document, _) in stored.items()} == {
            prefix + "topics/gpu": {
                "partitions": 2,
                "replication_factor": 2,
                "assignment": {"0": [1, 2], "1": [2, 3]},
                "configs": {"retention.ms": "1000"},
            },
            prefix + "partitions/gpu/0": {
                "leader": 1,
                "leader_epoch": 0,
                "isr": [1, 2],
                "controller_epoch": 1,
            },
            prefix + "partitions/gpu/1": {
                "leader": 2,
                "leader_epoch": 0,
                "isr": [2],
                "controller_epoch": 1,
            },
            prefix + "groups/a%2Fb/offsets/gpu/0": {
                "offset": 7,
                "metadata": "m",
                "leader_epoch": 3,
                "commit_timestamp": 1_764_338_400_000,
                "topic_created_revision": created,
            },
            prefix + "groups/gr%C3%BC%C3%9Fe/offsets/gpu/1": {
                "offset": 9,
                "metadata": None,
                "leader_epoch": -1,
                "commit_timestamp": -1,
                "topic_created_revision": created,
            },
            prefix + "producer_ids": {"next_producer_id": 1000},
        }
        assert stored[prefix + "partitions/gpu/1"][1].mod_revision == updated.version

    def test_deleting_a_topic_removes_its_keys_and_offsets(self, etcd_member, harness):
        """delete_topic removes the topic's key, its partition keys and every group's offsets
        of it from etcd; other topics' keys stay."""
        cluster_id = new_cluster_id()
        store = harness.open(etcd_member, cluster_id)
        harness.wait(store.create_topic(*topic("gone", partitions=3)))
        harness.wait(store.create_topic(*topic("kept", partitions=1)))
        for group in ("a", "b/c", ""):
            offsets = {("gone", 0): CommittedOffset(1), ("gone", 2): CommittedOffset(2)}
            harness.wait(store.commit_offsets(group, {**offsets, ("kept", 0): CommittedOffset(3)}))
        harness.wait(store.delete_topic("gone"))
        prefix = f"/tmq/{cluster_id}/"
        assert sorted(stored_keys(etcd_member, cluster_id)) == [
            prefix + "groups//offsets/kept/0",
            prefix + "groups/a/offsets/kept/0",
            prefix + "groups/b%2Fc/offsets/kept/0",
            prefix + "partitions/kept/0",
            prefix + "topics/kept",
        ]

    def test_watchers_see_the_changes_of_other_stores(self, etcd_member, harness):
        """A change made through one store reaches the watchers of another store of the same
        cluster, and nothing of another cluster does."""
        cluster_id = new_cluster_id()
        watching = harness.open(etcd_member, cluster_id)
        writing = harness.open(etcd_member, cluster_id)
        elsewhere = harness.open(etcd_member, new_cluster_id())
        events = []
        watching.watch(events.append)
        spec, states = topic("gpu", partitions=1)
        harness.wait(writing.create_topic(spec, states))
        harness.wait(elsewhere.create_topic(*topic("other")))
        harness.wait(writing.delete_topic("gpu"))
        harness.wait(watching.allocate_producer_ids(1))  # a write after them all
        harness.settle(watching)
        assert [type(event) for event in events] == [
            TopicCreated,
            PartitionStateChanged,
            TopicDeleted,
        ]
        assert events[0] == TopicCreated(spec)
        assert events[1].state.leader == 1 and events[2] == TopicDeleted("gpu")

    def test_a_watch_survives_an_etcd_restart(self, tmp_path, harness, logged):
        """When etcd restarts, the watch comes back from the revision after the last one it
        saw: the changes made while it was away (here through etcd on another port) and
        after it came back all arrive, in order."""
        port = free_port()
        member = start_etcd(tmp_path / "etcd", port)
        cluster_id = new_cluster_id()
        try:
            store = harness.open(member, cluster_id)
            events = []
            store.watch(events.append)
            harness.wait(store.create_topic(*topic("before", partitions=1)))
            harness.settle(store)
            before = harness.wait(store.partition_states("before"))[0]
            member.stop()

            member = start_etcd(tmp_path / "etcd")  # on a port the store does not know
            other = harness.open(member, cluster_id)
            harness.wait(other.create_topic(*topic("during", partitions=1)))
            changed = harness.wait(
                other.update_partition_state(
                    "before", 0, replace(before, leader_epoch=1), before.version
                )
            )
            harness.wait(other.close())
            member.stop()

            member = start_etcd(tmp_path / "etcd", port)
            harness.wait(store.create_topic(*topic("after", partitions=1)))
            harness.settle(store)
            assert [
                (type(event).__name__, getattr(event, "topic", None) or event.spec.name)
                for event in events
            ] == [
                ("TopicCreated", "before"),
                ("PartitionStateChanged", "before"),
                ("TopicCreated", "during"),
                ("PartitionStateChanged", "during"),
                ("PartitionStateChanged", "before"),
                ("TopicCreated", "after"),
                ("PartitionStateChanged", "after"),
            ]
            assert events[4] == PartitionStateChanged("before", 0, changed)
            assert harness.wait(store.partition_states("before")) == {0: changed}
            said = messages(logged, cluster_id)
            assert [text for text in said if "lost" in text or "resumed" in text] == [
                "etcd watch of {prefix} lost ({error}); resuming after revision {revision}",
                "etcd watch of {prefix} resumed after revision {revision}",
            ]
        finally:
            harness.close_all()
            member.stop()

    def test_a_compacted_watch_reads_everything_again(self, tmp_path, harness, logged):
        """When the revision a watch must resume from was compacted, the store reads all
        topics and states again and sends the differences: deleted topics, created topics
        with their states, changed states."""
        port = free_port()
        member = start_etcd(tmp_path / "etcd", port)
        cluster_id = new_cluster_id()
        try:
            store = harness.open(member, cluster_id)
            for name in ("gone", "kept", "same"):
                harness.wait(store.create_topic(*topic(name, partitions=1)))
            kept = harness.wait(store.partition_states("kept"))[0]
            events = []
            store.watch(events.append)
            member.stop()

            member = start_etcd(tmp_path / "etcd")  # on a port the store does not know
            other = harness.open(member, cluster_id)
            harness.wait(other.delete_topic("gone"))
            harness.wait(other.create_topic(*topic("new", partitions=2)))
            changed = harness.wait(
                other.update_partition_state("kept", 0, replace(kept, leader=2), kept.version)
            )
            harness.wait(other.close())
            client = etcd3.client(host="127.0.0.1", port=member.client_port, timeout=5)
            client.compact(client.get_response(f"/tmq/{cluster_id}/").header.revision)
            client.close()
            member.stop()

            member = start_etcd(tmp_path / "etcd", port)
            harness.wait(store.allocate_producer_ids(1))
            harness.settle(store)
            new = harness.wait(store.partition_states("new"))
            new_spec = harness.wait(store.topics())["new"]
            assert events == [
                TopicDeleted("gone"),
                TopicCreated(new_spec),
                PartitionStateChanged("kept", 0, changed),
                PartitionStateChanged("new", 0, new[0]),
                PartitionStateChanged("new", 1, new[1]),
            ]
            said = messages(logged, cluster_id)
            assert "etcd watch of {prefix}: {error}; reading everything" in said
        finally:
            harness.close_all()
            member.stop()

    def test_an_unreachable_etcd_fails_with_a_store_error(self, harness):
        """Opening a store on an endpoint where no etcd listens fails with
        MetadataStoreError naming the endpoint and the operation, within about the timeout,
        and leaves no pool thread behind."""
        port = free_port()
        started = time.monotonic()

        def start():
            store = EtcdMetadataStore(
                harness.runner.reactor, [("127.0.0.1", port)], "unreachable", timeout_s=1.0
            )
            return store.open()

        opening = harness.runner.submit(lambda: [start()]).result(TIMEOUT_S)[0]
        error = harness.wait_failure(opening, MetadataStoreError)
        assert time.monotonic() - started < 10
        assert f"127.0.0.1:{port}" in str(error) and "open" in str(error)
        assert not [t for t in threading.enumerate() if "tmq-etcd-unreachable" in t.name]

    def test_calls_fail_with_a_store_error_when_etcd_is_gone(self, tmp_path, harness):
        """Once etcd stopped, every call fails with MetadataStoreError (naming the endpoint
        and the operation) within about the timeout; closing still works."""
        member = start_etcd(tmp_path / "etcd")
        try:
            store = harness.open(member, new_cluster_id(), timeout_s=1.0)
            harness.wait(store.create_topic(*topic()))
            endpoint = member.endpoint
            member.stop()
            state = PartitionState(1, 1, (1,), 1)
            for operation, call in [
                ("topics", lambda: store.topics()),
                ("partition_states", lambda: store.partition_states("gpu")),
                (
                    "update_partition_state",
                    lambda: store.update_partition_state("gpu", 0, state, 1),
                ),
                (
                    "commit_offsets",
                    lambda: store.commit_offsets("g", {("gpu", 0): CommittedOffset(1)}),
                ),
                ("allocate_producer_ids", lambda: store.allocate_producer_ids(1)),
            ]:
                started = time.monotonic()
                error = harness.wait_failure(call(), MetadataStoreError)
                assert time.monotonic() - started < 10
                assert type(error) is MetadataStoreError
                assert endpoint in str(error) and operation in str(error)
            harness.wait(store.close())
            assert pool_threads(store) == []
        finally:
            member.stop()

    def test_close_stops_the_pool_and_refuses_calls(self, etcd_member, harness):
        """close() stops the store's thread pool and its watch; later calls fail with
        MetadataStoreError."""
        store = harness.open(etcd_member, new_cluster_id())
        harness.wait(store.create_topic(*topic()))
        assert pool_threads(store)
        harness.wait(store.close())
        assert pool_threads(store) == []
        harness.wait_failure(store.topics(), MetadataStoreError)
