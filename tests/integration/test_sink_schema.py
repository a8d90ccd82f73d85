"""The sink's schema migrations against a real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from txpostgres.txpostgres import Connection

from tmq.client.sync import shared_reactor_thread
from tmq.sink.schema import MIGRATIONS, SCHEMA_VERSION, migrate, migrate_deferred

TABLES = {
    "gpus": {
        "uuid": "text",
        "id": "integer",
        "hostname": "text",
        "device": "text",
        "gpu_index": "integer",
        "model": "text",
        "driver": "text",
        "labels": "jsonb",
        "first_seen": "timestamp with time zone",
        "last_seen": "timestamp with time zone",
    },
    "telemetry": {
        "time": "timestamp with time zone",
        "gpu": "integer",
        "metric": "text",
        "value": "double precision",
        "container": "text",
        "pod": "text",
        "namespace": "text",
    },
    "consumer_offsets": {
        "consumer_group": "text",
        "topic": "text",
        "partition": "integer",
        "next_offset": "bigint",
        "updated_at": "timestamp with time zone",
    },
    "dead_letters": {
        "id": "bigint",
        "consumer_group": "text",
        "topic": "text",
        "partition": "integer",
        "record_offset": "bigint",
        "key": "bytea",
        "value": "bytea",
        "reason": "text",
        "received_at": "timestamp with time zone",
    },
    "sink_instances": {
        "consumer_group": "text",
        "instance_id": "text",
        "started_at": "timestamp with time zone",
        "heartbeat_at": "timestamp with time zone",
    },
    "schema_migrations": {
        "version": "integer",
        "name": "text",
        "applied_at": "timestamp with time zone",
    },
}

INDEXES = {
    ("gpus", "gpus_pkey"): "(uuid)",
    ("gpus", "gpus_hostname"): "(hostname, uuid)",
    ("gpus", "gpus_id"): "UNIQUE INDEX gpus_id ON public.gpus USING btree (id)",
    ("telemetry", "telemetry_gpu_metric_time"): "UNIQUE INDEX telemetry_gpu_metric_time ON "
    'public.telemetry USING btree (gpu, metric, "time")',
    ("telemetry", "telemetry_gpu_time"): '(gpu, "time")',
    ("telemetry", "telemetry_time_brin"): 'USING brin ("time")',
    ("consumer_offsets", "consumer_offsets_pkey"): "(consumer_group, topic, partition)",
    ("dead_letters", "dead_letters_pkey"): "(id)",
    ("sink_instances", "sink_instances_pkey"): "(consumer_group, instance_id)",
    ("schema_migrations", "schema_migrations_pkey"): "(version)",
}


def catalog(dsn: str) -> dict:
    """What the schema consists of: columns, indexes, functions, recorded migrations."""
    with psycopg.connect(dsn) as connection:
        columns = connection.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall()
        indexes = connection.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " ORDER BY 1, 2"
        ).fetchall()
        functions = connection.execute(
            "SELECT p.proname, pg_get_function_arguments(p.oid), p.prosrc FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
        ).fetchall()
        migrations = connection.execute(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        ).fetchall()
    return {
        "columns": columns,
        "indexes": indexes,
        "functions": functions,
        "migrations": migrations,
    }


def migrate_dsn(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        return migrate(connection)


class SchemaMigrationTests:
    def test_migrations_create_every_table_column_and_index(self, pg_dsn):
        """A fresh database gets every migration, in order, and the tables, columns and
        indexes of the schema (plain PostgreSQL: no TimescaleDB here)."""
        assert migrate_dsn(pg_dsn) == [m.version for m in MIGRATIONS]
        assert MIGRATIONS[-1].version == SCHEMA_VERSION
        found = catalog(pg_dsn)
        columns: dict[str, dict[str, str]] = {}
        for table, column, data_type, _ in found["columns"]:
            columns.setdefault(table, {})[column] = data_type
        assert columns == TABLES
        nullable = {(t, c) for t, c, _, null in found["columns"] if null == "YES"}
        assert nullable == {
            ("gpus", "driver"),
            ("telemetry", "value"),
            ("telemetry", "container"),
            ("telemetry", "pod"),
            ("telemetry", "namespace"),
            ("dead_letters", "key"),
            ("dead_letters", "value"),
        }
        indexes = {(table, name): definition for table, name, definition in found["indexes"]}
        assert set(indexes) == set(INDEXES)
        for key, expected in INDEXES.items():
            assert expected in indexes[key], indexes[key]
        assert [name for name, _, _ in found["functions"]] == ["tmq_delete_telemetry_before"]
        assert [version for version, _, _ in found["migrations"]] == [1, 2, 3, 4]

    def test_migrating_again_changes_nothing(self, pg_dsn):
        """A second run applies nothing and leaves the schema exactly as it was, down to the
        recorded application times."""
        migrate_dsn(pg_dsn)
        before = catalog(pg_dsn)
        assert migrate_dsn(pg_dsn) == []
        assert catalog(pg_dsn) == before

    def test_concurrent_migrations_apply_each_version_once(self, pg_dsn):
        """Four connections migrating at once: every version is applied by exactly one of
        them, none fails, and the schema is complete."""
        start = threading.Barrier(4)
        results: list[list[int] | BaseException] = [[] for _ in range(4)]

        def run(index: int) -> None:
            with psycopg.connect(pg_dsn, autocommit=True) as connection:
                start.wait()
                try:
                    results[index] = migrate(connection)
                except BaseException as error:
                    results[index] = error

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not [r for r in results if isinstance(r, BaseException)], results
        applied = sorted(version for result in results for version in result)
        assert applied == [m.version for m in MIGRATIONS]
        assert len(catalog(pg_dsn)["migrations"]) == len(MIGRATIONS)

    def test_twisted_migration_matches_the_blocking_one(self, pg_dsn):
        """migrate_deferred on a txpostgres connection applies the same migrations, recorded
        in the same table: the blocking migrate then has nothing left to do."""
        runner = shared_reactor_thread()

        def run():
            connection = Connection(reactor=runner.reactor)

            def close(result):
                connection.close()
                return result

            deferred = connection.connect(pg_dsn)
            deferred.addCallback(lambda _: migrate_deferred(connection))
            return deferred.addBoth(close)

        assert runner.call(run) == [m.version for m in MIGRATIONS]
        assert runner.call(run) == []
        assert migrate_dsn(pg_dsn) == []

    def test_keying_telemetry_by_gpu_id_keeps_every_row(self, pg_dsn):
        """Migration 4 moves version 3's uuid-keyed rows to gpus.id keys: every row is kept
        with its values, a GPU found only in telemetry gets a gpus row, and the unique key
        still holds."""
        with psycopg.connect(pg_dsn, autocommit=True) as connection:
            assert migrate(connection, up_to=3) == [1, 2, 3]
            base = datetime(2025, 7, 18, tzinfo=UTC)
            connection.execute(
                "INSERT INTO gpus (uuid, hostname, device, gpu_index, model, first_seen,"
                " last_seen) VALUES ('GPU-known', 'h1', 'nvidia0', 0, 'H100', %s, %s)",
                (base, base),
            )
            connection.execute(
                "INSERT INTO telemetry (time, gpu, metric, value, pod)"
                " SELECT %s + i * interval '1 second', uuid, 'M', i, 'p'"
                " FROM generate_series(0, 4) i, (VALUES ('GPU-known'), ('GPU-orphan')) u(uuid)",
                (base,),
            )
            before = connection.execute(
                "SELECT time, gpu, metric, value, pod FROM telemetry ORDER BY 2, 1"
            ).fetchall()
            assert migrate(connection) == [4]
            after = connection.execute(
                "SELECT time, g.uuid, metric, value, pod FROM telemetry t"
                " JOIN gpus g ON g.id = t.gpu ORDER BY 2, 1"
            ).fetchall()
            orphan = connection.execute(
                "SELECT first_seen, last_seen FROM gpus WHERE uuid = 'GPU-orphan'"
            ).fetchone()
            with pytest.raises(psycopg.errors.UniqueViolation):
                connection.execute("INSERT INTO telemetry (time, gpu, metric) VALUES (%s, "
                                   "(SELECT id FROM gpus WHERE uuid = 'GPU-known'), 'M')",
                                   (base,))  # fmt: skip
        assert after == before
        assert orphan == (base, base + timedelta(seconds=4))
        fresh = catalog(pg_dsn)
        assert {(t, c): d for t, c, d, _ in fresh["columns"]}[("telemetry", "gpu")] == "integer"
        assert {(t, n) for t, n, _ in fresh["indexes"]} == set(INDEXES)

    def test_migrate_refuses_an_open_transaction(self, pg_dsn):
        """A connection inside a transaction would hold the lock and the changes until its
        owner commits: migrate refuses it."""
        with psycopg.connect(pg_dsn) as connection:
            connection.execute("SELECT 1")
            with pytest.raises(ValueError, match="open transaction"):
                migrate(connection)

    def test_retention_step_is_bounded(self, pg_dsn):
        """One retention step deletes at most batch_rows rows, only rows older than the
        cutoff."""
        migrate_dsn(pg_dsn)
        base = datetime(2025, 7, 18, tzinfo=UTC)
        with psycopg.connect(pg_dsn, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO telemetry (time, gpu, metric, value)"
                " SELECT %s + i * interval '1 second', 1, 'M', i"
                " FROM generate_series(0, 9) i",
                (base,),
            )
            step = "SELECT tmq_delete_telemetry_before(%s, %s)"
            cutoff = base + timedelta(seconds=5)
            assert connection.execute(step, (cutoff, 3)).fetchone() == (3,)
            assert connection.execute(step, (cutoff, 3)).fetchone() == (2,)
            assert connection.execute(step, (cutoff, 3)).fetchone() == (0,)
            left = connection.execute("SELECT min(time), count(*) FROM telemetry").fetchone()
        assert left == (cutoff, 5)
