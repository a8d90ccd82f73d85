"""LeaveGroup (API key 13), versions 0-3.

v0-2 name one ``member_id``; v3 (KIP-345) names several ``members``, each answered with its own
error code. 1 adds ``throttle_time_ms``.
"""

from __future__ import annotations

from ..schema import INT16, INT32, STRING, Array, Field, Message

__all__ = ["LeaveGroupRequest", "LeaveGroupResponse"]

LeaveGroupRequest = Message(
    "LeaveGroupRequest",
    versions="0-3",
    fields=(
        Field("group_id", STRING),
        Field("member_id", STRING, versions="0-2"),
        Field(
            "members",
            Array(
                Field("member_id", STRING),
                Field("group_instance_id", STRING, nullable="3+"),
            ),
            versions="3+",
        ),
    ),
)

LeaveGroupResponse = Message(
    "LeaveGroupResponse",
    versions="0-3",
    fields=(
        Field("throttle_time_ms", INT32, versions="1+"),
        Field("error_code", INT16),
        Field(
            "members",
            Array(
                Field("member_id", STRING),
                Field("group_instance_id", STRING, nullable="3+"),
                Field("error_code", INT16),
            ),
            versions="3+",
        ),
    ),
)
