"""BrokerProtocol: framing, in-order responses, back-pressure, hostile input."""

from __future__ import annotations

import struct

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tmq.broker.dispatch import Dispatcher, RequestRefused
from tmq.broker.server import BrokerProtocol
from tmq.protocol.apis import ApiKey, InternalApiKey
from tmq.protocol.framing import FrameDecoder, encode_frame
from tmq.protocol.headers import encode_request_header
from tmq.protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from tmq.protocol.messages.metadata import MetadataRequest
from tmq.protocol.messages.replication import ReplicaSubscribeRequest


def frame(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    header = encode_request_header(api_key, version, correlation_id, "test")
    return b"".join(encode_frame(header, body))


def metadata_frame(correlation_id: int) -> bytes:
    return frame(ApiKey.METADATA, 1, correlation_id, MetadataRequest.build({"topics": []}, 1))


class Harness:
    """A protocol on a StringTransport, with a dispatcher whose Metadata answers are held in
    Deferreds the test fires in any order."""

    def __init__(self, max_in_flight: int = 10, open_replication=None):
        self.held: dict[int, defer.Deferred] = {}
        self.dispatcher = Dispatcher(
            {
                ApiKey.METADATA: self._metadata,
                ApiKey.API_VERSIONS: lambda header, request: {
                    "error_code": 0,
                    "api_keys": [],
                },
            }
        )
        self.protocol = BrokerProtocol(
            self.dispatcher,
            max_frame_bytes=1024,
            max_in_flight=max_in_flight,
            open_replication=open_replication,
        )
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def _metadata(self, header, request):
        held = defer.Deferred()
        self.held[header.correlation_id] = held
        return held

    def answer(self, correlation_id: int) -> None:
        self.held.pop(correlation_id).callback({"brokers": [], "topics": []})

    def correlation_ids(self) -> list[int]:
        frames = FrameDecoder().feed(self.transport.value())
        return [struct.unpack(">i", f[:4])[0] for f in frames]


class BrokerProtocolTests:
    """The connection-level contract."""

    def test_responses_go_out_in_request_order(self):
        """Answers completed out of order are written in request order."""
        harness = Harness()
        harness.protocol.dataReceived(metadata_frame(1) + metadata_frame(2) + metadata_frame(3))
        harness.answer(3)
        harness.answer(2)
        assert harness.correlation_ids() == []
        harness.answer(1)
        assert harness.correlation_ids() == [1, 2, 3]

    def test_requests_split_at_every_byte(self):
        """A request fed one byte at a time is answered once."""
        harness = Harness()
        data = frame(ApiKey.API_VERSIONS, 0, 7, ApiVersionsRequest.build({}, 0))
        for i in range(len(data)):
            harness.protocol.dataReceived(data[i : i + 1])
        assert harness.correlation_ids() == [7]

    def test_reading_pauses_at_max_in_flight(self):
        """With max_in_flight pending responses the socket is no longer read; it resumes
        when they are answered."""
        harness = Harness(max_in_flight=2)
        harness.protocol.dataReceived(metadata_frame(1) + metadata_frame(2))
        assert harness.transport.producerState == "paused"
        harness.answer(1)
        assert harness.transport.producerState == "producing"

    def test_full_write_buffer_pauses_reading(self):
        """When the transport pauses us (its buffer is full) we stop reading until resumed."""
        harness = Harness()
        harness.protocol.pauseProducing()
        assert harness.transport.producerState == "paused"
        harness.protocol.resumeProducing()
        assert harness.transport.producerState == "producing"

    def test_oversized_frame_closes_the_connection(self):
        """A size prefix above the bound closes the connection without buffering."""
        harness = Harness()
        harness.protocol.dataReceived(struct.pack(">i", 10_000_000))
        assert harness.transport.disconnecting

    def test_unknown_api_closes_the_connection(self):
        """An API key that is not served closes the connection."""
        harness = Harness()
        harness.protocol.dataReceived(frame(ApiKey.FETCH, 11, 1, b""))
        assert harness.transport.disconnecting

    def test_malformed_body_closes_the_connection(self):
        """A body that does not decode closes the connection."""
        harness = Harness()
        harness.protocol.dataReceived(frame(ApiKey.METADATA, 1, 1, b"\x00\x00"))
        assert harness.transport.disconnecting

    def test_api_versions_above_the_range_gets_the_v0_fallback(self):
        """ApiVersions v9 is answered with the v0 error body holding only ApiVersions."""
        harness = Harness()
        harness.protocol.dataReceived(frame(ApiKey.API_VERSIONS, 9, 5, b"\x00\x00\x00"))
        (response,) = FrameDecoder().feed(harness.transport.value())
        body = ApiVersionsResponse.parse(response[4:], 0)
        assert body.error_code == 35
        assert [k.api_key for k in body.api_keys] == [ApiKey.API_VERSIONS]

    def test_refusal_from_a_handler_closes_after_earlier_answers(self):
        """A handler that refuses (acks=0 produce failing) closes the connection."""
        harness = Harness()

        def refuse(header, request):
            raise RequestRefused("no")

        harness.dispatcher.handlers[ApiKey.API_VERSIONS] = refuse
        harness.protocol.dataReceived(frame(ApiKey.API_VERSIONS, 0, 1, b""))
        assert harness.transport.disconnecting

    def test_handlers_that_ask_for_it_get_the_client_address_as_kafka_shows_it(self):
        """A handler registered ``with_client_host`` is called with the peer's address in
        Kafka's form ("/host"); the other handlers are called without it."""
        seen = []
        dispatcher = Dispatcher(
            {
                ApiKey.API_VERSIONS: lambda header, request, client_host: (
                    seen.append(client_host) or {"error_code": 0, "api_keys": []}
                ),
                ApiKey.METADATA: lambda header, request: (
                    seen.append("plain") or {"brokers": [], "topics": []}
                ),
            },
            with_client_host=frozenset({ApiKey.API_VERSIONS}),
        )
        protocol = BrokerProtocol(dispatcher, max_frame_bytes=1024, max_in_flight=10)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.1.2.3", 40000))
        protocol.makeConnection(transport)
        versions = ApiVersionsRequest.build({}, 0)
        protocol.dataReceived(frame(ApiKey.API_VERSIONS, 0, 1, versions) + metadata_frame(2))
        assert seen == ["/10.1.2.3", "plain"]

    def test_stop_reading_answers_pending_and_ignores_new_requests(self):
        """During a graceful shutdown pending requests are still answered, while requests
        that arrive later are neither processed nor answered."""
        harness = Harness()
        harness.protocol.dataReceived(metadata_frame(1))
        harness.protocol.stop_reading()
        harness.protocol.dataReceived(metadata_frame(2))
        assert list(harness.held) == [1]
        harness.answer(1)
        assert harness.correlation_ids() == [1]
        assert harness.protocol.idle


class _RecordingSession:
    """Stands in for a ``ReplicaSession``: records the frames the protocol hands it."""

    def __init__(self, write, disconnect):
        self.frames = []
        self.lost = False

    def frame(self, header, body):
        if header.api_key == ApiKey.METADATA:
            raise RequestRefused("client API on a replication connection")
        self.frames.append(header.api_key)

    def connection_lost(self):
        self.lost = True


def subscribe_frame() -> bytes:
    body = ReplicaSubscribeRequest.build(
        {"broker_id": 2, "broker_epoch": 5, "window_bytes": 1024, "partitions": []}, 0
    )
    return frame(InternalApiKey.REPLICA_SUBSCRIBE, 0, 1, body)


class ReplicationConnectionTests:
    """Which connections carry the replication stream."""

    def harness(self) -> tuple[Harness, list]:
        sessions = []

        def open_replication(write, disconnect):
            sessions.append(_RecordingSession(write, disconnect))
            return sessions[-1]

        return Harness(open_replication=open_replication), sessions

    def test_a_first_replica_subscribe_makes_a_replication_connection(self):
        """ReplicaSubscribe as the first request hands this and every later frame to one
        session; the session hears when the connection goes."""
        harness, sessions = self.harness()
        harness.protocol.dataReceived(
            subscribe_frame() + frame(InternalApiKey.REPLICA_ACK, 0, 2, b"")
        )
        assert len(sessions) == 1
        assert sessions[0].frames == [InternalApiKey.REPLICA_SUBSCRIBE, InternalApiKey.REPLICA_ACK]
        assert not harness.transport.disconnecting
        harness.protocol.connectionLost(None)
        assert sessions[0].lost

    def test_replication_apis_are_refused_on_a_client_connection(self):
        """A ReplicaSubscribe after a client request closes the connection unanswered."""
        harness, sessions = self.harness()
        harness.protocol.dataReceived(metadata_frame(1) + subscribe_frame())
        assert sessions == []
        assert harness.transport.disconnecting

    def test_a_broker_without_replication_refuses_the_stream(self):
        """With no session factory (replication off), ReplicaSubscribe closes the connection."""
        harness = Harness()
        harness.protocol.dataReceived(subscribe_frame())
        assert harness.transport.disconnecting

    def test_client_apis_are_refused_on_a_replication_connection(self):
        """A Metadata request on a replication connection closes it."""
        harness, sessions = self.harness()
        harness.protocol.dataReceived(subscribe_frame() + metadata_frame(2))
        assert sessions[0].frames == [InternalApiKey.REPLICA_SUBSCRIBE]
        assert harness.transport.disconnecting
