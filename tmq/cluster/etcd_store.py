"""``EtcdMetadataStore``: the cluster metadata store in etcd (DESIGN §5).

It keeps the ``MetadataStore`` contract of ``tmq.cluster.store`` (the same contract tests as
``LocalMetadataStore``) for every broker of a cluster, through ``etcd3.MultiEndpointEtcd3Client``
(cslab-etcd3). Keys live under ``/tmq/<cluster_id>/``; values are compact JSON, readable with
``etcdctl get --prefix /tmq/<cluster_id>/``::

    topics/<topic>
        {"partitions": 2, "replication_factor": 2, "assignment": {"0": [1, 2], "1": [2, 3]},
         "configs": {"retention.ms": "86400000"}}
    partitions/<topic>/<partition>
        {"leader": 1, "leader_epoch": 0, "isr": [1, 2], "controller_epoch": 1}
    producer_ids
        {"next_producer_id": 2000}              the first producer id not yet handed out
    groups/<group>/offsets/<topic>/<partition>
        {"offset": 1200, "metadata": null, "leader_epoch": 0, "commit_timestamp": 1764338400000,
         "topic_created_revision": 17}                commit_timestamp: ms since the epoch

plus ``brokers/<id>`` and ``controller``, bound to leases (``tmq.cluster.etcd_membership``
documents them, the registrations, the controller election and the fences of writes).

``<topic>`` is the topic name as is (Kafka's characters need no escaping) and ``<partition>`` a
decimal number. ``<group>`` is the group name percent-encoded: UTF-8, every byte outside
``A-Z a-z 0-9 _ . - ~`` written as ``%XX`` (``urllib.parse.quote(group, safe="")``), so it never
holds a ``/``: ``sink`` -> ``sink``, ``a/b`` -> ``a%2Fb``, ``grüße`` -> ``gr%C3%BC%C3%9Fe``,
``%41`` -> ``%2541``, and the empty name gives ``groups//offsets/...``.

Versions: a partition state's ``version`` is the ``mod_revision`` of its key, which etcd takes
from one counter for the whole key space: it only grows, also across topic deletions and etcd
restarts. ``update_partition_state`` is one transaction comparing that ``mod_revision``. A
topic is created by one transaction that writes its key and every partition key if the topic
key's ``create_revision`` is 0, and deleted by one transaction that removes the topic key and
its partition keys; the groups' offsets of it are deleted right after. An offset records
``topic_created_revision``, the ``create_revision`` of the topic key it was committed against
(the commit transaction compares it), and ``fetch_offsets`` ignores offsets of a topic that is
gone, even while they are still stored (a concurrent commit, a failure half way). An offset
commit is one transaction; ``expire_offsets`` deletes each expired offset only if its
``mod_revision`` is still the one read (a commit meanwhile keeps it); ``allocate_producer_ids``
is a compare-and-swap loop on ``producer_ids``. etcd's ``--max-txn-ops`` (128 by default)
bounds one transaction, so it bounds the partitions of a topic (127) and of one offset commit
(128 minus its topics).

Threads: the etcd calls run one at a time, in the order they were made (so they take effect in
that order, as with the local store), on the store's own two-thread ``ThreadPool`` (started by
``open``, stopped by ``close``); their Deferreds fire on the reactor. The other pool thread
follows a watch of ``brokers/`` to ``topics/`` (brokers, the controller, topics, partition
states; the groups' offsets and the producer-id counter in between are skipped) from the
revision of the read made at ``open``, and hands the events to the reactor thread
(``callFromThread``), where watchers are called in revision order (in one revision: broker
losses, the controller, registrations, then topic events). When the watch breaks
(etcd restarted, a connection lost) it is created again from the last revision seen plus one;
if etcd compacted that revision away, the store reads everything again and sends the events
that turn what the watchers were told into what is there. A watcher hears of every change after
the last one delivered when it subscribed. A write's Deferred fires once the watchers got its
events (as with the local store), or after ``timeout_s`` if the watch lags.

Failures: a request that finds no etcd (or none that answers within ``timeout_s``) is tried
again, on the next endpoint when there are several, until ``timeout_s`` has passed since the
call began (one slow answer may take it to twice that); then the call fails with
``MetadataStoreError`` naming the endpoints and the operation. Reads, offset commits and
producer-id blocks are repeated whatever happened (that is harmless); the other writes only
while a read made just before them fails, so they never run twice.
"""

from __future__ import annotations

import itertools
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any
from urllib.parse import quote

import etcd3
import grpc
from etcd3 import etcdrpc
from etcd3.etcdrpc import kv_pb2
from etcd3.exceptions import Etcd3Exception, PreconditionFailedError
from etcd3.utils import prefix_range_end
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from .etcd_membership import (
    EtcdRegistration,
    MembershipCalls,
    MembershipTracker,
    check_fence,
    fence_ops,
    order,
    read_brokers,
    read_controller,
)
from .etcd_records import (
    decode_counter,
    decode_offset,
    decode_state,
    decode_topic,
    delete_prefix,
    encode,
    group_names,
    groups_of,
    offset_document,
    revision_of,
    state_document,
    topic_document,
)
from .store import (
    BrokerInfo,
    CommittedOffset,
    Fence,
    InvalidTopic,
    MetadataEvent,
    MetadataStoreError,
    PartitionState,
    PartitionStateChanged,
    StaleVersion,
    TopicCreated,
    TopicDeleted,
    TopicExists,
    TopicSpec,
    UnknownTopic,
    validate_topic,
    validate_topic_name,
)

__all__ = ["EtcdMetadataStore", "group_key"]

_CLUSTER_ID = re.compile(r"[A-Za-z0-9._-]+")
_PARTITION_KEY = re.compile(r"0|[1-9][0-9]*")
_MAX_PRODUCER_ID = 2**63 - 1  # producer ids are INT64 on the wire
_MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
_ENDPOINT_RETRY_S = 1.0  # a failed endpoint is skipped for this long
_FIRST_BACKOFF_S, _LAST_BACKOFF_S = 0.05, 1.0  # pauses between attempts
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),  # etcd refuses pings more often than every 5 s
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]
_RETRIED_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.OUT_OF_RANGE,  # a read at a revision compacted meanwhile
}


def group_key(group: str) -> str:
    """The ``<group>`` of ``group``'s keys (see the module docstring)."""
    return quote(group, safe="", errors="surrogatepass")


@dataclass(frozen=True)
class _Snapshot:
    """Everything the watch covers, read at one revision."""

    revision: int
    topics: Mapping[str, tuple[int, TopicSpec]]  # name -> (create_revision, spec)
    states: Mapping[tuple[str, int], PartitionState]
    brokers: Mapping[int, BrokerInfo]
    controller: tuple[int, int] | None


class _Compacted(Exception):
    """The watch's start revision was compacted away."""


class EtcdMetadataStore(MembershipCalls):
    """The etcd ``MetadataStore`` (see the module docstring). Call ``open`` first.

    Call it from the reactor thread only; Deferreds fire and watchers run there.

    :param reactor: the reactor the Deferreds fire on.
    :param endpoints: the etcd members' client addresses, ``(host, port)``, plain TCP.
    :param cluster_id: names the key prefix ``/tmq/<cluster_id>/`` (``A-Z a-z 0-9 . _ -``).
    :param timeout_s: how long a call tries to reach etcd (see the module docstring), and
        the longest a request waits for its answer.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        endpoints: Sequence[tuple[str, int]],
        cluster_id: str,
        *,
        timeout_s: float = 5.0,
    ):
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        if not isinstance(cluster_id, str) or not _CLUSTER_ID.fullmatch(cluster_id):
            raise ValueError(f"invalid cluster id {cluster_id!r}: use A-Z, a-z, 0-9, '.', '_', '-'")
        self._reactor = reactor
        self.endpoints = [(host, int(port)) for host, port in endpoints]
        self.cluster_id = cluster_id
        self.prefix = f"/tmq/{cluster_id}/"
        self._timeout_s = timeout_s
        self._where = ", ".join(f"{host}:{port}" for host, port in self.endpoints)
        self._client: etcd3.MultiEndpointEtcd3Client | None = None
        self._pool: ThreadPool | None = None
        # reactor thread only
        self._state = "new"  # -> opening -> open -> closing -> closed
        self._opening = False
        self._watch_running = False
        self._watchers: dict[int, tuple[Callable[[MetadataEvent], object], int]] = {}
        self._watcher_ids = itertools.count()
        self._write_revision = 0  # the revision of this store's latest watched write
        self._delivered_revision = 0  # the revision of the latest events delivered
        self._in_flight = 0
        self._one_at_a_time = defer.DeferredLock()
        self._waiters: list[tuple[Callable[[], bool], defer.Deferred]] = []
        self._registrations: dict[int, EtcdRegistration] = {}
        self._controller_seen: tuple[int, int] | None = None  # as delivered to watchers
        # shared with the pool threads
        self._closing = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: Any = None
        # the watch thread only (handed over by open)
        self._watched_revision = 0
        self._known_topics: dict[str, int] = {}  # name -> create_revision
        self._known_states: dict[tuple[str, int], int] = {}  # -> version
        self._membership = MembershipTracker(self.prefix)
        self._watch_lost = False
        self._pause = _FIRST_BACKOFF_S

    # -- lifecycle --------------------------------------------------------------------------

    def open(self) -> defer.Deferred[EtcdMetadataStore]:
        """Start the pool, connect, read the watched keys and start the watch; fire with the
        store.

        :raises MetadataStoreError: etcd cannot be reached (the store is then closed).
        """
        if self._state != "new":
            return defer.fail(MetadataStoreError(f"the etcd store is {self._state} already"))
        self._state, self._opening = "opening", True
        self._pool = ThreadPool(0, 2, name=f"tmq-etcd-{self.cluster_id}")  # calls, watch
        self._pool.start()
        self._client = etcd3.MultiEndpointEtcd3Client(
            endpoints=[
                etcd3.Endpoint(
                    host, port, secure=False, time_retry=_ENDPOINT_RETRY_S, opts=_CHANNEL_OPTIONS
                )
                for host, port in self.endpoints
            ],
            timeout=self._timeout_s,
            failover=True,
        )
        opened = deferToThreadPool(
            self._reactor, self._pool, self._attempt, "open", self._snapshot, True
        )
        return opened.addBoth(self._opened)

    def _opened(self, outcome: _Snapshot | Failure) -> EtcdMetadataStore | Failure:
        self._opening = False
        if not isinstance(outcome, Failure) and self._state == "closing":
            outcome = Failure(MetadataStoreError("the etcd store was closed while opening"))
        if isinstance(outcome, Failure):
            if self._state == "opening":
                self._state = "closing"
                self._shut_down()
            self._check_waiters()
            return outcome
        self._remember(outcome)
        self._delivered_revision = outcome.revision
        self._controller_seen = outcome.controller
        self._state, self._watch_running = "open", True
        watching = deferToThreadPool(self._reactor, self._pool, self._watch_loop)
        watching.addBoth(self._watch_ended)
        return self

    def close(self) -> defer.Deferred[None]:
        """Close the registrations made through this store (revoking their leases), refuse
        new calls, stop the watch, wait for the calls in flight, stop the pool and close the
        connections. Closing again does nothing more."""
        registrations = list(self._registrations.values())
        if self._state == "open" and registrations:
            closing = defer.DeferredList([r.close() for r in registrations], consumeErrors=True)
            return closing.addCallback(lambda _: self._close())
        return self._close()

    def _close(self) -> defer.Deferred[None]:
        if self._state == "new":
            self._state = "closed"
        elif self._state in ("opening", "open"):
            self._state = "closing"
            self._closing.set()
            with self._stream_lock:
                stream = self._stream
            if stream is not None:
                stream.cancel()
            self._watchers.clear()
            self._check_waiters()  # writes waiting for their events, idle()
            self._when(
                lambda: self._in_flight == 0 and not self._watch_running and not self._opening
            ).addCallback(lambda _: self._shut_down())
        return self._when(lambda: self._state == "closed")

    def _shut_down(self) -> None:
        self._closing.set()
        self._pool.stop()  # every thread is idle by now: this only joins them
        self._client.close()
        self._state = "closed"
        self._check_waiters()

    def idle(self) -> defer.Deferred[None]:
        """Fire once no call is in flight and the watchers got the events of every write this
        store made (at once when it is not open)."""
        return self._when(
            lambda: (
                self._state != "open"
                or (self._in_flight == 0 and self._delivered_revision >= self._write_revision)
            )
        )

    def _when(self, condition: Callable[[], bool]) -> defer.Deferred[None]:
        if condition():
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append((condition, waiter))
        return waiter

    def _check_waiters(self) -> None:
        while True:
            ready = next((entry for entry in self._waiters if entry[0]()), None)
            if ready is None:
                return
            self._waiters.remove(ready)
            ready[1].callback(None)

    # -- MetadataStore --------------------------------------------------------------------

    def create_topic(
        self, spec: TopicSpec, states: Mapping[int, PartitionState], fence: Fence | None = None
    ) -> defer.Deferred[None]:
        check, create = partial(validate_topic, spec, states), self._create_topic
        return self._run("create_topic", create, spec, states, fence, check=check, writes=True)

    def delete_topic(self, name: str) -> defer.Deferred[None]:
        return self._run("delete_topic", self._delete_topic, name, writes=True)

    def topics(self) -> defer.Deferred[dict[str, TopicSpec]]:
        return self._run("topics", self._topics, idempotent=True)

    def partition_states(self, topic: str) -> defer.Deferred[dict[int, PartitionState]]:
        return self._run("partition_states", self._partition_states, topic, idempotent=True)

    def update_partition_state(
        self,
        topic: str,
        partition: int,
        state: PartitionState,
        expected_version: int,
        fence: Fence | None = None,
    ) -> defer.Deferred[PartitionState]:
        update = self._update_partition_state
        args = (topic, partition, state, expected_version, fence)
        return self._run("update_partition_state", update, *args, writes=True)

    def watch(self, callback: Callable[[MetadataEvent], object]) -> Callable[[], None]:
        """Subscribe ``callback`` (the ``MetadataStore`` contract): it is called on the reactor
        thread, in revision order, for every change after the last one delivered to watchers.
        Those include the changes of other stores, which a read made just before may already
        show: subscribe first, then read, and compare versions."""
        self._check_open()
        watcher_id = next(self._watcher_ids)
        self._watchers[watcher_id] = (callback, self._delivered_revision)

        def unsubscribe() -> None:
            self._watchers.pop(watcher_id, None)

        return unsubscribe

    def commit_offsets(
        self, group: str, offsets: Mapping[tuple[str, int], CommittedOffset]
    ) -> defer.Deferred[None]:
        commit, offsets = self._commit_offsets, dict(offsets)
        return self._run("commit_offsets", commit, group, offsets, idempotent=True)

    def delete_offsets(self, group: str) -> defer.Deferred[None]:
        return self._run("delete_offsets", self._delete_offsets, group, idempotent=True)

    def expire_offsets(
        self, group: str, committed_before_ms: int
    ) -> defer.Deferred[list[tuple[str, int]]]:
        expire = self._expire_offsets
        return self._run("expire_offsets", expire, group, committed_before_ms, idempotent=True)

    def offset_groups(self) -> defer.Deferred[list[str]]:
        return self._run("offset_groups", self._offset_groups, idempotent=True)

    def fetch_offsets(
        self, group: str, partitions: list[tuple[str, int]] | None
    ) -> defer.Deferred[dict[tuple[str, int], CommittedOffset]]:
        wanted = None if partitions is None else set(partitions)
        return self._run("fetch_offsets", self._fetch_offsets, group, wanted, idempotent=True)

    def allocate_producer_ids(self, count: int) -> defer.Deferred[int]:
        allocate, check = self._allocate_producer_ids, partial(_check_count, count)
        return self._run(
            "allocate_producer_ids", allocate, count, check=check, idempotent=True, writes=True
        )

    # -- calls: on the reactor ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise MetadataStoreError(f"the etcd metadata store of {self.prefix} is {self._state}")

    def _run(
        self,
        operation: str,
        function: Callable[..., tuple[Any, int]],
        *args: Any,
        check: Callable[[], None] | None = None,
        idempotent: bool = False,
        writes: bool = False,
    ) -> defer.Deferred:
        """``check()`` the arguments, then run ``function(*args)`` (which returns its result
        and the revision etcd answered at) on the pool. ``idempotent``: repeating the call does
        no harm. ``writes``: a successful call wrote watched keys at that revision, and fires
        once the watchers got its events (as the local store's calls do), or after the
        timeout if the watch lags."""
        try:
            self._check_open()
            if check is not None:
                check()
        except Exception:
            return defer.fail()
        self._in_flight += 1

        def done(outcome):
            self._in_flight -= 1
            if isinstance(outcome, Failure):
                self._check_waiters()
                return outcome
            result, revision = outcome
            if writes:
                self._write_revision = max(self._write_revision, revision)
            self._check_waiters()
            return self._delivered(revision).addCallback(lambda _: result) if writes else result

        call = partial(function, *args)
        pool, attempt = self._pool, self._attempt
        running = self._one_at_a_time.run(
            deferToThreadPool, self._reactor, pool, attempt, operation, call, idempotent
        )
        return running.addBoth(done)

    def _delivered(self, revision: int) -> defer.Deferred[None]:
        """Fire once the events up to ``revision`` were delivered, or ``timeout_s`` later."""
        delivered = self._when(
            lambda: self._state != "open" or self._delivered_revision >= revision
        )
        if not delivered.called:
            later = self._reactor.callLater(self._timeout_s, self._fire, delivered)
            delivered.addBoth(lambda result: later.cancel() if later.active() else None)
        return delivered

    def _fire(self, waiter: defer.Deferred[None]) -> None:
        self._waiters = [entry for entry in self._waiters if entry[1] is not waiter]
        waiter.callback(None)

    # -- calls: in the pool -----------------------------------------------------------------

    def _attempt(self, operation: str, call: Callable[[], Any], idempotent: bool) -> Any:
        """``call()``, tried again within the timeout while etcd is unreachable; a call that
        is not ``idempotent`` only while its request was never sent: a read first shows that
        the connection works (after an etcd restart it takes up to a second to come back)."""
        deadline = time.monotonic() + self._timeout_s
        pause, first = _FIRST_BACKOFF_S, None
        while True:
            if self._closing.is_set():
                raise MetadataStoreError(f"etcd at {self._where}: {operation}: store closing")
            sent = False
            try:
                if not idempotent:
                    self._client.get_response(self.prefix, count_only=True)
                sent = True
                return call()
            except (Etcd3Exception, grpc.RpcError) as error:
                first = first or error  # the cause; later ones say "no endpoint available"
                retry = (idempotent or not sent) and _transient(error)
                if not retry or time.monotonic() + pause > deadline:
                    raise self._error(operation, first) from error
            self._closing.wait(pause)
            pause = min(2 * pause, _LAST_BACKOFF_S)

    def _error(self, operation: str, error: BaseException) -> MetadataStoreError:
        reason = _describe(error)
        if "too many operations" in reason:
            reason += " (etcd's --max-txn-ops is too low for this call)"
        return MetadataStoreError(f"etcd at {self._where}: {operation} failed: {reason}")

    def _snapshot(self) -> _Snapshot:
        brokers, revision = read_brokers(self._client, self.prefix)
        controller, _ = read_controller(self._client, self.prefix, revision=revision)
        start = (self.prefix + "partitions/").encode()
        end = prefix_range_end((self.prefix + "topics/").encode())
        response = self._client.get_range_response(start, end, revision=revision)
        topics: dict[str, tuple[int, TopicSpec]] = {}
        states: dict[tuple[str, int], PartitionState] = {}
        for kv in response.kvs:
            parsed = self._parse_key(kv.key)
            if parsed is None:
                continue
            kind, topic, partition = parsed
            if kind == "topic":
                topics[topic] = (kv.create_revision, decode_topic(kv.key, topic, kv.value))
            else:
                states[topic, partition] = decode_state(kv.key, kv.value, kv.mod_revision)
        return _Snapshot(revision, topics, states, brokers, controller)

    def _create_topic(
        self, spec: TopicSpec, states: Mapping[int, PartitionState], fence: Fence | None
    ):
        client, ops = self._client, self._client.transactions
        fenced, read = fence_ops(ops, self.prefix, fence)
        key = self._topic_key(spec.name)
        success = [ops.put(key, encode(topic_document(spec)))]
        for partition in range(spec.partitions):
            document = state_document(states[partition])
            success.append(ops.put(self._partition_key(spec.name, partition), encode(document)))
        done, responses = client.transaction([ops.create(key) == 0, *fenced], success, read)
        if not done:
            check_fence(fence, responses[0] if read else [])
            raise TopicExists(f"topic {spec.name} exists")
        return None, revision_of(responses)

    def _delete_topic(self, name: str):
        client, ops = self._client, self._client.transactions
        if not _legal_topic(name):
            raise UnknownTopic(f"unknown topic {name!r}")
        key, partitions = self._topic_key(name), self.prefix + f"partitions/{name}/"
        while True:  # the topic named ``name`` when the transaction runs
            _, meta = client.get(key)
            if meta is None:
                raise UnknownTopic(f"unknown topic {name!r}")
            compare = [ops.create(key) == meta.create_revision]
            deletes = [ops.delete(key), delete_prefix(ops, partitions)]
            done, responses = client.transaction(compare, deletes, [])
            if done:
                break
        groups = self.prefix + "groups/"
        listed = client.get_prefix_response(groups, keys_only=True)
        offsets = [self._offsets_prefix(group) + f"{name}/" for group in groups_of(listed, name)]
        try:  # unless a topic of that name was created meanwhile
            for first in range(0, len(offsets), _MAX_TXN_OPS):
                batch = [delete_prefix(ops, prefix) for prefix in offsets[first:][:_MAX_TXN_OPS]]
                client.transaction([ops.create(key) == 0], batch, [])
        except (Etcd3Exception, grpc.RpcError):
            pass  # what is left is ignored (its topic_created_revision is gone) and overwritten
        return None, revision_of(responses)

    def _topics(self):
        topics = self.prefix + "topics/"
        response = self._client.get_prefix_response(topics)
        found = {}
        for kv in response.kvs:
            name = kv.key.decode("utf-8", "replace")[len(topics) :]
            found[name] = decode_topic(kv.key, name, kv.value)
        return dict(sorted(found.items())), response.header.revision

    def _partition_states(self, topic: str):
        if not _legal_topic(topic):
            raise UnknownTopic(f"unknown topic {topic!r}")
        prefix = self.prefix + f"partitions/{topic}/"
        response = self._client.get_prefix_response(prefix)
        if not response.kvs:
            raise UnknownTopic(f"unknown topic {topic!r}")
        states = {}
        for kv in response.kvs:
            tail = kv.key.decode("utf-8", "replace")[len(prefix) :]
            if not _PARTITION_KEY.fullmatch(tail):
                raise MetadataStoreError(f"etcd key {kv.key!r}: not a partition key")
            states[int(tail)] = decode_state(kv.key, kv.value, kv.mod_revision)
        return dict(sorted(states.items())), response.header.revision

    def _update_partition_state(
        self,
        topic: str,
        partition: int,
        state: PartitionState,
        expected_version: int,
        fence: Fence | None,
    ):
        client, ops = self._client, self._client.transactions
        fenced, read = fence_ops(ops, self.prefix, fence)
        if not _legal_topic(topic) or not _is_partition(partition):
            raise UnknownTopic(f"topic {topic!r} has no partition {partition!r}")
        key = self._partition_key(topic, partition)
        done, responses = client.transaction(
            [*fenced, ops.version(key) > 0, ops.mod(key) == expected_version],
            [ops.put(key, encode(state_document(state)))],
            [ops.get(key), *read],
        )
        if done:
            revision = revision_of(responses)
            return replace(state, version=revision), revision
        check_fence(fence, responses[1] if read else [])
        if not responses[0]:
            raise UnknownTopic(f"topic {topic} has no partition {partition}")
        current = responses[0][0][1]
        raise StaleVersion(
            f"{topic}-{partition} is at version {current.mod_revision}, not {expected_version}"
        )

    def _commit_offsets(self, group: str, offsets: dict[tuple[str, int], CommittedOffset]):
        client, ops = self._client, self._client.transactions
        if not offsets:
            return None, 0
        for topic, partition in offsets:
            if not _legal_topic(topic) or not _is_partition(partition):
                raise UnknownTopic(f"topic {topic!r} has no partition {partition!r}")
        topics = sorted({topic for topic, _ in offsets})
        keys = [self._topic_key(topic) for topic in topics]
        while True:
            _, found = client.transaction([], [ops.get(key) for key in keys], [])
            created = {}
            for topic, key, kvs in zip(topics, keys, found, strict=True):
                if not kvs:
                    raise UnknownTopic(f"unknown topic {topic!r}")
                value, meta = kvs[0]
                spec = decode_topic(key, topic, value)
                created[topic] = meta.create_revision
                for named, partition in offsets:
                    if named == topic and partition >= spec.partitions:
                        raise UnknownTopic(f"topic {topic} has no partition {partition}")
            puts = [
                ops.put(
                    self._offsets_prefix(group_key(group)) + f"{topic}/{partition}",
                    encode(offset_document(committed, created[topic])),
                )
                for (topic, partition), committed in sorted(offsets.items())
            ]
            compare = [
                ops.create(key) == created[topic] for topic, key in zip(topics, keys, strict=True)
            ]
            done, responses = client.transaction(compare, puts, [])
            if done:
                return None, revision_of(responses)

    def _delete_offsets(self, group: str):
        response = self._client.delete_prefix(self._offsets_prefix(group_key(group)))
        return None, response.header.revision

    def _expire_offsets(self, group: str, committed_before_ms: int):
        client, ops = self._client, self._client.transactions
        prefix = self._offsets_prefix(group_key(group))
        expired = []
        while True:
            response = client.get_prefix_response(prefix)
            stale = [
                kv
                for kv in response.kvs
                if 0 <= decode_offset(kv.key, kv.value)[0].commit_timestamp_ms < committed_before_ms
            ][: _MAX_TXN_OPS // 2]
            if not stale:
                return sorted(expired), response.header.revision
            keys = [kv.key.decode("utf-8", "replace") for kv in stale]
            compare = [ops.mod(key) == kv.mod_revision for key, kv in zip(keys, stale, strict=True)]
            done, _ = client.transaction(compare, [ops.delete(key) for key in keys], [])
            if done:  # otherwise one was committed again meanwhile: read again
                for key in keys:
                    topic, _, partition = key[len(prefix) :].rpartition("/")
                    expired.append((topic, int(partition)))

    def _offset_groups(self):
        groups = self.prefix + "groups/"
        listed = self._client.get_prefix_response(groups, keys_only=True)
        return group_names(listed, groups), listed.header.revision

    def _fetch_offsets(self, group: str, wanted: set[tuple[str, int]] | None):
        if wanted is not None and not wanted:
            return {}, 0
        prefix = self._offsets_prefix(group_key(group))
        response = self._client.get_prefix_response(prefix)
        revision = response.header.revision
        if not response.kvs:
            return {}, revision
        topics = self.prefix + "topics/"
        live = {
            kv.key.decode("utf-8", "replace")[len(topics) :]: kv.create_revision
            for kv in self._client.get_prefix_response(
                topics, keys_only=True, revision=revision
            ).kvs
        }
        found = {}
        for kv in response.kvs:
            topic, _, partition = kv.key.decode("utf-8", "replace")[len(prefix) :].rpartition("/")
            if not _PARTITION_KEY.fullmatch(partition):
                raise MetadataStoreError(f"etcd key {kv.key!r}: not an offset key")
            committed, created = decode_offset(kv.key, kv.value)
            key = (topic, int(partition))
            if live.get(topic) == created and (wanted is None or key in wanted):
                found[key] = committed
        return found, revision

    def _allocate_producer_ids(self, count: int):
        client, ops = self._client, self._client.transactions
        key = self.prefix + "producer_ids"
        while True:
            value, meta = client.get(key)
            first = 0 if meta is None else decode_counter(key, value)
            if first + count - 1 > _MAX_PRODUCER_ID:
                raise MetadataStoreError(f"producer ids are exhausted: {first} is the next one")
            document = encode({"next_producer_id": first + count})
            mod_revision = 0 if meta is None else meta.mod_revision
            done, responses = client.transaction(
                [ops.mod(key) == mod_revision], [ops.put(key, document)], []
            )
            if done:
                return first, revision_of(responses)

    # -- keys --------------------------------------------------------------------------------

    def _topic_key(self, topic: str) -> str:
        return self.prefix + f"topics/{topic}"

    def _partition_key(self, topic: str, partition: int) -> str:
        return self.prefix + f"partitions/{topic}/{partition}"

    def _offsets_prefix(self, encoded_group: str) -> str:
        return self.prefix + f"groups/{encoded_group}/offsets/"

    def _watched_range(self) -> tuple[bytes, bytes]:
        """``brokers/`` up to the end of ``topics/`` (``controller``, ``groups/`` and
        ``producer_ids`` lie in between; the watch skips groups' offsets)."""
        start = (self.prefix + "brokers/").encode()
        return start, prefix_range_end((self.prefix + "topics/").encode())

    def _parse_key(self, key: bytes) -> tuple[str, str, int] | None:
        """``("topic", name, -1)``, ``("partition", topic, partition)``, ``("broker", "",
        id)``, ``("controller", "", -1)`` or None (another key)."""
        member = self._membership.parse(key)
        if member is not None:
            return member[0], "", member[1]
        text = key.decode("utf-8", "replace")
        if not text.startswith(self.prefix):
            return None
        kind, _, rest = text[len(self.prefix) :].partition("/")
        if kind == "topics" and rest:
            return "topic", rest, -1
        topic, _, partition = rest.partition("/")
        if kind == "partitions" and topic and _PARTITION_KEY.fullmatch(partition):
            return "partition", topic, int(partition)
        return None

    # -- the watch: in its pool thread ------------------------------------------------------

    def _watch_loop(self) -> None:
        """Follow the watch until the store closes: create it again when it breaks, read
        everything again when its revision was compacted."""
        resync = False
        while not self._closing.is_set():
            try:
                if resync:
                    self._resync()
                    resync = False
                self._follow()
            except _Compacted as error:
                self._log_later("etcd watch of {prefix}: {error}; reading everything", error=error)
                resync = True
                continue
            except Exception as error:
                if not self._closing.is_set():
                    self._watch_broke(error)
            self._closing.wait(self._pause)
            self._pause = min(2 * self._pause, _LAST_BACKOFF_S)

    def _watch_broke(self, error: Exception) -> None:
        if not isinstance(error, grpc.RpcError | Etcd3Exception | MetadataStoreError):
            text = "etcd watch of {prefix} failed (a bug); watching again"
            self._reactor.callFromThread(self._log.failure, text, Failure(), prefix=self.prefix)
        elif not self._watch_lost:
            self._watch_lost = True
            text = "etcd watch of {prefix} lost ({error}); resuming after revision {revision}"
            self._log_later(text, error=_describe(error))
        if _code(error) == grpc.StatusCode.UNAVAILABLE and len(self.endpoints) > 1:
            self._client.endpoint_in_use.fail()  # the next attempt tries another endpoint

    def _follow(self) -> None:
        """Watch from the revision after the last one seen until the stream ends or fails."""
        start, end = self._watched_range()
        create = etcdrpc.WatchCreateRequest(
            key=start, range_end=end, start_revision=self._watched_revision + 1
        )
        requests: queue.SimpleQueue = queue.SimpleQueue()
        requests.put(etcdrpc.WatchRequest(create_request=create))
        stream = etcdrpc.WatchStub(self._client.channel).Watch(iter(requests.get, None))
        try:
            with self._stream_lock:
                if self._closing.is_set():
                    return
                self._stream = stream
            for response in stream:
                if response.compact_revision:
                    raise _Compacted(f"compacted up to revision {response.compact_revision}")
                if response.canceled:
                    raise MetadataStoreError(f"etcd cancelled the watch: {response.cancel_reason}")
                if response.created:
                    self._pause = _FIRST_BACKOFF_S
                if response.created and self._watch_lost:
                    self._watch_lost = False
                    self._log_later("etcd watch of {prefix} resumed after revision {revision}")
                self._apply(response.events)
        finally:
            with self._stream_lock:
                self._stream = None
            requests.put(None)
            stream.cancel()

    def _apply(self, events: Sequence[Any]) -> None:
        """Deliver ``events``, one revision (one transaction) at a time."""
        for revision, batch in itertools.groupby(events, key=lambda event: event.kv.mod_revision):
            found = self._events_of(list(batch))
            self._watched_revision = revision
            self._reactor.callFromThread(self._deliver, revision, found)

    def _events_of(self, batch: list[Any]) -> list[MetadataEvent]:
        """The store's events of one revision: membership (``order``), topic deletions,
        creations, then states in order."""
        members: list[MetadataEvent] = []
        deleted: list[MetadataEvent] = []
        created: list[MetadataEvent] = []
        changed: list[PartitionStateChanged] = []
        for event in batch:
            parsed = self._parse_key(event.kv.key)
            if parsed is None:
                continue
            kind, topic, partition = parsed
            removed = event.type == kv_pb2.Event.DELETE
            try:
                if kind in ("broker", "controller"):
                    members.extend(self._membership.event(kind, partition, event.kv, removed))
                elif kind == "topic" and removed:
                    if self._known_topics.pop(topic, None) is not None:
                        deleted.append(TopicDeleted(topic))
                elif kind == "topic":
                    spec = decode_topic(event.kv.key, topic, event.kv.value)
                    if self._known_topics.get(topic) != event.kv.create_revision:
                        self._known_topics[topic] = event.kv.create_revision
                        created.append(TopicCreated(spec))
                elif removed:
                    self._known_states.pop((topic, partition), None)
                else:
                    kv = event.kv
                    state = decode_state(kv.key, kv.value, kv.mod_revision)
                    self._known_states[topic, partition] = state.version
                    changed.append(PartitionStateChanged(topic, partition, state))
            except MetadataStoreError as error:
                self._log_later("etcd watch of {prefix}: skipped an event: {error}", error=error)
        changed.sort(key=lambda event: (event.topic, event.partition))
        return [*order(members), *deleted, *created, *changed]

    def _resync(self) -> None:
        """Read everything, send the events from what watchers know to what is there."""
        snapshot = self._attempt("resync", self._snapshot, True)
        events = self._membership.resync(snapshot.brokers, snapshot.controller)
        fresh = set()
        for name, created in sorted(self._known_topics.items()):
            if snapshot.topics.get(name, (None,))[0] != created:
                events.append(TopicDeleted(name))
        for name, (created, spec) in sorted(snapshot.topics.items()):
            if self._known_topics.get(name) != created:
                fresh.add(name)
                events.append(TopicCreated(spec))
        for (topic, partition), state in sorted(snapshot.states.items()):
            if topic in fresh or self._known_states.get((topic, partition)) != state.version:
                events.append(PartitionStateChanged(topic, partition, state))
        self._remember(snapshot)
        self._reactor.callFromThread(self._deliver, snapshot.revision, events)

    def _remember(self, snapshot: _Snapshot) -> None:
        self._watched_revision = snapshot.revision
        self._known_topics = {name: created for name, (created, _) in snapshot.topics.items()}
        self._known_states = {key: state.version for key, state in snapshot.states.items()}
        self._membership.remember(snapshot.brokers, snapshot.controller)

    def _log_later(self, text: str, **fields: Any) -> None:
        fields.setdefault("revision", self._watched_revision)
        self._reactor.callFromThread(self._log.warn, text, prefix=self.prefix, **fields)

    # -- the watch: on the reactor --------------------------------------------------------

    def _deliver(self, revision: int, events: list[MetadataEvent]) -> None:
        if self._state != "open":
            return
        self._delivered_revision = max(self._delivered_revision, revision)
        self._membership_delivered(events)
        for event in events:
            for watcher_id, (callback, since) in list(self._watchers.items()):
                if since >= revision or watcher_id not in self._watchers:
                    continue  # subscribed later, or unsubscribed by an earlier callback
                try:
                    callback(event)
                except Exception:
                    self._log.failure(
                        "metadata watcher {callback!r} failed on {event!r}",
                        callback=callback,
                        event=event,
                    )
        self._check_waiters()

    def _watch_ended(self, outcome: object) -> None:
        self._watch_running = False
        if isinstance(outcome, Failure):
            self._log.failure("the etcd watch of {prefix} stopped", outcome, prefix=self.prefix)
        self._check_waiters()


# -- helpers --------------------------------------------------------------------------------


def _code(error: BaseException) -> grpc.StatusCode | None:
    return error.code() if isinstance(error, grpc.RpcError) else None


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or type(error).__name__


def _transient(error: BaseException) -> bool:
    """Whether trying again may help: etcd could not be reached or did not answer in time."""
    if isinstance(error, grpc.RpcError):
        return error.code() in _RETRIED_CODES
    return not isinstance(error, PreconditionFailedError)


def _check_count(count: object) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count must be at least 1, not {count!r}")


def _legal_topic(name: object) -> bool:
    try:
        validate_topic_name(name)
    except InvalidTopic:
        return False
    return True


def _is_partition(partition: object) -> bool:
    return isinstance(partition, int) and not isinstance(partition, bool) and partition >= 0
