"""KafkaConnection over a StringTransport: negotiation, pipelining, timeouts, connection loss.

The test plays the broker by hand: it decodes what the connection wrote with ``tmq.protocol``
and feeds back responses built from the declarations.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tmq.client.connection import KafkaConnection
from tmq.client.errors import (
    BrokerResponseError,
    ClientClosedError,
    ConnectionLostError,
    KafkaProtocolError,
    RequestTimedOutError,
    UnsupportedVersionError,
)
from tmq.protocol.apis import API_BY_KEY, ApiKey, api_versions_fallback
from tmq.protocol.errors import ErrorCode
from tmq.protocol.framing import FrameDecoder, encode_frame
from tmq.protocol.headers import encode_response_header, read_request_header

ALL_VERSIONS = {api.key: (api.min_version, api.max_version) for api in API_BY_KEY.values()}


class HandBroker:
    """Reads the requests a connection wrote to its StringTransport and answers them."""

    def __init__(self, connection: KafkaConnection, transport: StringTransport):
        self.connection = connection
        self.transport = transport
        self.decoder = FrameDecoder()

    def requests(self) -> list[tuple]:
        """Decode and clear what was written: ``(header, body)`` per request."""
        data = self.transport.value()
        self.transport.clear()
        out = []
        for frame in self.decoder.feed(data):
            header, offset = read_request_header(frame)
            body = API_BY_KEY[header.api_key].request.parse(frame[offset:], header.api_version)
            out.append((header, body))
        return out

    def response_bytes(self, header, body: dict, version: int | None = None) -> bytes:
        version = header.api_version if version is None else version
        head = encode_response_header(header.api_key, version, header.correlation_id)
        encoded = API_BY_KEY[header.api_key].response.build(body, version)
        return b"".join(encode_frame(head, encoded))

    def answer(self, header, body: dict, version: int | None = None) -> None:
        self.connection.dataReceived(self.response_bytes(header, body, version))

    def negotiate(self, versions=None) -> None:
        """Answer the ApiVersions v3 request with ``versions`` (all of tmq's by default)."""
        ((header, _),) = self.requests()
        assert (header.api_key, header.api_version) == (ApiKey.API_VERSIONS, 3)
        entries = [
            {"api_key": key, "min_version": low, "max_version": high}
            for key, (low, high) in (versions or ALL_VERSIONS).items()
        ]
        self.answer(header, {"error_code": 0, "api_keys": entries})


def metadata_response(brokers=1) -> dict:
    return {
        "brokers": [{"node_id": i, "host": f"b{i}", "port": 9092} for i in range(brokers)],
        "topics": [],
    }


class KafkaConnectionTests(SynchronousTestCase):
    """The request/response contract of one connection."""

    def connect(self, **kwargs):
        self.clock = Clock()
        connection = KafkaConnection(self.clock, address="b0:9092", **kwargs)
        transport = StringTransport()
        connection.makeConnection(transport)
        return connection, HandBroker(connection, transport)

    def ready(self, versions=None, **kwargs):
        connection, broker = self.connect(**kwargs)
        broker.negotiate(versions)
        self.assertIs(self.successResultOf(connection.when_ready()), connection)
        return connection, broker

    def test_negotiates_api_versions_v3_on_connect(self):
        """The first request is ApiVersions v3 naming the client software; the connection is
        ready once it is answered."""
        connection, broker = self.connect()
        ready = connection.when_ready()
        ((header, body),) = broker.requests()
        self.assertEqual((header.api_key, header.api_version), (ApiKey.API_VERSIONS, 3))
        self.assertEqual(header.correlation_id, 0)
        self.assertEqual(body.client_software_name, "tmq")
        self.assertNoResult(ready)
        broker.answer(header, {"error_code": 0, "api_keys": []})
        self.assertIs(self.successResultOf(ready), connection)
        self.assertEqual(connection.api_versions_version, 3)

    def test_falls_back_to_v0_on_the_kip511_error_body(self):
        """An old broker answers v3 with the v0 error body (UNSUPPORTED_VERSION and only its
        ApiVersions range); the connection retries with v0 and uses that answer."""
        connection, broker = self.connect()
        ready = connection.when_ready()
        ((header, _),) = broker.requests()
        broker.answer(header, api_versions_fallback(), version=0)
        self.assertNoResult(ready)
        ((retry, _),) = broker.requests()
        self.assertEqual((retry.api_key, retry.api_version), (ApiKey.API_VERSIONS, 0))
        entries = [{"api_key": ApiKey.PRODUCE, "min_version": 0, "max_version": 5}]
        broker.answer(retry, {"error_code": 0, "api_keys": entries})
        self.successResultOf(ready)
        self.assertEqual(connection.api_versions_version, 0)
        self.assertEqual(connection.broker_versions, {ApiKey.PRODUCE: (0, 5)})
        self.assertEqual(connection.version_for(ApiKey.PRODUCE), 5)

    def test_negotiation_error_fails_ready_and_closes(self):
        """A non-zero ApiVersions error other than the fallback fails readiness."""
        connection, broker = self.connect()
        ready = connection.when_ready()
        ((header, _),) = broker.requests()
        broker.answer(header, {"error_code": ErrorCode.INVALID_REQUEST, "api_keys": []}, 0)
        failure = self.failureResultOf(ready, BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.INVALID_REQUEST)
        self.assertTrue(broker.transport.disconnecting)

    def test_version_for_picks_the_highest_common_version(self):
        """The chosen version is the top of the overlap of the broker's range and the client's
        (tmq.protocol's declaration; Produce from v3)."""
        connection, _ = self.ready(
            {ApiKey.PRODUCE: (0, 9), ApiKey.FETCH: (0, 16), ApiKey.METADATA: (0, 4)}
        )
        self.assertEqual(connection.version_for(ApiKey.PRODUCE), 8)
        self.assertEqual(connection.version_for(ApiKey.FETCH), 11)
        self.assertEqual(connection.version_for(ApiKey.METADATA), 4)
        with self.assertRaises(UnsupportedVersionError):
            connection.version_for(ApiKey.LIST_OFFSETS)

    def test_no_common_version_is_unsupported(self):
        """A broker offering only legacy Produce v0-2 cannot be produced to."""
        connection, _ = self.ready({ApiKey.PRODUCE: (0, 2)})
        with self.assertRaises(UnsupportedVersionError):
            connection.version_for(ApiKey.PRODUCE)
        self.failureResultOf(connection.request(ApiKey.PRODUCE, {}), UnsupportedVersionError)

    def test_requests_are_pipelined_and_matched_in_order(self):
        """Several requests are written before any answer; each Deferred gets its own response,
        whatever way the response bytes are split."""
        connection, broker = self.ready()
        deferreds = [
            connection.request(ApiKey.METADATA, {"topics": []}, timeout_ms=1000) for _ in range(3)
        ]
        requests = broker.requests()
        self.assertEqual([h.correlation_id for h, _ in requests], [1, 2, 3])
        stream = b"".join(
            broker.response_bytes(h, metadata_response(i + 1)) for i, (h, _) in enumerate(requests)
        )
        for byte in range(len(stream)):
            connection.dataReceived(stream[byte : byte + 1])
        results = [self.successResultOf(d) for d in deferreds]
        self.assertEqual([len(r.brokers) for r in results], [1, 2, 3])
        self.assertEqual(connection.in_flight, 0)

    def test_in_flight_requests_are_bounded(self):
        """Past ``max_in_flight`` unanswered requests, later ones wait and go out in order as
        answers arrive."""
        connection, broker = self.ready(max_in_flight=2)
        deferreds = [connection.request(ApiKey.METADATA, {"topics": []}) for _ in range(3)]
        first, second = broker.requests()
        self.assertEqual(connection.in_flight, 2)
        broker.answer(first[0], metadata_response())
        ((third, _),) = broker.requests()
        self.assertEqual(third.correlation_id, second[0].correlation_id + 1)
        broker.answer(second[0], metadata_response())
        broker.answer(third, metadata_response())
        for d in deferreds:
            self.successResultOf(d)

    def test_wrong_correlation_id_closes_the_connection(self):
        """A response that is not for the oldest request is a protocol violation: every
        pending request fails and the connection is aborted."""
        connection, broker = self.ready()
        first = connection.request(ApiKey.METADATA, {"topics": []})
        second = connection.request(ApiKey.METADATA, {"topics": []})
        _, (later, _) = broker.requests()
        broker.answer(later, metadata_response())
        self.failureResultOf(first, KafkaProtocolError)
        self.failureResultOf(second, KafkaProtocolError)
        self.assertTrue(broker.transport.disconnecting)
        self.assertFalse(connection.is_open)

    def test_timeout_fails_the_request_and_closes_the_connection(self):
        """A request unanswered for its timeout fails with RequestTimedOutError; the connection
        is closed, failing the requests behind it."""
        connection, broker = self.ready(request_timeout_ms=5000)
        slow = connection.request(ApiKey.METADATA, {"topics": []})
        self.clock.advance(1)
        behind = connection.request(ApiKey.METADATA, {"topics": []})
        self.clock.advance(3.9)
        self.assertNoResult(slow)
        self.clock.advance(0.2)
        self.failureResultOf(slow, RequestTimedOutError)
        self.failureResultOf(behind, ConnectionLostError)
        self.assertTrue(broker.transport.disconnecting)
        self.assertFalse(self.clock.getDelayedCalls())

    def test_per_request_timeout_overrides_the_default(self):
        """``timeout_ms`` replaces the connection's default for that request."""
        connection, _ = self.ready(request_timeout_ms=1000)
        patient = connection.request(ApiKey.METADATA, {"topics": []}, timeout_ms=10_000)
        self.clock.advance(5)
        self.assertNoResult(patient)
        self.clock.advance(5)
        self.failureResultOf(patient, RequestTimedOutError)

    def test_connection_loss_fails_pending_requests(self):
        """When the connection drops, unanswered and queued requests fail with
        ConnectionLostError; later requests fail at once; ``when_closed`` fires."""
        connection, _ = self.ready(max_in_flight=1)
        closed = connection.when_closed()
        pending = [connection.request(ApiKey.METADATA, {"topics": []}) for _ in range(2)]
        connection.connectionLost(Failure(ConnectionError("reset by peer")))
        for d in pending:
            failure = self.failureResultOf(d, ConnectionLostError)
            self.assertIn("reset by peer", str(failure.value))
        self.assertIsInstance(self.successResultOf(closed), ConnectionLostError)
        self.failureResultOf(
            connection.request(ApiKey.METADATA, {"topics": []}), ConnectionLostError
        )
        self.assertFalse(self.clock.getDelayedCalls())

    def test_loss_before_negotiation_fails_ready(self):
        """A connection dropped during negotiation reports it through ``when_ready``."""
        connection, _ = self.connect()
        ready = connection.when_ready()
        connection.connectionLost(Failure(ConnectionError("refused")))
        self.failureResultOf(ready, ConnectionLostError)

    def test_request_without_response_fires_when_written(self):
        """acks=0 Produce: the Deferred fires with None once written, nothing waits for an
        answer, and the next response matches the next request."""
        connection, broker = self.ready()
        produce = {
            "acks": 0,
            "timeout_ms": 1000,
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": None}]}],
        }
        sent = connection.request(ApiKey.PRODUCE, produce, expect_response=False)
        self.assertIsNone(self.successResultOf(sent))
        self.assertEqual(connection.in_flight, 0)
        metadata = connection.request(ApiKey.METADATA, {"topics": []})
        (_, produce_body), (header, _) = broker.requests()
        self.assertEqual(produce_body.acks, 0)
        broker.answer(header, metadata_response())
        self.successResultOf(metadata)
        self.assertFalse(self.clock.getDelayedCalls())

    def test_malformed_body_fails_only_that_request(self):
        """A response body that does not parse fails its request; the connection stays up."""
        connection, broker = self.ready()
        bad = connection.request(ApiKey.METADATA, {"topics": []})
        good = connection.request(ApiKey.METADATA, {"topics": []})
        (first, _), (second, _) = broker.requests()
        head = encode_response_header(ApiKey.METADATA, first.api_version, first.correlation_id)
        connection.dataReceived(b"".join(encode_frame(head, b"\x00\x01")))
        self.failureResultOf(bad, KafkaProtocolError)
        broker.answer(second, metadata_response())
        self.successResultOf(good)
        self.assertTrue(connection.is_open)

    def test_oversized_frame_closes_the_connection(self):
        """A size prefix above the bound aborts the connection before buffering the frame."""
        connection, broker = self.ready(max_frame_bytes=1024)
        pending = connection.request(ApiKey.METADATA, {"topics": []})
        connection.dataReceived(b"\x00\x10\x00\x00")
        self.failureResultOf(pending, KafkaProtocolError)
        self.assertTrue(broker.transport.disconnecting)

    def test_unsolicited_response_closes_the_connection(self):
        """Bytes arriving with no request outstanding are a protocol violation."""
        connection, broker = self.ready()
        connection.dataReceived(b"".join(encode_frame(b"\x00\x00\x00\x09")))
        self.assertTrue(broker.transport.disconnecting)
        self.assertFalse(connection.is_open)

    def test_close_fails_pending_with_client_closed(self):
        """``close`` ends the connection gracefully; unanswered requests fail with
        ClientClosedError."""
        connection, broker = self.ready()
        pending = connection.request(ApiKey.METADATA, {"topics": []})
        connection.close()
        self.failureResultOf(pending, ClientClosedError)
        self.assertTrue(broker.transport.disconnecting)

    def test_requests_made_before_connecting_wait_for_the_transport(self):
        """A request with an explicit version made before the transport exists is written after
        the ApiVersions request once connected."""
        clock = Clock()
        connection = KafkaConnection(clock)
        early = connection.request(ApiKey.METADATA, {"topics": []}, version=1)
        transport = StringTransport()
        connection.makeConnection(transport)
        broker = HandBroker(connection, transport)
        (negotiation, _), (metadata, _) = broker.requests()
        self.assertEqual(negotiation.api_key, ApiKey.API_VERSIONS)
        broker.answer(negotiation, {"error_code": 0, "api_keys": []})
        broker.answer(metadata, metadata_response())
        self.successResultOf(early)
