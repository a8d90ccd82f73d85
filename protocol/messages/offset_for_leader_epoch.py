"""OffsetForLeaderEpoch (API key 23), versions 0-3 (KIP-101, KIP-279, KIP-320).

For each partition: the end offset of ``leader_epoch`` on this replica, i.e. the start offset of
the next larger epoch it knows, or its log end offset when ``leader_epoch`` is its latest. v1
answers the epoch that end offset belongs to; v2 adds ``current_leader_epoch`` fencing and
``throttle_time_ms``; v3 ``replica_id`` (-1 consumer, -2 debug tool).
"""

from __future__ import annotations

from ..schema import INT16, INT32, INT64, STRING, Array, Field, Message

__all__ = ["OffsetForLeaderEpochRequest", "OffsetForLeaderEpochResponse"]

OffsetForLeaderEpochRequest = Message(
    "OffsetForLeaderEpochRequest",
    versions="0-3",
    fields=(
        Field("replica_id", INT32, versions="3+", default=-2),
        Field(
            "topics",
            Array(
                Field("topic", STRING),
                Field(
                    "partitions",
                    Array(
                        Field("partition", INT32),
                        Field("current_leader_epoch", INT32, versions="2+", default=-1),
                        Field("leader_epoch", INT32),
                    ),
                ),
            ),
        ),
    ),
)

OffsetForLeaderEpochResponse = Message(
    "OffsetForLeaderEpochResponse",
    versions="0-3",
    fields=(
        Field("throttle_time_ms", INT32, versions="2+"),
        Field(
            "topics",
            Array(
                Field("topic", STRING),
                Field(
                    "partitions",
                    Array(
                        Field("error_code", INT16),
                        Field("partition", INT32),
                        Field("leader_epoch", INT32, versions="1+", default=-1),
                        Field("end_offset", INT64, default=-1),
                    ),
                ),
            ),
        ),
    ),
)
