"""Publishing samples: each one a record keyed by its GPU UUID, counted, paced and bounded.

``Publisher`` takes what a source yields (``Sample``s and ``RowError``s, in chunks), stamps
each sample with the time it is published (``timestamps="now"``, for replaying a capture as
live data; a series, one GPU's one metric, never gets the same time twice: a sample stamped
within the microsecond of its series' previous one gets that time plus 1 µs) or keeps its own
time (``"source"``), and produces it with the bundled client:
key = GPU UUID, value = ``tmq.telemetry.codec``'s msgpack map, record timestamp = the
sample's time in milliseconds. ``RowError``s are counted and handed to ``on_reject``.

Flow control: at most ``window_bytes`` of records wait for acknowledgement (the producer's
``buffered_below``), and with ``rate`` no more than that many samples leave per second.
Every record's outcome is counted; ``finish`` waits for all of them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.task import deferLater

from tmq.client import Producer

from .codec import encode_sample, record_key
from .model import RowError, Sample

__all__ = ["PublishStats", "Publisher"]

_KEYS_MAX = 65536  # record keys kept (one per GPU), and series stamps before pruning


@dataclass
class PublishStats:
    """Counts of one publisher.

    :ivar read: rows (or scrape lines) read, good and bad.
    :ivar sent: samples handed to the producer.
    :ivar delivered: samples acknowledged by the broker.
    :ivar rejected: bad rows.
    :ivar failed: samples the producer gave up on.
    :ivar first_error: a delivery error, in words (the latest when ``update`` first saw one).
    """

    read: int = 0
    sent: int = 0
    delivered: int = 0
    rejected: int = 0
    failed: int = 0
    first_error: str | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)

    def rate(self) -> float:
        """Samples delivered per second since the start."""
        elapsed = time.monotonic() - self.started
        return self.delivered / elapsed if elapsed > 0 else 0.0


class Publisher:
    """Produces samples to ``topic``.

    :param reactor: the reactor (its clock paces ``rate``).
    :param producer: the bundled client's producer (not closed here).
    :param timestamps: ``"now"`` to stamp samples with the publishing time, ``"source"`` to
        keep theirs.
    :param rate: samples per second at most; ``None`` for as fast as the broker takes them.
    :param window_bytes: how much may wait for acknowledgement.
    :param on_reject: called with each ``RowError``.
    """

    def __init__(
        self,
        reactor: Any,
        producer: Producer,
        topic: str,
        *,
        timestamps: str = "now",
        rate: float | None = None,
        window_bytes: int = 4 << 20,
        on_reject: Callable[[RowError], object] | None = None,
    ):
        if timestamps not in ("now", "source"):
            raise ValueError(f"timestamps must be 'now' or 'source', not {timestamps!r}")
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0, not {rate}")
        self._reactor = reactor
        self._producer = producer
        self.topic = topic
        self._stamp_now = timestamps == "now"
        self._rate = rate
        self._window = window_bytes
        self._on_reject = on_reject
        self.stats = PublishStats()
        self._counts_before = (producer.delivered_count, producer.failed_count)
        # series -> its last time_us; bounded: pruned of past stamps once it is large
        self._last_stamp: dict[tuple[str, str], int] = {}
        self._keys: dict[str, bytes] = {}  # uuid -> record key (bounded)
        self._paced_since: float | None = None
        self._paced_count = 0

    async def publish(self, items: Iterable[Sample | RowError]) -> None:
        """Produce the samples among ``items`` (a chunk from a source); returns once they are
        queued within the window and the rate."""
        stats = self.stats
        produce = self._producer.produce
        now_us = int(self._reactor.seconds() * 1_000_000)
        keys = self._keys
        if len(self._last_stamp) > _KEYS_MAX:
            # a stamp from before now cannot meet a new one (never below now): forget it
            self._last_stamp = {s: t for s, t in self._last_stamp.items() if t >= now_us}
        sent_before = stats.sent
        for item in items:
            stats.read += 1
            if type(item) is RowError:
                stats.rejected += 1
                if self._on_reject is not None:
                    self._on_reject(item)
                continue
            if self._stamp_now:
                item = item._replace(time_us=self._stamp(item, now_us))
            key = keys.get(item.uuid)
            if key is None:
                if len(keys) >= _KEYS_MAX:
                    keys.clear()
                key = keys[item.uuid] = record_key(item)
            produce(self.topic, encode_sample(item), key=key, timestamp_ms=item.time_us // 1000)
            stats.sent += 1
        await self._pace(stats.sent - sent_before)
        if self._producer.buffered_bytes > self._window:
            await self._producer.buffered_below(self._window * 3 // 4)

    def _stamp(self, sample: Sample, now_us: int) -> int:
        series = (sample.uuid, sample.metric)
        previous = self._last_stamp.get(series)
        stamp = now_us if previous is None or now_us > previous else previous + 1
        self._last_stamp[series] = stamp
        return stamp

    async def finish(self) -> PublishStats:
        """Wait until every sample sent is acknowledged or failed."""
        await self._producer.flush()
        self.update()
        return self.stats

    def update(self) -> PublishStats:
        """Bring ``stats.delivered`` and ``stats.failed`` up to date from the producer's
        counts (the outcomes of this publisher's records since it was made)."""
        producer, stats = self._producer, self.stats
        stats.delivered = producer.delivered_count - self._counts_before[0]
        stats.failed = producer.failed_count - self._counts_before[1]
        if stats.failed and stats.first_error is None:
            stats.first_error = str(producer.last_error)
        return stats

    async def _pace(self, count: int) -> None:
        if self._rate is None or not count:
            return
        now = self._reactor.seconds()
        if self._paced_since is None:
            self._paced_since = now
        self._paced_count += count
        ahead = self._paced_count / self._rate - (now - self._paced_since)
        if ahead > 0:
            await deferLater(self._reactor, ahead, lambda: None)
        elif ahead < -1:  # fell behind (a slow source, a pause): no burst to catch up
            self._paced_since, self._paced_count = now, 0
