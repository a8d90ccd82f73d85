"""Per-log configuration with Kafka's key names (``segment.bytes``, ``flush.policy``, ...).

``LogConfig.from_properties`` turns ``{"segment.bytes": "1048576", ...}`` (from ``--set``, a
topic's configs or CreateTopics) into a validated, frozen config; an unknown key or a bad value
raises ``ValueError`` naming the key and what it accepts.
"""

from __future__ import annotations

import dataclasses
import enum

__all__ = ["FlushPolicy", "LogConfig"]

_DAY_MS = 24 * 3600 * 1000


class FlushPolicy(enum.Enum):
    """When appends are fsynced.

    ``always``: before an append is acknowledged (group-committed); ``interval``: every
    ``flush.ms``; ``never``: only when a segment rolls and at shutdown.
    """

    ALWAYS = "always"
    INTERVAL = "interval"
    NEVER = "never"


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """Configuration of one partition log (defaults per DESIGN §3)."""

    segment_bytes: int = 128 * 1024 * 1024
    segment_ms: int = 7 * _DAY_MS
    segment_index_bytes: int = 10 * 1024 * 1024
    index_interval_bytes: int = 4096
    retention_ms: int = 7 * _DAY_MS
    retention_bytes: int = -1
    flush_policy: FlushPolicy = FlushPolicy.ALWAYS
    flush_ms: int = 1000
    max_message_bytes: int = 1024 * 1024 + 12

    #: Kafka key -> (field, smallest value allowed).
    KEYS = {
        "segment.bytes": ("segment_bytes", 14),
        "segment.ms": ("segment_ms", 1),
        "segment.index.bytes": ("segment_index_bytes", 8),
        "index.interval.bytes": ("index_interval_bytes", 0),
        "retention.ms": ("retention_ms", -1),
        "retention.bytes": ("retention_bytes", -1),
        "flush.policy": ("flush_policy", None),
        "flush.ms": ("flush_ms", 1),
        "max.message.bytes": ("max_message_bytes", 0),
    }

    @property
    def max_index_entries(self) -> int:
        """Offset-index entries a segment may hold before it rolls."""
        return self.segment_index_bytes // 8

    def with_properties(self, properties: dict[str, str]) -> LogConfig:
        """A copy with the Kafka-named ``properties`` applied.

        :raises ValueError: an unknown key or a value out of range, naming both.
        """
        changes = {}
        for key, text in properties.items():
            if key not in self.KEYS:
                raise ValueError(f"unknown log config {key!r}; known: {', '.join(self.KEYS)}")
            name, minimum = self.KEYS[key]
            if name == "flush_policy":
                try:
                    changes[name] = FlushPolicy(text)
                except ValueError:
                    allowed = ", ".join(p.value for p in FlushPolicy)
                    raise ValueError(f"{key} must be one of {allowed}, not {text!r}") from None
                continue
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"{key} must be an integer, not {text!r}") from None
            if value < minimum:
                raise ValueError(f"{key} must be at least {minimum}, not {value}")
            changes[name] = value
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_properties(cls, properties: dict[str, str]) -> LogConfig:
        return cls().with_properties(properties)
