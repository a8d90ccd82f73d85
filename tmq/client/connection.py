"""One connection to one broker: pipelined requests, responses matched in order.

``KafkaConnection`` is a Twisted ``Protocol`` over the sans-IO ``FrameDecoder``:

* On connect it negotiates API versions: it sends ApiVersions v3; a broker that does not know
  v3 answers with the v0 error body (UNSUPPORTED_VERSION, KIP-511), and the connection retries
  with v0. ``version_for(api_key)`` is then the highest version both the broker and this client
  support; this client speaks the versions ``tmq.protocol`` declares, but Produce from v3 (the
  first with RecordBatch v2).
* ``request()`` writes a request at once, up to ``max_in_flight`` unanswered requests; more wait
  in a local queue, in order. Each request gets the next correlation id, and its Deferred fires
  with the parsed response body. A Kafka broker answers in request order, so a response must
  carry the correlation id of the oldest unanswered request; anything else is a protocol
  violation and closes the connection.
* A request with ``expect_response=False`` (Produce with acks=0: the broker sends nothing back)
  fires as soon as it is written.
* Each request has a timeout on the injected clock. A request that times out fails with
  ``RequestTimedOutError`` and, as in Kafka's clients, the connection is closed: its later
  responses could only arrive after the late one.
* When the connection closes, every unanswered and queued request fails with
  ``ConnectionLostError`` (or the error that caused the close).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmq.protocol.apis import API_BY_KEY, ApiKey
from tmq.protocol.errors import ErrorCode, ProtocolError
from tmq.protocol.framing import MAX_FRAME_BYTES, FrameDecoder, encode_frame
from tmq.protocol.headers import encode_request_header, read_response_header
from tmq.protocol.messages.api_versions import ApiVersionsResponse
from tmq.protocol.messages.fetch import decode_fetch_response
from tmq.protocol.messages.produce import decode_produce_response, encode_produce_request

from ._oneshot import OneShot
from .errors import (
    BrokerResponseError,
    ClientClosedError,
    ConnectionLostError,
    KafkaError,
    KafkaProtocolError,
    RequestTimedOutError,
    UnsupportedVersionError,
)

__all__ = [
    "CLIENT_MIN_VERSIONS",
    "CLIENT_SOFTWARE_NAME",
    "CLIENT_SOFTWARE_VERSION",
    "Connector",
    "KafkaConnection",
    "tcp_connector",
]

#: Sent in ApiVersions v3; Kafka checks both against
#: ``[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?``.
CLIENT_SOFTWARE_NAME = "tmq"
CLIENT_SOFTWARE_VERSION = "0.1.0"

#: Lowest versions this client uses where ``tmq.protocol`` declares lower ones: Produce v0-2
#: carry the legacy message format, which the client does not write.
CLIENT_MIN_VERSIONS = {ApiKey.PRODUCE: 3}

_FIRST_API_VERSIONS = 3
_CORRELATION_IDS = 0x7FFFFFFF

#: The responses decoded by ``tmq.protocol``'s struct fast paths instead of their declarations
#: (the same values; a Fetch response's records are views of the frame, not copies).
_FAST_DECODERS = {ApiKey.PRODUCE: decode_produce_response, ApiKey.FETCH: decode_fetch_response}

_log = Logger()

Connector = Callable[[str, int, "KafkaConnection"], Deferred]
"""``connect(host, port, protocol)``: connect ``protocol`` to a broker; the Deferred fires with
the protocol once the transport is connected (``connectionMade`` has run)."""


def tcp_connector(reactor: Any, connect_timeout_s: float = 10.0) -> Connector:
    """The ``Connector`` over TCP: ``HostnameEndpoint`` (IPv4 and IPv6, name resolution).

    :param reactor: provides ``IReactorTCP``, ``IReactorTime`` and name resolution.
    :param connect_timeout_s: how long one connection attempt may take.
    """

    def connect(host: str, port: int, protocol: KafkaConnection) -> Deferred:
        endpoint = HostnameEndpoint(reactor, host, port, timeout=connect_timeout_s)
        return endpoint.connect(_OneConnection(protocol))

    return connect


class _OneConnection(Factory):
    """The factory of one connection attempt: ``protocol`` itself. Not noisy: Twisted's own
    (``connectProtocol``) logs a start and a stop line per attempt, a flood in a client's log
    while a broker is down."""

    noisy = False

    def __init__(self, protocol: KafkaConnection):
        self._protocol = protocol

    def buildProtocol(self, addr) -> KafkaConnection:
        return self._protocol


def _parse_api_versions(body: memoryview, version: int) -> Any:
    """Parse an ApiVersions response body; an error body is always read as v0 (KIP-511).

    ``error_code`` is the first field in every version, so it can be read before choosing.
    """
    if len(body) >= 2 and (body[0] or body[1]):
        version = 0
    return ApiVersionsResponse.parse(body, version)


class _Request:
    """One request: queued, then in flight, then answered (or failed)."""

    __slots__ = (
        "api_key",
        "body",
        "correlation_id",
        "deferred",
        "expect_response",
        "timeout_s",
        "timer",
        "version",
    )

    def __init__(self, api_key, version, body, expect_response, timeout_s):
        self.api_key: int = api_key
        self.version: int = version
        self.body: list[bytes | memoryview] = body  # the encoded body, in chunks
        self.expect_response: bool = expect_response
        self.timeout_s: float = timeout_s
        self.correlation_id = -1
        self.timer: IDelayedCall | None = None
        self.deferred: Deferred = Deferred()

    def describe(self) -> str:
        return f"{API_BY_KEY[self.api_key].name} v{self.version}"


class KafkaConnection(Protocol):
    """A client connection to one broker (see the module docstring for the contract).

    Not thread-safe: call it from the reactor thread.

    :param clock: schedules request timeouts.
    :param client_id: the ``client_id`` of every request header.
    :param address: names the broker in error messages, e.g. ``"broker-1:9092"``.
    :param request_timeout_ms: default time a request may wait for its response.
    :param max_in_flight: unanswered requests written at most; later ones wait in order.
    :param max_frame_bytes: the largest response frame accepted; a larger size prefix closes
        the connection before anything is buffered.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        client_id: str = "tmq",
        address: str = "broker",
        request_timeout_ms: int = 30_000,
        max_in_flight: int = 5,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ):
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._clock = clock
        self.client_id = client_id
        self.address = address
        self._request_timeout_s = request_timeout_ms / 1000
        self._max_in_flight = max_in_flight
        self._decoder = FrameDecoder(max_frame_bytes)
        self._next_correlation_id = 0
        self._in_flight: collections.deque[_Request] = collections.deque()
        self._queued: collections.deque[_Request] = collections.deque()
        self._broker_versions: dict[int, tuple[int, int]] = {}
        self._error: KafkaError | None = None
        self._ready = OneShot()
        self._closed = OneShot()
        self.api_versions_version: int | None = None
        """The ApiVersions version the negotiation succeeded with (3, or 0 after a fallback)."""

    def __repr__(self) -> str:
        return f"<KafkaConnection {self.address}>"

    # -- state -----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether requests can still be made (not closed, not failed)."""
        return self._error is None and self.transport is not None

    @property
    def in_flight(self) -> int:
        """Requests written and waiting for their response."""
        return len(self._in_flight)

    @property
    def broker_versions(self) -> dict[int, tuple[int, int]]:
        """The broker's ``{api_key: (min, max)}`` from ApiVersions (empty before it is known)."""
        return dict(self._broker_versions)

    def when_ready(self) -> Deferred:
        """A Deferred firing with this connection once ApiVersions has been negotiated, or
        failing with the reason the connection could not be used."""
        return self._ready.wait()

    def when_closed(self) -> Deferred:
        """A Deferred firing, with the ``KafkaError`` that ended it, when the connection is
        closed (never errbacks)."""
        return self._closed.wait()

    def version_for(self, api_key: int) -> int:
        """The highest version of ``api_key`` that the broker and this client both support.

        :raises UnsupportedVersionError: before negotiation, or when the ranges do not meet.
        """
        api = API_BY_KEY[api_key]
        broker = self._broker_versions.get(api_key)
        if broker is None:
            raise UnsupportedVersionError(f"{self.address} does not support {api.name}")
        low = max(api.min_version, CLIENT_MIN_VERSIONS.get(api_key, 0), broker[0])
        high = min(api.max_version, broker[1])
        if low > high:
            raise UnsupportedVersionError(
                f"{self.address} supports {api.name} v{broker[0]}-{broker[1]}, this client "
                f"v{max(api.min_version, CLIENT_MIN_VERSIONS.get(api_key, 0))}-{api.max_version}"
            )
        return high

    # -- requests --------------------------------------------------------------------------

    def request(
        self,
        api_key: int,
        body: dict,
        *,
        version: int | None = None,
        expect_response: bool = True,
        timeout_ms: int | None = None,
    ) -> Deferred:
        """Send a request; the Deferred fires with the parsed response body.

        :param api_key: the API (``ApiKey``).
        :param body: the request fields (fields absent from the version are ignored).
        :param version: the API version; by default ``version_for(api_key)``.
        :param expect_response: ``False`` when the broker sends no response (Produce with
            acks=0): the Deferred fires with ``None`` once the request is written.
        :param timeout_ms: overrides the connection's request timeout (a Fetch must wait longer
            than its ``max_wait_ms``).
        :returns: a Deferred that fails with a ``KafkaError`` when the request cannot be sent,
            times out, the connection closes first or the response is malformed, and with a
            ``ProtocolError`` when ``body`` does not fit the version (a caller's bug).
        """
        if self._error is not None:
            return fail(self._error)
        try:
            if version is None:
                version = self.version_for(api_key)
            if api_key == ApiKey.PRODUCE:  # record batches go out uncopied
                chunks = encode_produce_request(body, version)
            else:
                chunks = [API_BY_KEY[api_key].request.build(body, version)]
        except (KafkaError, ProtocolError) as e:
            return fail(e)
        timeout_s = self._request_timeout_s if timeout_ms is None else timeout_ms / 1000
        request = _Request(api_key, version, chunks, expect_response, timeout_s)
        self._queued.append(request)
        self._write_queued()
        return request.deferred

    def close(self) -> None:
        """Close the connection; unanswered requests fail with ``ClientClosedError``.

        Requests already written to the transport (acks=0 produces) are still delivered.
        """
        if self._error is None:
            self._error = ClientClosedError(f"connection to {self.address} closed by the client")
            self._fail_pending(self._error)
            if self.transport is not None:
                self.transport.loseConnection()

    def _write_queued(self) -> None:
        if self.transport is None:
            return
        while self._queued and len(self._in_flight) < self._max_in_flight:
            if self._error is not None:
                return
            request = self._queued.popleft()
            correlation_id = self._next_correlation_id
            self._next_correlation_id = (correlation_id + 1) & _CORRELATION_IDS
            header = encode_request_header(
                request.api_key, request.version, correlation_id, self.client_id
            )
            self.transport.writeSequence(encode_frame(header, *request.body))
            if request.expect_response:
                request.correlation_id = correlation_id
                request.timer = self._clock.callLater(request.timeout_s, self._timed_out, request)
                self._in_flight.append(request)
            else:
                request.deferred.callback(None)

    def _timed_out(self, request: _Request) -> None:
        request.timer = None
        self._in_flight.remove(request)
        _log.info(
            "{request} to {address} timed out after {timeout} s; closing the connection",
            request=request.describe(),
            address=self.address,
            timeout=request.timeout_s,
        )
        request.deferred.errback(
            RequestTimedOutError(
                f"{request.describe()} to {self.address} got no response within "
                f"{request.timeout_s:g} s"
            )
        )
        self._abort(
            ConnectionLostError(f"connection to {self.address} closed: a request timed out")
        )

    # -- Twisted hooks ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        self._negotiate(_FIRST_API_VERSIONS)
        self._write_queued()

    def dataReceived(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as e:
            self._abort(KafkaProtocolError(f"{self.address}: {e}"))
            return
        for frame in frames:
            if self._error is not None:
                return
            self._frame_received(frame)
        self._write_queued()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._error is None:
            why = reason.getErrorMessage() if reason is not None else "closed"
            self._error = ConnectionLostError(f"connection to {self.address} lost: {why}")
        self._fail_pending(self._error)
        self._ready.fire(Failure(self._error))
        self._closed.fire(self._error)

    # -- internals -------------------------------------------------------------------------

    def _frame_received(self, frame: bytes) -> None:
        if not self._in_flight:
            self._abort(KafkaProtocolError(f"{self.address} sent a response nobody asked for"))
            return
        request = self._in_flight[0]
        try:
            header, offset = read_response_header(frame, request.api_key, request.version)
        except ProtocolError as e:
            self._abort(KafkaProtocolError(f"{self.address}: {e}"))
            return
        if header.correlation_id != request.correlation_id:
            self._abort(
                KafkaProtocolError(
                    f"{self.address} answered correlation id {header.correlation_id} while "
                    f"{request.correlation_id} ({request.describe()}) was the oldest request"
                )
            )
            return
        self._in_flight.popleft()
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        body = memoryview(frame)[offset:]
        try:
            if request.api_key == ApiKey.API_VERSIONS:
                response = _parse_api_versions(body, request.version)
            elif request.api_key in _FAST_DECODERS:
                response = _FAST_DECODERS[request.api_key](body, request.version)
            else:
                response = API_BY_KEY[request.api_key].response.parse(body, request.version)
        except ProtocolError as e:
            request.deferred.errback(
                KafkaProtocolError(f"{self.address}: {request.describe()} response: {e}")
            )
            return
        request.deferred.callback(response)

    def _negotiate(self, version: int) -> None:
        body = {
            "client_software_name": CLIENT_SOFTWARE_NAME,
            "client_software_version": CLIENT_SOFTWARE_VERSION,
        }
        request = _Request(
            ApiKey.API_VERSIONS,
            version,
            [API_BY_KEY[ApiKey.API_VERSIONS].request.build(body, version)],
            True,
            self._request_timeout_s,
        )
        self._queued.appendleft(request)  # ahead of requests made before the connection
        request.deferred.addCallbacks(
            self._negotiated, self._negotiation_failed, callbackArgs=(version,)
        )

    def _negotiated(self, response: Any, version: int) -> None:
        if response.error_code == ErrorCode.UNSUPPORTED_VERSION and version != 0:
            _log.debug(
                "{address} does not know ApiVersions v{version}; retrying with v0",
                address=self.address,
                version=version,
            )
            self._negotiate(0)
            self._write_queued()
            return
        if response.error_code != ErrorCode.NONE:
            self._abort(BrokerResponseError(response.error_code, f"ApiVersions to {self.address}"))
            return
        self._broker_versions = {
            entry.api_key: (entry.min_version, entry.max_version) for entry in response.api_keys
        }
        self.api_versions_version = version
        self._ready.fire(self)

    def _negotiation_failed(self, failure: Failure) -> None:
        if failure.check(KafkaError) and self._error is None:
            self._abort(failure.value)
        self._ready.fire(failure)

    def _abort(self, error: KafkaError) -> None:
        if self._error is not None:
            return
        self._error = error
        self._fail_pending(error)
        self._ready.fire(Failure(error))
        if self.transport is not None:
            self.transport.abortConnection()

    def _fail_pending(self, error: KafkaError) -> None:
        pending = list(self._in_flight) + list(self._queued)
        self._in_flight.clear()
        self._queued.clear()
        for request in pending:
            if request.timer is not None:
                request.timer.cancel()
                request.timer = None
            request.deferred.errback(error)
