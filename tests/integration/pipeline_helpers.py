"""Helpers of the pipeline tests: ``tmq producer`` and ``tmq sink`` as real processes, and
what PostgreSQL holds."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psycopg
from integration_helpers import stop_process

from tmq.telemetry.model import is_blank


def tmq_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "tmq.tools.cli", *arguments]


def run_tmq(*arguments: str, cwd: Path, stdin: bytes | None = None, timeout: float = 300):
    """Run a ``tmq`` subcommand to completion (cwd outside the checkout, whose ./tmq would
    shadow the installed package)."""
    return subprocess.run(
        tmq_command(*arguments), cwd=cwd, input=stdin, capture_output=True, timeout=timeout
    )


def generate_csv(path: Path, *, hosts: int, gpus: int, scrapes: int, seed: int) -> int:
    """Write a ``tmq gen`` fleet CSV (source times from 2026-01-01); return its rows."""
    generated = run_tmq(
        "gen", "--hosts", str(hosts), "--gpus-per-host", str(gpus), "--scrapes", str(scrapes),
        "--seed", str(seed), "--start", "2026-01-01T00:00:00Z", "--output", str(path),
        cwd=path.parent,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    return hosts * gpus * scrapes * 10


def start_producer(path: Path, topic: str, bootstrap: str, rate: int) -> subprocess.Popen:
    """``tmq producer`` of a CSV with its source times, at ``rate`` samples/s, running."""
    return subprocess.Popen(
        tmq_command(
            "producer", "--csv", str(path), "--topic", topic, "--timestamps", "source",
            "--rate", str(rate), "--bootstrap", bootstrap,
        ),
        cwd=path.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


class SinkProcess:
    """A ``tmq sink`` subprocess."""

    def __init__(
        self, workdir: Path, bootstrap: str, dsn: str, *extra: str, name: str, topic: str = "gpu"
    ):
        self.workdir = workdir
        self.arguments = [
            "sink", "--topic", topic, "--group", "test", "--dsn", dsn, "--bootstrap", bootstrap,
            "--instance-id", name, "--status-interval", "1", "--linger-ms", "50", *extra,
        ]  # fmt: skip
        self.log_path = workdir / f"sink-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> SinkProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            tmq_command(*self.arguments), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        return stop_process(self.process, sig, timeout, self.log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def partition_locks(dsn: str) -> list[int]:
    """How many partition locks (two-key advisory locks) each backend holds, sorted."""
    rows = query(
        dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND objsubid = 2 GROUP BY pid",
    )  # fmt: skip
    return sorted(count for (count,) in rows)


def query(dsn: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        return connection.execute(sql, params).fetchall()


def scalar(dsn: str, sql: str, params=()):
    return query(dsn, sql, params)[0][0]


def wait_for(condition, timeout: float, what: str, *logs) -> None:
    """Poll ``condition()`` until true; fail with ``what`` and the logs of ``logs``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    details = "\n".join(f"--- {p.log_path.name}:\n{p.log()[-3000:]}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{details}")


def committed(dsn: str) -> int:
    """The sum of the committed next offsets of group ``test`` (0 before the sink created
    its tables)."""
    try:
        return scalar(
            dsn, "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
            "WHERE consumer_group = 'test'",
        )  # fmt: skip
    except psycopg.errors.UndefinedTable:
        return 0


def csv_metric_figures(path: Path) -> dict[str, tuple[int, float, float, float]]:
    """Per metric: count, min, max and sum of the values of a DCGM CSV, read with the csv
    module (independently of tmq's parser); blanks are not values."""
    values: dict[str, list[float]] = defaultdict(list)
    with open(path, newline="") as stream:
        for row in csv.DictReader(stream):
            value = float(row["value"])
            if not is_blank(value):
                values[row["metric_name"]].append(value)
    return {m: (len(v), min(v), max(v), math.fsum(v)) for m, v in values.items()}


def csv_rows(path: Path) -> set[tuple[str, str, str, float | None]]:
    """Every row of a DCGM CSV as (uuid, metric, RFC 3339 time, value), read with the csv
    module; a blank is ``None``."""
    rows = set()
    with open(path, newline="") as stream:
        for row in csv.DictReader(stream):
            value = float(row["value"])
            rows.add(
                (
                    row["uuid"],
                    row["metric_name"],
                    row["timestamp"],
                    None if is_blank(value) else value,
                )
            )
    return rows


def db_rows(dsn: str) -> set[tuple[str, str, str, float | None]]:
    """Every telemetry row as ``csv_rows`` gives them."""
    rows = query(
        dsn, "SELECT g.uuid, metric, time, value FROM telemetry t JOIN gpus g ON g.id = t.gpu"
    )
    return {(g, m, t.isoformat().replace("+00:00", "Z"), v) for g, m, t, v in rows}


def db_metric_figures(dsn: str) -> dict[str, tuple[int, float, float, float]]:
    rows = query(
        dsn,
        "SELECT metric, count(value), min(value), max(value), sum(value) FROM telemetry "
        "GROUP BY metric",
    )
    return {metric: (count, low, high, total) for metric, count, low, high, total in rows}
