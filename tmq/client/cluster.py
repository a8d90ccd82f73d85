"""The client's view of a Kafka cluster: bootstrap, metadata, and one connection per broker.

``Cluster`` is shared by a producer, a consumer and an admin client. It connects to the
bootstrap addresses to learn the cluster, keeps the metadata of the topics its users asked about
(brokers, partition leaders, controller), and holds at most one ready ``KafkaConnection`` per
broker address. Metadata is refreshed lazily: when a user asks about a topic it has not seen,
when it is older than ``metadata_max_age_ms``, or after ``request_update()`` — which the
producer and consumer call on NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION and the like —
or after a connection to a broker was lost. Concurrent refreshes share one Metadata request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode

from ._oneshot import OneShot
from .connection import Connector, KafkaConnection, tcp_connector
from .errors import (
    BrokerResponseError,
    ClientClosedError,
    ConnectionFailedError,
    ConnectionLostError,
    KafkaError,
    RequestTimedOutError,
)

#: Errors after which a group request goes to a freshly looked-up coordinator (a coordinator
#: still loading, COORDINATOR_LOAD_IN_PROGRESS, is asked again itself, as Kafka's clients do).
_COORDINATOR_MOVED = frozenset({ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE})
_UNREACHABLE = (ConnectionFailedError, ConnectionLostError, RequestTimedOutError)

__all__ = [
    "BrokerInfo",
    "Cluster",
    "ClusterMetadata",
    "PartitionInfo",
    "TopicInfo",
    "parse_bootstrap",
]

Address = tuple[str, int]
Body = dict | Callable[[int], dict]
"""A request body, or a function building it for the version the connection negotiated."""


def parse_bootstrap(text: str) -> list[Address]:
    """Parse ``HOST:PORT[,HOST:PORT...]`` (an IPv6 host in brackets: ``[::1]:9092``).

    :raises ValueError: an entry without a host or a valid port, or no entry at all.
    """
    addresses: list[Address] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, bracket, rest = item[1:].partition("]")
            port_text = rest[1:] if bracket and rest.startswith(":") else ""
        else:
            host, _, port_text = item.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bootstrap server {item!r} is not HOST:PORT")
        addresses.append((host, int(port_text)))
    if not addresses:
        raise ValueError("no bootstrap server given")
    return addresses


@dataclasses.dataclass(frozen=True)
class BrokerInfo:
    """A broker as Metadata describes it."""

    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclasses.dataclass(frozen=True)
class PartitionInfo:
    """One partition: its leader (-1 when there is none), epoch and replicas."""

    topic: str
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline_replicas: tuple[int, ...] = ()
    error_code: ErrorCode | int = ErrorCode.NONE


@dataclasses.dataclass(frozen=True)
class TopicInfo:
    """One topic; ``error_code`` is LEADER_NOT_AVAILABLE while it is being created."""

    name: str
    partitions: dict[int, PartitionInfo]
    is_internal: bool = False
    error_code: ErrorCode | int = ErrorCode.NONE

    @property
    def partition_count(self) -> int:
        """How many partitions the topic has."""
        return len(self.partitions)


@dataclasses.dataclass(frozen=True)
class ClusterMetadata:
    """A snapshot of what the client knows about the cluster."""

    cluster_id: str | None = None
    controller_id: int = -1
    brokers: dict[int, BrokerInfo] = dataclasses.field(default_factory=dict)
    topics: dict[str, TopicInfo] = dataclasses.field(default_factory=dict)


def _error(code: int) -> ErrorCode | int:
    try:
        return ErrorCode(code)
    except ValueError:
        return code


def _topic_info(topic: Any) -> TopicInfo:
    partitions = {
        p.partition_index: PartitionInfo(
            topic=topic.name,
            partition=p.partition_index,
            leader=p.leader_id,
            leader_epoch=p.leader_epoch,
            replicas=tuple(p.replica_nodes),
            isr=tuple(p.isr_nodes),
            offline_replicas=tuple(p.offline_replicas),
            error_code=_error(p.error_code),
        )
        for p in topic.partitions
    }
    return TopicInfo(topic.name, partitions, topic.is_internal, _error(topic.error_code))


class Cluster:
    """Bootstrap, metadata and connections, shared by the producer, consumer and admin client.

    Not thread-safe: use it from the reactor thread.

    :param reactor: provides ``IReactorTime`` (timeouts, metadata age) and, unless ``connect``
        is given, what ``tcp_connector`` needs.
    :param bootstrap: ``"HOST:PORT[,HOST:PORT...]"`` or a sequence of ``(host, port)``.
    :param client_id: the ``client_id`` of every request.
    :param connect: how to open a connection (``tcp_connector(reactor)`` by default).
    :param request_timeout_ms: how long a request waits for its response.
    :param max_in_flight: unanswered requests per connection.
    :param metadata_max_age_ms: metadata older than this is refreshed before it is used.
    :param allow_auto_topic_creation: sent in Metadata requests (v4+): whether asking about an
        unknown topic creates it on a broker configured to allow that.
    :ivar metadata: the latest ``ClusterMetadata`` snapshot (possibly empty or stale); each
        refresh replaces it, none changes it (a plain attribute: producers read it per record).
    """

    def __init__(
        self,
        reactor: Any,
        bootstrap: str | Sequence[Address],
        *,
        client_id: str = "tmq",
        connect: Connector | None = None,
        request_timeout_ms: int = 30_000,
        max_in_flight: int = 5,
        metadata_max_age_ms: int = 300_000,
        allow_auto_topic_creation: bool = False,
    ):
        self.reactor = reactor
        self.bootstrap = (
            parse_bootstrap(bootstrap) if isinstance(bootstrap, str) else list(bootstrap)
        )
        if not self.bootstrap:
            raise ValueError("no bootstrap server given")
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self._connect = connect if connect is not None else tcp_connector(reactor)
        self._max_in_flight = max_in_flight
        self._metadata_max_age_s = metadata_max_age_ms / 1000
        self._allow_auto_topic_creation = allow_auto_topic_creation
        self._connections: dict[Address, KafkaConnection] = {}
        self._connecting: dict[Address, OneShot] = {}
        self.metadata = ClusterMetadata()
        self._metadata_at: float | None = None
        self._stale = True
        self._topics: set[str] = set()
        self._topic_errors: dict[str, ErrorCode | int] = {}
        self._refresh: OneShot | None = None
        self._coordinators: dict[str, int] = {}
        self._other_brokers: dict[int, Address] = {}
        self._closed = False

    # -- metadata --------------------------------------------------------------------------

    def request_update(self) -> None:
        """Mark the metadata stale: the next user that needs it refreshes it first."""
        self._stale = True

    def add_topics(self, topics: Iterable[str]) -> None:
        """Include ``topics`` in every metadata refresh from now on."""
        self._topics.update(topics)

    def leader_for(self, topic: str, partition: int) -> int | None:
        """The leader of a partition in the current metadata, or ``None`` if there is none."""
        info = self.metadata.topics.get(topic)
        if info is None or partition not in info.partitions:
            return None
        leader = info.partitions[partition].leader
        return leader if leader >= 0 else None

    def refresh_metadata(self) -> Deferred:
        """Fetch the metadata of the topics in use; a refresh in progress is shared.

        :returns: a Deferred firing with the new ``ClusterMetadata``, failing with a
            ``KafkaError`` when no broker answered.
        """
        if self._closed:
            return fail(ClientClosedError("the cluster client is closed"))
        if self._refresh is not None:
            return self._refresh.wait()
        shot = self._refresh = OneShot()
        done = Deferred.fromCoroutine(self._fetch_metadata(sorted(self._topics), fresh=True))

        def finished(result: Any) -> None:
            self._refresh = None
            shot.fire(result)

        done.addBoth(finished)
        return shot.wait()

    def describe(self, topics: Iterable[str] | None = None) -> Deferred:
        """Ask for the metadata of ``topics`` (all topics when ``None``) right now.

        The answer also updates the cached metadata.

        :returns: a Deferred firing with a ``ClusterMetadata`` holding just those topics.
        """
        if self._closed:
            return fail(ClientClosedError("the cluster client is closed"))
        wanted = None if topics is None else sorted(topics)
        return Deferred.fromCoroutine(self._fetch_metadata(wanted, fresh=False))

    def topic(self, name: str) -> Deferred:
        """The metadata of topic ``name``, refreshed first if unknown or stale.

        :returns: a Deferred firing with a ``TopicInfo`` that has partitions, or failing with a
            ``BrokerResponseError`` (UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE while the
            topic is being created: both retriable).
        """
        if self._closed:
            return fail(ClientClosedError("the cluster client is closed"))
        return Deferred.fromCoroutine(self._topic(name))

    async def _topic(self, name: str) -> TopicInfo:
        self._topics.add(name)
        # A refresh already running may have been asked without this topic: then one more.
        for _ in range(2):
            if not self._needs_refresh(name):
                break
            await self.refresh_metadata()
        info = self.metadata.topics.get(name)
        if info is None:
            code = self._topic_errors.get(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            raise BrokerResponseError(code, f"Metadata for topic {name!r}")
        if info.error_code != ErrorCode.NONE or not info.partitions:
            code = info.error_code or ErrorCode.LEADER_NOT_AVAILABLE
            raise BrokerResponseError(code, f"Metadata for topic {name!r}")
        return info

    def _needs_refresh(self, name: str) -> bool:
        if self._stale or self._metadata_at is None:
            return True
        if self.reactor.seconds() - self._metadata_at > self._metadata_max_age_s:
            return True
        return name not in self.metadata.topics and name not in self._topic_errors

    async def _fetch_metadata(self, topics: list[str] | None, *, fresh: bool) -> ClusterMetadata:
        def body(version: int) -> dict:
            if topics is None:
                wanted = [] if version == 0 else None  # v0: an empty list means all topics
            else:
                wanted = [{"name": name} for name in topics]
            return {
                "topics": wanted,
                "allow_auto_topic_creation": self._allow_auto_topic_creation,
            }

        response = await self.send_any(ApiKey.METADATA, body)
        return self._update(response, topics, fresh=fresh)

    def _update(self, response: Any, asked: list[str] | None, *, fresh: bool) -> ClusterMetadata:
        """Take in a Metadata answer: brokers and controller replace the old ones; the topics
        answered replace their cached entries (all of them when every topic was asked for).

        :param fresh: the answer covers every topic in use, so the metadata counts as fresh.
        """
        brokers = {
            b.node_id: BrokerInfo(b.node_id, b.host, b.port, b.rack) for b in response.brokers
        }
        answered: dict[str, TopicInfo] = {}
        for topic in response.topics:
            if topic.error_code in (
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                ErrorCode.INVALID_TOPIC_EXCEPTION,
                ErrorCode.TOPIC_AUTHORIZATION_FAILED,
            ):
                self._topic_errors[topic.name] = _error(topic.error_code)
                continue
            self._topic_errors.pop(topic.name, None)
            answered[topic.name] = _topic_info(topic)
        topics = dict(self.metadata.topics) if asked is not None else {}
        for name in asked or ():
            topics.pop(name, None)
        topics.update(answered)
        self.metadata = ClusterMetadata(
            cluster_id=response.cluster_id,
            controller_id=response.controller_id,
            brokers=brokers,
            topics=topics,
        )
        if fresh:
            self._metadata_at = self.reactor.seconds()
            self._stale = False
        return ClusterMetadata(response.cluster_id, response.controller_id, brokers, answered)

    # -- coordinators ----------------------------------------------------------------------

    def coordinator(self, group: str) -> Deferred:
        """The node id of ``group``'s coordinator (FindCoordinator, then cached).

        :returns: a Deferred failing with ``BrokerResponseError`` (e.g. COORDINATOR_NOT_AVAILABLE,
            retriable) when the broker cannot name one.
        """
        if group in self._coordinators:
            return succeed(self._coordinators[group])
        return Deferred.fromCoroutine(self._find_coordinator(group))

    async def _find_coordinator(self, group: str) -> int:
        response = await self.send_any(ApiKey.FIND_COORDINATOR, {"key": group, "key_type": 0})
        if response.error_code != ErrorCode.NONE:
            raise BrokerResponseError(
                response.error_code, f"FindCoordinator for group {group!r}", response.error_message
            )
        self._other_brokers[response.node_id] = (response.host, response.port)
        self._coordinators[group] = response.node_id
        return response.node_id

    def forget_coordinator(self, group: str) -> None:
        """Drop the cached coordinator of ``group`` (after NOT_COORDINATOR and the like)."""
        self._coordinators.pop(group, None)

    async def on_coordinator(
        self,
        group: str,
        api_key: int,
        body: dict,
        interpret: Callable[[Any, int], Any],
        *,
        timeout_s: float,
        backoff_s: float,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Any:
        """Send a request to ``group``'s coordinator and return ``interpret(response, node)``,
        which raises ``BrokerResponseError`` for an error answer. Retriable errors are retried
        (backing off from ``backoff_s`` up to 1 s) until ``timeout_s`` has passed or
        ``stopped()``; the coordinator is looked up again when it moved or could not be
        reached."""
        deadline = self.reactor.seconds() + timeout_s
        attempt = 0
        while True:
            try:
                node = await self.coordinator(group)
                response = await self.send(node, api_key, body)
                return interpret(response, node)
            except KafkaError as error:
                if not error.retriable or stopped() or self.reactor.seconds() >= deadline:
                    raise
                code = getattr(error, "error_code", None)
                if code in _COORDINATOR_MOVED or isinstance(error, _UNREACHABLE):
                    self.forget_coordinator(group)
                attempt += 1
                await deferLater(self.reactor, min(backoff_s * 2 ** (attempt - 1), 1.0))

    # -- requests --------------------------------------------------------------------------

    def send(
        self,
        node_id: int,
        api_key: int,
        body: Body,
        *,
        expect_response: bool = True,
        timeout_ms: int | None = None,
    ) -> Deferred:
        """Send a request to broker ``node_id``, connecting first if needed.

        :param body: the request fields, or a function of the negotiated version returning them.
        :returns: a Deferred firing with the response body (``None`` without a response).
        """
        if self._closed:
            return fail(ClientClosedError("the cluster client is closed"))
        address = self._address_of(node_id)
        if address is None:
            return fail(ConnectionFailedError(f"no address known for broker {node_id}"))
        connected = self._connection_to(address)
        connected.addCallback(self._request_on, api_key, body, expect_response, timeout_ms)
        return connected

    def send_any(self, api_key: int, body: Body, *, timeout_ms: int | None = None) -> Deferred:
        """Send a request to any broker: a connected one first, then the known brokers, then the
        bootstrap addresses, moving to the next one while connections fail.

        :returns: a Deferred firing with the response body; it fails with the last error when
            every broker failed, or at once with an error that is not about connecting.
        """
        if self._closed:
            return fail(ClientClosedError("the cluster client is closed"))
        return Deferred.fromCoroutine(self._send_any(api_key, body, timeout_ms))

    async def _send_any(self, api_key: int, body: Body, timeout_ms: int | None) -> Any:
        last: KafkaError | None = None
        for address in self._candidates():
            try:
                connection = await self._connection_to(address)
            except ConnectionFailedError as e:
                last = e
                continue
            return await self._request_on(connection, api_key, body, True, timeout_ms)
        raise last if last is not None else ConnectionFailedError("no broker address known")

    def _candidates(self) -> list[Address]:
        connected = sorted(
            (item for item in self._connections.items() if item[1].is_open),
            key=lambda item: item[1].in_flight,
        )
        ordered = [address for address, _ in connected]
        ordered += [(b.host, b.port) for b in self.metadata.brokers.values()]
        ordered += self.bootstrap
        return list(dict.fromkeys(ordered))

    def _request_on(
        self,
        connection: KafkaConnection,
        api_key: int,
        body: Body,
        expect_response: bool,
        timeout_ms: int | None,
    ) -> Deferred:
        try:
            version = connection.version_for(api_key)
        except KafkaError as e:
            return fail(e)
        fields = body(version) if callable(body) else body
        return connection.request(
            api_key,
            fields,
            version=version,
            expect_response=expect_response,
            timeout_ms=timeout_ms,
        )

    @property
    def connected(self) -> bool:
        """Whether a connection to some broker is open now."""
        return any(connection.is_open for connection in self._connections.values())

    def connection(self, node_id: int) -> Deferred:
        """A ready connection to broker ``node_id`` (the existing one, or a new one)."""
        address = self._address_of(node_id)
        if address is None:
            return fail(ConnectionFailedError(f"no address known for broker {node_id}"))
        return self._connection_to(address)

    def _address_of(self, node_id: int) -> Address | None:
        broker = self.metadata.brokers.get(node_id)
        if broker is not None:
            return (broker.host, broker.port)
        return self._other_brokers.get(node_id)

    def _connection_to(self, address: Address) -> Deferred:
        if self._closed:
            return fail(ClientClosedError("the cluster client is closed"))
        existing = self._connections.get(address)
        if existing is not None and existing.is_open:
            return succeed(existing)
        if address in self._connecting:
            return self._connecting[address].wait()
        shot = self._connecting[address] = OneShot()
        host, port = address
        protocol = KafkaConnection(
            self.reactor,
            client_id=self.client_id,
            address=f"{host}:{port}",
            request_timeout_ms=self.request_timeout_ms,
            max_in_flight=self._max_in_flight,
        )
        attempt = self._connect(host, port, protocol)
        attempt.addCallback(lambda connection: connection.when_ready())
        attempt.addCallbacks(
            self._connected,
            self._not_connected,
            callbackArgs=(address,),
            errbackArgs=(address, protocol),
        )
        attempt.addBoth(shot.fire)
        return shot.wait()

    def _connected(self, connection: KafkaConnection, address: Address) -> KafkaConnection:
        del self._connecting[address]
        if self._closed:
            connection.close()
            raise ClientClosedError("the cluster client is closed")
        self._connections[address] = connection
        connection.when_closed().addCallback(self._connection_closed, address, connection)
        return connection

    def _not_connected(self, failure: Failure, address: Address, protocol: KafkaConnection):
        del self._connecting[address]
        protocol.close()
        self._stale = True
        if failure.check(ClientClosedError, ConnectionFailedError):
            return failure
        raise ConnectionFailedError(
            f"cannot use broker {address[0]}:{address[1]}: {failure.getErrorMessage()}"
        )

    def _connection_closed(self, _error: KafkaError, address: Address, connection) -> None:
        if self._connections.get(address) is connection:
            del self._connections[address]
        self._stale = True

    def close(self) -> None:
        """Close every connection; requests in flight fail with ``ClientClosedError``."""
        self._closed = True
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            connection.close()
