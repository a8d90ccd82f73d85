"""Every (api, version), request and response: round trips, declarations, malformed input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from message_strategies import message_values

from tmq.protocol.apis import API_BY_KEY, INTERNAL_API_BY_KEY, ApiKey, api_versions_fallback
from tmq.protocol.errors import ProtocolError
from tmq.protocol.messages.api_versions import ApiVersionsResponse
from tmq.protocol.messages.metadata import MetadataRequest
from tmq.protocol.messages.produce import ProduceRequest

ALL_MESSAGES = [
    pytest.param(message, version, id=f"{message.name}-v{version}")
    for api in API_BY_KEY.values()
    for message in (api.request, api.response)
    for version in range(api.min_version, api.max_version + 1)
] + [
    pytest.param(message, 0, id=f"{message.name}-v0")
    for api in INTERNAL_API_BY_KEY.values()
    for message in (api.request, api.response)
    if message is not None
]


@pytest.mark.parametrize(("message", "version"), ALL_MESSAGES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_round_trip(message, version, data):
    """decode(encode(m)) == m for generated values of every message in every version, and
    encoding the decoded value gives the same bytes."""
    value = data.draw(message_values(message, version))
    encoded = message.build(value, version)
    decoded = message.parse(encoded, version)
    assert decoded == value
    assert message.build(decoded, version) == encoded


@pytest.mark.parametrize(("message", "version"), ALL_MESSAGES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_truncated_and_extended_input_is_rejected(message, version, data):
    """Cutting a valid encoding short, or appending a byte, raises ProtocolError."""
    value = data.draw(message_values(message, version))
    encoded = message.build(value, version)
    if encoded:
        cut = data.draw(st.integers(0, len(encoded) - 1))
        with pytest.raises(ProtocolError):
            message.parse(encoded[:cut], version)
    with pytest.raises(ProtocolError):
        message.parse(encoded + b"\x00", version)


@pytest.mark.parametrize(("message", "version"), ALL_MESSAGES)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_random_and_mutated_bytes_raise_only_protocol_error(message, version, data):
    """Random bytes and byte-level mutations of valid encodings either decode or raise
    ProtocolError; no other exception escapes."""
    value = data.draw(message_values(message, version))
    encoded = bytearray(message.build(value, version))
    if encoded:
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(0, len(encoded) - 1))
            encoded[position] = data.draw(st.integers(0, 255))
    for candidate in (bytes(encoded), data.draw(st.binary(max_size=64))):
        with contextlib.suppress(ProtocolError):
            message.parse(candidate, version)


class DeclarationTests:
    """The declarations carry Kafka's version rules."""

    def test_absent_field_parses_as_its_default(self):
        """A field a version does not carry is present in the parsed value with its default:
        Produce v2 has no transactional_id, so it reads as None."""
        body = ProduceRequest.build({"acks": 1, "timeout_ms": 5, "topic_data": []}, 2)
        assert body == b"\x00\x01\x00\x00\x00\x05\x00\x00\x00\x00"
        assert ProduceRequest.parse(body, 2).transactional_id is None

    def test_metadata_topics_nullable_only_from_v1(self):
        """Metadata v0 cannot say "all topics" with null (it uses an empty list); v1+ can."""
        assert MetadataRequest.build({"topics": None}, 1) == b"\xff\xff\xff\xff"
        with pytest.raises(ProtocolError):
            MetadataRequest.build({"topics": None}, 0)
        with pytest.raises(ProtocolError):
            MetadataRequest.parse(b"\xff\xff\xff\xff", 0)

    def test_api_versions_v3_is_flexible(self):
        """ApiVersions v3 uses compact arrays and ends every struct with a tag buffer."""
        body = ApiVersionsResponse.build(
            {"error_code": 0, "api_keys": [{"api_key": 18, "min_version": 0, "max_version": 3}]},
            3,
        )
        assert body == bytes.fromhex("000002001200000003000000000000")

    def test_fallback_is_the_v0_error_body_with_only_api_versions(self):
        """A too-new ApiVersions request is answered with the v0 layout: error 35 and the
        single ApiVersions entry (KIP-511)."""
        body = ApiVersionsResponse.build(api_versions_fallback(), 0)
        assert body == bytes.fromhex("002300000001001200000003")

    def test_unknown_version_is_refused(self):
        """Asking for a version outside a message's declared range is a ProtocolError."""
        with pytest.raises(ProtocolError):
            ProduceRequest.parse(b"", 9)

    def test_advertised_ranges(self):
        """The advertised ranges are the ones DESIGN §2 fixes."""
        ranges = {api.key: (api.min_version, api.max_version) for api in API_BY_KEY.values()}
        assert ranges == {
            ApiKey.PRODUCE: (0, 8),
            ApiKey.FETCH: (4, 11),
            ApiKey.LIST_OFFSETS: (1, 5),
            ApiKey.METADATA: (0, 8),
            ApiKey.OFFSET_COMMIT: (2, 7),
            ApiKey.OFFSET_FETCH: (1, 5),
            ApiKey.FIND_COORDINATOR: (0, 2),
            ApiKey.JOIN_GROUP: (0, 5),
            ApiKey.HEARTBEAT: (0, 3),
            ApiKey.LEAVE_GROUP: (0, 3),
            ApiKey.SYNC_GROUP: (0, 3),
            ApiKey.API_VERSIONS: (0, 3),
            ApiKey.CREATE_TOPICS: (0, 4),
            ApiKey.DELETE_TOPICS: (0, 3),
            ApiKey.INIT_PRODUCER_ID: (0, 1),
            ApiKey.OFFSET_FOR_LEADER_EPOCH: (0, 3),
        }

    def test_internal_apis_are_apart(self):
        """The broker-to-broker APIs have keys from 1000, none of them advertised."""
        assert all(key >= 1000 for key in INTERNAL_API_BY_KEY)
        assert not set(INTERNAL_API_BY_KEY) & set(API_BY_KEY)

    def test_huge_array_count_fails_fast(self):
        """An array count far beyond the input is rejected before any element is read."""
        with pytest.raises(ProtocolError, match="longer than the input"):
            MetadataRequest.parse(b"\x7f\xff\xff\xff", 1)
