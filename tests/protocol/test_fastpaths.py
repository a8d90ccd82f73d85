"""The hot-path codecs agree with the construct declarations they shortcut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from message_strategies import message_values

from tmq.protocol.errors import ProtocolError
from tmq.protocol.messages.fetch import FetchResponse, encode_fetch_response
from tmq.protocol.messages.produce import ProduceRequest, decode_produce_request

PRODUCE_VERSIONS = range(0, 9)
FETCH_VERSIONS = range(4, 12)


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_produce_fast_decode_equals_declaration(version, data):
    """decode_produce_request returns exactly what ProduceRequest.parse returns."""
    value = data.draw(message_values(ProduceRequest, version))
    body = ProduceRequest.build(value, version)
    assert decode_produce_request(body, version) == ProduceRequest.parse(body, version)


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_produce_fast_decode_rejects_what_declaration_rejects(version, data):
    """On mutated, truncated or random bytes the fast path fails exactly when the declaration
    fails, and only with ProtocolError."""
    value = data.draw(message_values(ProduceRequest, version))
    body = bytearray(ProduceRequest.build(value, version))
    choice = data.draw(st.sampled_from(["mutate", "truncate", "random"]))
    if choice == "mutate":
        for _ in range(data.draw(st.integers(1, 3))):
            position = data.draw(st.integers(0, len(body) - 1))
            body[position] = data.draw(st.integers(0, 255))
    elif choice == "truncate":
        body = body[: data.draw(st.integers(0, len(body)))]
    else:
        body = bytearray(data.draw(st.binary(max_size=80)))
    try:
        expected = ProduceRequest.parse(bytes(body), version)
    except ProtocolError:
        with pytest.raises(ProtocolError):
            decode_produce_request(bytes(body), version)
    else:
        assert decode_produce_request(bytes(body), version) == expected


def test_produce_fast_decode_does_not_copy_records():
    """The records of a decoded request are views into the request body."""
    body = ProduceRequest.build(
        {
            "transactional_id": None,
            "acks": -1,
            "timeout_ms": 30000,
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": b"x" * 64}]}],
        },
        8,
    )
    records = decode_produce_request(body, 8)["topic_data"][0]["partition_data"][0]["records"]
    assert isinstance(records, memoryview)
    assert records.obj is body


@pytest.mark.parametrize("version", FETCH_VERSIONS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_fetch_fast_encode_equals_declaration(version, data):
    """The chunks of encode_fetch_response concatenate to FetchResponse.build's bytes."""
    value = data.draw(message_values(FetchResponse, version))
    chunks = encode_fetch_response(value, version)
    assert b"".join(chunks) == FetchResponse.build(value, version)


def test_fetch_fast_encode_passes_records_through():
    """A records memoryview is one of the output chunks, not copied into the envelope."""
    records = memoryview(bytearray(b"r" * 1000))
    response = {
        "responses": [
            {
                "topic": "gpu",
                "partitions": [{"partition_index": 0, "high_watermark": 10, "records": records}],
            }
        ]
    }
    chunks = encode_fetch_response(response, 11)
    assert any(chunk is records for chunk in chunks)
    assert FetchResponse.parse(b"".join(chunks), 11).responses[0].partitions[0].records == records
