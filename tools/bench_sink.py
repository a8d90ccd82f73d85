"""``tmq bench sink``: the whole sink service, next to a raw COPY of the same rows.

One broker (``flush.policy=always``) and one throwaway PostgreSQL cluster (durable: fsync on)
of its own. ``--rows`` generated samples (``tmq.telemetry.gen``: hosts of 8 GPUs, 10 metrics,
1 s scrapes) are produced to a topic once. Then, in the same run:

* the ceiling: the same rows, decoded beforehand, written with a binary ``COPY`` straight into
  ``telemetry`` (same schema, same indexes) in batches of ``--batch-records``, one transaction
  each;
* each writer: a ``SinkService`` in a fresh process, with that writer, on a fresh database,
  from the first offset until every record is committed: fetch, decode, write, commit.

Every database is checked to hold every row once. Reported: rows/s, the ratio to the
ceiling (floor: the default writer at least half of it), and CPU per row of the sink process
and of the PostgreSQL server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from .bench_clients import BenchBroker, in_fresh_process, run_on_reactor
from .errors import CommandError
from .sink import WRITERS

__all__ = [
    "add_parser",
    "copy_ceiling",
    "cpu_of_tree",
    "rows_block",
    "run_sink_bench",
    "samples",
]

#: The share of the raw COPY rate the sink with its default writer must reach (issue #5).
FLOOR_RATIO = 0.5
_GPUS_PER_HOST = 8
_METRICS = 10
_ROWS_PER_HOST_SCRAPE = _GPUS_PER_HOST * _METRICS
_HOSTS = 50
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_TOPIC = "bench-sink"


def add_parser(kinds) -> None:
    parser = kinds.add_parser(
        "sink",
        help="sink service rows/s per writer, next to a raw COPY of the same rows",
        description=(
            "Produce generated telemetry to a local broker, then measure the sink service "
            "(fetch, decode, write, commit) with each writer on a fresh database, next to a "
            "binary COPY of the same decoded rows into the same table (the ceiling)."
        ),
    )
    add_rows_arguments(parser)
    parser.add_argument(
        "--batch-records",
        type=int,
        default=10_000,
        help="rows per transaction, sink and ceiling alike (default %(default)s)",
    )
    parser.add_argument(
        "--writer",
        choices=(*WRITERS, "all"),
        default="all",
        help="which writer to measure (default %(default)s)",
    )
    parser.add_argument("--dir", default=None, help="parent of the broker's temporary directory")
    parser.set_defaults(run=_run, bench_parser=parser)


def add_rows_arguments(parser: argparse.ArgumentParser) -> None:
    """``--rows`` and ``--partitions``, as ``tmq bench sink`` and ``tmq bench e2e`` take them."""
    parser.add_argument(
        "--rows",
        type=int,
        default=500_000,
        help=f"generated rows, a multiple of {rows_block()} (default %(default)s)",
    )
    parser.add_argument(
        "--partitions", type=int, default=4, help="partitions of the topic (default 4)"
    )


def check_rows_arguments(args: argparse.Namespace) -> None:
    """Exit with a usage error unless ``--rows`` is whole scrapes and ``--partitions`` >= 1."""
    block = rows_block()
    if args.rows < block or args.rows % block:
        args.bench_parser.error(f"--rows must be a positive multiple of {block}")
    if args.partitions < 1:
        args.bench_parser.error("--partitions must be >= 1")


def _run(args: argparse.Namespace) -> int:
    check_rows_arguments(args)
    if args.batch_records < 1:
        args.bench_parser.error("--batch-records must be >= 1")
    writers = WRITERS if args.writer == "all" else (args.writer,)
    results = run_sink_bench(
        rows=args.rows,
        partitions=args.partitions,
        batch_records=args.batch_records,
        writers=writers,
        parent=args.dir,
        progress=sys.stderr,
    )
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if results["verified"] else 1


def rows_block() -> int:
    """``--rows`` must be a multiple of this: whole scrapes of the generated fleet."""
    return _HOSTS * _ROWS_PER_HOST_SCRAPE


def samples(rows: int):
    """``rows`` generated samples: a fleet of 50 hosts of 8 GPUs, 10 metrics, 1 s scrapes."""
    from tmq.telemetry.gen import generate

    return generate(
        hosts=_HOSTS,
        gpus_per_host=_GPUS_PER_HOST,
        scrapes=rows // (_HOSTS * _ROWS_PER_HOST_SCRAPE),
        seed=5,
    )


# -- in child processes ------------------------------------------------------------------------


async def _load(reactor, bootstrap: str, rows: int, partitions: int) -> dict:
    from tmq.client import Admin, Cluster, NewTopic, Producer
    from tmq.telemetry.publisher import Publisher

    cluster = Cluster(reactor, bootstrap)
    # the generated samples are dated in the past: no broker retention may remove them
    topic = NewTopic(_TOPIC, partitions=partitions, configs={"retention.ms": "-1"})
    await Admin(cluster).create_topics([topic])
    producer = Producer(cluster, acks=1, linger_ms=5, batch_bytes=256 * 1024)
    publisher = Publisher(reactor, producer, _TOPIC, timestamps="source")
    chunk = []
    start = time.perf_counter()
    for sample in samples(rows):
        chunk.append(sample)
        if len(chunk) == 2000:
            await publisher.publish(chunk)
            chunk = []
    await publisher.publish(chunk)
    stats = await publisher.finish()
    elapsed = time.perf_counter() - start
    await producer.close()
    cluster.close()
    return {"delivered": stats.delivered, "failed": stats.failed, "seconds": elapsed}


def _load_topic(bootstrap: str, rows: int, partitions: int) -> dict:
    return run_on_reactor(_load, bootstrap, rows, partitions)


async def _sink(reactor, bootstrap: str, dsn: str, writer_name: str, rows: int, batch: int):
    from twisted.internet.task import deferLater
    from twisted.python.threadpool import ThreadPool

    from tmq.client import Cluster
    from tmq.sink.membership import Membership
    from tmq.sink.service import SinkService
    from tmq.sink.writer import CopyWriter, TxPostgresWriter

    pools = [ThreadPool(1, 1, "membership"), ThreadPool(1, 1, "writer")]
    for pool in pools:
        pool.start()
    try:
        if writer_name == "copy":
            writer = CopyWriter(reactor, pools[1], dsn)
        else:
            writer = TxPostgresWriter(reactor, dsn)
        membership = Membership(
            reactor, pools[0], dsn, group="bench", topic=_TOPIC, instance_id="bench"
        )
        service = SinkService(
            reactor, Cluster(reactor, bootstrap), writer, membership, batch_records=batch,
            heartbeat_s=0.5,
        )  # fmt: skip
        cpu_start, start = time.process_time(), time.perf_counter()
        await service.startService()
        deadline = start + 600
        while service.stats.records < rows:
            if time.perf_counter() > deadline:
                await service.stopService()
                raise RuntimeError(f"the sink wrote {service.stats.records} of {rows} rows")
            await deferLater(reactor, 0.01, lambda: None)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        stats = service.stats
        await service.stopService()
    finally:
        for pool in pools:
            pool.stop()
    return {
        "seconds": elapsed,
        "sink_cpu_seconds": cpu,
        "records": stats.records,
        "batches": stats.batches,
        "write_seconds": stats.write_seconds,
    }


def _run_sink(bootstrap: str, dsn: str, writer_name: str, rows: int, batch: int) -> dict:
    import psycopg
    from twisted.logger import LogLevel, globalLogBeginner, textFileLogObserver

    from tmq.process import tune_gc
    from tmq.sink.schema import migrate

    tune_gc()  # as ``tmq sink`` runs

    def warnings(event) -> None:  # the sink's warnings (a retried write, say) on stderr
        if event.get("log_level", LogLevel.info) >= LogLevel.warn:
            errors(event)

    errors = textFileLogObserver(sys.stderr)
    globalLogBeginner.beginLoggingTo([warnings], redirectStandardIO=False)

    with psycopg.connect(dsn) as connection:  # as ``tmq sink`` does before it starts
        migrate(connection)
    return run_on_reactor(_sink, bootstrap, dsn, writer_name, rows, batch)


def copy_ceiling(dsn: str, rows: int, batch: int) -> dict:
    """Migrate the database at ``dsn``, add the GPUs of ``samples(rows)`` to ``gpus``, then
    binary-COPY the samples, decoded and keyed by gpus.id beforehand, into ``telemetry`` in
    transactions of ``batch`` rows; the seconds and client CPU seconds the COPY took."""
    import psycopg

    from tmq.sink.schema import migrate

    every = list(samples(rows))
    with psycopg.connect(dsn) as connection:
        migrate(connection)
        uuids = sorted({s.uuid for s in every})
        ids = dict(connection.execute(
            "INSERT INTO gpus (uuid, hostname, device, gpu_index, model, first_seen, last_seen)"
            " SELECT uuid, '', '', 0, '', now(), now() FROM unnest(%s::text[]) AS u(uuid)"
            " RETURNING uuid, id",
            (uuids,),
        ).fetchall())  # fmt: skip
        connection.commit()
        decoded = [
            (
                datetime.fromtimestamp(s.time_us / 1e6, UTC), ids[s.uuid], s.metric, s.value,
                s.container or None, s.pod or None, s.namespace or None,
            )
            for s in every
        ]  # fmt: skip
        types = ("timestamptz", "int4", "text", "float8", "text", "text", "text")
        copy = (
            "COPY telemetry (time, gpu, metric, value, container, pod, namespace) "
            "FROM STDIN (FORMAT BINARY)"
        )
        cpu_start, start = time.process_time(), time.perf_counter()
        for first in range(0, rows, batch):
            with (
                connection.transaction(),
                connection.cursor() as cursor,
                cursor.copy(copy) as stream,
            ):
                stream.set_types(types)
                for row in decoded[first : first + batch]:
                    stream.write_row(row)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"seconds": elapsed, "client_cpu_seconds": cpu}


# -- the benchmark --------------------------------------------------------------------------------


def cpu_of_tree(pid: int) -> float:
    """CPU seconds of ``pid``, of its children that ended (reaped), and of those alive."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid:
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def _count(dsn: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(dsn) as connection:
        return connection.execute(
            "SELECT count(*), count(DISTINCT (gpu, metric, time)) FROM telemetry"
        ).fetchone()


def run_sink_bench(
    *,
    rows: int,
    partitions: int,
    batch_records: int,
    writers: tuple[str, ...],
    parent: str | None = None,
    progress=None,
) -> dict:
    """Run the benchmark in a fresh directory and return the JSON-ready results."""
    from .postgres import PostgresError, ThrowawayPostgres

    def say(text: str) -> None:
        if progress is not None:
            print(text, file=progress, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="tmq-bench-sink-", dir=parent))
    broker = postgres = None
    try:
        try:
            postgres = ThrowawayPostgres().start()
        except PostgresError as error:
            raise CommandError(str(error)) from None
        broker = BenchBroker(workdir)
        say(f"producing {rows} generated rows to {_TOPIC} ...")
        loaded = in_fresh_process(_load_topic, broker.bootstrap, rows, partitions)
        if loaded["delivered"] != rows:
            raise CommandError(f"loading the topic failed: {loaded}")
        say("measuring the ceiling: binary COPY of the decoded rows ...")
        dsn = postgres.create_database("ceiling")
        pg_before = cpu_of_tree(postgres.pid)
        ceiling = copy_ceiling(dsn, rows, batch_records)
        ceiling["server_cpu_seconds"] = cpu_of_tree(postgres.pid) - pg_before
        stored = {"ceiling": _count(dsn)}
        ceiling_rate = rows / ceiling["seconds"]
        results = {}
        for writer in writers:
            say(f"measuring the sink service with the {writer} writer ...")
            dsn = postgres.create_database(f"sink_{writer}")
            pg_before = cpu_of_tree(postgres.pid)
            run = in_fresh_process(_run_sink, broker.bootstrap, dsn, writer, rows, batch_records)
            run["server_cpu_seconds"] = cpu_of_tree(postgres.pid) - pg_before
            stored[writer] = _count(dsn)
            rate = rows / run["seconds"]
            results[writer] = {
                "rows_per_s": round(rate),
                "ratio_to_ceiling": round(rate / ceiling_rate, 3),
                "sink_cpu_us_per_row": round(run["sink_cpu_seconds"] / rows * 1e6, 2),
                "server_cpu_us_per_row": round(run["server_cpu_seconds"] / rows * 1e6, 2),
                "batches": run["batches"],
                "seconds": round(run["seconds"], 3),
                "verified": run["records"] == rows and stored[writer] == (rows, rows),
            }
            say(f"{writer}: {results[writer]['rows_per_s']:,} rows/s")
        default = WRITERS[0]
        if default in results:
            results[default]["floor_ratio_to_ceiling"] = FLOOR_RATIO
            results[default]["meets_floor"] = results[default]["ratio_to_ceiling"] >= FLOOR_RATIO
    finally:
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "sink",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "config": {
            "rows": rows,
            "partitions": partitions,
            "batch_records": batch_records,
            "postgres": "throwaway cluster, durable (fsync on), schema of tmq.sink.schema",
            "broker": "one process, flush.policy=always",
            "default_writer": WRITERS[0],
        },
        "producer_rows_per_s": round(rows / loaded["seconds"]),
        "ceiling": {
            "what": "binary COPY of the decoded rows straight into telemetry",
            "rows_per_s": round(ceiling_rate),
            "client_cpu_us_per_row": round(ceiling["client_cpu_seconds"] / rows * 1e6, 2),
            "server_cpu_us_per_row": round(ceiling["server_cpu_seconds"] / rows * 1e6, 2),
            "verified": stored["ceiling"] == (rows, rows),
        },
        "results": results,
        "verified": stored["ceiling"] == (rows, rows)
        and all(r["verified"] for r in results.values()),
        "meets_floors": all(r.get("meets_floor", True) for r in results.values()),
    }
