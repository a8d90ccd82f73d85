"""The consumer protocol's assignment: what a group's leader gives each member.

In a group of protocol type ``"consumer"`` each member's assignment (relayed by SyncGroup,
shown by DescribeGroups) is a ``ConsumerProtocolAssignment``: ``version INT16``, then
``assigned_partitions ARRAY[topic STRING, partitions ARRAY[INT32]]`` and ``user_data``
(nullable BYTES). Versions 0-3 share that layout. As Kafka's clients do, a newer version is
read with the newest layout known (versions may only add fields at the end), and bytes after
the known fields are ignored.
"""

from __future__ import annotations

import dataclasses
import struct

from construct import ConstructError

from tmq.protocol.schema import BYTES, INT32, STRING, Array, Field, Message

__all__ = [
    "ASSIGNMENT_VERSION",
    "ConsumerAssignment",
    "decode_assignment",
    "encode_assignment",
]

#: The newest assignment version whose layout is known here.
ASSIGNMENT_VERSION = 3

_ASSIGNMENT = Message(
    "ConsumerProtocolAssignment",
    versions=f"0-{ASSIGNMENT_VERSION}",
    fields=(
        Field(
            "assigned_partitions",
            Array(Field("topic", STRING), Field("partitions", Array(INT32))),
        ),
        Field("user_data", BYTES, nullable="0+"),
    ),
)

_VERSION = struct.Struct(">h")


@dataclasses.dataclass(frozen=True)
class ConsumerAssignment:
    """One member's decoded assignment.

    :ivar version: the version the blob declares (it may be above ``ASSIGNMENT_VERSION``).
    :ivar assigned: ``(topic, partitions)`` pairs in wire order.
    :ivar user_data: the assignor's opaque bytes, ``None`` when null.
    """

    version: int
    assigned: tuple[tuple[str, tuple[int, ...]], ...]
    user_data: bytes | None = None

    def partitions(self) -> list[tuple[str, int]]:
        """Every assigned ``(topic, partition)``, in wire order."""
        return [(topic, index) for topic, indexes in self.assigned for index in indexes]


def decode_assignment(data: bytes | bytearray | memoryview) -> ConsumerAssignment:
    """Decode a ``ConsumerProtocolAssignment`` blob.

    :raises ValueError: fewer than two bytes, a negative version, or fields that do not
        decode (truncated, a negative length, a string that is not UTF-8). Nothing else is
        raised, whatever the bytes.
    """
    data = bytes(data)
    if len(data) < _VERSION.size:
        raise ValueError(f"{len(data)} bytes hold no assignment version")
    (version,) = _VERSION.unpack_from(data)
    if version < 0:
        raise ValueError(f"assignment version {version} is negative")
    layout = _ASSIGNMENT.struct(min(version, ASSIGNMENT_VERSION))
    try:
        parsed = layout.parse(data[_VERSION.size :])
    except ConstructError as error:
        raise ValueError(f"malformed assignment v{version}: {error}") from None
    assigned = tuple((entry.topic, tuple(entry.partitions)) for entry in parsed.assigned_partitions)
    return ConsumerAssignment(version, assigned, parsed.user_data)


def encode_assignment(assignment: ConsumerAssignment) -> bytes:
    """Encode ``assignment`` in its version's layout (the newest known one for a newer version).

    :raises ValueError: a version outside INT16 or negative, or values that do not fit their
        wire types.
    """
    if not 0 <= assignment.version < 2**15:
        raise ValueError(f"assignment version {assignment.version} is out of range")
    body = {
        "assigned_partitions": [
            {"topic": topic, "partitions": list(indexes)} for topic, indexes in assignment.assigned
        ],
        "user_data": assignment.user_data,
    }
    version = min(assignment.version, ASSIGNMENT_VERSION)
    return _VERSION.pack(assignment.version) + _ASSIGNMENT.build(body, version)
