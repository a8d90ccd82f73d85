"""CreateTopics (API key 19), versions 0-4.

A topic gives either ``num_partitions`` and ``replication_factor`` or explicit
``assignments`` (then both are -1); from v4 -1 also means "the broker's default" (KIP-464).
1 adds ``validate_only`` and ``error_message``; 2 ``throttle_time_ms``.
"""

from __future__ import annotations

from ..schema import BOOL, INT16, INT32, STRING, Array, Field, Message

__all__ = ["CreateTopicsRequest", "CreateTopicsResponse"]

CreateTopicsRequest = Message(
    "CreateTopicsRequest",
    versions="0-4",
    fields=(
        Field(
            "topics",
            Array(
                Field("name", STRING),
                Field("num_partitions", INT32, default=-1),
                Field("replication_factor", INT16, default=-1),
                Field(
                    "assignments",
                    Array(Field("partition_index", INT32), Field("broker_ids", Array(INT32))),
                ),
                Field(
                    "configs",
                    Array(Field("name", STRING), Field("value", STRING, nullable="0+")),
                ),
            ),
        ),
        Field("timeout_ms", INT32, default=60000),
        Field("validate_only", BOOL, versions="1+"),
    ),
)

CreateTopicsResponse = Message(
    "CreateTopicsResponse",
    versions="0-4",
    fields=(
        Field("throttle_time_ms", INT32, versions="2+"),
        Field(
            "topics",
            Array(
                Field("name", STRING),
                Field("error_code", INT16),
                Field("error_message", STRING, versions="1+", nullable="0+"),
            ),
        ),
    ),
)
