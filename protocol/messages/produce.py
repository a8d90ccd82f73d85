"""Produce (API key 0), versions 0-8.

Versions 0-2 carry the legacy message format: they are declared so that a request can be read
far enough to be refused with UNSUPPORTED_VERSION. Version 3 brings RecordBatch v2 and
``transactional_id``; 5 adds ``log_start_offset`` to the response; 7 allows zstd; 8 adds
``record_errors`` and ``error_message``. ``records`` holds one RecordBatch per partition.
"""

from __future__ import annotations

from ..schema import INT16, INT32, INT64, RECORDS, STRING, Array, Field, Message

__all__ = ["ProduceRequest", "ProduceResponse"]

ProduceRequest = Message(
    "ProduceRequest",
    versions="0-8",
    fields=(
        Field("transactional_id", STRING, versions="3+", nullable="3+"),
        Field("acks", INT16),
        Field("timeout_ms", INT32),
        Field(
            "topic_data",
            Array(
                Field("name", STRING),
                Field(
                    "partition_data",
                    Array(
                        Field("index", INT32),
                        Field("records", RECORDS, nullable="0+"),
                    ),
                ),
            ),
        ),
    ),
)

ProduceResponse = Message(
    "ProduceResponse",
    versions="0-8",
    fields=(
        Field(
            "responses",
            Array(
                Field("name", STRING),
                Field(
                    "partition_responses",
                    Array(
                        Field("index", INT32),
                        Field("error_code", INT16),
                        Field("base_offset", INT64),
                        Field("log_append_time_ms", INT64, versions="2+", default=-1),
                        Field("log_start_offset", INT64, versions="5+", default=-1),
                        Field(
                            "record_errors",
                            Array(
                                Field("batch_index", INT32),
                                Field("batch_index_error_message", STRING, nullable="8+"),
                            ),
                            versions="8+",
                        ),
                        Field("error_message", STRING, versions="8+", nullable="8+"),
                    ),
                ),
            ),
        ),
        Field("throttle_time_ms", INT32, versions="1+"),
    ),
)
