"""Errors the log reports to its callers, each with the Kafka error code a broker answers."""

from __future__ import annotations

from tmq.protocol.errors import ErrorCode

__all__ = [
    "CorruptRecord",
    "InvalidRecord",
    "KafkaStorageError",
    "LogError",
    "MessageTooLarge",
    "OffsetOutOfRange",
    "RecordListTooLarge",
    "StaleEpoch",
]


class LogError(Exception):
    """Base class; ``error_code`` is what a Kafka client is told."""

    error_code = ErrorCode.UNKNOWN_SERVER_ERROR


class CorruptRecord(LogError):
    """A batch whose CRC does not match (or whose header does not read)."""

    error_code = ErrorCode.CORRUPT_MESSAGE


class InvalidRecord(LogError):
    """A batch that breaks a rule of RecordBatch v2 as a broker accepts it."""

    error_code = ErrorCode.INVALID_RECORD


class MessageTooLarge(LogError):
    """A batch above ``max.message.bytes``."""

    error_code = ErrorCode.MESSAGE_TOO_LARGE


class RecordListTooLarge(LogError):
    """A batch larger than a whole segment (``segment.bytes``)."""

    error_code = ErrorCode.RECORD_LIST_TOO_LARGE


class OffsetOutOfRange(LogError):
    """A read below the log start offset or above the log end offset."""

    error_code = ErrorCode.OFFSET_OUT_OF_RANGE


class KafkaStorageError(LogError):
    """The disk failed (a write, fsync or read raised ``OSError``); nothing partial remains."""

    error_code = ErrorCode.KAFKA_STORAGE_ERROR


class StaleEpoch(LogError):
    """Data or an epoch from a leader epoch older than the log's latest (a deposed leader)."""

    error_code = ErrorCode.FENCED_LEADER_EPOCH
