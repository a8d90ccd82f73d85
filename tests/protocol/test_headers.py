"""Request/response headers: the fast reader agrees with the declaration."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.protocol.apis import ApiKey, request_header_version, response_header_version
from tmq.protocol.errors import ProtocolError
from tmq.protocol.headers import (
    RequestHeaderSchema,
    encode_request_header,
    encode_response_header,
    read_request_header,
)

api_keys = st.sampled_from([*ApiKey, 7, 999])


class RequestHeaderTests:
    """read_request_header is the hot path for every request."""

    @given(
        api_key=api_keys,
        api_version=st.integers(0, 12),
        correlation_id=st.integers(-(2**31), 2**31 - 1),
        client_id=st.none() | st.text(max_size=20),
        tags=st.dictionaries(st.integers(0, 5), st.binary(max_size=4), max_size=2),
        body=st.binary(max_size=10),
    )
    def test_fast_reader_matches_declaration(
        self, api_key, api_version, correlation_id, client_id, tags, body
    ):
        """Headers built from the declaration are read back field for field, and the body
        offset points just past the header."""
        version = request_header_version(api_key, api_version)
        value = {
            "api_key": api_key,
            "api_version": api_version,
            "correlation_id": correlation_id,
            "client_id": client_id,
        }
        if version == 2:
            value["tagged_fields"] = tags
        header_bytes = RequestHeaderSchema.build(value, version)
        header, offset = read_request_header(header_bytes + body)
        assert header._asdict() == {"tagged_fields": {}, **value}
        assert offset == len(header_bytes)

    def test_api_versions_v3_uses_header_v2_with_a_classic_client_id(self):
        """ApiVersions v3 requests carry header v2: INT16 client_id, then a tag buffer."""
        assert (
            encode_request_header(18, 3, 1, "rdkafka")
            == bytes.fromhex("00120003000000010007") + b"rdkafka" + b"\x00"
        )

    @given(data=st.binary(max_size=40))
    def test_garbage_raises_only_protocol_error(self, data):
        """Random bytes are read or rejected with ProtocolError."""
        with contextlib.suppress(ProtocolError):
            read_request_header(data)

    def test_short_frame(self):
        """A frame shorter than the fixed header part is rejected."""
        with pytest.raises(ProtocolError):
            read_request_header(b"\x00\x03\x00")


class ResponseHeaderTests:
    """Response header versions (KIP-511 for ApiVersions)."""

    def test_api_versions_response_header_is_always_v0(self):
        """Even for the flexible ApiVersions v3 the response header is the bare correlation id."""
        assert response_header_version(ApiKey.API_VERSIONS, 3) == 0
        assert encode_response_header(ApiKey.API_VERSIONS, 3, 9) == b"\x00\x00\x00\x09"

    def test_non_flexible_response_header_is_v0(self):
        """Every other advertised version is non-flexible, so its header is v0."""
        assert encode_response_header(ApiKey.FETCH, 11, 5) == b"\x00\x00\x00\x05"
