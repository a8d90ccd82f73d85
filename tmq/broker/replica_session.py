"""The leader's end of one follower broker's replication connection (DESIGN §4).

A connection whose first request is a ReplicaSubscribe becomes a replication connection
(``BrokerProtocol`` hands it every later frame; client APIs are refused on it, and
replication APIs on client connections). On it, every frame in both directions carries a
request header v1 (``tmq.protocol.messages.replication``): the session answers a
ReplicaSubscribe with a frame whose api_key is 1000 and whose correlation id is the
request's, and pushes ReplicaPush frames (api_key 1001) with correlation ids of its own.

Per subscribed partition the session answers divergence (``tmq.replication.leader.divergence``)
or starts a ``LeaderStream`` entry at the follower's offset, and counts the offset as the
follower's report; a follower whose log ends below the leader's log start (retention) is
answered OFFSET_OUT_OF_RANGE with that start, and starts its log over there. The session then
pushes whole batches as they are appended, within the follower's window. Acks free the
window and are the follower's reports for the high watermark and the ISR. Pushes go out once
per reactor turn however many appends woke the session. A push carries the high watermark;
one that only moves it waits ``HW_PUSH_DELAY_S`` (the next data push usually carries it
first): a follower needs its high watermark only for its checkpoint and to start from if it
leads, and a leader recomputes it from its ISR anyway, so under load this saves a frame per
acknowledgement. An ack that does not match what was pushed closes the connection: the
follower reconnects and subscribes again.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from twisted.logger import Logger

from tmq.protocol.apis import InternalApiKey
from tmq.protocol.errors import ErrorCode, ProtocolError
from tmq.protocol.headers import RequestHeader, encode_request_header
from tmq.protocol.messages.replication import (
    ReplicaSubscribeRequest,
    ReplicaSubscribeResponse,
    decode_replica_ack,
    encode_replica_push,
)
from tmq.protocol.records import read_batch_header
from tmq.replication.leader import divergence
from tmq.replication.leader_stream import LeaderStream, StreamOutOfStep
from tmq.storage.errors import LogError

from .dispatch import RequestRefused

__all__ = ["ReplicaSession"]

_log = Logger()

#: How long a push that only moves the high watermark may wait for a data push to carry it.
HW_PUSH_DELAY_S = 0.05


def _next_offset(records: bytes) -> int:
    """The offset after the last of the whole batches in ``records``."""
    view = memoryview(records)
    position, last = 0, -1
    while position < len(view):
        header = read_batch_header(view, position)
        position += header.size
        last = header.last_offset
    return last + 1


class ReplicaSession:
    """One follower broker's stream (see the module).

    :param broker: the ``Broker``.
    :param write: sends one frame (a list of byte chunks) to the follower.
    :param disconnect: closes the connection.
    """

    def __init__(self, broker, write: Callable[[list], None], disconnect: Callable[[], None]):
        self.broker = broker
        self._write = write
        self._disconnect = disconnect
        self.follower_id: int | None = None
        self.stream: LeaderStream | None = None
        self._correlation_ids = itertools.count(1)
        self._client_id = f"tmq-broker-{broker.config.broker_id}"
        self._wake_pending = False
        self._hw_timer = None
        self._closed = False
        broker.sessions.add(self)

    def __repr__(self) -> str:
        return f"<ReplicaSession to follower {self.follower_id}>"

    def frame(self, header: RequestHeader, body: memoryview) -> None:
        """One frame from the follower.

        :raises RequestRefused: an API other than ReplicaSubscribe or ReplicaAck v0, or a
            body that does not decode (the connection is closed).
        """
        if header.api_version != 0:
            raise RequestRefused(f"replication API {header.api_key} v{header.api_version}")
        try:
            if header.api_key == InternalApiKey.REPLICA_SUBSCRIBE:
                self._subscribe(header, ReplicaSubscribeRequest.parse(body, 0))
            elif header.api_key == InternalApiKey.REPLICA_ACK:
                self._acked(decode_replica_ack(body))
            else:
                raise RequestRefused(f"API key {header.api_key} on a replication connection")
        except ProtocolError as error:
            raise RequestRefused(f"bad replication frame: {error}") from None

    # -- subscriptions ------------------------------------------------------------------------

    def _subscribe(self, header: RequestHeader, request: dict) -> None:
        follower = request["broker_id"]
        if self.follower_id is None:
            if request["window_bytes"] < 1:
                raise RequestRefused(f"window of {request['window_bytes']} bytes")
            self.follower_id = follower
            self.stream = LeaderStream(follower, request["window_bytes"])
        elif follower != self.follower_id:
            raise RequestRefused(f"broker {follower} on broker {self.follower_id}'s stream")
        known = self.broker.live.get(follower)
        stale = known is not None and request["broker_epoch"] < known.broker_epoch
        answers = [self._answer(entry, stale) for entry in request["partitions"]]
        body = ReplicaSubscribeResponse.build({"partitions": answers}, 0)
        self._send(InternalApiKey.REPLICA_SUBSCRIBE, header.correlation_id, [body])
        self.wake()

    def _answer(self, entry: dict, stale_follower: bool) -> dict:
        topic, index = entry["topic"], entry["partition"]
        key = (topic, index)
        answer = {
            "topic": topic,
            "partition": index,
            "error_code": ErrorCode.NONE,
            "leader_epoch": -1,
            "diverging": False,
            "high_watermark": -1,
            "log_start_offset": -1,
        }
        partition = self.broker.partitions.get(key)
        self.stream.unsubscribe(key)
        if partition is None:
            answer["error_code"] = self.broker.not_led_error(topic, index)
            return answer
        answer["leader_epoch"] = partition.leader_epoch
        error = partition.check_epoch(entry["current_leader_epoch"])
        if stale_follower:
            error = ErrorCode.STALE_BROKER_EPOCH
        elif error == ErrorCode.NONE and self.follower_id not in partition.replication.followers:
            error = ErrorCode.NOT_LEADER_OR_FOLLOWER
        if error != ErrorCode.NONE:
            answer["error_code"] = error
            return answer
        log = partition.log
        answer.update(
            high_watermark=partition.high_watermark, log_start_offset=log.log_start_offset
        )
        fetch_offset = entry["fetch_offset"]
        if fetch_offset < log.log_start_offset:
            # all the follower has is gone here too: it starts over at our log start
            answer["error_code"] = ErrorCode.OFFSET_OUT_OF_RANGE
            return answer
        diverging = divergence(
            log.epochs, log.log_end_offset, fetch_offset, entry["last_fetched_epoch"]
        )
        if diverging is not None:
            epoch, end = diverging
            answer.update(diverging=True, diverging_epoch=epoch, diverging_end_offset=end)
            return answer
        self.stream.subscribe(key, fetch_offset)
        self.broker.follower_reported(self.follower_id, key, fetch_offset)
        return answer

    def forget(self, key) -> None:
        """This broker no longer leads ``key``: push nothing more of it."""
        if self.stream is not None:
            self.stream.unsubscribe(key)

    # -- acks ---------------------------------------------------------------------------------

    def _acked(self, entries) -> None:
        if self.stream is None:
            raise RequestRefused("ReplicaAck before ReplicaSubscribe")
        for entry in entries:
            key = (entry.topic, entry.partition)
            partition = self.broker.partitions.get(key)
            if (
                partition is None
                or partition.leader_epoch != entry.leader_epoch
                or not self.stream.subscribed(key)
            ):
                continue  # an ack racing a leadership change or a new subscription
            try:
                self.stream.acked(key, entry.log_end_offset)
            except StreamOutOfStep as error:
                _log.warn("{session}: {error}; closing the stream", session=self, error=error)
                self.close()
                return
            self.broker.follower_reported(self.follower_id, key, entry.log_end_offset)
        self.wake()

    # -- pushes -------------------------------------------------------------------------------

    def wake(self) -> None:
        """Push what there is to push, once this reactor turn is over."""
        if not self._wake_pending and not self._closed:
            self._wake_pending = True
            self.broker.clock.callLater(0, self._push)

    def _push(self) -> None:
        self._wake_pending = False
        if self._closed or self.stream is None or not self.broker.lease_valid():
            return
        partitions = self.broker.partitions
        for push in self.stream.pushes(self._read):
            self._send_push(partitions[push.partition], push.records)
        if self._hw_timer is None or not self._hw_timer.active():
            self._hw_timer = self.broker.clock.callLater(HW_PUSH_DELAY_S, self._push_hw)

    def _push_hw(self) -> None:
        """Empty pushes for the partitions whose high watermark moved since it was sent."""
        if self._closed or self.stream is None or not self.broker.lease_valid():
            return
        partitions = self.broker.partitions
        high_watermarks = {key: p.high_watermark for key, p in partitions.items()}
        for key in self.stream.hw_pushes(high_watermarks):
            self._send_push(partitions[key], b"")

    def _read(self, key, offset: int, max_bytes: int, at_least_one: bool):
        partition = self.broker.partitions.get(key)
        if partition is None or offset >= partition.log.log_end_offset:
            return None
        try:
            read = partition.log.read(offset, max_bytes)
        except LogError as error:
            _log.warn("{session}: cannot read {key} at {offset}: {error}", session=self,
                      key=key, offset=offset, error=error)  # fmt: skip
            self.stream.unsubscribe(key)
            return None
        if read is None or (read.size > max_bytes and not at_least_one):
            return None
        records = read.read()
        return records, _next_offset(records)

    def _send_push(self, partition, records: bytes) -> None:
        high_watermark = partition.high_watermark
        body = encode_replica_push(
            partition.topic,
            partition.index,
            partition.leader_epoch,
            high_watermark,
            partition.log_start_offset,
            records,
        )
        self._send(InternalApiKey.REPLICA_PUSH, next(self._correlation_ids), body)
        self.stream.heard(partition.key, high_watermark)

    def _send(self, api_key: int, correlation_id: int, body: list) -> None:
        header = encode_request_header(api_key, 0, correlation_id, self._client_id)
        self._write([header, *body])

    def close(self) -> None:
        """End the session and close its connection."""
        if self._hw_timer is not None and self._hw_timer.active():
            self._hw_timer.cancel()
        if not self._closed:
            self._closed = True
            self.broker.sessions.discard(self)
            self._disconnect()

    def connection_lost(self) -> None:
        if self._hw_timer is not None and self._hw_timer.active():
            self._hw_timer.cancel()
        self._closed = True
        self.broker.sessions.discard(self)
