"""The leader's end of one follower broker's replication stream (DESIGN §4), sans-IO.

A follower broker subscribes partitions; for each settled one (no divergence) the stream
knows the next offset to push. ``pushes(read)`` returns what to send now: for each partition
with data past its next offset, whole batches read from the log, as long as the bytes pushed
but not yet acknowledged stay within the follower's window (when nothing at all is in flight,
one batch goes however big, so a batch larger than the window cannot stall the stream).
``acked(partition, log_end_offset)`` frees the window up to that offset.
The glue calls ``pushes`` after every append and every ack, and sends a push without batches
when only the high watermark moved (``hw_pushes``).

Acks are cumulative: a log end offset acknowledges every push ending at or before it. A
follower that acknowledges less than was pushed (it truncated, or lost unflushed data in a
crash) must subscribe again; ``acked`` then reports the inconsistency.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["LeaderStream", "Push", "StreamOutOfStep"]

#: ``read(partition, offset, max_bytes, at_least_one)`` -> ``(batches, next_offset)``, or
#: ``None`` when the log holds nothing at ``offset`` yet, or when its first batch there is
#: bigger than ``max_bytes`` and not ``at_least_one``. ``batches`` are whole batches.
Reader = Callable[[Hashable, int, int, bool], tuple[bytes, int] | None]


class Push(NamedTuple):
    partition: Hashable
    records: bytes
    next_offset: int


class StreamOutOfStep(Exception):
    """An ack that does not match what was pushed (behind the subscription, or beyond what
    was sent): the follower must subscribe the partition again."""


@dataclass
class _Subscribed:
    next_offset: int
    #: (end offset, bytes) of each push not yet acknowledged, oldest first.
    in_flight: deque = field(default_factory=deque)
    acked_offset: int = 0
    sent_high_watermark: int = -1


class LeaderStream:
    """One follower's stream. ``window_bytes`` is what the follower said it accepts."""

    def __init__(self, follower_id: int, window_bytes: int):
        if window_bytes < 1:
            raise ValueError(f"window_bytes must be positive, not {window_bytes}")
        self.follower_id = follower_id
        self.window_bytes = window_bytes
        self._partitions: dict[Hashable, _Subscribed] = {}

    @property
    def in_flight_bytes(self) -> int:
        return sum(size for p in self._partitions.values() for _, size in p.in_flight)

    def subscribe(self, partition: Hashable, fetch_offset: int) -> None:
        """Push ``partition`` from ``fetch_offset`` (a subscription without divergence);
        anything in flight for it is forgotten."""
        self._partitions[partition] = _Subscribed(fetch_offset, acked_offset=fetch_offset)

    def unsubscribe(self, partition: Hashable) -> None:
        self._partitions.pop(partition, None)

    def subscribed(self, partition: Hashable) -> bool:
        return partition in self._partitions

    def pushes(self, read: Reader) -> list[Push]:
        """What to push now, within the window (see the module)."""
        in_flight = self.in_flight_bytes
        room = self.window_bytes - in_flight
        found = []
        for partition, state in self._partitions.items():
            if room <= 0:
                break
            got = read(partition, state.next_offset, room, in_flight == 0 and not found)
            if got is None:
                continue
            records, next_offset = got
            state.in_flight.append((next_offset, len(records)))
            state.next_offset = next_offset
            room -= len(records)
            found.append(Push(partition, records, next_offset))
        return found

    def hw_pushes(self, high_watermarks: dict[Hashable, int]) -> list[Hashable]:
        """The partitions whose high watermark moved since this follower last heard it;
        they are marked as heard (the caller sends each an empty push)."""
        moved = []
        for partition, hw in high_watermarks.items():
            state = self._partitions.get(partition)
            if state is not None and hw != state.sent_high_watermark:
                state.sent_high_watermark = hw
                moved.append(partition)
        return moved

    def heard(self, partition: Hashable, high_watermark: int) -> None:
        """A push carrying ``high_watermark`` went out for ``partition``."""
        state = self._partitions.get(partition)
        if state is not None:
            state.sent_high_watermark = high_watermark

    def acked(self, partition: Hashable, log_end_offset: int) -> None:
        """The follower's log ends at ``log_end_offset``: free the pushes it covers.

        :raises StreamOutOfStep: below what it had acknowledged (it lost data) or beyond
            what was pushed.
        """
        state = self._partitions.get(partition)
        if state is None:
            return  # an ack racing an unsubscribe
        if log_end_offset < state.acked_offset or log_end_offset > state.next_offset:
            raise StreamOutOfStep(
                f"follower {self.follower_id} acknowledged {partition} at {log_end_offset}; "
                f"acknowledged {state.acked_offset}, pushed up to {state.next_offset}"
            )
        state.acked_offset = log_end_offset
        while state.in_flight and state.in_flight[0][0] <= log_end_offset:
            state.in_flight.popleft()
