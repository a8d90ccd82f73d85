"""The sink service: fetch telemetry records, decode them, write them with their offsets.

Exactly once: every batch is written by ``TelemetryWriter.write_batches`` in one transaction
with each partition's next offset, fenced on the offset the partition's records start from.
A restart resumes from the committed offsets; a write that fails (the database went away) is
retried as it was; a fence that fails (another instance wrote the partition meanwhile) makes
that partition start again from the committed offset. So no record is written twice or
skipped, whatever crashes where.

Ownership: ``Membership`` heartbeats this instance and holds the advisory lock of each
partition it owns; every ``heartbeat_s`` the service compares what it owns with the fair
share (``tmq.sink.ownership``), releases the surplus after its write in progress, and locks
and adopts partitions it lacks (seeking to their committed offsets). When the membership
connection breaks, every lock is gone and so is every partition, until the next heartbeat.

Records that are not telemetry (not msgpack, invalid fields, no value) become dead letters,
written in the same transaction as the batch's samples: offsets still advance.

Batches: records are gathered until ``batch_records`` are waiting or the oldest waited
``linger_ms``; then the records of every partition are written in one transaction, each
partition's offset fenced.

Retention: with ``retention_days``, rows older than that are deleted every
``retention_interval_s`` in steps of ``retention_batch_rows`` (dropped chunks on TimescaleDB).

Stopping finishes the write in progress, releases the locks and leaves the group; records
fetched but not written are fetched again by whoever owns the partition next.

Operations: ``metrics`` (``SinkMetrics``) holds the instance's Prometheus registry;
``readiness()`` says whether it is consuming with the database reachable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from tmq.client import Cluster, Consumer, ConsumerRecord, KafkaError
from tmq.telemetry.codec import InvalidSample, decode_sample

from .membership import Membership, MembershipLostError
from .metrics import SinkMetrics
from .ownership import fair_share, plan
from .writer import DeadLetter, FencedError, PartitionBatch, TelemetryWriter

__all__ = ["SinkService", "SinkStats", "decode_records"]

_log = Logger()
_MAX_BACKOFF_S = 5.0
_DECODE_SLICE = 200


@dataclass
class SinkStats:
    """Running totals of one instance (for status lines, metrics and benchmarks)."""

    records: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    fenced: int = 0
    write_errors: int = 0
    write_seconds: float = 0.0


# The times the database and the API can hold: years 1 to 9999 (UTC), in µs since 1970.
_FIRST_TIME_US = -62_135_596_800_000_000
_LAST_TIME_US = 253_402_300_799_999_999


def decode_records(records: list[ConsumerRecord]) -> tuple[list, list[DeadLetter]]:
    """Samples of the records that are telemetry, and a dead letter for every other one
    (including a sample dated outside the years 1 to 9999, which no table could hold)."""
    samples = []
    dead = []
    for record in records:
        if record.value is None:
            dead.append(DeadLetter(record.offset, record.key, None, "record has no value"))
            continue
        try:
            sample = decode_sample(record.value)
        except InvalidSample as error:
            dead.append(DeadLetter(record.offset, record.key, record.value, str(error)))
            continue
        if not _FIRST_TIME_US <= sample.time_us <= _LAST_TIME_US:
            reason = f"time_us {sample.time_us} is outside the years 1 to 9999"
            dead.append(DeadLetter(record.offset, record.key, record.value, reason))
            continue
        samples.append(sample)
    return samples, dead


class SinkService(Service):
    """One sink instance.

    :param reactor: the reactor (its clock drives heartbeats, lingering and retention).
    :param cluster: the Kafka cluster client (the service closes it when it stops).
    :param writer: the bulk writer (started and closed by the service).
    :param membership: this instance's heartbeat and locks.
    :param batch_records: write once this many records are waiting.
    :param linger_ms: or once the oldest waiting record waited this long.
    :param heartbeat_s: how often ownership is reviewed.
    :param retention_days: delete telemetry older than this; ``None`` keeps everything.
    :param on_batch: called after each written batch with the stats (progress displays).
    """

    name = "sink"

    def __init__(
        self,
        reactor: Any,
        cluster: Cluster,
        writer: TelemetryWriter,
        membership: Membership,
        *,
        batch_records: int = 10_000,
        linger_ms: float = 200,
        heartbeat_s: float = 2.0,
        retention_days: float | None = None,
        retention_interval_s: float = 300.0,
        retention_batch_rows: int = 10_000,
        on_batch: Callable[[SinkStats], object] | None = None,
    ):
        self._reactor = reactor
        self._cluster = cluster
        self._writer = writer
        self._membership = membership
        self.group = membership.group
        self.topic = membership.topic
        self._batch_records = batch_records
        self._linger_s = linger_ms / 1000
        self._heartbeat_s = heartbeat_s
        self._retention_days = retention_days
        self._retention_interval_s = retention_interval_s
        self._retention_batch_rows = retention_batch_rows
        self._on_batch = on_batch
        self.stats = SinkStats()
        # why the database is not known to be reachable (None: the last use of it worked)
        self._database_error: str | None = "not connected yet"
        self._consumer = Consumer(
            cluster,
            auto_offset_reset="earliest",
            max_records=batch_records,
            prefetch_records=2 * batch_records,
            # a fetch round brings several batches' worth while the previous one is written
            max_partition_bytes=8 << 20,
        )
        self._expected: dict[int, int | None] = {}  # owned partition -> committed offset
        # owned partition -> generation, new at every seek; fetched, unwritten records carry it
        self._generation: dict[int, int] = {}
        self._next_generation = 0
        self._pending: dict[int, tuple[int, list[ConsumerRecord]]] = {}
        self._busy = DeferredLock()  # writes and ownership changes, one at a time
        self._running = False
        self._loop: Deferred | None = None
        self._ticker: LoopingCall | None = None
        self._retention: LoopingCall | None = None
        self.metrics = SinkMetrics(self)  # last: registering it reads the state above

    @property
    def owned(self) -> list[int]:
        """The partitions this instance owns now."""
        return sorted(self._expected)

    def lags(self) -> dict[int, int]:
        """Records behind the high watermark, per owned partition fetched at least once."""
        lags = {}
        for partition, expected in self._expected.items():
            highwater = self._consumer.highwater((self.topic, partition))
            if highwater is not None:
                lags[partition] = max(0, highwater - (expected or 0))
        return lags

    def lag(self) -> int | None:
        """Records behind the high watermarks of the owned partitions (``None`` until every
        owned partition has been fetched once)."""
        lags = self.lags()
        return sum(lags.values()) if len(lags) == len(self._expected) else None

    def readiness(self) -> tuple[bool, str]:
        """Ready while running with the write loop alive and the database reachable (its
        last use, a heartbeat or a write, worked); an instance owning no partition (more
        sinks than partitions) is ready too."""
        if not self._running:
            return False, "not running"
        if self._database_error is not None:
            return False, f"database: {self._database_error}"
        if self._loop is None or self._loop.called:
            return False, "the write loop is not running"
        return True, f"consuming {len(self._expected)} partitions of {self.topic}"

    # -- service ---------------------------------------------------------------------------

    def startService(self) -> Deferred:
        """Connect the writer, then start heartbeats, the write loop and retention; fires
        once running (fails if the database cannot be reached)."""
        super().startService()
        self._running = True
        started = self._writer.start()
        started.addCallback(self._started)
        return started

    def _started(self, _: Any) -> None:
        self._database_error = None
        self._ticker = LoopingCall(lambda: ensureDeferred(self._tick()))
        self._ticker.clock = self._reactor
        self._ticker.start(self._heartbeat_s, now=True).addErrback(self._crashed, "heartbeat")
        self._loop = ensureDeferred(self._consume())
        self._loop.addErrback(self._crashed, "write loop")
        if self._retention_days is not None:
            self._retention = LoopingCall(lambda: ensureDeferred(self._apply_retention()))
            self._retention.clock = self._reactor
            self._retention.start(self._retention_interval_s, now=True).addErrback(
                self._crashed, "retention"
            )

    def stopService(self) -> Deferred:
        """Finish the write in progress, release the partitions, leave; fires when done."""
        super().stopService()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        self._running = False
        for loop in (self._ticker, self._retention):
            if loop is not None and loop.running:
                loop.stop()
        self._consumer.close()
        if self._loop is not None:
            await self._loop
        async with self._busy:
            self._expected.clear()
            self._generation.clear()
        try:
            await self._membership.leave()
        except Exception as error:  # the locks die with the connection anyway
            _log.warn("sink: leaving the group: {error}", error=error)
        await self._writer.close()
        self._cluster.close()

    def _crashed(self, failure, what: str) -> None:
        _log.failure("sink: the {what} stopped", failure, what=what)

    # -- ownership -------------------------------------------------------------------------

    async def _tick(self) -> None:
        try:
            live = await self._membership.heartbeat()
            self._database_error = None
            info = await self._cluster.topic(self.topic)
        except MembershipLostError as error:
            self._database_error = str(error)
            self._lose_everything(error)
            return
        except KafkaError as error:
            _log.warn("sink: topic {topic}: {error}", topic=self.topic, error=error)
            return
        except Exception as error:
            self._database_error = str(error)
            _log.warn("sink: heartbeat failed: {error}", error=error)
            return
        share = fair_share(info.partition_count, live)
        change = plan(self._expected, info.partition_count, share, self._membership.instance_id)
        if not change.release and len(self._expected) >= share:
            return
        async with self._busy:
            if not self._running:
                return
            try:
                for partition in change.release:
                    await self._release(partition)
                for partition in change.acquire:
                    if len(self._expected) >= share:
                        break
                    if await self._membership.try_lock(partition):
                        await self._adopt_or_unlock(partition)
            except MembershipLostError as error:
                self._lose_everything(error)
            except Exception as error:  # the database is away: try again next heartbeat
                _log.warn("sink: changing partitions failed: {error}", error=error)

    async def _adopt_or_unlock(self, partition: int) -> None:
        """Adopt a partition whose lock was just taken; if that fails, give the lock back
        (an unowned lock would keep the partition from every instance)."""
        try:
            await self._adopt(partition)
        except MembershipLostError:
            raise
        except Exception:
            await self._membership.unlock(partition)
            raise

    async def _adopt(self, partition: int) -> None:
        committed = await self._writer.load_offsets(self.group, self.topic)
        offset = committed.get(partition)
        self._expected[partition] = offset
        self._reassign()
        self._seek(partition, offset)
        _log.info(
            "sink {instance}: took {topic}[{partition}] at offset {offset}",
            instance=self._membership.instance_id,
            topic=self.topic,
            partition=partition,
            offset="the beginning" if offset is None else offset,
        )

    async def _release(self, partition: int) -> None:
        self._expected.pop(partition, None)
        self._generation.pop(partition, None)
        self._pending.pop(partition, None)
        self._reassign()
        await self._membership.unlock(partition)
        _log.info(
            "sink {instance}: released {topic}[{partition}]",
            instance=self._membership.instance_id,
            topic=self.topic,
            partition=partition,
        )

    def _lose_everything(self, error: Exception) -> None:
        if self._expected:
            _log.warn("sink: {error}; giving up every partition", error=error)
        self._expected.clear()
        self._generation.clear()
        self._pending.clear()
        self._reassign()

    def _seek(self, partition: int, offset: int | None) -> None:
        """Read ``partition`` from ``offset`` (its beginning if ``None``), expecting it to be
        the committed offset; what was fetched before belongs to an older generation."""
        self._expected[partition] = offset
        self._next_generation += 1
        self._generation[partition] = self._next_generation
        self._pending.pop(partition, None)
        if offset is None:
            self._consumer.seek_to_beginning((self.topic, partition))
        else:
            self._consumer.seek((self.topic, partition), offset)

    def _reassign(self) -> None:
        self._consumer.assign([(self.topic, p) for p in sorted(self._expected)])

    # -- writing ---------------------------------------------------------------------------

    async def _consume(self) -> None:
        """Gather records into batches and decode them while the previous batch is being
        written (one write at a time, in order)."""
        first_at = 0.0
        writing: Deferred | None = None
        while self._running:
            count = sum(len(records) for _, records in self._pending.values())
            wait = self._linger_s - (self._reactor.seconds() - first_at) if count else 0.5
            try:
                records = await self._consumer.poll(max(wait, 0) * 1000)
            except KafkaError as error:
                _log.warn("sink: fetch failed: {error}", error=error)
                await deferLater(self._reactor, 1.0, lambda: None)
                continue
            if records and not count:
                first_at = self._reactor.seconds()
            self._gather(records)
            count += len(records)
            lingered = self._reactor.seconds() - first_at >= self._linger_s
            if count >= self._batch_records or (count and lingered):
                batches, self._pending = self._pending, {}
                decoded = [
                    (partition, generation, records, *await self._decode(records))
                    for partition, (generation, records) in batches.items()
                ]
                if writing is not None:
                    await writing
                writing = ensureDeferred(self._write_all(decoded))
        if writing is not None:
            await writing

    async def _decode(self, records: list[ConsumerRecord]) -> tuple[list, list[DeadLetter]]:
        """``decode_records`` in slices, letting the reactor run in between: the write in
        flight sends its next statement without waiting for the whole batch to decode."""
        samples: list = []
        dead: list[DeadLetter] = []
        for first in range(0, len(records), _DECODE_SLICE):
            more, letters = decode_records(records[first : first + _DECODE_SLICE])
            samples += more
            dead += letters
            await deferLater(self._reactor, 0, lambda: None)
        return samples, dead

    def _gather(self, records: list[ConsumerRecord]) -> None:
        """Add polled records to their partition's pending batch, which belongs to the
        partition's current generation (records of a partition no longer owned are
        dropped)."""
        pending = self._pending
        for record in records:
            partition = record.partition
            generation = self._generation.get(partition)
            if generation is None:
                continue
            entry = pending.get(partition)
            if entry is None or entry[0] != generation:
                entry = pending[partition] = (generation, [])
            entry[1].append(record)

    async def _write_all(self, decoded: list[tuple]) -> None:
        """Write the partitions' batches in one transaction (``write_batches``); a fence
        that fails sends its partition back to the committed offset and the others are
        written without it; other failures are retried with a backoff."""
        async with self._busy:
            # A batch fetched before a seek (a fence, the partition released, or taken
            # again) belongs to an old generation: its records are fetched again.
            ready = [entry for entry in decoded if self._generation.get(entry[0]) == entry[1]]
            backoff = 0.1
            while ready and self._running:
                batches = [self._batch_of(*entry) for entry in ready]
                started = time.perf_counter()
                try:
                    result = await self._writer.write_batches(self.group, self.topic, batches)
                except FencedError as error:
                    self.stats.fenced += 1
                    _log.warn("sink: {error}; resuming from there", error=error)
                    self._seek(error.partition, error.actual)
                    ready = [entry for entry in ready if entry[0] != error.partition]
                    continue
                except Exception as error:
                    self.stats.write_errors += 1
                    self._database_error = str(error)
                    _log.warn(
                        "sink: writing {topic} failed ({error}); retrying in {backoff:.1f} s",
                        topic=self.topic,
                        error=error,
                        backoff=backoff,
                    )
                    await deferLater(self._reactor, backoff, lambda: None)
                    backoff = min(backoff * 2, _MAX_BACKOFF_S)
                    # partitions lost meanwhile (the membership connection broke) are not ours
                    ready = [entry for entry in ready if entry[0] in self._expected]
                    continue
                self._written(ready, batches, result, time.perf_counter() - started)
                return

    def _batch_of(self, partition, _generation, records, samples, dead) -> PartitionBatch:
        expected = self._expected[partition]
        if expected is not None and records[0].offset > expected:
            _log.warn(
                "sink: {topic}[{partition}] offsets {first} to {last} are no longer in the "
                "log (broker retention); skipped",
                topic=self.topic,
                partition=partition,
                first=expected,
                last=records[0].offset - 1,
            )
        return PartitionBatch(partition, expected, records[-1].offset + 1, samples, dead)

    def _written(self, ready, batches, result, seconds: float) -> None:
        self._database_error = None
        self.metrics.batch_duration.observe(seconds)
        stats = self.stats
        stats.write_seconds += seconds
        stats.inserted += result.inserted
        stats.duplicates += result.duplicates
        stats.dead_letters += result.dead_letters
        stats.batches += 1
        for (partition, _, records, _, dead), batch in zip(ready, batches, strict=True):
            self._expected[partition] = batch.next_offset
            stats.records += len(records)
            if dead:
                _log.warn(
                    "sink: {count} records of {topic}[{partition}] dead-lettered, e.g. "
                    "offset {offset}: {reason}",
                    count=len(dead),
                    topic=self.topic,
                    partition=partition,
                    offset=dead[0].offset,
                    reason=dead[0].reason,
                )
        if self._on_batch is not None:
            self._on_batch(stats)

    # -- retention -------------------------------------------------------------------------

    async def _apply_retention(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(days=self._retention_days or 0)
        try:
            removed = await self._writer.delete_older_than(cutoff, self._retention_batch_rows)
        except Exception as error:
            _log.warn("sink: retention failed: {error}", error=error)
            return
        if removed:
            _log.info(
                "sink: retention removed {rows} rows before {cutoff}",
                rows=removed,
                cutoff=cutoff.isoformat(),
            )
