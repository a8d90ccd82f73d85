"""The consumer protocol's assignment decoder, against hand-made bytes and kafka-python's own
``ConsumerProtocolAssignment`` encoder (generated from Kafka's spec)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.protocol.consumer import ConsumerProtocolAssignment as KpAssignment

from tmq.client.consumer_protocol import (
    ASSIGNMENT_VERSION,
    ConsumerAssignment,
    decode_assignment,
    encode_assignment,
)


def kp_assignment(version: int, assigned: dict[str, list[int]], user_data: bytes | None) -> bytes:
    """The bytes kafka-python writes for an assignment (version prefix included)."""
    partitions = [
        KpAssignment.TopicPartition(version=version, topic=topic, partitions=indexes)
        for topic, indexes in assigned.items()
    ]
    blob = KpAssignment(version=version, assigned_partitions=partitions, user_data=user_data)
    return bytes(blob.encode())


class DecodeAssignmentTests:
    """decode_assignment reads what Kafka's clients write."""

    @pytest.mark.parametrize("version", range(ASSIGNMENT_VERSION + 1))
    def test_kafka_python_assignments_decode(self, version):
        """Every known version written by kafka-python decodes to its topics, partitions and
        user data, and encodes back to the same bytes."""
        data = kp_assignment(version, {"gpu-telemetry": [0, 2], "alerts": [1]}, b"\x00\x07")
        decoded = decode_assignment(data)
        assert decoded == ConsumerAssignment(
            version, (("gpu-telemetry", (0, 2)), ("alerts", (1,))), b"\x00\x07"
        )
        assert decoded.partitions() == [("gpu-telemetry", 0), ("gpu-telemetry", 2), ("alerts", 1)]
        assert encode_assignment(decoded) == data

    def test_null_user_data_and_no_partitions(self):
        """An empty assignment with null user data: no partitions, user_data None."""
        data = kp_assignment(0, {}, None)
        assert data == bytes.fromhex("000000000000ffffffff")
        assert decode_assignment(data) == ConsumerAssignment(0, (), None)
        assert decode_assignment(data).partitions() == []

    def test_hand_made_bytes(self):
        """The layout byte by byte: version, one topic "t" with partitions 5 and 6, user data
        b"u"."""
        data = bytes.fromhex("0001 00000001 000174 00000002 00000005 00000006")
        data += bytes.fromhex("00000001") + b"u"
        assert decode_assignment(data) == ConsumerAssignment(1, (("t", (5, 6)),), b"u")

    def test_newer_version_is_read_with_the_newest_layout(self):
        """A version above the newest known is read with the newest layout and the fields it
        adds at the end are skipped, as Kafka's ConsumerProtocol does."""
        body = kp_assignment(ASSIGNMENT_VERSION, {"gpu": [3]}, None)[2:]
        data = struct.pack(">h", 9) + body + b"\x00\x00\x00\x2a"
        assert decode_assignment(data) == ConsumerAssignment(9, (("gpu", (3,)),), None)

    def test_trailing_bytes_are_ignored(self):
        """Bytes after the known fields of a known version are ignored, as Kafka ignores them."""
        data = kp_assignment(0, {"gpu": [0]}, None) + b"\xff\xff"
        assert decode_assignment(data).partitions() == [("gpu", 0)]

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            pytest.param(b"", "no assignment version", id="empty"),
            pytest.param(b"\x00", "no assignment version", id="one-byte"),
            pytest.param(b"\xff\xff" + bytes(8), "negative", id="negative-version"),
            pytest.param(b"\x00\x00\x00\x00\x00\x05ab", "malformed", id="truncated-array"),
            pytest.param(
                bytes.fromhex("0000 00000001 0002ffff 00000000 ffffffff"),
                "malformed",
                id="not-utf8",
            ),
            pytest.param(bytes.fromhex("0000 fffffffe"), "malformed", id="negative-count"),
            pytest.param(bytes.fromhex("0000 00000000"), "malformed", id="no-user-data"),
        ],
    )
    def test_malformed_assignments_raise_value_error(self, data, reason):
        """Bytes that are not an assignment raise ValueError saying why."""
        with pytest.raises(ValueError, match=reason):
            decode_assignment(data)

    @settings(max_examples=300, deadline=None)
    @given(data=st.binary(max_size=64))
    def test_any_bytes_decode_or_raise_value_error(self, data):
        """Random bytes either decode or raise ValueError; nothing else escapes."""
        with contextlib.suppress(ValueError):
            decode_assignment(data)

    @settings(max_examples=100, deadline=None)
    @given(
        version=st.integers(0, ASSIGNMENT_VERSION),
        assigned=st.dictionaries(
            st.text(min_size=1, max_size=8), st.lists(st.integers(0, 2**31 - 1), max_size=4)
        ),
        user_data=st.none() | st.binary(max_size=16),
    )
    def test_generated_assignments_agree_with_kafka_python(self, version, assigned, user_data):
        """For generated assignments, tmq decodes kafka-python's bytes to the same values and
        encodes them to the same bytes."""
        data = kp_assignment(version, assigned, user_data)
        expected = tuple((topic, tuple(indexes)) for topic, indexes in assigned.items())
        decoded = decode_assignment(data)
        assert decoded == ConsumerAssignment(version, expected, user_data)
        assert encode_assignment(decoded) == data


class EncodeAssignmentTests:
    """encode_assignment refuses what cannot be written."""

    @pytest.mark.parametrize("version", [-1, 2**15])
    def test_version_outside_int16_is_refused(self, version):
        """A negative version or one beyond INT16 raises ValueError."""
        with pytest.raises(ValueError, match="out of range"):
            encode_assignment(ConsumerAssignment(version, ()))

    def test_partition_outside_int32_is_refused(self):
        """A partition index beyond INT32 raises ValueError."""
        with pytest.raises(ValueError):
            encode_assignment(ConsumerAssignment(0, (("t", (2**31,)),)))
