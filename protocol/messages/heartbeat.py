"""Heartbeat (API key 12), versions 0-3. 1 adds ``throttle_time_ms``; 3 ``group_instance_id``."""

from __future__ import annotations

from ..schema import INT16, INT32, STRING, Field, Message

__all__ = ["HeartbeatRequest", "HeartbeatResponse"]

HeartbeatRequest = Message(
    "HeartbeatRequest",
    versions="0-3",
    fields=(
        Field("group_id", STRING),
        Field("generation_id", INT32),
        Field("member_id", STRING),
        Field("group_instance_id", STRING, versions="3+", nullable="3+"),
    ),
)

HeartbeatResponse = Message(
    "HeartbeatResponse",
    versions="0-3",
    fields=(
        Field("throttle_time_ms", INT32, versions="1+"),
        Field("error_code", INT16),
    ),
)
