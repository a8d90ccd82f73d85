"""SyncGroup (API key 14), versions 0-3.

Only the group leader sends ``assignments``; every member gets its own (opaque) assignment
back. 1 adds ``throttle_time_ms``; 3 ``group_instance_id``.
"""

from __future__ import annotations

from ..schema import BYTES, INT16, INT32, STRING, Array, Field, Message

__all__ = ["SyncGroupRequest", "SyncGroupResponse"]

SyncGroupRequest = Message(
    "SyncGroupRequest",
    versions="0-3",
    fields=(
        Field("group_id", STRING),
        Field("generation_id", INT32),
        Field("member_id", STRING),
        Field("group_instance_id", STRING, versions="3+", nullable="3+"),
        Field("assignments", Array(Field("member_id", STRING), Field("assignment", BYTES))),
    ),
)

SyncGroupResponse = Message(
    "SyncGroupResponse",
    versions="0-3",
    fields=(
        Field("throttle_time_ms", INT32, versions="1+"),
        Field("error_code", INT16),
        Field("assignment", BYTES),
    ),
)
