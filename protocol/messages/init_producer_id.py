"""InitProducerId (API key 22), versions 0-1 (identical on the wire).

Without a ``transactional_id`` (null) this allocates a producer id for an idempotent producer.
"""

from __future__ import annotations

from ..schema import INT16, INT32, INT64, STRING, Field, Message

__all__ = ["InitProducerIdRequest", "InitProducerIdResponse"]

InitProducerIdRequest = Message(
    "InitProducerIdRequest",
    versions="0-1",
    fields=(
        Field("transactional_id", STRING, nullable="0+"),
        Field("transaction_timeout_ms", INT32),
    ),
)

InitProducerIdResponse = Message(
    "InitProducerIdResponse",
    versions="0-1",
    fields=(
        Field("throttle_time_ms", INT32),
        Field("error_code", INT16),
        Field("producer_id", INT64, default=-1),
        Field("producer_epoch", INT16),
    ),
)
