"""The TCP side of the broker: frames in, responses out, in order, with back-pressure.

``BrokerProtocol`` only moves bytes: ``FrameDecoder`` splits the stream, the request header is
read, and the ``Dispatcher`` turns each request into a response (now or later, as a Deferred).
Responses are written in request order (Kafka clients rely on it) however they complete.

Back-pressure, per connection: while ``max_in_flight`` responses are pending, or while the
transport's write buffer is full (the transport pauses us as its registered producer), the
protocol stops reading from the socket; it resumes when both clear.

Bad input never takes the broker down: an oversized or malformed frame, an unknown API or an
unsupported version closes this connection (as Kafka does), logged once.

Replication: a connection whose *first* request is a ReplicaSubscribe (key 1000) is a follower
broker's stream; from then on every frame goes to its ``ReplicaSession`` (made by
``open_replication``), and client APIs are refused on it. A replication API on any other
connection closes it.
"""

from __future__ import annotations

from collections import deque

from twisted.internet import defer, interfaces, task
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tmq.protocol.apis import INTERNAL_API_BY_KEY, InternalApiKey
from tmq.protocol.errors import ProtocolError
from tmq.protocol.framing import FrameDecoder, encode_frame
from tmq.protocol.headers import encode_response_header, read_request_header

from .dispatch import Dispatcher, RequestRefused

__all__ = ["BrokerFactory", "BrokerProtocol"]

_log = Logger()

#: After the last answer of a graceful shutdown, how long clients get to close first.
_CLOSE_GRACE_S = 2.0


@implementer(interfaces.IPushProducer)
class BrokerProtocol(Protocol):
    """One client connection.

    :param dispatcher: turns requests into responses.
    :param max_frame_bytes: the largest request accepted.
    :param max_in_flight: pending responses at which reading stops.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        max_frame_bytes: int,
        max_in_flight: int,
        open_replication=None,
    ):
        self._dispatcher = dispatcher
        self._open_replication = open_replication
        self._session = None
        self._requests = 0
        self._decoder = FrameDecoder(max_frame_bytes)
        self._max_in_flight = max_in_flight
        self._pending: deque[list] = deque()  # [header, response or Deferred, done flag]
        self._write_paused = False
        self._read_paused = False
        self._stopping = False
        self._closed = False
        self.peer = "?"
        self.client_host = ""

    # -- connection lifecycle -----------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        # as Kafka prints a client's InetAddress: "/127.0.0.1"
        self.client_host = f"/{peer.host}" if hasattr(peer, "host") else ""
        self.transport.registerProducer(self, True)
        factory = getattr(self, "factory", None)
        if factory is not None:
            factory.connections.add(self)

    @property
    def idle(self) -> bool:
        """No response is pending."""
        return not self._pending

    def stop_reading(self) -> None:
        """Take no more requests (graceful shutdown): pending ones are still answered; bytes
        that arrive from now on are read and dropped (nothing is stored unanswered, and the
        socket is not closed on unread data, which would reset the connection and make the
        client lose answers already sent)."""
        self._stopping = True

    def connectionLost(self, reason) -> None:
        factory = getattr(self, "factory", None)
        if factory is not None:
            factory.connections.discard(self)
        self._closed = True
        if self._session is not None:
            self._session.connection_lost()
        for entry in self._pending:
            if isinstance(entry[1], defer.Deferred):
                entry[1].cancel()
        self._pending.clear()

    def _refuse(self, message: str) -> None:
        _log.warn("closing connection from {peer}: {message}", peer=self.peer, message=message)
        self._closed = True
        self.transport.loseConnection()

    # -- reading ------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closed or self._stopping:
            return
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as error:
            self._refuse(str(error))
            return
        for frame in frames:
            if self._closed or self._stopping:
                return
            self._handle(frame)

    def _handle(self, frame: bytes) -> None:
        try:
            header, offset = read_request_header(frame)
        except ProtocolError as error:
            self._refuse(f"bad request header: {error}")
            return
        self._requests += 1
        if header.api_key in INTERNAL_API_BY_KEY or self._session is not None:
            self._replication_frame(header, memoryview(frame)[offset:])
            return
        try:
            response = self._dispatcher.dispatch(
                header, memoryview(frame)[offset:], self.client_host
            )
        except RequestRefused as error:
            self._refuse(str(error))
            return
        if response is None:
            return  # acks=0 produce: no response
        entry = [header, response, not isinstance(response, defer.Deferred)]
        self._pending.append(entry)
        if not entry[2]:
            response.addBoth(self._completed, entry)
        self._flush_ready()
        self._update_reading()

    def _replication_frame(self, header, body: memoryview) -> None:
        if self._session is None:
            if (
                header.api_key != InternalApiKey.REPLICA_SUBSCRIBE
                or self._requests != 1
                or self._open_replication is None
            ):
                self._refuse(f"replication API {header.api_key} on a client connection")
                return
            self._session = self._open_replication(
                lambda chunks: self.transport.writeSequence(encode_frame(*chunks)),
                self.transport.loseConnection,
            )
        try:
            self._session.frame(header, body)
        except RequestRefused as error:
            self._refuse(str(error))

    def _completed(self, result, entry: list) -> None:
        if isinstance(result, Failure):
            if not self._closed:
                if result.check(RequestRefused):
                    self._refuse(result.getErrorMessage())
                else:
                    _log.failure("request from {peer} failed", result, peer=self.peer)
                    self._refuse("internal error")
            return
        if self._closed:
            return
        entry[1] = result
        entry[2] = True
        self._flush_ready()
        self._update_reading()

    # -- writing ------------------------------------------------------------------------------

    def _flush_ready(self) -> None:
        while self._pending and self._pending[0][2] and not self._closed:
            header, body, _ = self._pending.popleft()
            response_header = encode_response_header(
                header.api_key, header.api_version, header.correlation_id
            )
            self.transport.writeSequence(encode_frame(response_header, *body))

    def _update_reading(self) -> None:
        should_pause = self._write_paused or len(self._pending) >= self._max_in_flight
        if should_pause and not self._read_paused:
            self._read_paused = True
            self.transport.pauseProducing()
        elif not should_pause and self._read_paused and not self._closed:
            self._read_paused = False
            self.transport.resumeProducing()

    # IPushProducer: the transport tells us when its write buffer is full or drained.

    def pauseProducing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def stopProducing(self) -> None:
        self._closed = True


class BrokerFactory(Factory):
    """Builds a ``BrokerProtocol`` per connection, all sharing one dispatcher.

    :param open_replication: ``(write, disconnect) -> session`` for replication connections
        (``None``: refuse them).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        max_frame_bytes: int,
        max_in_flight: int,
        open_replication=None,
    ):
        self.dispatcher = dispatcher
        self.open_replication = open_replication
        self.max_frame_bytes = max_frame_bytes
        self.max_in_flight = max_in_flight
        self.connections: set[BrokerProtocol] = set()

    @defer.inlineCallbacks
    def drain(self, clock, timeout_s: float):
        """Graceful shutdown: take no more requests, wait (up to ``timeout_s``) until every
        pending response is written, half-close (the client reads every answer, then EOF),
        and close once the clients have gone (or after a short grace period)."""
        for connection in list(self.connections):
            connection.stop_reading()
        deadline = clock.seconds() + timeout_s
        while any(not c.idle for c in self.connections) and clock.seconds() < deadline:
            yield task.deferLater(clock, 0.01, lambda: None)
        for connection in list(self.connections):
            connection.transport.loseWriteConnection()
        deadline = clock.seconds() + _CLOSE_GRACE_S
        while self.connections and clock.seconds() < deadline:
            yield task.deferLater(clock, 0.01, lambda: None)
        for connection in list(self.connections):
            connection.transport.loseConnection()

    def buildProtocol(self, addr) -> BrokerProtocol:
        protocol = BrokerProtocol(
            self.dispatcher,
            max_frame_bytes=self.max_frame_bytes,
            max_in_flight=self.max_in_flight,
            open_replication=self.open_replication,
        )
        protocol.factory = self
        return protocol
