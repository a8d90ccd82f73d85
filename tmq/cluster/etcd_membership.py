"""Cluster membership of ``EtcdMetadataStore`` (DESIGN §5): broker registrations under leases,
the controller key, fences, and their watch events.

Keys (under the store's ``/tmq/<cluster_id>/``), values compact JSON::

    brokers/<id>
        {"host": "b1", "port": 9092, "rack": null, "broker_epoch": 17}
    controller
        {"broker_id": 1, "controller_epoch": 21}

``brokers/<id>`` is created under the broker's lease by a transaction comparing its
``create_revision`` with 0, so a live registration cannot be taken over; its
``create_revision`` is the ``broker_epoch``. ``controller`` is created the same way under the
controller's lease, also comparing the ``create_revision`` of the campaigner's own broker key
(a lost registration cannot win); its ``create_revision`` is the ``controller_epoch``. Both
keys vanish with their lease. A second put right after the creation writes the epoch into the
value for people reading with ``etcdctl`` (readers take it from ``create_revision``).

A fenced write adds a compare to its transaction: ``ControllerFence(e)`` the ``controller``
key's ``create_revision == e``, ``LeaderFence(b, e)`` ``brokers/<b>``'s ``create_revision ==
e``; the failure branch reads that key, which tells ``Fenced`` from the write's own failure.

The keepalive of each registration runs on a thread of its own (never the store's pool): a
``LeaseKeepAlive`` every ``ttl / 3`` seconds with a timeout of the same length, fed to its
``LeaseDeadline`` (send time of the last answered keepalive + TTL - 1 s). The registration is
lost when etcd answers that the lease is gone, when keepalives keep failing until the deadline
passes, or when the store's watch sees its key deleted.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import grpc
from etcd3 import etcdrpc
from twisted.internet import defer
from twisted.logger import Logger

from .etcd_records import (
    broker_document,
    controller_document,
    decode_broker,
    decode_controller,
    encode,
)
from .lease import LeaseDeadline
from .store import (
    BrokerIdInUse,
    BrokerInfo,
    BrokerLost,
    BrokerRegistered,
    ControllerChanged,
    ControllerFence,
    Fence,
    Fenced,
    LeaderFence,
    MetadataEvent,
    MetadataStoreError,
    check_ttl,
)

__all__ = [
    "EtcdRegistration",
    "MembershipCalls",
    "MembershipTracker",
    "broker_key",
    "check_fence",
    "fence_ops",
    "order",
    "read_brokers",
    "read_controller",
    "register",
    "revoke",
    "take_controller",
]

_MARGIN_S = 1.0  # LeaseDeadline's margin (DESIGN §5: TTL - 1 s)


class EtcdRegistration:
    """A ``Registration`` in etcd (``EtcdMetadataStore.register_broker`` makes it).

    ``valid``, ``lost`` and ``close`` belong to the reactor thread; the keepalive thread only
    feeds ``deadline`` and hands a loss to the reactor.
    """

    _log = Logger()

    def __init__(
        self,
        store: Any,
        info: BrokerInfo,
        lease_id: int,
        ttl_s: float,
        granted_at: float,
    ):
        self.info = info
        self.broker_epoch = info.broker_epoch
        self.lease_id = lease_id
        self.ttl_s = ttl_s
        self.deadline = LeaseDeadline(ttl_s, margin=_MARGIN_S)
        self.deadline.granted(granted_at)
        self.lost: defer.Deferred[str] = defer.Deferred()
        self.ended = False
        self._store = store
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(
            target=self._keep_alive,
            name=f"tmq-etcd-keepalive-{store.cluster_id}-{info.broker_id}",
            daemon=True,
        )

    def __repr__(self) -> str:
        return f"<EtcdRegistration of broker {self.info.broker_id}, epoch {self.broker_epoch}>"

    def start(self) -> None:
        self._thread.start()

    def valid(self, now: float) -> bool:
        return not self.ended and self.deadline.valid(now)

    def close(self) -> defer.Deferred[None]:
        """Revoke the lease (its keys disappear); ``lost`` fires with ``"closed"``."""
        if self.ended:
            return defer.succeed(None)
        self.end("closed")
        return self._store._revoke(self)

    def pause_keepalives(self) -> None:
        """A test hook: send no more keepalives (as a paused process would not), so the lease
        expires after its TTL; the registration is lost once its deadline passes."""
        self._paused.set()

    def end(self, reason: str) -> None:
        """On the reactor: the registration is over (once)."""
        if self.ended:
            return
        self.ended = True
        self._stopping.set()
        self._store._registration_ended(self)
        self.lost.callback(reason)

    def join(self, timeout: float) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the keepalive thread -------------------------------------------------------------

    def _keep_alive(self) -> None:
        try:
            self._keep_alive_until_lost()
        except Exception as error:  # a bug: do not leave a registration that never ends
            self._lose(f"the keepalive thread failed: {error!r}")

    def _keep_alive_until_lost(self) -> None:
        """Send a keepalive every ``ttl / 3``, sooner again after a failure; end once etcd
        says the lease is gone or the deadline passes (the keepalive thread's only way out
        but ``_stopping``)."""
        interval = self.ttl_s / 3
        request = etcdrpc.LeaseKeepAliveRequest(ID=self.lease_id)
        pause, failure = interval, ""
        while not self._stopping.wait(pause):
            now = time.monotonic()
            remaining = self.deadline.remaining(now)
            if remaining <= 0:
                why = "stopped" if self._paused.is_set() else f"failed ({failure})"
                return self._lose(f"the lease deadline passed: keepalives {why}")
            if self._paused.is_set():
                pause = min(interval, remaining)  # wake at the deadline
                continue
            token = self.deadline.sending(now)
            try:
                stub = etcdrpc.LeaseStub(self._store._client.channel)
                answers = list(stub.LeaseKeepAlive(iter([request]), min(interval, remaining)))
            except Exception as error:  # RpcError, no endpoint, a closed channel
                self.deadline.lost(token)
                failure = _describe(error)
                pause = max(0.0, min(interval / 4, self.deadline.remaining(time.monotonic())))
                continue
            if not answers or answers[0].TTL <= 0:
                self.deadline.lost(token)
                return self._lose("etcd says the lease expired or was revoked")
            self.deadline.answered(token)
            pause = interval

    def _lose(self, reason: str) -> None:
        self._store._reactor.callFromThread(self.end, reason)


# -- calls: on the reactor -------------------------------------------------------------------


class MembershipCalls:
    """The membership calls of ``EtcdMetadataStore`` (a base class of it: they use its
    ``_run``, ``_when`` and watch state)."""

    _registrations: dict[int, EtcdRegistration]
    _controller_seen: tuple[int, int] | None

    def register_broker(self, info: BrokerInfo, ttl_s: float) -> defer.Deferred[EtcdRegistration]:
        """``MetadataStore.register_broker``: the keepalive thread starts at once, the
        Deferred fires once the watchers got ``BrokerRegistered``."""
        prefix = self.prefix

        def registered(outcome):
            lease_id, epoch, granted_at = outcome
            info_ = replace(info, broker_epoch=epoch)
            registration = EtcdRegistration(self, info_, lease_id, ttl_s, granted_at)
            registration.start()
            self._registrations[info.broker_id] = registration
            if self._state != "open":  # closed meanwhile: the lease expires on its own
                registration.end("the store was closed")
                raise MetadataStoreError(f"the etcd metadata store of {prefix} is closed")
            self._write_revision = max(self._write_revision, epoch)
            return self._delivered(epoch).addCallback(lambda _: registration)

        call = partial(register, self._client, prefix, info, ttl_s)
        check = partial(_check_registration, info, ttl_s)
        return self._run("register_broker", call, check=check).addCallback(registered)

    def live_brokers(self) -> defer.Deferred[dict[int, BrokerInfo]]:
        call = partial(read_brokers, self._client, self.prefix)
        return self._run("live_brokers", call, idempotent=True)

    def controller(self) -> defer.Deferred[tuple[int, int] | None]:
        call = partial(read_controller, self._client, self.prefix)
        return self._run("controller", call, idempotent=True)

    @defer.inlineCallbacks
    def campaign(self, registration: EtcdRegistration):
        """``MetadataStore.campaign``: tries to create the controller key; while another
        holds it, waits until the watch shows it gone (or the registration lost), then tries
        again."""
        while True:
            if registration.ended:
                raise Fenced(f"{registration!r} is over: it cannot campaign")
            call = partial(take_controller, self._client, self.prefix, registration)
            won, epoch, seen = yield self._run("campaign", call)
            if won:
                self._write_revision = max(self._write_revision, seen)
                yield self._delivered(seen)
                return epoch

            def changed(epoch=epoch, seen=seen) -> bool:
                if self._state != "open" or registration.ended:
                    return True
                current = self._controller_seen
                moved = current is None or current[1] != epoch
                return self._delivered_revision >= seen and moved

            yield self._when(changed)

    def _revoke(self, registration: EtcdRegistration) -> defer.Deferred[None]:
        """Revoke the lease of ``registration`` (ended already); fire once the watchers got
        its events."""
        if self._state != "open":
            return defer.succeed(None)
        call = partial(revoke, self._client, registration.lease_id, registration)
        return self._run("revoke", call, idempotent=True, writes=True)

    def _registration_ended(self, registration: EtcdRegistration) -> None:
        if self._registrations.get(registration.info.broker_id) is registration:
            del self._registrations[registration.info.broker_id]
        self._check_waiters()

    def _membership_delivered(self, events: list[MetadataEvent]) -> None:
        """On the reactor, before the watchers: what the membership calls follow."""
        for event in events:
            if isinstance(event, ControllerChanged):
                self._controller_seen = (
                    None if event.broker_id is None else (event.broker_id, event.controller_epoch)
                )
            elif isinstance(event, BrokerLost):
                mine = self._registrations.get(event.broker_id)
                if mine is not None and mine.broker_epoch == event.broker_epoch:
                    mine.end("its key is gone: the lease expired or was revoked")


def _check_registration(info: BrokerInfo, ttl_s: float) -> None:
    check_ttl(ttl_s)
    if not isinstance(info, BrokerInfo):
        raise ValueError(f"not a BrokerInfo: {info!r}")
    if not isinstance(info.broker_id, int) or info.broker_id < 0:
        raise ValueError(f"invalid broker id {info.broker_id!r}")


# -- calls: in the store's pool ------------------------------------------------------------


def broker_key(prefix: str, broker_id: int) -> str:
    return prefix + f"brokers/{broker_id}"


def register(client: Any, prefix: str, info: BrokerInfo, ttl_s: float):
    """Grant a lease and create ``brokers/<id>`` under it; ``((lease id, epoch, granted at),
    epoch)``."""
    ops, key = client.transactions, broker_key(prefix, info.broker_id)
    granted_at = time.monotonic()
    lease = client.lease(math.ceil(ttl_s))
    done, responses = client.transaction(
        [ops.create(key) == 0],
        [ops.put(key, encode(broker_document(info, 0)), lease=lease.id)],
        [],
    )
    if not done:
        revoke(client, lease.id)
        raise BrokerIdInUse(f"broker {info.broker_id} is registered already")
    epoch = responses[0].response_put.header.revision
    document = encode(broker_document(info, epoch))
    client.transaction([ops.create(key) == epoch], [ops.put(key, document, lease=lease.id)], [])
    return (lease.id, epoch, granted_at), epoch


def revoke(client: Any, lease_id: int, keepalive: EtcdRegistration | None = None):
    """Revoke a lease (one already gone is fine), after the end of ``keepalive``'s thread;
    ``(None, the revision that deleted the lease's keys, or 0)``."""
    if keepalive is not None:
        keepalive.join(keepalive.ttl_s)
    request = etcdrpc.LeaseRevokeRequest(ID=lease_id)
    try:
        response = client.leasestub.LeaseRevoke(request, client.timeout)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return None, 0
    return None, response.header.revision


def take_controller(client: Any, prefix: str, registration: EtcdRegistration):
    """One attempt to create ``controller``: ``((won, controller epoch, revision seen), ...)``;
    if another holds it, the epoch and ``mod_revision`` of its key."""
    ops, key = client.transactions, prefix + "controller"
    mine = broker_key(prefix, registration.info.broker_id)
    broker_id, epoch = registration.info.broker_id, registration.broker_epoch
    done, responses = client.transaction(
        [ops.create(key) == 0, ops.create(mine) == epoch],
        [ops.put(key, encode(controller_document(broker_id, 0)), lease=registration.lease_id)],
        [ops.get(key), ops.get(mine)],
    )
    if done:
        won = responses[0].response_put.header.revision
        document = encode(controller_document(broker_id, won))
        client.transaction(
            [ops.create(key) == won], [ops.put(key, document, lease=registration.lease_id)], []
        )
        return (True, won, won), won
    held, me = responses
    if not me or me[0][1].create_revision != epoch:
        raise Fenced(f"{registration!r} is not live: it cannot campaign")
    if not held:
        return (False, 0, 0), 0  # it vanished meanwhile: try again
    meta = held[0][1]
    if meta.lease_id == registration.lease_id:
        return (True, meta.create_revision, meta.mod_revision), 0
    return (False, meta.create_revision, meta.mod_revision), 0


def read_brokers(client: Any, prefix: str, **options: Any):
    response = client.get_prefix_response(prefix + "brokers/", **options)
    found = {}
    for kv in response.kvs:
        broker = _broker_id(prefix, kv.key)
        if broker is not None:
            found[broker] = decode_broker(kv.key, broker, kv.value, kv.create_revision)
    return dict(sorted(found.items())), response.header.revision


def read_controller(client: Any, prefix: str, **options: Any):
    key = prefix + "controller"
    response = client.get_response(key, **options)
    if not response.kvs:
        return None, response.header.revision
    kv = response.kvs[0]
    return decode_controller(key, kv.value, kv.create_revision), response.header.revision


def fence_ops(ops: Any, prefix: str, fence: Fence | None) -> tuple[list, list]:
    """The compares a write with ``fence`` adds, and the reads of its failure branch."""
    if fence is None:
        return [], []
    if isinstance(fence, ControllerFence):
        key, epoch = prefix + "controller", fence.controller_epoch
    elif isinstance(fence, LeaderFence):
        key, epoch = broker_key(prefix, fence.broker_id), fence.broker_epoch
    else:
        raise ValueError(f"not a fence: {fence!r}")
    if not isinstance(epoch, int) or epoch < 1:
        raise Fenced(f"{fence!r} can never hold")
    return [ops.create(key) == epoch], [ops.get(key)]


def check_fence(fence: Fence | None, read: list) -> None:
    """Raise ``Fenced`` if the failure-branch read ``read`` of the fence's key shows it
    failed."""
    if fence is None:
        return
    found = read[0][1].create_revision if read else None
    if isinstance(fence, ControllerFence) and found != fence.controller_epoch:
        raise Fenced(f"controller epoch {fence.controller_epoch} is over (now {found})")
    if isinstance(fence, LeaderFence) and found != fence.broker_epoch:
        raise Fenced(f"broker {fence.broker_id} epoch {fence.broker_epoch} is over (now {found})")


def _describe(error: Exception) -> str:
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or type(error).__name__


def _broker_id(prefix: str, key: bytes) -> int | None:
    tail = key.decode("utf-8", "replace")[len(prefix + "brokers/") :]
    return int(tail) if tail.isascii() and tail.isdigit() else None


# -- the watch thread -----------------------------------------------------------------------


class MembershipTracker:
    """What the watchers were told about brokers and the controller; turns watch events and
    resync snapshots into ``MetadataEvent``s."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.brokers: dict[int, int] = {}  # id -> broker epoch
        self.controller: tuple[int, int] | None = None

    def remember(
        self, brokers: Mapping[int, BrokerInfo], controller: tuple[int, int] | None
    ) -> None:
        self.brokers = {broker: info.broker_epoch for broker, info in brokers.items()}
        self.controller = controller

    def parse(self, key: bytes) -> tuple[str, int] | None:
        """``("broker", id)``, ``("controller", -1)`` or None (another key)."""
        if key == (self.prefix + "controller").encode():
            return "controller", -1
        if key.startswith((self.prefix + "brokers/").encode()):
            broker = _broker_id(self.prefix, key)
            return None if broker is None else ("broker", broker)
        return None

    def event(self, kind: str, broker: int, kv: Any, removed: bool) -> list[MetadataEvent]:
        if kind == "broker" and removed:
            epoch = self.brokers.pop(broker, None)
            return [] if epoch is None else [BrokerLost(broker, epoch)]
        if kind == "broker":
            if self.brokers.get(broker) == kv.create_revision:
                return []  # the epoch written into the value
            events: list[MetadataEvent] = []
            if broker in self.brokers:  # a new registration without the old one's deletion
                events.append(BrokerLost(broker, self.brokers[broker]))
            self.brokers[broker] = kv.create_revision
            info = decode_broker(kv.key, broker, kv.value, kv.create_revision)
            return [*events, BrokerRegistered(info)]
        if removed:
            gone, self.controller = self.controller, None
            return [] if gone is None else [ControllerChanged(None, gone[1])]
        if self.controller is not None and self.controller[1] == kv.create_revision:
            return []
        self.controller = decode_controller(kv.key, kv.value, kv.create_revision)
        return [ControllerChanged(*self.controller)]

    def resync(
        self, brokers: Mapping[int, BrokerInfo], controller: tuple[int, int] | None
    ) -> list[MetadataEvent]:
        """The events from what watchers were told to ``brokers`` and ``controller``."""
        events: list[MetadataEvent] = []
        for broker, epoch in sorted(self.brokers.items()):
            if broker not in brokers or brokers[broker].broker_epoch != epoch:
                events.append(BrokerLost(broker, epoch))
        if self.controller is not None and self.controller != controller:
            events.append(ControllerChanged(None, self.controller[1]))
        if controller is not None and self.controller != controller:
            events.append(ControllerChanged(*controller))
        for broker, info in sorted(brokers.items()):
            if self.brokers.get(broker) != info.broker_epoch:
                events.append(BrokerRegistered(info))
        self.remember(brokers, controller)
        return events


def order(events: list[MetadataEvent]) -> list[MetadataEvent]:
    """Membership events of one revision in the documented order: losses, the controller,
    registrations."""
    rank: dict[type, Callable[[MetadataEvent], tuple]] = {
        BrokerLost: lambda e: (0, e.broker_id),
        ControllerChanged: lambda e: (1, e.broker_id is not None),
        BrokerRegistered: lambda e: (2, e.info.broker_id),
    }
    return sorted(events, key=lambda event: rank[type(event)](event))
