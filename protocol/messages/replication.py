"""The replication stream between brokers (DESIGN §4): internal APIs, keys 1000-1002.

They travel on the Kafka framing with request header v1, on connections a follower broker
opens to a leader broker; client connections refuse them. Version 0 only.

* **ReplicaSubscribe** (1000), follower -> leader, answered: the follower names itself (its
  id and the ``broker_epoch`` of its registration), the bytes of pushed batches it accepts
  unacknowledged (``window_bytes``), and per partition where it stands: the leader epoch it
  believes current, its fetch offset (its log end offset) and the epoch of its last batch.
  The answer says per partition whether the leader accepts it (an error code such as
  NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH otherwise) and whether the follower's log
  ``diverging`` from the leader's; if so, OffsetForLeaderEpoch-style (KIP-279), the leader's
  largest epoch at or below ``last_fetched_epoch`` and that epoch's end offset in the
  leader's log (-1 and -1 when the leader knows no such epoch): the follower truncates by
  them (``tmq.replication.follower.plan_truncation``) and subscribes the partition again.
  Once a partition's answer has no divergence, the leader pushes from ``fetch_offset``.
* **ReplicaPush** (1001), leader -> follower, no answer: whole batches of one partition
  starting at the follower's log end offset, as the leader stored them (offsets and epochs
  stamped), or none (a high watermark update); with the leader's epoch, high watermark and log
  start offset.
* **ReplicaAck** (1002), follower -> leader, no answer: per partition, the follower's log
  end offset once it has appended (and flushed, per its policy) what was pushed; it frees that
  much of the window and is the follower's report for the high watermark and the ISR.

Pushes and acks flow for every appended batch, so they have hand-written ``struct`` fast paths
(``encode_replica_push``/``decode_replica_push``, ``encode_replica_ack``/``decode_replica_ack``)
that pass the records through as they are, without copying them; the declarations below stay the
specification, and tests/protocol/test_replication_fastpaths.py holds the fast paths to them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from ..errors import ProtocolError
from ..fastwire import I32, pack_string, read_array, read_records, read_string
from ..schema import BOOL, INT16, INT32, INT64, RECORDS, STRING, Array, Field, Message

__all__ = [
    "ReplicaAck",
    "ReplicaAckEntry",
    "ReplicaPush",
    "ReplicaPushView",
    "ReplicaSubscribeRequest",
    "ReplicaSubscribeResponse",
    "decode_replica_ack",
    "decode_replica_push",
    "encode_replica_ack",
    "encode_replica_push",
]

ReplicaSubscribeRequest = Message(
    "ReplicaSubscribeRequest",
    versions="0",
    fields=(
        Field("broker_id", INT32),
        Field("broker_epoch", INT64),
        Field("window_bytes", INT32),
        Field(
            "partitions",
            Array(
                Field("topic", STRING),
                Field("partition", INT32),
                Field("current_leader_epoch", INT32),
                Field("fetch_offset", INT64),
                Field("last_fetched_epoch", INT32),
            ),
        ),
    ),
)

ReplicaSubscribeResponse = Message(
    "ReplicaSubscribeResponse",
    versions="0",
    fields=(
        Field(
            "partitions",
            Array(
                Field("topic", STRING),
                Field("partition", INT32),
                Field("error_code", INT16),
                Field("leader_epoch", INT32),
                Field("diverging", BOOL),
                Field("diverging_epoch", INT32, default=-1),
                Field("diverging_end_offset", INT64, default=-1),
                Field("high_watermark", INT64),
                Field("log_start_offset", INT64),
            ),
        ),
    ),
)

ReplicaPush = Message(
    "ReplicaPush",
    versions="0",
    fields=(
        Field("topic", STRING),
        Field("partition", INT32),
        Field("leader_epoch", INT32),
        Field("high_watermark", INT64),
        Field("log_start_offset", INT64),
        Field("records", RECORDS, nullable="0+"),
    ),
)

ReplicaAck = Message(
    "ReplicaAck",
    versions="0",
    fields=(
        Field(
            "partitions",
            Array(
                Field("topic", STRING),
                Field("partition", INT32),
                Field("leader_epoch", INT32),
                Field("log_end_offset", INT64),
            ),
        ),
    ),
)


# Fast paths. A leader pushes every batch it appends to every follower, and each follower acks
# each push: construct's build would copy the batches twice, and its parse costs more than the
# follower's append. tests/protocol/test_replication_fastpaths.py holds these to the
# declarations above.

_PUSH_FIXED = struct.Struct(">iiqq")  # partition, leader epoch, high watermark, log start offset
_ACK_FIXED = struct.Struct(">iiq")  # partition, leader epoch, log end offset


class ReplicaPushView(NamedTuple):
    """A decoded ReplicaPush; ``records`` is a view of the body (``None`` when null)."""

    topic: str
    partition: int
    leader_epoch: int
    high_watermark: int
    log_start_offset: int
    records: memoryview | None


class ReplicaAckEntry(NamedTuple):
    """One partition of a ReplicaAck."""

    topic: str
    partition: int
    leader_epoch: int
    log_end_offset: int


def _pack_topic(out: bytearray, topic: str) -> None:
    """Append ``topic`` as a STRING, which unlike ``pack_string`` refuses ``None``."""
    if topic is None:
        raise TypeError("topic is None")
    pack_string(out, topic)


def encode_replica_push(
    topic: str,
    partition: int,
    leader_epoch: int,
    high_watermark: int,
    log_start_offset: int,
    records: bytes | memoryview | None,
) -> list[bytes | memoryview]:
    """Encode a ReplicaPush v0 body as a list of chunks whose concatenation equals
    ``ReplicaPush.build``'s bytes; non-empty ``records`` are the last chunk, uncopied.

    :raises ProtocolError: a value that does not fit its wire type.
    """
    out = bytearray()
    try:
        _pack_topic(out, topic)
        size = -1 if records is None else memoryview(records).nbytes
        out += _PUSH_FIXED.pack(partition, leader_epoch, high_watermark, log_start_offset)
        out += I32.pack(size)
    except (AttributeError, TypeError, ValueError, struct.error) as e:
        raise ProtocolError(f"cannot build ReplicaPush v0: {e!r}") from None
    return [bytes(out), records] if size > 0 else [bytes(out)]


def decode_replica_push(body: bytes | memoryview) -> ReplicaPushView:
    """Decode a ReplicaPush v0 body; the same values as ``ReplicaPush.parse``, but ``records``
    is a ``memoryview`` slice of ``body``, which must stay unchanged while it is in use.

    :raises ProtocolError: truncated or malformed bytes, or bytes after the message.
    """
    view = memoryview(body)
    topic, position = read_string(view, 0, nullable=False)
    if position + _PUSH_FIXED.size > len(view):
        raise ProtocolError("truncated ReplicaPush")
    fixed = _PUSH_FIXED.unpack_from(view, position)
    records, position = read_records(view, position + _PUSH_FIXED.size)
    if position != len(view):
        raise ProtocolError(f"malformed ReplicaPush v0: {len(view) - position} bytes left over")
    return ReplicaPushView(topic, *fixed, records)


def encode_replica_ack(entries: Sequence[ReplicaAckEntry]) -> bytes:
    """Encode a ReplicaAck v0 body, ``ReplicaAck.build``'s bytes for these partitions
    (``ReplicaAckEntry``s or plain tuples in its field order).

    :raises ProtocolError: a value that does not fit its wire type.
    """
    out = bytearray()
    try:
        out += I32.pack(len(entries))
        for topic, partition, leader_epoch, log_end_offset in entries:
            _pack_topic(out, topic)
            out += _ACK_FIXED.pack(partition, leader_epoch, log_end_offset)
    except (AttributeError, TypeError, ValueError, struct.error) as e:
        raise ProtocolError(f"cannot build ReplicaAck v0: {e!r}") from None
    return bytes(out)


def _read_ack_entry(view: memoryview, position: int) -> tuple[ReplicaAckEntry, int]:
    topic, position = read_string(view, position, nullable=False)
    if position + _ACK_FIXED.size > len(view):
        raise ProtocolError("truncated ReplicaAck")
    fixed = _ACK_FIXED.unpack_from(view, position)
    return ReplicaAckEntry(topic, *fixed), position + _ACK_FIXED.size


def decode_replica_ack(body: bytes | memoryview) -> list[ReplicaAckEntry]:
    """Decode a ReplicaAck v0 body; the same values as ``ReplicaAck.parse``'s partitions.
    The array count is checked against the bytes left before any entry is read.

    :raises ProtocolError: truncated or malformed bytes, or bytes after the message.
    """
    view = memoryview(body)
    entries, position = read_array(view, 0, "partition", _read_ack_entry)
    if position != len(view):
        raise ProtocolError(f"malformed ReplicaAck v0: {len(view) - position} bytes left over")
    return entries
