"""Metadata (API key 3), versions 0-8.

In v0 an empty ``topics`` list means all topics; from v1 ``topics`` is nullable and null means
all, empty means none. 1 adds racks, ``controller_id`` and ``is_internal``; 2 ``cluster_id``;
3 ``throttle_time_ms``; 4 ``allow_auto_topic_creation``; 5 ``offline_replicas``; 7 the
partition ``leader_epoch``; 8 the authorized-operations fields (tmq answers "not requested").
"""

from __future__ import annotations

from ..schema import BOOL, INT16, INT32, STRING, Array, Field, Message

__all__ = ["AUTHORIZED_OPERATIONS_OMITTED", "MetadataRequest", "MetadataResponse"]

#: Kafka's value for authorized operations that were not asked for (INT32 min).
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)

MetadataRequest = Message(
    "MetadataRequest",
    versions="0-8",
    fields=(
        Field("topics", Array(Field("name", STRING)), nullable="1+"),
        Field("allow_auto_topic_creation", BOOL, versions="4+", default=True),
        Field("include_cluster_authorized_operations", BOOL, versions="8+"),
        Field("include_topic_authorized_operations", BOOL, versions="8+"),
    ),
)

MetadataResponse = Message(
    "MetadataResponse",
    versions="0-8",
    fields=(
        Field("throttle_time_ms", INT32, versions="3+"),
        Field(
            "brokers",
            Array(
                Field("node_id", INT32),
                Field("host", STRING),
                Field("port", INT32),
                Field("rack", STRING, versions="1+", nullable="1+"),
            ),
        ),
        Field("cluster_id", STRING, versions="2+", nullable="2+"),
        Field("controller_id", INT32, versions="1+", default=-1),
        Field(
            "topics",
            Array(
                Field("error_code", INT16),
                Field("name", STRING),
                Field("is_internal", BOOL, versions="1+"),
                Field(
                    "partitions",
                    Array(
                        Field("error_code", INT16),
                        Field("partition_index", INT32),
                        Field("leader_id", INT32),
                        Field("leader_epoch", INT32, versions="7+", default=-1),
                        Field("replica_nodes", Array(INT32)),
                        Field("isr_nodes", Array(INT32)),
                        Field("offline_replicas", Array(INT32), versions="5+"),
                    ),
                ),
                Field(
                    "topic_authorized_operations",
                    INT32,
                    versions="8+",
                    default=AUTHORIZED_OPERATIONS_OMITTED,
                ),
            ),
        ),
        Field(
            "cluster_authorized_operations",
            INT32,
            versions="8+",
            default=AUTHORIZED_OPERATIONS_OMITTED,
        ),
    ),
)
