"""JoinGroup (API key 11), versions 0-5.

1 adds ``rebalance_timeout_ms``; 2 ``throttle_time_ms``; 4 lets the coordinator answer
MEMBER_ID_REQUIRED; 5 adds ``group_instance_id`` (static membership). Protocol metadata is
opaque to the broker; ``members`` is filled only in the leader's response.
"""

from __future__ import annotations

from ..schema import BYTES, INT16, INT32, STRING, Array, Field, Message

__all__ = ["JoinGroupRequest", "JoinGroupResponse"]

JoinGroupRequest = Message(
    "JoinGroupRequest",
    versions="0-5",
    fields=(
        Field("group_id", STRING),
        Field("session_timeout_ms", INT32),
        Field("rebalance_timeout_ms", INT32, versions="1+", default=-1),
        Field("member_id", STRING),
        Field("group_instance_id", STRING, versions="5+", nullable="5+"),
        Field("protocol_type", STRING),
        Field("protocols", Array(Field("name", STRING), Field("metadata", BYTES))),
    ),
)

JoinGroupResponse = Message(
    "JoinGroupResponse",
    versions="0-5",
    fields=(
        Field("throttle_time_ms", INT32, versions="2+"),
        Field("error_code", INT16),
        Field("generation_id", INT32, default=-1),
        Field("protocol_name", STRING),
        Field("leader", STRING),
        Field("member_id", STRING),
        Field(
            "members",
            Array(
                Field("member_id", STRING),
                Field("group_instance_id", STRING, versions="5+", nullable="5+"),
                Field("metadata", BYTES),
            ),
        ),
    ),
)
