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
from tmq.protocol.messages.describe_groups import DescribeGroupsRequest, DescribeGroupsResponse
from tmq.protocol.messages.list_groups import ListGroupsRequest
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
        """The declared ranges are the ones DESIGN §2 fixes; DescribeGroups and ListGroups
        stop below their first flexible versions (5 and 3)."""
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
            ApiKey.DESCRIBE_GROUPS: (0, 4),
            ApiKey.LIST_GROUPS: (0, 2),
            ApiKey.API_VERSIONS: (0, 3),
            ApiKey.CREATE_TOPICS: (0, 4),
            ApiKey.DELETE_TOPICS: (0, 3),
            ApiKey.INIT_PRODUCER_ID: (0, 1),
            ApiKey.OFFSET_FOR_LEADER_EPOCH: (0, 3),
        }

    def test_list_groups_request_has_no_body(self):
        """ListGroups v0-2 requests carry no field: the body is empty."""
        for version in range(3):
            assert ListGroupsRequest.build({}, version) == b""
            assert ListGroupsRequest.parse(b"", version) == {}

    def test_describe_groups_request_asks_for_operations_from_v3(self):
        """The include_authorized_operations flag is a trailing BOOL from v3 only."""
        value = {"groups": ["g"], "include_authorized_operations": True}
        assert DescribeGroupsRequest.build(value, 2) == bytes.fromhex("00000001000167")
        assert DescribeGroupsRequest.build(value, 3) == bytes.fromhex("0000000100016701")

    def test_describe_groups_response_layout_by_version(self):
        """v4 has the throttle time, each member's nullable group_instance_id and the group's
        authorized operations; v0 has none of them, and parses them as their defaults (null,
        and INT32 min: "not asked for")."""
        group = {
            "error_code": 0,
            "group_id": "g",
            "group_state": "Stable",
            "protocol_type": "consumer",
            "protocol_data": "range",
            "members": [
                {
                    "member_id": "m",
                    "group_instance_id": None,
                    "client_id": "c",
                    "client_host": "h",
                    "member_metadata": b"",
                    "member_assignment": b"\x01",
                }
            ],
        }
        head = "00000001 0000 000167 0006" + b"Stable".hex()
        head += " 0008" + b"consumer".hex() + " 0005" + b"range".hex() + " 00000001 00016d"
        tail = " 000163 000168 00000000 00000001 01 "
        v4 = DescribeGroupsResponse.build({"throttle_time_ms": 0, "groups": [group]}, 4)
        assert v4 == bytes.fromhex("00000000 " + head + " ffff" + tail + "80000000")
        v0 = DescribeGroupsResponse.build({"groups": [group]}, 0)
        assert v0 == bytes.fromhex(head + tail)
        (parsed,) = DescribeGroupsResponse.parse(v0, 0).groups
        assert parsed.members[0].group_instance_id is None
        assert parsed.authorized_operations == -(2**31)

    def test_internal_apis_are_apart(self):
        """The broker-to-broker APIs have keys from 1000, none of them advertised."""
        assert all(key >= 1000 for key in INTERNAL_API_BY_KEY)
        assert not set(INTERNAL_API_BY_KEY) & set(API_BY_KEY)

    def test_huge_array_count_fails_fast(self):
        """An array count far beyond the input is rejected before any element is read."""
        with pytest.raises(ProtocolError, match="longer than the input"):
            MetadataRequest.parse(b"\x7f\xff\xff\xff", 1)
