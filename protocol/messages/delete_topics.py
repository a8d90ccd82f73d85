"""DeleteTopics (API key 20), versions 0-3. 1 adds ``throttle_time_ms``."""

from __future__ import annotations

from ..schema import INT16, INT32, STRING, Array, Field, Message

__all__ = ["DeleteTopicsRequest", "DeleteTopicsResponse"]

DeleteTopicsRequest = Message(
    "DeleteTopicsRequest",
    versions="0-3",
    fields=(
        Field("topic_names", Array(STRING)),
        Field("timeout_ms", INT32, default=30000),
    ),
)

DeleteTopicsResponse = Message(
    "DeleteTopicsResponse",
    versions="0-3",
    fields=(
        Field("throttle_time_ms", INT32, versions="1+"),
        Field("responses", Array(Field("name", STRING), Field("error_code", INT16))),
    ),
)
