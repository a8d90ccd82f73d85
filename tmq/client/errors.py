"""The errors the client reports: every failure a caller of ``tmq.client`` sees is a
``KafkaError``.

``retriable`` says whether the same operation may succeed if tried again (after a metadata
refresh, a reconnect or a backoff); the producer and consumer retry such errors themselves within
their time budgets and only report them when the budget is spent.
"""

from __future__ import annotations

from tmq.protocol.errors import ErrorCode

__all__ = [
    "STALE_METADATA_ERRORS",
    "BrokerResponseError",
    "ClientClosedError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "KafkaError",
    "KafkaProtocolError",
    "NoOffsetForPartitionError",
    "RequestTimedOutError",
    "UnsupportedVersionError",
]

#: Partition errors that mean the client's view of leadership is out of date: the leader must
#: be looked up again (Kafka's InvalidMetadataException family) before a retry.
STALE_METADATA_ERRORS = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.KAFKA_STORAGE_ERROR,
        ErrorCode.REPLICA_NOT_AVAILABLE,
    }
)


class KafkaError(Exception):
    """Base class of the client's errors."""

    retriable = False


class BrokerResponseError(KafkaError):
    """A broker answered with a non-zero error code.

    :param error_code: the code from the response; codes unknown to ``ErrorCode`` stay ``int``.
    :param context: what was asked, for the message (e.g. ``"Produce gpu-3"``).
    :param message: the broker's ``error_message``, when the response carries one.
    """

    def __init__(self, error_code: int, context: str = "", message: str | None = None):
        try:
            code: ErrorCode | int = ErrorCode(error_code)
        except ValueError:
            code = error_code
        self.error_code = code
        self.context = context
        self.broker_message = message
        name = code.name if isinstance(code, ErrorCode) else "UNKNOWN"
        text = f"{name} ({int(code)})"
        if context:
            text = f"{context}: {text}"
        if message:
            text = f"{text}: {message}"
        super().__init__(text)

    @property
    def retriable(self) -> bool:  # type: ignore[override]
        """Kafka's classification of the code (``ErrorCode.retriable``)."""
        return isinstance(self.error_code, ErrorCode) and self.error_code.retriable


class ConnectionFailedError(KafkaError):
    """No connection could be made to a broker (refused, unreachable, DNS failure)."""

    retriable = True


class ConnectionLostError(KafkaError):
    """The connection closed while the request was waiting for its response.

    The request may or may not have reached the broker.
    """

    retriable = True


class RequestTimedOutError(KafkaError):
    """No response arrived within the request timeout; the connection is closed."""

    retriable = True


class KafkaProtocolError(KafkaError):
    """The broker sent bytes that do not follow the protocol (bad frame, header or body)."""


class UnsupportedVersionError(KafkaError):
    """The broker supports no version of an API that this client can speak."""


class ClientClosedError(KafkaError):
    """The producer, consumer or cluster was closed."""


class NoOffsetForPartitionError(KafkaError):
    """A partition has no position and the consumer's reset policy is ``"none"``."""
