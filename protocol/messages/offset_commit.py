"""OffsetCommit (API key 8), versions 2-7.

``generation_id`` -1 with an empty ``member_id`` is a "simple" commit from a consumer that
assigns its own partitions. ``retention_time_ms`` exists in v2-4 only (-1: the broker's
default); 6 adds ``committed_leader_epoch``; 7 adds ``group_instance_id`` (static membership).
"""

from __future__ import annotations

from ..schema import INT16, INT32, INT64, STRING, Array, Field, Message

__all__ = ["OffsetCommitRequest", "OffsetCommitResponse"]

OffsetCommitRequest = Message(
    "OffsetCommitRequest",
    versions="2-7",
    fields=(
        Field("group_id", STRING),
        Field("generation_id", INT32, default=-1),
        Field("member_id", STRING),
        Field("group_instance_id", STRING, versions="7+", nullable="7+"),
        Field("retention_time_ms", INT64, versions="2-4", default=-1),
        Field(
            "topics",
            Array(
                Field("name", STRING),
                Field(
                    "partitions",
                    Array(
                        Field("partition_index", INT32),
                        Field("committed_offset", INT64),
                        Field("committed_leader_epoch", INT32, versions="6+", default=-1),
                        Field("committed_metadata", STRING, nullable="0+"),
                    ),
                ),
            ),
        ),
    ),
)

OffsetCommitResponse = Message(
    "OffsetCommitResponse",
    versions="2-7",
    fields=(
        Field("throttle_time_ms", INT32, versions="3+"),
        Field(
            "topics",
            Array(
                Field("name", STRING),
                Field(
                    "partitions",
                    Array(Field("partition_index", INT32), Field("error_code", INT16)),
                ),
            ),
        ),
    ),
)
