"""Fetch (API key 1), versions 4-11.

4 is the first version that carries RecordBatch v2 (and ``isolation_level``); 5 adds
``log_start_offset``; 7 adds fetch sessions (tmq answers ``session_id`` 0, always a full
response); 9 adds ``current_leader_epoch`` (KIP-320); 10 allows zstd; 11 adds ``rack_id`` and
``preferred_read_replica``. ``replica_id`` is -1 for consumers.
"""

from __future__ import annotations

from ..schema import INT8, INT16, INT32, INT64, RECORDS, STRING, Array, Field, Message

__all__ = ["FetchRequest", "FetchResponse"]

FetchRequest = Message(
    "FetchRequest",
    versions="4-11",
    fields=(
        Field("replica_id", INT32, default=-1),
        Field("max_wait_ms", INT32),
        Field("min_bytes", INT32),
        Field("max_bytes", INT32, default=0x7FFFFFFF),
        Field("isolation_level", INT8),
        Field("session_id", INT32, versions="7+"),
        Field("session_epoch", INT32, versions="7+", default=-1),
        Field(
            "topics",
            Array(
                Field("topic", STRING),
                Field(
                    "partitions",
                    Array(
                        Field("partition", INT32),
                        Field("current_leader_epoch", INT32, versions="9+", default=-1),
                        Field("fetch_offset", INT64),
                        Field("log_start_offset", INT64, versions="5+", default=-1),
                        Field("partition_max_bytes", INT32),
                    ),
                ),
            ),
        ),
        Field(
            "forgotten_topics_data",
            Array(Field("topic", STRING), Field("partitions", Array(INT32))),
            versions="7+",
        ),
        Field("rack_id", STRING, versions="11+"),
    ),
)

FetchResponse = Message(
    "FetchResponse",
    versions="4-11",
    fields=(
        Field("throttle_time_ms", INT32),
        Field("error_code", INT16, versions="7+"),
        Field("session_id", INT32, versions="7+"),
        Field(
            "responses",
            Array(
                Field("topic", STRING),
                Field(
                    "partitions",
                    Array(
                        Field("partition_index", INT32),
                        Field("error_code", INT16),
                        Field("high_watermark", INT64),
                        Field("last_stable_offset", INT64, default=-1),
                        Field("log_start_offset", INT64, versions="5+", default=-1),
                        Field(
                            "aborted_transactions",
                            Array(Field("producer_id", INT64), Field("first_offset", INT64)),
                            nullable="4+",
                        ),
                        Field("preferred_read_replica", INT32, versions="11+", default=-1),
                        Field("records", RECORDS, nullable="0+"),
                    ),
                ),
            ),
        ),
    ),
)
