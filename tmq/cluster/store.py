"""The cluster metadata store: what every broker of a cluster agrees on (DESIGN §5).

``MetadataStore`` is the interface; ``tmq.cluster.local_store.LocalMetadataStore`` is the
embedded, file-backed implementation (one broker, tests, the quick start) and the etcd store
implements the same interface for a real cluster. Both are held to the same contract tests
(``tests/cluster/test_store_contract.py``). The store keeps:

* **topics** (``TopicSpec``): partitions, replication factor, replica assignment, configs;
* **partition states** (``PartitionState``): leader, leader epoch, ISR, controller epoch, and
  the store's ``version`` of the record, for compare-and-swap;
* **committed offsets** of consumer groups (``CommittedOffset``);
* the **producer-id counter**, handed out in blocks;
* cluster **membership**: live broker registrations (``register_broker``, ``BrokerInfo``), each
  with its ``broker_epoch``, and the **controller** (``campaign``), with its
  ``controller_epoch``. Writes may carry a fence (``ControllerFence``, ``LeaderFence``) that
  makes them fail with ``Fenced`` unless the writer's controllership or registration is still
  the live one.

Every method returns a Twisted ``Deferred`` (the etcd store runs its calls on a thread pool; the
local store returns Deferreds that have already fired). A call fails with a
``MetadataStoreError`` subclass when it breaks a rule of the store, with ``ValueError``
(``InvalidTopic`` for topics) when its arguments are invalid, and with a plain
``MetadataStoreError`` when the store cannot be read or written. A call that failed with a plain
``MetadataStoreError`` may or may not have taken effect (the disk or the network failed half
way); a call that failed for any other reason changed nothing.

Versions: every write of a partition state gives it a new ``version``, greater than every
version the store handed out before (the etcd store uses the key's ``mod_revision``, the local
store a revision counter of its own). A version therefore never comes back, not even for a
topic deleted and created again, so a compare-and-swap against a version read earlier fails if
anything wrote the record in between.

This module holds no I/O: value types, errors, the interface, and the topic validation that
every implementation applies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from twisted.internet.defer import Deferred

from tmq.protocol.errors import ErrorCode

from .lease import LeaseDeadline

__all__ = [
    "MAX_TOPIC_NAME_LENGTH",
    "BrokerIdInUse",
    "BrokerInfo",
    "BrokerLost",
    "BrokerRegistered",
    "CommittedOffset",
    "ControllerChanged",
    "ControllerFence",
    "Fence",
    "Fenced",
    "InvalidTopic",
    "LeaderFence",
    "MetadataEvent",
    "MetadataStore",
    "MetadataStoreError",
    "PartitionState",
    "PartitionStateChanged",
    "Registration",
    "StaleVersion",
    "TopicCreated",
    "TopicDeleted",
    "TopicExists",
    "TopicSpec",
    "UnknownTopic",
    "check_ttl",
    "validate_topic",
    "validate_topic_name",
]

#: Kafka's limit (``Topic.MAX_NAME_LENGTH``): a partition directory name must fit in 255 bytes.
MAX_TOPIC_NAME_LENGTH = 249

_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")


# -- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicSpec:
    """A topic as created: its partitions and the brokers that hold their replicas.

    Immutable: ``assignment`` and ``configs`` are read-only copies of the mappings given (the
    replica lists become tuples), so a spec handed out by a store can be shared freely.

    :param name: the topic name (``validate_topic_name``).
    :param partitions: how many partitions; they are numbered ``0 .. partitions - 1``.
    :param replication_factor: how many replicas each partition has.
    :param assignment: partition -> replica broker ids; the first one is the preferred leader.
    :param configs: the topic's config overrides (``retention.ms`` ...), as Kafka sends them:
        strings.
    """

    name: str
    partitions: int
    replication_factor: int
    assignment: Mapping[int, tuple[int, ...]]
    configs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        replicas = {partition: tuple(ids) for partition, ids in self.assignment.items()}
        object.__setattr__(self, "assignment", MappingProxyType(replicas))
        object.__setattr__(self, "configs", MappingProxyType(dict(self.configs)))


@dataclass(frozen=True)
class PartitionState:
    """Who leads a partition, and which replicas are in sync.

    :param leader: the leader's broker id, ``-1`` for none.
    :param leader_epoch: grows by one with every leader change.
    :param isr: the in-sync replicas (broker ids); a list is stored as a tuple.
    :param controller_epoch: the epoch of the controller that made the last leader change.
    :param version: the store's revision of this record, for ``update_partition_state``.
        Stores ignore the version of a state they are given and return the one they assigned;
        ``0`` marks a state that did not come from a store.
    """

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int
    version: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "isr", tuple(self.isr))


@dataclass(frozen=True)
class CommittedOffset:
    """A consumer group's position in one partition (an OffsetCommit entry).

    :param offset: the next offset the group will consume.
    :param metadata: the client's free-form metadata string, if any.
    :param leader_epoch: the leader epoch of the last consumed record, ``-1`` if unknown.
    :param commit_timestamp_ms: when the coordinator accepted the commit (wall clock, ms since
        the epoch), ``-1`` if unknown; offset retention of groups without members counts from
        it (``expire_offsets``).
    """

    offset: int
    metadata: str | None = None
    leader_epoch: int = -1
    commit_timestamp_ms: int = -1


@dataclass(frozen=True)
class BrokerInfo:
    """A broker as registered: where clients reach it.

    :param broker_epoch: set by the store at registration (``Registration.broker_epoch``);
        grows with every registration of every broker. ``0`` marks an info not from a store.
    """

    broker_id: int
    host: str
    port: int
    rack: str | None = None
    broker_epoch: int = 0


@dataclass(frozen=True)
class ControllerFence:
    """A write made by the controller elected at ``controller_epoch``: it succeeds only while
    that controllership is the live one."""

    controller_epoch: int


@dataclass(frozen=True)
class LeaderFence:
    """A write made by a partition leader: it succeeds only while the broker's registration
    of ``broker_epoch`` is the live one (DESIGN §4, ISR changes)."""

    broker_id: int
    broker_epoch: int


Fence = ControllerFence | LeaderFence


class Registration(Protocol):
    """A broker's live registration, from ``register_broker`` (etcd: a key under a lease).

    ``valid(now)`` is the synchronous check before every leader action: ``now`` is
    ``time.monotonic()``; it is false once ``deadline`` (a ``LeaseDeadline``, which only the
    store feeds) has passed, or the registration was lost or closed. ``lost`` fires (on the
    reactor, with a string saying why) once the registration ends for any reason: its lease
    expired or was revoked, keepalives failed past the deadline, or ``close``; then the broker
    must stop acting on it and register again (a new ``broker_epoch``).
    """

    info: BrokerInfo
    broker_epoch: int
    deadline: LeaseDeadline
    lost: Deferred[str]

    def valid(self, now: float) -> bool: ...

    def close(self) -> Deferred[None]:
        """End the registration (etcd: revoke the lease; its keys disappear, the controller
        key too if it held it). Closing again does nothing more."""
        ...


# -- watch events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicCreated:
    """A topic was created. The ``PartitionStateChanged`` events of its partitions follow."""

    spec: TopicSpec


@dataclass(frozen=True)
class TopicDeleted:
    """A topic was deleted, with its partition states and its committed offsets."""

    name: str


@dataclass(frozen=True)
class PartitionStateChanged:
    """A partition state was written (at topic creation, or by ``update_partition_state``);
    ``state`` carries its new ``version``."""

    topic: str
    partition: int
    state: PartitionState


@dataclass(frozen=True)
class BrokerRegistered:
    """A broker registered; ``info.broker_epoch`` is its new broker epoch."""

    info: BrokerInfo


@dataclass(frozen=True)
class BrokerLost:
    """A broker's registration ended (closed, or its lease expired)."""

    broker_id: int
    broker_epoch: int


@dataclass(frozen=True)
class ControllerChanged:
    """A broker became the controller (``broker_id``, at ``controller_epoch``), or the
    controller's registration ended: ``broker_id`` is then None and ``controller_epoch`` the
    epoch of the controller that is gone."""

    broker_id: int | None
    controller_epoch: int


MetadataEvent = (
    TopicCreated
    | TopicDeleted
    | PartitionStateChanged
    | BrokerRegistered
    | BrokerLost
    | ControllerChanged
)


# -- errors ----------------------------------------------------------------------------------


class MetadataStoreError(Exception):
    """Base class of the store's errors. Raised as such when the store cannot be read or
    written (disk or network failure, a corrupt file, a closed store); ``error_code`` is what a
    Kafka client is told."""

    error_code = ErrorCode.UNKNOWN_SERVER_ERROR


class TopicExists(MetadataStoreError):
    """``create_topic`` of a name that is taken."""

    error_code = ErrorCode.TOPIC_ALREADY_EXISTS


class UnknownTopic(MetadataStoreError):
    """The topic, or the partition of the topic, does not exist."""

    error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


class StaleVersion(MetadataStoreError):
    """A compare-and-swap failed: the record's version is not the one expected."""


class BrokerIdInUse(MetadataStoreError):
    """``register_broker`` of a broker id with a live registration (another process, or this
    broker's previous lease that has not expired yet: try again later)."""


class Fenced(MetadataStoreError):
    """A fenced write (``ControllerFence``, ``LeaderFence``) whose controllership or
    registration is no longer the live one; nothing was written. Also ``campaign`` with a
    registration that is gone."""

    error_code = ErrorCode.NOT_CONTROLLER


class InvalidTopic(ValueError):
    """A topic that breaks Kafka's rules; ``error_code`` says which rule (an invalid name,
    partition count, replication factor, assignment or config)."""

    def __init__(self, error_code: ErrorCode, message: str):
        super().__init__(message)
        self.error_code = error_code


# -- validation -----------------------------------------------------------------------------


def validate_topic_name(name: str) -> None:
    """Raise ``InvalidTopic`` unless ``name`` is a legal Kafka topic name: 1 to 249 characters
    out of ``a-z A-Z 0-9 . _ -``, and neither ``.`` nor ``..``."""
    if not isinstance(name, str) or not _TOPIC_NAME.fullmatch(name):
        raise InvalidTopic(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"invalid topic name {name!r}: use 1 to {MAX_TOPIC_NAME_LENGTH} characters out of "
            "a-z, A-Z, 0-9, '.', '_' and '-'",
        )
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidTopic(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"invalid topic name {name[:20]}...: {len(name)} characters, "
            f"at most {MAX_TOPIC_NAME_LENGTH} are allowed",
        )
    if name in (".", ".."):
        raise InvalidTopic(ErrorCode.INVALID_TOPIC_EXCEPTION, f"{name!r} is not a topic name")


def check_ttl(ttl_s: object) -> None:
    """Raise ``ValueError`` unless ``ttl_s`` is a lease TTL ``register_broker`` accepts."""
    if not isinstance(ttl_s, int | float) or isinstance(ttl_s, bool) or not ttl_s >= 2:
        raise ValueError(f"a lease TTL must be at least 2 seconds, not {ttl_s!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_topic(spec: TopicSpec, states: Mapping[int, PartitionState]) -> None:
    """Raise ``InvalidTopic`` unless ``spec`` with the initial ``states`` can be created.

    The name is legal; there are at least one partition and a replication factor of at least
    one; every partition has ``replication_factor`` distinct, non-negative broker ids and a
    state, and nothing else does; configs map strings to strings.
    """
    validate_topic_name(spec.name)
    if not _is_int(spec.partitions) or spec.partitions < 1:
        raise InvalidTopic(
            ErrorCode.INVALID_PARTITIONS,
            f"topic {spec.name}: partitions must be at least 1, not {spec.partitions!r}",
        )
    factor = spec.replication_factor
    if not _is_int(factor) or factor < 1:
        raise InvalidTopic(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"topic {spec.name}: replication factor must be at least 1, not {factor!r}",
        )
    expected = set(range(spec.partitions))
    if set(spec.assignment) != expected:
        raise InvalidTopic(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"topic {spec.name}: the assignment must cover exactly partitions "
            f"0..{spec.partitions - 1}, not {sorted(spec.assignment, key=repr)}",
        )
    for partition, replicas in spec.assignment.items():
        if (
            len(replicas) != factor
            or len(set(replicas)) != factor
            or not all(_is_int(broker) and broker >= 0 for broker in replicas)
        ):
            raise InvalidTopic(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"topic {spec.name}: partition {partition} needs {factor} distinct broker ids, "
                f"not {replicas!r}",
            )
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in spec.configs.items()):
        raise InvalidTopic(
            ErrorCode.INVALID_CONFIG, f"topic {spec.name}: configs must map strings to strings"
        )
    if set(states) != expected:
        raise InvalidTopic(
            ErrorCode.INVALID_REQUEST,
            f"topic {spec.name}: initial states must cover exactly partitions "
            f"0..{spec.partitions - 1}, not {sorted(states, key=repr)}",
        )


# -- the interface ----------------------------------------------------------------------------


class MetadataStore(Protocol):
    """The cluster metadata store (see the module docstring for errors and versions).

    Every method but ``watch`` returns a Deferred; a write has reached durable storage (the
    disk, or a quorum of etcd) before its Deferred fires with success.
    """

    def create_topic(
        self, spec: TopicSpec, states: Mapping[int, PartitionState], fence: Fence | None = None
    ) -> Deferred[None]:
        """Create a topic and the initial state of each of its partitions, all or nothing.

        The store assigns the states' versions. Watchers see ``TopicCreated(spec)``, then a
        ``PartitionStateChanged`` per partition in partition order.

        :raises InvalidTopic: (``ValueError``) ``validate_topic`` rejects the topic.
        :raises Fenced: ``fence`` is given and no longer holds (checked before the name).
        :raises TopicExists: the name is taken.
        """
        ...

    def delete_topic(self, name: str) -> Deferred[None]:
        """Delete a topic, its partition states and every group's committed offsets of it.

        :raises UnknownTopic: there is no such topic.
        """
        ...

    def topics(self) -> Deferred[dict[str, TopicSpec]]:
        """Every topic, by name."""
        ...

    def partition_states(self, topic: str) -> Deferred[dict[int, PartitionState]]:
        """The state of every partition of ``topic``, with its current version.

        :raises UnknownTopic: there is no such topic.
        """
        ...

    def update_partition_state(
        self,
        topic: str,
        partition: int,
        state: PartitionState,
        expected_version: int,
        fence: Fence | None = None,
    ) -> Deferred[PartitionState]:
        """Compare-and-swap one partition state: write ``state`` if the stored record still
        has ``expected_version`` (and ``fence``, if given, holds), and fire with the state as
        stored, carrying its new version (the ``version`` of ``state`` itself is ignored).

        :raises Fenced: ``fence`` no longer holds (checked before the topic and version).
        :raises UnknownTopic: there is no such topic or partition.
        :raises StaleVersion: the record's version is no longer ``expected_version``.
        """
        ...

    def watch(self, callback: Callable[[MetadataEvent], object]) -> Callable[[], None]:
        """Call ``callback(event)`` for every change to topics, partition states, broker
        registrations and the controller made through this store, after the change is
        durable, in the order of the changes; return a function that unsubscribes (calling it
        again does nothing).

        An exception a callback raises is logged; it fails neither the write nor the other
        callbacks. A remote store delivers events on the reactor thread.
        """
        ...

    def commit_offsets(
        self, group: str, offsets: Mapping[tuple[str, int], CommittedOffset]
    ) -> Deferred[None]:
        """Store ``group``'s offsets of ``(topic, partition)``s, all or nothing; partitions not
        named keep their committed offsets. ``group`` may be any string.

        :raises UnknownTopic: a topic or partition does not exist (nothing is committed).
        """
        ...

    def fetch_offsets(
        self, group: str, partitions: list[tuple[str, int]] | None
    ) -> Deferred[dict[tuple[str, int], CommittedOffset]]:
        """``group``'s committed offsets of ``partitions`` (``None``: of every partition it
        committed). A partition the group never committed is absent from the result."""
        ...

    def delete_offsets(self, group: str) -> Deferred[None]:
        """Forget every committed offset of ``group`` (offset retention of a group that stayed
        empty); a group with none is no error."""
        ...

    def expire_offsets(
        self, group: str, committed_before_ms: int
    ) -> Deferred[list[tuple[str, int]]]:
        """Forget ``group``'s offsets committed before ``committed_before_ms`` (their
        ``commit_timestamp_ms`` is known and smaller) and fire with their ``(topic,
        partition)``s, sorted. An offset committed again while this runs is kept, and so is one
        whose commit time is unknown."""
        ...

    def offset_groups(self) -> Deferred[list[str]]:
        """Every group that holds committed offsets, sorted (a group whose only offsets are of
        deleted topics may be listed too)."""
        ...

    def allocate_producer_ids(self, count: int) -> Deferred[int]:
        """Reserve ``count`` (>= 1) fresh producer ids and fire with the first one. No id is
        ever handed out twice, across restarts of every broker.

        :raises ValueError: ``count`` is less than 1.
        """
        ...

    def register_broker(self, info: BrokerInfo, ttl_s: float) -> Deferred[Registration]:
        """Register broker ``info.broker_id`` (its ``broker_epoch`` is ignored) under a lease
        of ``ttl_s`` seconds (>= 2) that the store keeps alive (etcd: a keepalive every
        ``ttl_s / 3`` on a thread of its own), and fire with the ``Registration``. Its
        ``broker_epoch`` is greater than that of every registration before it. Watchers see
        ``BrokerRegistered`` (with the epoch), and ``BrokerLost`` when it ends.

        Broker epochs, controller epochs and partition-state versions come from one
        counter: a state written after a registration has a larger version than its
        ``broker_epoch``, one written before a smaller one.

        :raises BrokerIdInUse: the id has a live registration.
        :raises ValueError: ``ttl_s`` is below 2.
        """
        ...

    def live_brokers(self) -> Deferred[dict[int, BrokerInfo]]:
        """Every live registration's ``BrokerInfo`` (with its ``broker_epoch``), by id."""
        ...

    def campaign(self, registration: Registration) -> Deferred[int]:
        """Become the controller: fire with the ``controller_epoch`` once ``registration``
        holds the controller role (at once if it holds it already). While another broker
        holds it, wait until its registration ends. The role ends with the registration.
        Every controller epoch is greater than those before it. Watchers see
        ``ControllerChanged``.

        :raises Fenced: ``registration`` is lost or closed (also while waiting).
        """
        ...

    def controller(self) -> Deferred[tuple[int, int] | None]:
        """``(broker_id, controller_epoch)`` of the controller, None if there is none."""
        ...

    def close(self) -> Deferred[None]:
        """Close the registrations made through this store, release the store's resources and
        drop its watchers. Every later call fails with
        ``MetadataStoreError``; closing again does nothing."""
        ...
