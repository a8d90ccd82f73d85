"""Bulk writers: a batch of samples, its dead letters and its offset, in one transaction.

Two writers with one interface (``TelemetryWriter``) and the same semantics, held to the same
contract tests:

``TxPostgresWriter``
    txpostgres (psycopg2 in asynchronous mode) on the reactor, no thread. The samples travel
    as one array literal per column and are inserted from ``unnest``.
``CopyWriter``
    psycopg 3 on an injected thread pool. The samples are sent as one binary COPY, built
    here (``_copy_data``), straight into ``telemetry``; when that meets a stored sample, the
    same bytes go into a temporary staging table and are inserted from it.

One ``write_batch`` is one transaction on one connection (``_batch_steps``, shared by both):

1. the offset fence: ``UPDATE consumer_offsets SET next_offset = <next> WHERE … AND
   next_offset = <expected>``, or, when ``expected_offset`` is ``None`` (no offset committed
   yet), ``INSERT … ON CONFLICT DO NOTHING`` of the row. No row changed: another writer moved
   the offset (or claimed the partition first; the loser of two concurrent inserts waits for
   the winner and then changes nothing); the transaction rolls back and ``FencedError`` says
   where the offset is;
2. the ``gpus`` upsert, which answers the ``gpus.id`` of every GPU of the batch: known GPUs
   are updated, new ones inserted (in uuid order; an id is drawn only for a GPU not found,
   so ids are not used up by updates). ``first_seen`` only moves back, ``last_seen`` only
   forward, and the descriptive columns (hostname, device, index, model, labels; the driver
   when known) come from the newest sample;
3. the samples, keyed by those ids: first a plain insert in a savepoint (the cheap, common
   case), and when it meets a unique violation, ``INSERT … ON CONFLICT DO NOTHING``, so
   samples already stored and samples repeated within the batch are absorbed, never an
   error;
4. the dead letters, with their raw bytes and reason.

Two sinks updating the same GPU at once (only when a GPU's records reach two partitions
owned by different instances) may lock its row in opposite orders; PostgreSQL then aborts
one transaction as a deadlock, which the service retries like any failed write.

The transaction runs at READ COMMITTED whatever the server's default, which is what makes the
fence wait for a concurrent writer and then fail instead of raising a serialization error.

A writer serialises its own calls, in the order they are made. A connection found dead (a
psycopg ``OperationalError`` or ``InterfaceError``, or the server closing it while idle) is
dropped and the next call connects again; the failed call's transaction rolled back, so the
caller retries it as it was. One case is ambiguous, as with any database: a connection lost
while the ``COMMIT`` was under way may have committed. Retrying settles it: a ``FencedError``
whose ``actual`` is the batch's own ``next_offset`` means the first attempt was written.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import psycopg
import psycopg2
import psycopg2.errors
from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks, succeed
from twisted.internet.main import CONNECTION_LOST
from twisted.internet.threads import deferToThreadPool
from txpostgres.txpostgres import Connection

from tmq.telemetry.model import Sample

__all__ = [
    "CopyWriter",
    "DeadLetter",
    "FencedError",
    "PartitionBatch",
    "TelemetryWriter",
    "TxPostgresWriter",
    "WriteResult",
]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the sink could not accept: its offset, raw key and value, and why."""

    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


@dataclass(frozen=True, slots=True)
class PartitionBatch:
    """One partition's share of a ``write_batches`` call: the records covering offsets
    ``[expected_offset, next_offset)`` (``expected_offset`` ``None``: no committed offset
    yet), as samples and dead letters."""

    partition: int
    expected_offset: int | None
    next_offset: int
    samples: Sequence[Sample]
    dead_letters: Sequence[DeadLetter] = ()


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one ``write_batch`` (or ``write_batches``) did.

    :ivar inserted: telemetry rows added.
    :ivar duplicates: samples absorbed: already stored, or repeated within the batch.
    :ivar dead_letters: dead letters stored.
    :ivar next_offset: the offset now committed for the partition; ``None`` for a write of
        several partitions.
    """

    inserted: int
    duplicates: int
    dead_letters: int
    next_offset: int | None


class FencedError(Exception):
    """The committed offset is not the one the batch expected: another writer moved it (or
    claimed the partition first). Nothing of the batch was written.

    :ivar actual: the offset committed now; ``None`` when none is.
    """

    def __init__(
        self, group: str, topic: str, partition: int, expected: int | None, actual: int | None
    ):
        super().__init__(
            f"offset fence of group {group!r}, {topic}[{partition}]: expected "
            f"{'no offset' if expected is None else expected}, found "
            f"{'no offset' if actual is None else actual}"
        )
        self.group = group
        self.topic = topic
        self.partition = partition
        self.expected = expected
        self.actual = actual


class TelemetryWriter(Protocol):
    """The writer interface the sink service uses."""

    def start(self) -> Deferred[None]:
        """Connect; fails if the database cannot be reached."""

    def close(self) -> Deferred[None]:
        """Wait for the call in progress, then disconnect."""

    def write_batch(
        self,
        group: str,
        topic: str,
        partition: int,
        expected_offset: int | None,
        next_offset: int,
        samples: Sequence[Sample],
        dead_letters: Sequence[DeadLetter] = (),
    ) -> Deferred[WriteResult]:
        """Write the batch covering offsets ``[expected_offset, next_offset)``; fails with
        ``FencedError`` (nothing written) when the committed offset is not
        ``expected_offset`` (``None``: no committed offset)."""

    def write_batches(
        self, group: str, topic: str, batches: Sequence[PartitionBatch]
    ) -> Deferred[WriteResult]:
        """``write_batch`` for several partitions in one transaction (their offsets fenced
        in partition order): all of it is written, or none; ``FencedError`` names the first
        partition whose fence failed."""

    def load_offsets(self, group: str, topic: str) -> Deferred[dict[int, int]]:
        """The committed next offset of every partition of ``topic`` that has one."""

    def delete_older_than(self, cutoff: datetime, batch_rows: int = 10_000) -> Deferred[int]:
        """Retention: remove telemetry older than ``cutoff`` in steps of at most
        ``batch_rows`` rows, each its own transaction (whole chunks on TimescaleDB, counted by
        the planner's estimate); fires with the number of rows removed."""


class _OnePartition:
    """``write_batch`` as the one-partition case of the writer's ``write_batches``."""

    def write_batch(
        self,
        group: str,
        topic: str,
        partition: int,
        expected_offset: int | None,
        next_offset: int,
        samples: Sequence[Sample],
        dead_letters: Sequence[DeadLetter] = (),
    ) -> Deferred[WriteResult]:
        batch = PartitionBatch(partition, expected_offset, next_offset, samples, dead_letters)
        return self.write_batches(group, topic, [batch])

    def write_batches(
        self, group: str, topic: str, batches: Sequence[PartitionBatch]
    ) -> Deferred[WriteResult]:
        raise NotImplementedError


# -- SQL shared by both writers -------------------------------------------------------------

# Microseconds since the epoch to timestamptz, exactly (in integer microseconds; the product
# is exact while |µs| < 2**53, i.e. within 285 years of 1970).
_EPOCH_US = "timestamptz 'epoch' + {} * interval '1 microsecond'"

_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
_ATTEMPT = "SAVEPOINT tmq_attempt; {}; RELEASE SAVEPOINT tmq_attempt"
_FENCE_ADVANCE = """
    UPDATE consumer_offsets SET next_offset = %s, updated_at = now()
    WHERE consumer_group = %s AND topic = %s AND partition = %s AND next_offset = %s
"""
_FENCE_CLAIM = """
    INSERT INTO consumer_offsets (next_offset, consumer_group, topic, partition)
    VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING
"""
_CURRENT_OFFSET = """
    SELECT next_offset FROM consumer_offsets
    WHERE consumer_group = %s AND topic = %s AND partition = %s
"""
_LOAD_OFFSETS = """
    SELECT partition, next_offset FROM consumer_offsets
    WHERE consumer_group = %s AND topic = %s
"""
# The newest sample's descriptive columns win; ``{new}`` is the incoming row.
_NEWEST = """
        first_seen = least(g.first_seen, {new}.first_seen),
        last_seen = greatest(g.last_seen, {new}.last_seen),
        hostname = CASE WHEN {new}.last_seen >= g.last_seen
                        THEN {new}.hostname ELSE g.hostname END,
        device = CASE WHEN {new}.last_seen >= g.last_seen
                      THEN {new}.device ELSE g.device END,
        gpu_index = CASE WHEN {new}.last_seen >= g.last_seen
                         THEN {new}.gpu_index ELSE g.gpu_index END,
        model = CASE WHEN {new}.last_seen >= g.last_seen
                     THEN {new}.model ELSE g.model END,
        labels = CASE WHEN {new}.last_seen >= g.last_seen
                      THEN {new}.labels ELSE g.labels END,
        driver = CASE WHEN {new}.last_seen >= g.last_seen
                      THEN coalesce({new}.driver, g.driver)
                      ELSE coalesce(g.driver, {new}.driver) END
"""
_GPU_COLUMNS = "uuid, hostname, device, gpu_index, model, driver, labels, first_seen, last_seen"
# Answers (uuid, id) for every GPU of the batch. The INSERT takes only the GPUs the UPDATE
# did not find: its ON CONFLICT is for a GPU another transaction added meanwhile.
_UPSERT_GPUS = f"""
    WITH s AS (
        SELECT uuid, hostname, device, gpu_index, model, NULLIF(driver, '') AS driver, labels,
               {_EPOCH_US.format("first_us")} AS first_seen,
               {_EPOCH_US.format("last_us")} AS last_seen
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::integer[], %s::text[],
                    %s::text[], %s::jsonb[], %s::bigint[], %s::bigint[])
             AS s(uuid, hostname, device, gpu_index, model, driver, labels, first_us, last_us)
    ), known AS (
        UPDATE gpus AS g SET {_NEWEST.format(new="s")}
        FROM s WHERE g.uuid = s.uuid
        RETURNING g.uuid, g.id
    ), added AS (
        INSERT INTO gpus AS g ({_GPU_COLUMNS})
        SELECT {_GPU_COLUMNS} FROM s WHERE s.uuid NOT IN (SELECT uuid FROM known)
        ORDER BY uuid
        ON CONFLICT (uuid) DO UPDATE SET {_NEWEST.format(new="EXCLUDED")}
        RETURNING g.uuid, g.id
    )
    SELECT uuid, id FROM known UNION ALL SELECT uuid, id FROM added
"""
_INSERT_DEAD_LETTERS = """
    INSERT INTO dead_letters
        (consumer_group, topic, partition, record_offset, key, value, reason)
    SELECT %s, %s, %s, record_offset, key, value, reason
    FROM unnest(%s::bigint[], %s::bytea[], %s::bytea[], %s::text[])
         AS d(record_offset, key, value, reason)
"""
_RETENTION_STEP = "SELECT tmq_delete_telemetry_before(%s, %s)"


# -- the transaction, as steps both writers drive -------------------------------------------


class Statement(NamedTuple):
    sql: str
    params: Sequence[Any] | None = None


class Copy(NamedTuple):
    """A ``COPY … FROM STDIN (FORMAT BINARY)`` sending ``data``: the whole binary COPY
    stream, signature to trailer."""

    sql: str
    data: bytes


class Attempt(NamedTuple):
    """``step`` run in a savepoint: a unique violation rolls back to the savepoint and
    answers a row count of -1 instead of failing the transaction (on success the row count
    answered is not the step's)."""

    step: Statement | Copy


class TelemetryRows(NamedTuple):
    """How a writer stores a batch's samples: ``attempt`` inserts every one of them or fails
    with a unique violation; then ``fallback`` inserts those not stored yet, and the row
    count of its last step is how many it inserted."""

    attempt: Statement | Copy
    fallback: Sequence[Statement | Copy]


class Outcome(NamedTuple):
    rowcount: int
    rows: list[tuple] | None


Step = Statement | Copy | Attempt
BatchSteps = Generator[Step, Outcome, WriteResult]


def _checked(batches: Sequence[PartitionBatch]) -> list[PartitionBatch]:
    """The batches in partition order, each checked; at least one, partitions distinct."""
    if not batches:
        raise ValueError("write_batches needs at least one partition batch")
    ordered = sorted(batches, key=lambda batch: batch.partition)
    if len({batch.partition for batch in ordered}) != len(ordered):
        raise ValueError("a partition appears twice")
    for batch in ordered:
        expected, next_offset = batch.expected_offset, batch.next_offset
        if expected is not None and not 0 <= expected < next_offset:
            raise ValueError(f"next_offset {next_offset} must follow expected {expected}")
        if next_offset < 0:
            raise ValueError(f"next_offset {next_offset} is negative")
    return ordered


def _batch_steps(
    group: str,
    topic: str,
    batches: list[PartitionBatch],
    telemetry: Callable[[Sequence[Sample], Mapping[str, int]], TelemetryRows],
) -> BatchSteps:
    """The statements of one ``write_batches`` transaction. ``telemetry(samples, gpu_ids)``
    says how to store the samples, given the ``gpus.id`` of each uuid."""
    for batch in batches:
        key = (group, topic, batch.partition)
        if batch.expected_offset is None:
            fence = yield Statement(_FENCE_CLAIM, (batch.next_offset, *key))
        else:
            fence = yield Statement(
                _FENCE_ADVANCE, (batch.next_offset, *key, batch.expected_offset)
            )
        if fence.rowcount != 1:
            current = (yield Statement(_CURRENT_OFFSET, key)).rows
            raise FencedError(*key, batch.expected_offset, current[0][0] if current else None)
    samples = [sample for batch in batches for sample in batch.samples]
    inserted = 0
    if samples:
        gpu_ids = dict((yield Statement(_UPSERT_GPUS, _gpu_columns(samples))).rows)
        rows = telemetry(samples, gpu_ids)
        outcome = yield Attempt(rows.attempt)
        if outcome.rowcount < 0:  # some sample is stored already, or repeated in the batch
            for step in rows.fallback:
                outcome = yield step
            inserted = outcome.rowcount
        else:
            inserted = len(samples)  # a plain insert writes every row or fails
    dead_letters = 0
    for batch in batches:
        letters = batch.dead_letters
        if letters:
            dead_letters += len(letters)
            yield Statement(_INSERT_DEAD_LETTERS, (
                group, topic, batch.partition,
                [letter.offset for letter in letters],
                [letter.key for letter in letters],
                [letter.value for letter in letters],
                [letter.reason for letter in letters],
            ))  # fmt: skip
    next_offset = batches[0].next_offset if len(batches) == 1 else None
    return WriteResult(inserted, len(samples) - inserted, dead_letters, next_offset)


def _text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of ``values``, every element quoted (a batch repeats its
    uuids and metric names, so each distinct value is escaped once)."""
    quoted: dict[str, str] = {}
    parts = []
    for value in values:
        literal = quoted.get(value)
        if literal is None:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            literal = quoted[value] = f'"{escaped}"'
        parts.append(literal)
    return "{" + ",".join(parts) + "}"


def _number_array(values: Iterable[float | int | None]) -> str:
    """A PostgreSQL array literal of numbers; ``None`` is NULL (``repr`` of a float round-
    trips, and ``nan``/``inf`` are accepted by ``float8in``)."""
    return "{" + ",".join("NULL" if value is None else repr(value) for value in values) + "}"


def _gpu_columns(samples: Sequence[Sample]) -> list[str]:
    """The ``gpus`` upsert's columns, as array literals: one row per GPU of the batch, by
    uuid; the descriptive columns from its newest sample, the labels without the per-metric
    ``__name__``. (Literals, built here, are faster than either driver's list adaptation.)"""
    first: dict[str, int] = {}
    newest: dict[str, Sample] = {}
    for sample in samples:  # by index: this runs for every row
        uuid, time_us = sample[4], sample[0]
        known = newest.get(uuid)
        if known is None:
            first[uuid] = time_us
            newest[uuid] = sample
        elif time_us >= known[0]:
            newest[uuid] = sample
        elif time_us < first[uuid]:
            first[uuid] = time_us
    gpus = [newest[uuid] for uuid in sorted(newest)]
    return [
        _text_array([gpu.uuid for gpu in gpus]),
        _text_array([gpu.hostname for gpu in gpus]),
        _text_array([gpu.device for gpu in gpus]),
        _number_array([gpu.gpu_index for gpu in gpus]),
        _text_array([gpu.model for gpu in gpus]),
        _text_array([gpu.driver for gpu in gpus]),
        _text_array([_labels_json(gpu.labels) for gpu in gpus]),
        _number_array([first[gpu.uuid] for gpu in gpus]),
        _number_array([gpu.time_us for gpu in gpus]),
    ]


def _labels_json(labels: Mapping[str, str]) -> str:
    return json.dumps(
        {name: value for name, value in labels.items() if name != "__name__"},
        separators=(",", ":"),
        sort_keys=True,
    )


def _check_retention(cutoff: datetime, batch_rows: int) -> None:
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be positive, not {batch_rows}")


@inlineCallbacks
def _retention(step: Callable[[], Deferred[list[tuple]]], batch_rows: int):
    """Run retention ``step`` (one transaction each) until one removes less than a full
    batch; return the rows removed in all."""
    removed = 0
    while True:
        ((count,),) = yield step()
        removed += count
        if count < batch_rows:
            return removed


# -- writer A: txpostgres on the reactor ----------------------------------------------------

_INSERT_UNNEST = f"""
    INSERT INTO telemetry (time, gpu, metric, value, container, pod, namespace)
    SELECT {_EPOCH_US.format("time_us")}, gpu, metric, value,
           NULLIF(container, ''), NULLIF(pod, ''), NULLIF(namespace, '')
    FROM unnest(%s::bigint[], %s::integer[], %s::text[], %s::float8[], %s::text[],
                %s::text[], %s::text[])
         AS s(time_us, gpu, metric, value, container, pod, namespace)
"""


def _unnest_telemetry(samples: Sequence[Sample], gpu_ids: Mapping[str, int]) -> TelemetryRows:
    columns = (
        _number_array([sample.time_us for sample in samples]),
        _number_array([gpu_ids[sample.uuid] for sample in samples]),
        _text_array([sample.metric for sample in samples]),
        _number_array([sample.value for sample in samples]),
        _text_array([sample.container for sample in samples]),
        _text_array([sample.pod for sample in samples]),
        _text_array([sample.namespace for sample in samples]),
    )
    return TelemetryRows(
        Statement(_INSERT_UNNEST, columns),
        [Statement(_INSERT_UNNEST + "    ON CONFLICT DO NOTHING\n", columns)],
    )


_CONNECTION_LOST = (psycopg2.OperationalError, psycopg2.InterfaceError)


class TxPostgresWriter(_OnePartition):
    """The reactor-native writer: one txpostgres connection, connected again on the next call
    after it was found dead.

    :param reactor: the reactor the connection runs on.
    :param dsn: a libpq connection string.
    """

    def __init__(self, reactor: Any, dsn: str):
        self._reactor = reactor
        self._dsn = dsn
        self._connection: Connection | None = None
        self._lock = DeferredLock()

    def start(self) -> Deferred[None]:
        return self._lock.run(self._connected).addCallback(lambda _: None)

    def close(self) -> Deferred[None]:
        return self._lock.run(self._drop)

    def write_batches(
        self, group: str, topic: str, batches: Sequence[PartitionBatch]
    ) -> Deferred[WriteResult]:
        steps = _batch_steps(group, topic, _checked(batches), _unnest_telemetry)
        return self._run(lambda connection: self._transaction(connection, steps))

    def load_offsets(self, group: str, topic: str) -> Deferred[dict[int, int]]:
        return self._run(
            lambda connection: connection.runQuery(_LOAD_OFFSETS, (group, topic))
        ).addCallback(dict)

    def delete_older_than(self, cutoff: datetime, batch_rows: int = 10_000) -> Deferred[int]:
        _check_retention(cutoff, batch_rows)
        return _retention(
            lambda: self._run(
                lambda connection: connection.runQuery(_RETENTION_STEP, (cutoff, batch_rows))
            ),
            batch_rows,
        )

    def _run(self, operation: Callable[[Connection], Deferred]) -> Deferred:
        """``operation`` on the connection (connected first if needed), one call at a time;
        a failure showing the connection dead drops it."""

        @inlineCallbacks
        def run():
            connection = yield self._connected()
            try:
                return (yield operation(connection))
            except _CONNECTION_LOST:
                self._drop()
                raise

        return self._lock.run(run)

    @inlineCallbacks
    def _transaction(self, connection: Connection, steps: BatchSteps):
        """``steps`` in one transaction. (Not ``runInteraction``: that logs a failed rollback
        as an unhandled error, and a rollback fails whenever the server has gone away.)"""
        cursor = connection.cursor()
        yield cursor.execute(_BEGIN)
        try:
            result = yield _drive_cursor(cursor, steps)
        except BaseException:
            try:
                yield cursor.execute("ROLLBACK")
            except Exception:
                self._drop()  # the original error says what went wrong
            raise
        yield cursor.execute("COMMIT")
        return result

    def _connected(self) -> Deferred[Connection]:
        if self._connection is not None:
            return succeed(self._connection)
        connection = _QuietConnection(self._reactor, self._lost)

        def keep(_):
            self._connection = connection
            return connection

        return connection.connect(self._dsn).addCallback(keep)

    def _lost(self, connection: Connection) -> None:
        if connection is self._connection:
            self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class _QuietConnection(Connection):
    """txpostgres' connection, which watches its socket between queries (for NOTIFY): when
    the server goes away then, psycopg2's error would reach the reactor and be logged as an
    unhandled error. Here it is a lost connection, and ``on_lost`` is told."""

    def __init__(self, reactor: Any, on_lost: Callable[[Connection], None]):
        super().__init__(reactor=reactor)
        self._on_lost = on_lost

    def doRead(self):
        try:
            return super().doRead()
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            self._on_lost(self)
            return CONNECTION_LOST


@inlineCallbacks
def _drive_cursor(cursor: Any, steps: BatchSteps):
    """Run ``steps`` on a txpostgres cursor."""
    try:
        step = next(steps)
        while True:
            if isinstance(step, Attempt):
                # one round trip: the statement between its savepoint and the release
                try:
                    yield cursor.execute(_ATTEMPT.format(step.step.sql), step.step.params)
                except psycopg2.errors.UniqueViolation:
                    yield cursor.execute("ROLLBACK TO SAVEPOINT tmq_attempt")
                    step = steps.send(Outcome(-1, None))
                    continue
                step = steps.send(Outcome(0, None))
                continue
            yield cursor.execute(step.sql, step.params)
            rows = cursor.fetchall() if cursor.description else None
            step = steps.send(Outcome(cursor.rowcount, rows))
    except StopIteration as finished:
        return finished.value


# -- writer B: psycopg 3 binary COPY on a thread pool ---------------------------------------

# The binary COPY of telemetry, in this column order (DESIGN §6; PostgreSQL's binary COPY
# format): the signature, flags and header extension length; per row a field count (int16)
# and per field its length (int32, -1 for NULL) and bytes: time (int64 µs since
# 2000-01-01 UTC), value (float8), gpu (int4), metric, container, pod, namespace (UTF-8;
# NULL for an empty workload label); the trailer (int16 -1).
_COPY_COLUMNS = "time, value, gpu, metric, container, pod, namespace"
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_POSTGRES_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC in µs since 1970
_ROW_START = struct.Struct(">hiqid").pack  # 7 fields; time; value
_ROW_START_NULL = struct.Struct(">hiqi").pack  # 7 fields; time; NULL value
_INT4 = struct.Struct(">ii").pack
_NULL = struct.pack(">i", -1)
_ROW_ENDS_MAX = 65536

_STAGING = "telemetry_staging"
_CREATE_STAGING = f"""
    CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} (
        time timestamptz, value double precision, gpu integer, metric text,
        container text, pod text, namespace text
    ) ON COMMIT DELETE ROWS
"""
_COPY = "COPY {} (" + _COPY_COLUMNS + ") FROM STDIN (FORMAT BINARY)"
_INSERT_STAGED = f"""
    INSERT INTO telemetry ({_COPY_COLUMNS}) SELECT {_COPY_COLUMNS} FROM {_STAGING}
    ON CONFLICT DO NOTHING
"""


def _text_field(text: str) -> bytes:
    if not text:
        return _NULL
    data = text.encode()
    return struct.pack(">i", len(data)) + data


class _CopyData:
    """Builds the binary COPY stream of a batch. The fields after the value repeat for each
    series (GPU, metric, workload), so their bytes are built once and kept (bounded)."""

    def __init__(self) -> None:
        self._row_ends: dict[tuple, bytes] = {}

    def __call__(self, samples: Sequence[Sample], gpu_ids: Mapping[str, int]) -> bytes:
        row_ends = self._row_ends
        parts = [_COPY_SIGNATURE]
        append = parts.append
        for time_us, metric, _, _, uuid, _, _, container, pod, namespace, value, _ in samples:
            series = (gpu_ids[uuid], metric, container, pod, namespace)
            end = row_ends.get(series)
            if end is None:
                if len(row_ends) >= _ROW_ENDS_MAX:
                    row_ends.clear()
                end = row_ends[series] = b"".join((
                    _INT4(4, series[0]), _text_field(metric), _text_field(container),
                    _text_field(pod), _text_field(namespace),
                ))  # fmt: skip
            stamp = time_us - _POSTGRES_EPOCH_US
            if value is None:
                append(_ROW_START_NULL(7, 8, stamp, -1) + end)
            else:
                append(_ROW_START(7, 8, stamp, 8, value) + end)
        append(_COPY_TRAILER)
        return b"".join(parts)


class CopyWriter(_OnePartition):
    """The binary COPY writer: one psycopg 3 connection used from ``threadpool``, connected
    again on the next call after it was found dead.

    :param reactor: the reactor the Deferreds fire on.
    :param threadpool: a started pool for the blocking calls (its own, DESIGN §5).
    :param dsn: a libpq connection string.
    """

    def __init__(self, reactor: Any, threadpool: Any, dsn: str):
        self._reactor = reactor
        self._threadpool = threadpool
        self._dsn = dsn
        self._connection: psycopg.Connection | None = None
        self._lock = DeferredLock()
        self._copy_data = _CopyData()

    def start(self) -> Deferred[None]:
        return self._call(self._connected).addCallback(lambda _: None)

    def close(self) -> Deferred[None]:
        return self._call(self._drop)

    def write_batches(
        self, group: str, topic: str, batches: Sequence[PartitionBatch]
    ) -> Deferred[WriteResult]:
        steps = _batch_steps(group, topic, _checked(batches), self._telemetry)
        return self._call(self._transaction, steps)

    def _telemetry(self, samples: Sequence[Sample], gpu_ids: Mapping[str, int]) -> TelemetryRows:
        data = self._copy_data(samples, gpu_ids)
        return TelemetryRows(
            Copy(_COPY.format("telemetry"), data),
            [Copy(_COPY.format(_STAGING), data), Statement(_INSERT_STAGED)],
        )

    def load_offsets(self, group: str, topic: str) -> Deferred[dict[int, int]]:
        return self._call(self._query, _LOAD_OFFSETS, (group, topic)).addCallback(dict)

    def delete_older_than(self, cutoff: datetime, batch_rows: int = 10_000) -> Deferred[int]:
        _check_retention(cutoff, batch_rows)
        return _retention(
            lambda: self._call(self._query, _RETENTION_STEP, (cutoff, batch_rows)), batch_rows
        )

    def _call(self, function: Callable, *args: Any) -> Deferred:
        """``function(*args)`` in the pool, one call at a time."""
        return self._lock.run(deferToThreadPool, self._reactor, self._threadpool, function, *args)

    # in the pool

    def _connected(self) -> psycopg.Connection:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        connection = psycopg.connect(
            self._dsn, autocommit=True, options="-c default_transaction_isolation=read\\ committed"
        )
        try:
            connection.execute(_CREATE_STAGING)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        connection = self._connected()
        try:
            return connection.execute(sql, params).fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self._drop()
            raise

    def _transaction(self, steps: BatchSteps) -> WriteResult:
        connection = self._connected()
        try:
            with connection.transaction(), connection.cursor() as cursor:
                return _drive_blocking(cursor, steps)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self._drop()
            raise


def _drive_blocking(cursor: psycopg.Cursor, steps: BatchSteps) -> WriteResult:
    """Run ``steps`` on a psycopg 3 cursor inside a transaction."""

    def run(step: Statement | Copy) -> Outcome:
        if isinstance(step, Copy):
            with cursor.copy(step.sql) as copy:
                copy.write(step.data)
            return Outcome(cursor.rowcount, None)
        cursor.execute(step.sql, step.params)
        return Outcome(cursor.rowcount, cursor.fetchall() if cursor.description else None)

    try:
        step = next(steps)
        while True:
            if isinstance(step, Attempt):
                try:
                    with cursor.connection.transaction():  # a savepoint
                        outcome = run(step.step)
                except psycopg.errors.UniqueViolation:
                    outcome = Outcome(-1, None)
            else:
                outcome = run(step)
            step = steps.send(outcome)
    except StopIteration as finished:
        return finished.value
