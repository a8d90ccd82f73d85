"""The hot-path codecs agree with the construct declarations they shortcut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from message_strategies import message_values

from tmq.protocol.errors import ProtocolError
from tmq.protocol.messages.fetch import (
    FetchResponse,
    decode_fetch_response,
    encode_fetch_response,
)
from tmq.protocol.messages.produce import (
    ProduceRequest,
    ProduceResponse,
    decode_produce_request,
    decode_produce_response,
    encode_produce_request,
)

PRODUCE_VERSIONS = range(0, 9)
FETCH_VERSIONS = range(4, 12)


def _mangled(data, body: bytes) -> bytes:
    """``body`` with a few bytes changed, cut short, or random bytes instead."""
    body = bytearray(body)
    choice = data.draw(st.sampled_from(["mutate", "truncate", "random"]))
    if choice == "mutate" and body:
        for _ in range(data.draw(st.integers(1, 3))):
            position = data.draw(st.integers(0, len(body) - 1))
            body[position] = data.draw(st.integers(0, 255))
    elif choice == "truncate":
        body = body[: data.draw(st.integers(0, len(body)))]
    else:
        body = bytearray(data.draw(st.binary(max_size=80)))
    return bytes(body)


def _agree(parse, fast, body: bytes) -> None:
    """``fast`` fails exactly when ``parse`` fails, only with ProtocolError, else equals it."""
    try:
        expected = parse(body)
    except ProtocolError:
        with pytest.raises(ProtocolError):
            fast(body)
    else:
        assert fast(body) == expected


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
    _agree(
        lambda b: ProduceRequest.parse(b, version),
        lambda b: decode_produce_request(b, version),
        _mangled(data, ProduceRequest.build(value, version)),
    )


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


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_produce_fast_encode_equals_declaration(version, data):
    """The chunks of encode_produce_request concatenate to ProduceRequest.build's bytes."""
    value = data.draw(message_values(ProduceRequest, version))
    assert b"".join(encode_produce_request(value, version)) == ProduceRequest.build(value, version)


def test_produce_fast_encode_builds_defaults():
    """Fields left out are built with their defaults, as the declaration builds them."""
    value = {"acks": 0, "topic_data": [{"name": "t", "partition_data": [{"index": 3}]}]}
    for version in (3, 8):
        encoded = b"".join(encode_produce_request(value, version))
        assert encoded == ProduceRequest.build(value, version)


@pytest.mark.parametrize(
    "value",
    [
        {"acks": 1 << 15},
        {"topic_data": [{"name": "t", "partition_data": [{"index": 2**31, "records": None}]}]},
        {"topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": "text"}]}]},
    ],
)
def test_produce_fast_encode_refuses_what_declaration_refuses(value):
    """A value that does not fit its wire type is a ProtocolError, as with the declaration."""
    with pytest.raises(ProtocolError):
        ProduceRequest.build(value, 8)
    with pytest.raises(ProtocolError):
        encode_produce_request(value, 8)


def test_produce_fast_encode_passes_records_through():
    """Each records blob is one of the output chunks, not copied into the envelope."""
    batches = [b"a" * 100, memoryview(bytearray(b"b" * 50))]
    request = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 30000,
        "topic_data": [
            {
                "name": "gpu",
                "partition_data": [
                    {"index": index, "records": batch} for index, batch in enumerate(batches)
                ],
            }
        ],
    }
    chunks = encode_produce_request(request, 8)
    assert [c for c in chunks if any(c is batch for batch in batches)] == batches
    assert b"".join(chunks) == ProduceRequest.build(request, 8)


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


@pytest.mark.parametrize(
    ("message", "decode", "version"),
    [
        *[(ProduceResponse, decode_produce_response, v) for v in PRODUCE_VERSIONS],
        *[(FetchResponse, decode_fetch_response, v) for v in FETCH_VERSIONS],
    ],
    ids=lambda value: getattr(value, "name", getattr(value, "__name__", str(value))),
)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_response_fast_decode_equals_declaration(message, decode, version, data):
    """decode_produce_response and decode_fetch_response return what their declaration's
    parse returns, valid input or not."""
    value = data.draw(message_values(message, version))
    body = message.build(value, version)
    assert decode(body, version) == message.parse(body, version)
    _agree(lambda b: message.parse(b, version), lambda b: decode(b, version), _mangled(data, body))


def test_fetch_fast_decode_does_not_copy_records():
    """The records of a decoded response are views into the response body; attribute access
    works as on a parsed response."""
    response = {
        "responses": [
            {
                "topic": "gpu",
                "partitions": [{"partition_index": 0, "high_watermark": 10, "records": b"r" * 64}],
            }
        ]
    }
    body = b"".join(encode_fetch_response(response, 11))
    decoded = decode_fetch_response(body, 11)
    records = decoded.responses[0].partitions[0].records
    assert isinstance(records, memoryview)
    assert records.obj is body
    assert records == b"r" * 64
