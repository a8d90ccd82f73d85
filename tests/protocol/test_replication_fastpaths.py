"""The replication stream's fast paths agree with the ReplicaPush and ReplicaAck declarations,
and only ProtocolError escapes them on bad bytes."""

from __future__ import annotations

import string
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmq.protocol.compression import Codec
from tmq.protocol.errors import ProtocolError
from tmq.protocol.fastwire import I32
from tmq.protocol.messages.replication import (
    ReplicaAck,
    ReplicaAckEntry,
    ReplicaPush,
    decode_replica_ack,
    decode_replica_push,
    encode_replica_ack,
    encode_replica_push,
)
from tmq.protocol.records import Record, build_batch

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
TOPICS = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=249)
BATCHES = [
    build_batch([Record(0, 0, None, b"v")], base_timestamp=1_700_000_000_000),
    build_batch(
        [Record(0, 0, b"k", b"x" * 300, (("h", b"1"),)), Record(1, 5, None, None)],
        base_offset=42,
        base_timestamp=1_700_000_000_000,
        compression=Codec.GZIP,
        partition_leader_epoch=3,
        producer_id=7,
        producer_epoch=0,
        base_sequence=0,
    ),
]
RECORDS = st.one_of(
    st.none(),
    st.just(b""),
    st.binary(max_size=4096),
    st.binary(min_size=1, max_size=256).map(bytearray),
    st.sampled_from(BATCHES),
    st.lists(st.sampled_from(BATCHES), min_size=2, max_size=4).map(b"".join),
)
PUSHES = st.fixed_dictionaries(
    {
        "topic": TOPICS,
        "partition": INT32,
        "leader_epoch": INT32,
        "high_watermark": INT64,
        "log_start_offset": INT64,
        "records": RECORDS,
    }
)
ACKS = st.lists(st.builds(ReplicaAckEntry, TOPICS, INT32, INT32, INT64), max_size=20)
PUSH = {
    "topic": "gpu.telemetry",
    "partition": 3,
    "leader_epoch": 7,
    "high_watermark": 1000,
    "log_start_offset": 10,
    "records": BATCHES[1],
}
ACK = [ReplicaAckEntry("gpu.telemetry", 3, 7, 1000), ReplicaAckEntry("t", 0, -1, 0)]


def _ack_value(entries) -> dict:
    return {"partitions": [entry._asdict() for entry in entries]}


def _parse_push(body: bytes) -> dict:
    return dict(ReplicaPush.parse(body, 0))


def _fast_push(body: bytes) -> dict:
    return decode_replica_push(body)._asdict()


def _parse_ack(body: bytes) -> list[dict]:
    return [dict(entry) for entry in ReplicaAck.parse(body, 0).partitions]


def _fast_ack(body: bytes) -> list[dict]:
    return [entry._asdict() for entry in decode_replica_ack(body)]


def _check_agreement(parse, fast, body: bytes) -> None:
    """``fast`` raises ProtocolError exactly when ``parse`` does, and otherwise equals it."""
    try:
        expected = parse(body)
    except ProtocolError:
        with pytest.raises(ProtocolError):
            fast(body)
    else:
        assert fast(body) == expected


@st.composite
def _mangled(draw, body: bytes) -> bytes:
    """``body`` with a few bytes flipped, or random garbage in its place."""
    if not body or draw(st.booleans()):
        return draw(st.binary(max_size=120))
    mangled = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        mangled[draw(st.integers(0, len(body) - 1))] ^= draw(st.integers(1, 255))
    return bytes(mangled)


class PushAgreementTests:
    @settings(max_examples=300, deadline=None)
    @given(value=PUSHES)
    def test_encode_equals_declaration(self, value):
        """The chunks of encode_replica_push concatenate to ReplicaPush.build's bytes."""
        assert b"".join(encode_replica_push(**value)) == ReplicaPush.build(value, 0)

    @settings(max_examples=300, deadline=None)
    @given(value=PUSHES)
    def test_decode_equals_declaration(self, value):
        """decode_replica_push returns the values ReplicaPush.parse returns."""
        body = ReplicaPush.build(value, 0)
        decoded = decode_replica_push(body)
        assert decoded._asdict() == _parse_push(body)
        assert decoded.records == value["records"]

    def test_encode_passes_records_through(self):
        """The records object given is itself the last chunk, not copied into the envelope."""
        for records in (BATCHES[0], bytearray(BATCHES[1]), memoryview(BATCHES[1])[5:]):
            value = {**PUSH, "records": records}
            chunks = encode_replica_push(**value)
            assert chunks[-1] is records
            assert b"".join(chunks) == ReplicaPush.build(value, 0)

    def test_decode_does_not_copy_records(self):
        """The decoded records are a view into the body."""
        body = b"".join(encode_replica_push(**PUSH))
        records = decode_replica_push(body).records
        assert isinstance(records, memoryview)
        assert records.obj is body
        assert records == BATCHES[1]

    @pytest.mark.parametrize(
        "change",
        [
            {"topic": "x" * 0x8000},
            {"partition": 2**31},
            {"leader_epoch": -(2**31) - 1},
            {"high_watermark": 2**63},
            {"records": "text"},
        ],
    )
    def test_encode_refuses_what_declaration_refuses(self, change):
        """A value that does not fit its wire type is a ProtocolError, as with the declaration."""
        value = {**PUSH, **change}
        with pytest.raises(ProtocolError):
            ReplicaPush.build(value, 0)
        with pytest.raises(ProtocolError):
            encode_replica_push(**value)

    @pytest.mark.parametrize("field", ["topic", "partition", "high_watermark"])
    def test_encode_refuses_none_where_declaration_builds_default(self, field):
        """None in a non-nullable field is a ProtocolError, where the declaration's Default
        quietly builds the field's default ("" or 0) instead."""
        value = {**PUSH, field: None}
        assert ReplicaPush.parse(ReplicaPush.build(value, 0), 0)[field] in ("", 0)
        with pytest.raises(ProtocolError):
            encode_replica_push(**value)


class AckAgreementTests:
    @settings(max_examples=300, deadline=None)
    @given(entries=ACKS)
    def test_encode_equals_declaration(self, entries):
        """encode_replica_ack returns ReplicaAck.build's bytes."""
        assert encode_replica_ack(entries) == ReplicaAck.build(_ack_value(entries), 0)

    @settings(max_examples=300, deadline=None)
    @given(entries=ACKS)
    def test_decode_equals_declaration(self, entries):
        """decode_replica_ack returns the entries ReplicaAck.parse returns."""
        body = ReplicaAck.build(_ack_value(entries), 0)
        assert decode_replica_ack(body) == entries
        assert _fast_ack(body) == _parse_ack(body)

    @pytest.mark.parametrize(
        "entry",
        [(None, 0, 0, 0), ("t", 2**31, 0, 0), ("t", 0, 0, -(2**63) - 1), ("t", 0, 0)],
    )
    def test_encode_refuses_what_declaration_refuses(self, entry):
        """An entry that does not fit the wire types is a ProtocolError."""
        with pytest.raises(ProtocolError):
            encode_replica_ack([entry])


class FuzzTests:
    @settings(max_examples=25, deadline=None)
    @given(value=PUSHES)
    def test_every_truncated_push_is_refused(self, value):
        """Every proper prefix of a valid push body raises ProtocolError."""
        body = b"".join(encode_replica_push(**value))
        view = memoryview(body)
        for size in range(len(body)):
            with pytest.raises(ProtocolError):
                decode_replica_push(view[:size])

    @settings(max_examples=50, deadline=None)
    @given(entries=ACKS)
    def test_every_truncated_ack_is_refused(self, entries):
        """Every proper prefix of a valid ack body raises ProtocolError."""
        body = encode_replica_ack(entries)
        for size in range(len(body)):
            with pytest.raises(ProtocolError):
                decode_replica_ack(body[:size])

    @settings(max_examples=300, deadline=None)
    @given(data=st.data())
    def test_mangled_push_agrees_with_declaration(self, data):
        """A push body with flipped bytes, or garbage, decodes as the declaration parses it or
        raises ProtocolError as the declaration does."""
        body = b"".join(encode_replica_push(**data.draw(PUSHES)))
        _check_agreement(_parse_push, _fast_push, data.draw(_mangled(body)))

    @settings(max_examples=300, deadline=None)
    @given(data=st.data())
    def test_mangled_ack_agrees_with_declaration(self, data):
        """An ack body with flipped bytes, or garbage, decodes as the declaration parses it or
        raises ProtocolError as the declaration does."""
        body = encode_replica_ack(data.draw(ACKS))
        _check_agreement(_parse_ack, _fast_ack, data.draw(_mangled(body)))

    def test_trailing_bytes_are_refused(self):
        """A byte after the message is a ProtocolError, in the fast paths as in the
        declarations."""
        push = b"".join(encode_replica_push(**PUSH)) + b"\x00"
        ack = encode_replica_ack(ACK) + b"\x00"
        for parse, body in ((ReplicaPush.parse, push), (ReplicaAck.parse, ack)):
            with pytest.raises(ProtocolError):
                parse(body, 0)
        with pytest.raises(ProtocolError):
            decode_replica_push(push)
        with pytest.raises(ProtocolError):
            decode_replica_ack(ack)

    def test_huge_ack_count_is_refused_before_allocating(self):
        """An ack claiming 2**31-1 entries in a few bytes is refused without a big allocation."""
        body = I32.pack(2**31 - 1) + encode_replica_ack(ACK[:1])[4:]
        tracemalloc.start()
        try:
            with pytest.raises(ProtocolError, match="partition count"):
                decode_replica_ack(body)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024

    @pytest.mark.parametrize("length", [2**31 - 1, len(BATCHES[1]) + 1, -2, -(2**31)])
    def test_bad_records_length_is_refused(self, length):
        """A records length past the end, or negative but for the null marker, is refused."""
        body = bytearray(b"".join(encode_replica_push(**PUSH)))
        position = len(body) - len(BATCHES[1]) - 4
        body[position : position + 4] = I32.pack(length)
        with pytest.raises(ProtocolError):
            decode_replica_push(bytes(body))

    @pytest.mark.parametrize("count", [-1, -2, 3])
    def test_bad_ack_count_is_refused(self, count):
        """A null, negative or overlong ack array count is refused, as by the declaration."""
        body = I32.pack(count) + encode_replica_ack(ACK)[4:]
        with pytest.raises(ProtocolError):
            ReplicaAck.parse(body, 0)
        with pytest.raises(ProtocolError):
            decode_replica_ack(body)
