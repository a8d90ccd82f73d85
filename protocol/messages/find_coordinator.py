"""FindCoordinator (API key 10), versions 0-2.

``key_type`` (v1+) is 0 for a consumer group, 1 for a transactional id. v1 adds
``throttle_time_ms`` and ``error_message`` to the response.
"""

from __future__ import annotations

from ..schema import INT8, INT16, INT32, STRING, Field, Message

__all__ = ["FindCoordinatorRequest", "FindCoordinatorResponse"]

FindCoordinatorRequest = Message(
    "FindCoordinatorRequest",
    versions="0-2",
    fields=(
        Field("key", STRING),
        Field("key_type", INT8, versions="1+"),
    ),
)

FindCoordinatorResponse = Message(
    "FindCoordinatorResponse",
    versions="0-2",
    fields=(
        Field("throttle_time_ms", INT32, versions="1+"),
        Field("error_code", INT16),
        Field("error_message", STRING, versions="1+", nullable="1+"),
        Field("node_id", INT32),
        Field("host", STRING),
        Field("port", INT32),
    ),
)
