"""OffsetFetch (API key 9), versions 1-5.

From v2 ``topics`` is nullable: null asks for every partition the group has committed, and the
response gains a top-level ``error_code`` (its last field). 3 adds ``throttle_time_ms``; 5 the
``committed_leader_epoch``. ``committed_offset`` -1 means nothing is committed.
"""

from __future__ import annotations

from ..schema import INT16, INT32, INT64, STRING, Array, Field, Message

__all__ = ["OffsetFetchRequest", "OffsetFetchResponse"]

OffsetFetchRequest = Message(
    "OffsetFetchRequest",
    versions="1-5",
    fields=(
        Field("group_id", STRING),
        Field(
            "topics",
            Array(Field("name", STRING), Field("partition_indexes", Array(INT32))),
            nullable="2+",
        ),
    ),
)

OffsetFetchResponse = Message(
    "OffsetFetchResponse",
    versions="1-5",
    fields=(
        Field("throttle_time_ms", INT32, versions="3+"),
        Field(
            "topics",
            Array(
                Field("name", STRING),
                Field(
                    "partitions",
                    Array(
                        Field("partition_index", INT32),
                        Field("committed_offset", INT64, default=-1),
                        Field("committed_leader_epoch", INT32, versions="5+", default=-1),
                        Field("metadata", STRING, nullable="0+"),
                        Field("error_code", INT16),
                    ),
                ),
            ),
        ),
        Field("error_code", INT16, versions="2+"),
    ),
)
