"""The follower's side of replication (DESIGN §4): one TCP connection per leader broker.

``ReplicaFetchers`` keeps, per leader broker this broker follows partitions of, a connection
(``LeaderLink``) and the ``FollowerPartition``s fed through it. On connecting it subscribes
every one of them (ReplicaSubscribe: where its log stands); a partition added later is
subscribed on its own. The leader's answer either settles a partition (pushes follow) or names
a divergence: the partition truncates (``FollowerPartition.on_subscribed``) and subscribes
again. OFFSET_OUT_OF_RANGE (the leader's log starts past this log's end: retention) empties
the log, starts it at the leader's log start and subscribes again. An answer with another
error (the leader does not know yet that it leads, or the epochs differ) is retried after a
pause, by which time the store's watch has told one side.

Pushes are appended as they come; the follower acknowledges its new log end offset once it is
durable by its flush policy (``flush.policy=always``: after the fsync, group-committed by the
log's flusher), one ReplicaAck per reactor turn for everything that became durable. Pushes of
an epoch other than the one a partition follows are ignored (a deposed leader's, or a new
leader's not yet heard of); a batch the log refuses makes the partition subscribe again.

A lost connection is made again (after a pause) while partitions still follow that leader; a
leader whose registration changed (new address, lost) gets a new connection.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger

from tmq.protocol.apis import InternalApiKey
from tmq.protocol.errors import ErrorCode, ProtocolError
from tmq.protocol.framing import FrameDecoder, encode_frame
from tmq.protocol.headers import encode_request_header, read_request_header
from tmq.protocol.messages.replication import (
    ReplicaAckEntry,
    ReplicaSubscribeRequest,
    ReplicaSubscribeResponse,
    decode_replica_push,
    encode_replica_ack,
)
from tmq.replication.follower import FollowerPartition, StaleLeader
from tmq.storage.config import FlushPolicy
from tmq.storage.errors import LogError

__all__ = ["LeaderLink", "ReplicaFetchers"]

_log = Logger()

#: Pause before subscribing again after an error answer, and before reconnecting.
RETRY_S = 0.2
_CONNECT_TIMEOUT_S = 5


@dataclass
class _Leader:
    """What this broker follows of one leader broker."""

    broker_id: int
    followers: dict = field(default_factory=dict)  # key -> FollowerPartition
    link: LeaderLink | None = None
    connecting: bool = False
    address: tuple[str, int] | None = None
    subscribing: set = field(default_factory=set)  # keys awaiting an answer
    retry: object = None


class LeaderLink(Protocol):
    """The connection to one leader broker: frames in, calls to ``ReplicaFetchers`` out."""

    def __init__(self, fetchers: ReplicaFetchers, leader: _Leader, max_frame_bytes: int):
        self.fetchers = fetchers
        self.leader = leader
        self._decoder = FrameDecoder(max_frame_bytes)
        self.closed = False

    def connectionMade(self) -> None:
        self.fetchers._connected(self)

    def send(self, api_key: int, correlation_id: int, body: list) -> None:
        header = encode_request_header(api_key, 0, correlation_id, self.fetchers.client_id)
        self.transport.writeSequence(encode_frame(header, *body))

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            for frame in self._decoder.feed(data):
                header, offset = read_request_header(frame)
                body = memoryview(frame)[offset:]
                if header.api_key == InternalApiKey.REPLICA_PUSH:
                    self.fetchers._pushed(self, decode_replica_push(body))
                elif header.api_key == InternalApiKey.REPLICA_SUBSCRIBE:
                    self.fetchers._answered(self, ReplicaSubscribeResponse.parse(body, 0))
                else:
                    raise ProtocolError(f"API key {header.api_key} from a leader")
                if self.closed:
                    return
        except ProtocolError as error:
            _log.warn(
                "bad frame from leader {leader}: {error}", leader=self.leader.broker_id, error=error
            )
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self.closed = True
        self.fetchers._disconnected(self)


class _LinkFactory(ClientFactory):
    def __init__(self, fetchers: ReplicaFetchers, leader: _Leader):
        self.fetchers = fetchers
        self.leader = leader

    def buildProtocol(self, addr) -> LeaderLink:
        return LeaderLink(self.fetchers, self.leader, self.fetchers.broker.config.max_frame_bytes)

    def clientConnectionFailed(self, connector, reason) -> None:
        self.fetchers._connect_failed(self.leader, reason)


class ReplicaFetchers:
    """Every leader connection of one follower broker (see the module).

    :param broker: the ``Broker`` (its ``live`` brokers, registration, clock and config).
    :param connect: ``connect(host, port, factory)`` opens a TCP connection.
    """

    def __init__(self, broker, connect: Callable[[str, int, ClientFactory], object]):
        self.broker = broker
        self.connect = connect
        self.client_id = f"tmq-broker-{broker.config.broker_id}"
        self._leaders: dict[int, _Leader] = {}
        self._correlation_ids = itertools.count(1)
        self._subscriptions: dict[int, list] = {}  # correlation id -> keys
        self._acks: dict[int, dict] = {}  # leader id -> key -> (epoch, log end offset)
        self._acks_pending = False
        self._stopped = False

    # -- what to follow -----------------------------------------------------------------------

    def follow(self, follower: FollowerPartition) -> None:
        """Replicate ``follower`` from its leader."""
        leader = self._leaders.setdefault(follower.leader_id, _Leader(follower.leader_id))
        key = (follower.topic, follower.index)
        leader.followers[key] = follower
        leader.subscribing.discard(key)
        if leader.link is not None and not leader.link.closed:
            self._subscribe(leader, [key])
        else:
            self._ensure_connection(leader)

    def unfollow(self, follower: FollowerPartition) -> None:
        """Stop replicating ``follower`` (a new role, or the topic is gone)."""
        leader = self._leaders.get(follower.leader_id)
        key = (follower.topic, follower.index)
        if leader is None or leader.followers.get(key) is not follower:
            return
        del leader.followers[key]
        leader.subscribing.discard(key)
        if not leader.followers:
            self._forget(leader)

    def broker_changed(self, broker_id: int) -> None:
        """``broker_id`` registered again or was lost: reconnect if its address moved."""
        leader = self._leaders.get(broker_id)
        if leader is None:
            return
        info = self.broker.live.get(broker_id)
        address = None if info is None else (info.host, info.port)
        if address != leader.address and leader.link is not None:
            leader.link.close()  # connectionLost reconnects to the new address
        elif leader.link is None:
            self._ensure_connection(leader)

    def stop(self) -> None:
        self._stopped = True
        for leader in list(self._leaders.values()):
            self._forget(leader)

    def _forget(self, leader: _Leader) -> None:
        self._leaders.pop(leader.broker_id, None)
        if leader.retry is not None and leader.retry.active():
            leader.retry.cancel()
        if leader.link is not None:
            leader.link.close()

    # -- connections --------------------------------------------------------------------------

    def _ensure_connection(self, leader: _Leader) -> None:
        if self._stopped or leader.connecting or leader.link is not None:
            return
        if leader.retry is not None and leader.retry.active():
            return
        info = self.broker.live.get(leader.broker_id)
        if info is None:
            return  # broker_changed connects once it registers
        leader.connecting = True
        leader.address = (info.host, info.port)
        self.connect(info.host, info.port, _LinkFactory(self, leader))

    def _later(self, leader: _Leader, function, *args) -> None:
        if self._leaders.get(leader.broker_id) is not leader:
            return
        if leader.retry is None or not leader.retry.active():
            leader.retry = self.broker.clock.callLater(RETRY_S, function, *args)

    def _connect_failed(self, leader: _Leader, reason) -> None:
        leader.connecting = False
        self._later(leader, self._ensure_connection, leader)

    def _connected(self, link: LeaderLink) -> None:
        leader = link.leader
        leader.connecting = False
        if self._leaders.get(leader.broker_id) is not leader or self._stopped:
            link.close()
            return
        leader.link = link
        leader.subscribing.clear()
        self._subscribe(leader, list(leader.followers))

    def _disconnected(self, link: LeaderLink) -> None:
        leader = link.leader
        if leader.link is link:
            leader.link = None
            leader.subscribing.clear()
            for follower in leader.followers.values():
                follower.following = False
            self._later(leader, self._ensure_connection, leader)

    # -- subscribing --------------------------------------------------------------------------

    def _subscribe(self, leader: _Leader, keys: list) -> None:
        link = leader.link
        registration = self.broker.registration
        keys = [k for k in keys if k in leader.followers and k not in leader.subscribing]
        if link is None or link.closed or not keys or registration is None:
            return
        leader.subscribing.update(keys)
        correlation_id = next(self._correlation_ids)
        self._subscriptions[correlation_id] = keys
        request = {
            "broker_id": self.broker.config.broker_id,
            "broker_epoch": registration.broker_epoch,
            "window_bytes": self.broker.config.replica_window_bytes,
            "partitions": [leader.followers[key].subscription() for key in keys],
        }
        body = ReplicaSubscribeRequest.build(request, 0)
        link.send(InternalApiKey.REPLICA_SUBSCRIBE, correlation_id, [body])

    def _resubscribe_later(self, leader: _Leader, key) -> None:
        def again():
            if self._leaders.get(leader.broker_id) is leader:
                self._subscribe(leader, [key])

        self.broker.clock.callLater(RETRY_S, again)

    def _answered(self, link: LeaderLink, response) -> None:
        leader = link.leader
        again = []
        for answer in response.partitions:
            key = (answer.topic, answer.partition)
            leader.subscribing.discard(key)
            follower = leader.followers.get(key)
            if follower is None:
                continue
            if answer.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                try:
                    follower.restart_at(answer.log_start_offset)
                except LogError as error:
                    _log.error("{t}-{i}: cannot start over: {e}", t=key[0], i=key[1], e=error)
                    self._resubscribe_later(leader, key)
                    continue
                _log.info(
                    "{t}-{i}: the leader's log starts at {start}, past this one's end: "
                    "starting over there",
                    t=key[0],
                    i=key[1],
                    start=answer.log_start_offset,
                )
                again.append(key)
                continue
            if answer.error_code != ErrorCode.NONE:
                self._resubscribe_later(leader, key)
                continue
            try:
                settled = follower.on_subscribed(answer)
            except (StaleLeader, LogError) as error:
                _log.info("{t}-{i}: {error}; subscribing again", t=key[0], i=key[1], error=error)
                self._resubscribe_later(leader, key)
                continue
            if not settled:
                again.append(key)  # truncated to the divergence: ask again from there
        if again:
            self._subscribe(leader, again)

    # -- pushes and acks ----------------------------------------------------------------------

    def _pushed(self, link: LeaderLink, push) -> None:
        leader = link.leader
        key = (push.topic, push.partition)
        follower = leader.followers.get(key)
        if follower is None or not follower.following:
            return  # sent before a new subscription was answered: the leader starts over
        before = follower.log.log_end_offset
        try:
            log_end = follower.on_push(push.leader_epoch, push.high_watermark, push.records)
        except StaleLeader:
            return  # another epoch's push: the store's watch settles who leads
        except LogError as error:
            _log.warn("{t}-{i}: push refused: {error}", t=key[0], i=key[1], error=error)
            follower.following = False
            self._subscribe(leader, [key])
            return
        if log_end == before:
            return
        epoch = push.leader_epoch
        if follower.log.config.flush_policy is FlushPolicy.ALWAYS:
            durable = follower.log.durable(log_end - 1)
            durable.add_done_callback(
                lambda done: self.broker.clock.callFromThread(
                    self._durable, done, leader, key, epoch, log_end
                )
            )
        else:
            self._ack(leader, key, epoch, log_end)

    def _durable(self, done, leader: _Leader, key, epoch: int, log_end: int) -> None:
        if done.exception() is not None:
            _log.error("{t}-{i}: fsync failed: {error}", t=key[0], i=key[1], error=done.exception())
            return
        self._ack(leader, key, epoch, log_end)

    def _ack(self, leader: _Leader, key, epoch: int, log_end: int) -> None:
        pending = self._acks.setdefault(leader.broker_id, {})
        known = pending.get(key)
        if known is None or known[1] < log_end:
            pending[key] = (epoch, log_end)
        if not self._acks_pending:
            self._acks_pending = True
            self.broker.clock.callLater(0, self._send_acks)

    def _send_acks(self) -> None:
        self._acks_pending = False
        acks, self._acks = self._acks, {}
        for broker_id, entries in acks.items():
            leader = self._leaders.get(broker_id)
            if leader is None or leader.link is None or leader.link.closed:
                continue  # a new connection subscribes from the log end offset
            body = encode_replica_ack(
                [ReplicaAckEntry(t, i, epoch, end) for (t, i), (epoch, end) in entries.items()]
            )
            leader.link.send(InternalApiKey.REPLICA_ACK, next(self._correlation_ids), [body])
