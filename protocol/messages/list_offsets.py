"""ListOffsets (API key 2), versions 1-5.

``timestamp`` -1 asks for the latest offset (the high watermark), -2 for the earliest; any other
value for the first offset whose timestamp is at or after it. 2 adds ``isolation_level`` and
``throttle_time_ms``; 4 adds leader epochs (KIP-320); 5 may answer OFFSET_NOT_AVAILABLE.
"""

from __future__ import annotations

from ..schema import INT8, INT16, INT32, INT64, STRING, Array, Field, Message

__all__ = ["ListOffsetsRequest", "ListOffsetsResponse"]

ListOffsetsRequest = Message(
    "ListOffsetsRequest",
    versions="1-5",
    fields=(
        Field("replica_id", INT32, default=-1),
        Field("isolation_level", INT8, versions="2+"),
        Field(
            "topics",
            Array(
                Field("name", STRING),
                Field(
                    "partitions",
                    Array(
                        Field("partition_index", INT32),
                        Field("current_leader_epoch", INT32, versions="4+", default=-1),
                        Field("timestamp", INT64),
                    ),
                ),
            ),
        ),
    ),
)

ListOffsetsResponse = Message(
    "ListOffsetsResponse",
    versions="1-5",
    fields=(
        Field("throttle_time_ms", INT32, versions="2+"),
        Field(
            "topics",
            Array(
                Field("name", STRING),
                Field(
                    "partitions",
                    Array(
                        Field("partition_index", INT32),
                        Field("error_code", INT16),
                        Field("timestamp", INT64, default=-1),
                        Field("offset", INT64, default=-1),
                        Field("leader_epoch", INT32, versions="4+", default=-1),
                    ),
                ),
            ),
        ),
    ),
)
