"""``tmq bench e2e``: CSV -> ``tmq producer`` -> broker -> ``tmq sink`` -> PostgreSQL.

Every stage is the real command in a process of its own: one broker (``flush.policy=always``),
a throwaway PostgreSQL cluster (durable), ``tmq sink`` (started first, and given its
partitions), then ``tmq producer`` on a generated CSV of ``--rows`` rows with their source
times. Measured from the producer's start until the sink has committed every row; then the
database is checked to hold every row once.

The pipeline runs ``--rounds`` times (a new topic and database each time) on one broker and
one cluster: this machine's speed varies from minute to minute, so every round is reported,
and the best one's figures at the top, as the other benchmarks do.

Reported: sustained rows/s (floor 50,000), and the CPU each stage spent per row (producer,
broker, sink, PostgreSQL server, from ``/proc``), next to baselines from the same run: the
rate at which ``tmq.telemetry`` parses the same CSV with nothing else to do, and the raw binary
COPY rate of the same rows into ``telemetry``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import bench_sink
from .bench_clients import BenchBroker, process_cpu_seconds
from .errors import CommandError

__all__ = ["add_parser", "run_e2e_bench"]

#: Rows per second the whole pipeline must sustain (issue #5).
FLOOR_ROWS_PER_S = 50_000


def add_parser(kinds) -> None:
    parser = kinds.add_parser(
        "e2e",
        help="CSV -> producer -> broker -> sink -> PostgreSQL, rows/s and CPU per stage",
        description=(
            "Run the whole pipeline with real processes on a generated CSV and report the "
            "sustained rows/s and each stage's CPU per row, next to the CSV parse rate and "
            "a raw COPY of the same rows measured in the same run."
        ),
    )
    bench_sink.add_rows_arguments(parser)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of the pipeline; the best is reported first, every one listed (default 3)",
    )
    parser.add_argument("--dir", default=None, help="parent of the temporary directory")
    parser.set_defaults(run=_run, bench_parser=parser)


def _run(args: argparse.Namespace) -> int:
    bench_sink.check_rows_arguments(args)
    if args.rounds < 1:
        args.bench_parser.error("--rounds must be >= 1")
    results = run_e2e_bench(
        rows=args.rows,
        partitions=args.partitions,
        rounds=args.rounds,
        parent=args.dir,
        progress=sys.stderr,
    )
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if results["verified"] else 1


def _tmq(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "tmq.tools.cli", *arguments]


def _parse_rate(path: Path) -> float:
    from tmq.telemetry.csv_source import CsvParser

    with open(path, newline="") as stream:
        start = time.perf_counter()
        count = sum(1 for _ in CsvParser().parse(stream))
        return count / (time.perf_counter() - start)


def run_e2e_bench(
    *, rows: int, partitions: int, rounds: int = 3, parent: str | None = None, progress=None
):
    """Run the pipeline ``rounds`` times in a fresh directory (one broker and one PostgreSQL
    cluster; a new topic and database per round) and return the JSON-ready results: every
    round, and the best one's figures at the top level (as the other benchmarks report the
    best of their rounds)."""
    from tmq.telemetry.gen import write_csv

    from .postgres import PostgresError, ThrowawayPostgres

    def say(text: str) -> None:
        if progress is not None:
            print(text, file=progress, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="tmq-bench-e2e-", dir=parent))
    broker = postgres = None
    try:
        csv_path = workdir / "fleet.csv"
        say(f"generating {rows} rows ...")
        with open(csv_path, "w", newline="") as stream:
            write_csv(bench_sink.samples(rows), stream)
        say("measuring the baselines: CSV parse, raw COPY ...")
        parse_rate = _parse_rate(csv_path)
        try:
            postgres = ThrowawayPostgres().start()
        except PostgresError as error:
            raise CommandError(str(error)) from None
        ceiling = bench_sink.copy_ceiling(postgres.create_database("ceiling"), rows, 10_000)
        broker = BenchBroker(workdir)
        results = []
        for number in range(1, rounds + 1):
            say(f"running the pipeline, round {number} of {rounds} ...")
            results.append(_round(number, workdir, csv_path, rows, partitions, broker, postgres))
    finally:
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    best = max(results, key=lambda result: result["rows_per_s"])
    return {
        "benchmark": "e2e",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "config": {
            "rows": rows,
            "partitions": partitions,
            "rounds": rounds,
            "producer": "tmq producer --csv, source times, acks=all (idempotent)",
            "broker": "one process, flush.policy=always",
            "sink": "tmq sink, default writer",
            "postgres": "throwaway cluster, durable (fsync on)",
        },
        "rows_per_s": best["rows_per_s"],
        "median_rows_per_s": statistics.median(result["rows_per_s"] for result in results),
        "producer_rows_per_s": best["producer_rows_per_s"],
        "floor_rows_per_s": FLOOR_ROWS_PER_S,
        "meets_floor": best["rows_per_s"] >= FLOOR_ROWS_PER_S,
        "cpu_us_per_row": best["cpu_us_per_row"],
        "rounds": results,
        "baselines": {
            "csv_parse_rows_per_s": round(parse_rate),
            "raw_copy_rows_per_s": round(rows / ceiling["seconds"]),
        },
        "verified": all(result["verified"] for result in results),
    }


def _round(number: int, workdir: Path, csv_path: Path, rows: int, partitions: int, broker,
           postgres) -> dict:  # fmt: skip
    """One run of the pipeline on topic ``gpu-<number>`` and database ``telemetry_<number>``:
    its rate, the producer's, each stage's CPU per row and whether every row is stored once."""
    import psycopg

    from tmq.sink.schema import migrate

    topic = f"gpu-{number}"
    created = subprocess.run(
        _tmq("topics", "create", topic, "--partitions", str(partitions),
             "--set", "retention.ms=-1", "--bootstrap", broker.bootstrap),
        cwd=workdir, capture_output=True, text=True,
    )  # fmt: skip
    if created.returncode:
        raise CommandError(f"creating the topic failed: {created.stderr.strip()}")
    dsn = postgres.create_database(f"telemetry_{number}")
    with psycopg.connect(dsn) as connection:
        migrate(connection)
    with open(workdir / f"sink-{number}.log", "wb") as log:
        sink = subprocess.Popen(
            _tmq("sink", "--topic", topic, "--dsn", dsn, "--bootstrap", broker.bootstrap,
                 "--status-interval", "0"),
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_locks(dsn, partitions, sink)
        before = {
            "broker": process_cpu_seconds(broker.process.pid),
            "sink": process_cpu_seconds(sink.pid),
            "postgres": bench_sink.cpu_of_tree(postgres.pid),
        }
        start = time.perf_counter()
        producer = subprocess.Popen(
            _tmq("producer", "--csv", str(csv_path), "--topic", topic, "--timestamps",
                 "source", "--progress", "never", "--bootstrap", broker.bootstrap),
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        _, status, usage = os.wait4(producer.pid, 0)
        producer.returncode = os.waitstatus_to_exitcode(status)
        producer_seconds = time.perf_counter() - start
        if producer.returncode:
            raise CommandError(f"the producer failed: {producer.stderr.read().decode()[-500:]}")
        _wait_for_commits(dsn, rows, sink, start)
        elapsed = time.perf_counter() - start
        cpu = {
            "producer": usage.ru_utime + usage.ru_stime,
            "broker": process_cpu_seconds(broker.process.pid) - before["broker"],
            "sink": process_cpu_seconds(sink.pid) - before["sink"],
            "postgres": bench_sink.cpu_of_tree(postgres.pid) - before["postgres"],
        }
        with psycopg.connect(dsn) as connection:
            stored = connection.execute(
                "SELECT count(*), count(DISTINCT (gpu, metric, time)) FROM telemetry"
            ).fetchone()
    finally:
        if sink.poll() is None:
            sink.terminate()
            sink.wait(60)
    return {
        "rows_per_s": round(rows / elapsed),
        "producer_rows_per_s": round(rows / producer_seconds),
        "cpu_us_per_row": {stage: round(seconds / rows * 1e6, 2) for stage, seconds in cpu.items()},
        "verified": stored == (rows, rows),
    }


def _wait_for_locks(dsn: str, partitions: int, sink: subprocess.Popen) -> None:
    """Wait until the sink holds every partition's lock."""
    import psycopg

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sink.poll() is not None:
            raise CommandError("the sink exited at start")
        with psycopg.connect(dsn) as connection:
            (held,) = connection.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objsubid = 2"
            ).fetchone()
        if held == partitions:
            return
        time.sleep(0.2)
    raise CommandError("the sink did not take the partitions within 60 s")


def _wait_for_commits(dsn: str, rows: int, sink: subprocess.Popen, start: float) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        while True:
            (committed,) = connection.execute(
                "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets"
            ).fetchone()
            if committed >= rows:
                return
            if sink.poll() is not None:
                raise CommandError("the sink exited during the run")
            if time.perf_counter() - start > 900:
                raise CommandError(f"the sink committed {committed} of {rows} rows in 900 s")
            time.sleep(0.05)
