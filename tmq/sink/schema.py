"""The sink's PostgreSQL schema and its versioned, idempotent migrations (DESIGN §6).

Tables (all times ``timestamptz``, UTC):

``gpus``: one row per GPU ever seen, kept by the writers' upsert.
    ``uuid text`` primary key (``GPU-…``); ``id integer`` (identity, unique): the key
    ``telemetry`` rows use, assigned once and never changed; ``hostname``, ``device``
    (``nvidia0``), ``gpu_index integer``, ``model``, ``driver`` (NULL when the exporter never
    said), ``labels jsonb`` (the exporter labels of the newest sample but ``__name__``: per-GPU
    facts such as ``instance`` and ``pci_bus_id``), ``first_seen``, ``last_seen``.
    Index ``gpus_hostname (hostname, uuid)`` serves ``GET /gpus?hostname=`` in uuid order.

``telemetry``: one row per sample.
    ``time``, ``gpu integer`` (``gpus.id``: 4 bytes in the row and in both B-trees instead
    of a 40-character uuid; the writers upsert the GPU in the same transaction, so every
    ``gpu`` has its ``gpus`` row), ``metric text`` (the DCGM field name),
    ``value double precision`` (NULL for a DCGM blank), ``container``, ``pod``,
    ``namespace`` (NULL when no workload). The workload labels are columns; the other labels
    are per-GPU and live in ``gpus.labels``, not on every row.
    ``UNIQUE (gpu, metric, time)`` makes replays idempotent and serves every per-GPU,
    per-metric query of the API (time ranges, aggregates, the newest sample of a metric);
    ``telemetry_gpu_time (gpu, time)`` serves a GPU's samples of all metrics in time order;
    ``telemetry_time_brin`` (BRIN on ``time``) lets retention find old rows cheaply.
    With TimescaleDB, ``telemetry`` is a hypertable on ``time`` (6-hour chunks).

``consumer_offsets``: the next offset to write, per ``(consumer_group, topic, partition)``
    (primary key), and ``updated_at``. The writers move it with a fence in the same
    transaction as the rows.

``dead_letters``: records the sink could not decode or accept.
    ``id`` (identity), ``consumer_group``, ``topic``, ``partition``, ``record_offset``,
    ``key bytea``, ``value bytea`` (the raw record bytes), ``reason``, ``received_at``.

``sink_instances``: live sink instances for the fair share of partitions.
    ``(consumer_group, instance_id)`` primary key, ``started_at``, ``heartbeat_at``.

``schema_migrations``: ``version`` (primary key), ``name``, ``applied_at``.

Function ``tmq_delete_telemetry_before(cutoff timestamptz, batch_rows integer) -> bigint``:
one bounded retention step, in the caller's transaction. On a hypertable it drops the chunks
entirely older than ``cutoff`` and returns their estimated row count (``reltuples``);
otherwise it deletes at most ``batch_rows`` rows older than ``cutoff`` and returns how many.

Migrating: every migration runs once, in its own transaction, which first takes the
transaction-scoped advisory lock ``MIGRATION_LOCK`` and then checks ``schema_migrations``, so
sinks starting together apply each migration exactly once. ``migrate`` runs them on a
blocking psycopg 3 connection (CLIs, tests), ``migrate_deferred`` on a txpostgres connection
(the sink service, on the reactor); both follow the same steps (``_migration_steps``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import psycopg
from twisted.internet.defer import Deferred, inlineCallbacks

__all__ = [
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "SCHEMA_VERSION",
    "Migration",
    "migrate",
    "migrate_deferred",
]

#: The advisory lock key that serialises migrations ("tmq-sch" in ASCII).
MIGRATION_LOCK = 0x746D712D736368


@dataclass(frozen=True)
class Migration:
    """One schema change: ``statements`` run in order, in one transaction."""

    version: int
    name: str
    statements: tuple[str, ...]


_CORE_TABLES = (
    """
    CREATE TABLE gpus (
        uuid text PRIMARY KEY,
        hostname text NOT NULL,
        device text NOT NULL,
        gpu_index integer NOT NULL,
        model text NOT NULL,
        driver text,
        labels jsonb NOT NULL DEFAULT '{}',
        first_seen timestamptz NOT NULL,
        last_seen timestamptz NOT NULL
    )
    """,
    "CREATE INDEX gpus_hostname ON gpus (hostname, uuid)",
    """
    CREATE TABLE telemetry (
        time timestamptz NOT NULL,
        gpu text NOT NULL,
        metric text NOT NULL,
        value double precision,
        container text,
        pod text,
        namespace text,
        CONSTRAINT telemetry_gpu_metric_time UNIQUE (gpu, metric, time)
    )
    """,
    "CREATE INDEX telemetry_gpu_time ON telemetry (gpu, time)",
    "CREATE INDEX telemetry_time_brin ON telemetry USING brin (time)",
    """
    CREATE TABLE consumer_offsets (
        consumer_group text NOT NULL,
        topic text NOT NULL,
        partition integer NOT NULL,
        next_offset bigint NOT NULL CHECK (next_offset >= 0),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer_group, topic, partition)
    )
    """,
    """
    CREATE TABLE dead_letters (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        consumer_group text NOT NULL,
        topic text NOT NULL,
        partition integer NOT NULL,
        record_offset bigint NOT NULL,
        key bytea,
        value bytea,
        reason text NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE sink_instances (
        consumer_group text NOT NULL,
        instance_id text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        heartbeat_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer_group, instance_id)
    )
    """,
)

# Only when the library is preloaded: CREATE EXTENSION fails otherwise, even if available.
_HYPERTABLE = (
    """
    DO $$
    BEGIN
        IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
           OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
               AND current_setting('shared_preload_libraries') LIKE '%timescaledb%') THEN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
            PERFORM create_hypertable('telemetry', 'time',
                chunk_time_interval => interval '6 hours',
                create_default_indexes => false, migrate_data => true);
        END IF;
    END
    $$
    """,
)

_RETENTION = (
    """
    CREATE FUNCTION tmq_delete_telemetry_before(cutoff timestamptz, batch_rows integer)
    RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE
        removed bigint;
    BEGIN
        IF to_regclass('timescaledb_information.hypertables') IS NOT NULL THEN
            PERFORM 1 FROM timescaledb_information.hypertables
                WHERE hypertable_name = 'telemetry' AND hypertable_schema = current_schema();
            IF FOUND THEN
                EXECUTE 'SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
                         FROM show_chunks(''telemetry'', older_than => $1) AS chunk
                         JOIN pg_class c ON c.oid = chunk'
                    INTO removed USING cutoff;
                EXECUTE 'SELECT count(*) FROM drop_chunks(''telemetry'', older_than => $1)'
                    USING cutoff;
                RETURN removed;
            END IF;
        END IF;
        DELETE FROM telemetry WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM telemetry WHERE time < cutoff LIMIT batch_rows));
        GET DIAGNOSTICS removed = ROW_COUNT;
        RETURN removed;
    END
    $$
    """,
)

# Version 3 keyed telemetry by the uuid text. The rows move to a new table keyed by gpus.id
# (a GPU seen only in telemetry gets a gpus row first: nothing is dropped), whose constraint
# and indexes are built after the copy, under the names version 1 gave them.
_GPU_ID = (
    "ALTER TABLE gpus ADD COLUMN id integer GENERATED ALWAYS AS IDENTITY",
    "ALTER TABLE gpus ADD CONSTRAINT gpus_id UNIQUE (id)",
    """
    INSERT INTO gpus (uuid, hostname, device, gpu_index, model, first_seen, last_seen)
    SELECT gpu, '', '', 0, '', min(time), max(time) FROM telemetry t
    WHERE NOT EXISTS (SELECT 1 FROM gpus g WHERE g.uuid = t.gpu)
    GROUP BY gpu ORDER BY gpu
    """,
    """
    CREATE TABLE telemetry_by_id (
        time timestamptz NOT NULL,
        gpu integer NOT NULL,
        metric text NOT NULL,
        value double precision,
        container text,
        pod text,
        namespace text
    )
    """,
    """
    INSERT INTO telemetry_by_id (time, gpu, metric, value, container, pod, namespace)
    SELECT t.time, g.id, t.metric, t.value, t.container, t.pod, t.namespace
    FROM telemetry t JOIN gpus g ON g.uuid = t.gpu
    """,
    "DROP TABLE telemetry",
    "ALTER TABLE telemetry_by_id RENAME TO telemetry",
    """
    ALTER TABLE telemetry
        ADD CONSTRAINT telemetry_gpu_metric_time UNIQUE (gpu, metric, time)
    """,
    "CREATE INDEX telemetry_gpu_time ON telemetry (gpu, time)",
    "CREATE INDEX telemetry_time_brin ON telemetry USING brin (time)",
    *_HYPERTABLE,
)

#: Every migration, oldest first. Append only: an applied migration never changes.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "core tables", _CORE_TABLES),
    Migration(2, "telemetry hypertable when TimescaleDB is available", _HYPERTABLE),
    Migration(3, "retention function", _RETENTION),
    Migration(4, "telemetry keyed by the integer gpus.id", _GPU_ID),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_LOCK = "SELECT pg_advisory_xact_lock(%s)"
_CREATE_MIGRATIONS_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
"""
_IS_APPLIED = "SELECT 1 FROM schema_migrations WHERE version = %s"
_RECORD = "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)"

#: A step: a statement and its parameters; the driver sends back the rows it returned
#: (``None`` for a statement without a result).
Step = tuple[str, tuple | None]
Steps = Generator[Step, list[tuple] | None, bool]


def _migration_steps(migration: Migration) -> Steps:
    """The statements of one migration's transaction; returns whether it was applied now
    (``False``: an earlier run, or a concurrent one, applied it)."""
    yield _LOCK, (MIGRATION_LOCK,)
    yield _CREATE_MIGRATIONS_TABLE, None
    if (yield _IS_APPLIED, (migration.version,)):
        return False
    for statement in migration.statements:
        yield statement, None
    yield _RECORD, (migration.version, migration.name)
    return True


def _drive(steps: Steps, execute: Callable[[Step], list[tuple] | None]) -> bool:
    """Run ``steps`` with a blocking ``execute``; return their result."""
    try:
        step = next(steps)
        while True:
            step = steps.send(execute(step))
    except StopIteration as finished:
        return finished.value


def migrate(connection: psycopg.Connection, up_to: int = SCHEMA_VERSION) -> list[int]:
    """Apply the missing migrations on a blocking psycopg 3 connection.

    :param connection: an idle connection (no transaction open); each migration commits.
    :param up_to: the last version to apply (an older schema, to test upgrades from it).
    :returns: the versions applied by this call, oldest first.
    """
    if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ValueError("migrate needs a connection without an open transaction")

    applied = []
    for migration in MIGRATIONS[:up_to]:
        with connection.transaction(), connection.cursor() as cursor:
            if _drive(_migration_steps(migration), _blocking_executor(cursor)):
                applied.append(migration.version)
    return applied


def _blocking_executor(cursor: psycopg.Cursor) -> Callable[[Step], list[tuple] | None]:
    def execute(step: Step) -> list[tuple] | None:
        cursor.execute(*step)
        return cursor.fetchall() if cursor.description else None

    return execute


def migrate_deferred(connection: Any) -> Deferred[list[int]]:
    """Apply the missing migrations on a connected ``txpostgres.Connection``.

    :returns: a Deferred of the versions applied by this call, oldest first.
    """

    @inlineCallbacks
    def run_steps(cursor: Any, steps: Steps):
        try:
            step = next(steps)
            while True:
                yield cursor.execute(*step)
                step = steps.send(cursor.fetchall() if cursor.description else None)
        except StopIteration as finished:
            return finished.value

    @inlineCallbacks
    def run_all():
        applied = []
        for migration in MIGRATIONS:
            if (yield connection.runInteraction(run_steps, _migration_steps(migration))):
                applied.append(migration.version)
        return applied

    return run_all()
