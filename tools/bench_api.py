"""``tmq bench api``: the REST API under load, next to the same SQL run straight on psycopg 3.

Data: ``--days`` (10) of 1-minute samples of ``--gpus`` (64) GPUs x the 10 fields of the real
DCGM capture (9,216,000 rows by default), written by SQL alone: ``migrate()``, the ``gpus``
rows (hosts of 8 GPUs, names and UUIDs as ``tmq.telemetry.gen`` makes them), then
``INSERT INTO telemetry SELECT ... FROM generate_series(...)`` one day per statement, in time
order as the sink writes (each scrape's rows together), with values that move like a fleet
running jobs; then ``VACUUM (ANALYZE)``. On a plain table the indexes and the unique
constraint are dropped before the rows go in and rebuilt after, with the definitions read
from the catalog (a sort-based build is about twice as fast as index maintenance row by row),
all in one transaction, so an interrupted load leaves the schema as it was. The data goes
into a throwaway PostgreSQL cluster with fsync off (``durable=False``: a crash may lose it,
which does not matter to a read benchmark) and ``--shared-buffers`` (2GB: the 1.6 GB of table
and indexes fit, as on a server sized for them), read into the cache with ``pg_prewarm``; or,
with ``--dsn``, into that database as its server is set up, which must hold no GPUs and no
samples, and is emptied again at the end.

Then the real ``tmq api`` serves it (``--pool-size``, and ``--workers`` processes when more
than one), and each round measures, in this order, each API figure right before its baseline:

1. ``GET /api/v1/gpus`` (the first page of 50) on ``--connections`` (50) keep-alive
   connections in a closed loop for ``--duration`` seconds: requests/s and latency. Floor:
   1,000 requests/s. Baseline: the same statement (``tmq.api.queries.gpus``) on psycopg 3 in a
   closed loop on ``--baseline-threads`` threads, a connection each.
2. ``GET /api/v1/gpus/{uuid}/metrics?metric_name=...&aggregation=avg&start_time=...&end_time=...``
   over 24 hours of one GPU (GPU, metric and window drawn at random for each request), in an
   open loop of ``--metrics-rate`` (100) requests/s: latency percentiles. Floor: p99 <= 50 ms.
3. ``GET /api/v1/gpus/{uuid}/telemetry?start_time=...&end_time=...&limit=1000&offset=...``:
   full pages of 1,000 samples out of 24 hours of one GPU (GPU, window and page drawn at
   random), open loop at ``--telemetry-rate`` (50) requests/s. Floor: p99 <= 100 ms.

For 2 and 3 the baseline sends the same statements (``tmq.api.queries.metrics`` and
``telemetry`` of the same parsed queries, ``tmq.api.validation.parse_query``) for the same
requests at the same rate on psycopg 3's asyncio connections. psycopg 3 binds parameters on
the server and prepares a statement it has run 5 times (its defaults); the API's txpostgres
sends each statement as text. Rounds: every round is reported, and the best of each figure
(highest rate, lowest p99) at the top, as the other benchmarks do.

Open loop: requests go out on a fixed schedule (``open_loop_schedule``), whether or not
earlier ones have been answered, on as many connections as that takes (4 opened before the
start, one more whenever all are busy, up to 64); each latency runs from the request's
scheduled send time, not from when it was sent, so a stall of the server or of the client
counts in full for every request it delays (no coordinated omission). How late the client
sent is reported too.

Load generators. Scenario 1 uses ``wrk`` (the Debian package ``wrk``): a C event loop that
keeps 50 connections busy for a few percent of one core, where a Python client doing the
same would take most of a core from the API and PostgreSQL on this 2-core machine and
measure itself. wrk cannot send at a fixed rate (wrk2 can, but Debian does not package it),
so scenarios 2 and 3 use the asyncio client here: at 50-100 requests/s it costs little CPU,
and it measures from the scheduled times. Latency percentiles are nearest-rank (the smallest
value that at least p % of the samples do not exceed).

The API's and PostgreSQL's CPU per request are read from ``/proc`` (PostgreSQL's only for the
throwaway cluster). Every process started here is stopped at the end, on an error, on Ctrl-C
and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from .errors import CommandError

__all__ = [
    "FLOORS",
    "ApiServer",
    "Dataset",
    "HttpRequest",
    "add_parser",
    "best_round",
    "check_arguments",
    "gpus_path",
    "latency_summary",
    "load",
    "make_dataset",
    "metrics_requests",
    "open_loop_schedule",
    "parse_response_head",
    "percentile",
    "prepare",
    "prewarm",
    "require_wrk",
    "run_api_bench",
    "telemetry_requests",
]

#: The issue's floors on this 2-core machine.
FLOORS = {
    "gpus_requests_per_s": 1000,
    "metrics_p99_ms": 50,
    "telemetry_p99_ms": 100,
}
WRK_PACKAGE = "wrk"
#: The last sample's time: fixed, so every run serves the same windows.
DATA_END = datetime(2025, 7, 18, tzinfo=UTC)
GPUS_PER_HOST = 8
WINDOW_MINUTES = 24 * 60
PAGE_SIZE = 1000
PERCENTILES = (50, 90, 99, 99.9)
_SEED = 7
#: Connections each open-loop client opens before its schedule starts.
_WARM_CONNECTIONS = 4
#: The most connections an open-loop client opens; later requests wait (and it shows).
_MAX_CONNECTIONS = 64
_REQUEST_TIMEOUT_S = 30.0
_WRK_MARK = "TMQ-WRK "
# wrk calls done() once, after its own report: one line of JSON, marked.
_WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "TMQ-WRK {\\"requests\\":%d,\\"duration_us\\":%d,\\"connect_errors\\":%d,"
    .. "\\"read_errors\\":%d,\\"write_errors\\":%d,\\"status_errors\\":%d,"
    .. "\\"timeouts\\":%d,\\"p50_us\\":%d,\\"p90_us\\":%d,\\"p99_us\\":%d,"
    .. "\\"p99.9_us\\":%d,\\"max_us\\":%d}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


# -- the command line ------------------------------------------------------------------------


def add_parser(kinds) -> None:
    parser = kinds.add_parser(
        "api",
        help="REST API requests/s and latency under load, next to the same SQL on psycopg",
        description=(
            "Load generated telemetry into PostgreSQL, start tmq api on it, and measure "
            "/api/v1/gpus in a closed loop (wrk) and /metrics and /telemetry of one GPU in "
            "open loops at fixed rates, each next to the same SQL run straight on psycopg 3 "
            "in the same run."
        ),
    )
    parser.add_argument(
        "--dsn",
        help="an empty database to load and measure (emptied again at the end); default: a "
        "throwaway PostgreSQL cluster with fsync off",
    )
    parser.add_argument(
        "--days", type=float, default=10.0, help="days of 1-minute samples (default 10)"
    )
    parser.add_argument("--gpus", type=int, default=64, help="GPUs (default %(default)s)")
    parser.add_argument(
        "--duration",
        type=int,
        default=10,
        metavar="SECONDS",
        help="seconds of each measurement, API and baseline alike (default %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of every measurement; the best is reported first, every one listed "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=50,
        help="concurrent keep-alive connections of /gpus (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-rate",
        type=float,
        default=100.0,
        metavar="PER_S",
        help="requests/s of the /metrics open loop (default %(default)s)",
    )
    parser.add_argument(
        "--telemetry-rate",
        type=float,
        default=50.0,
        metavar="PER_S",
        help="requests/s of the /telemetry open loop (default %(default)s)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=4,
        metavar="N",
        help="tmq api --pool-size (default %(default)s, tmq api's own)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="tmq api --workers, processes serving the API (default %(default)s; given to "
        "tmq api only when more than 1)",
    )
    parser.add_argument(
        "--shared-buffers",
        default="2GB",
        metavar="SIZE",
        help="shared_buffers of the throwaway cluster (default %(default)s: the data set and "
        "its indexes fit, as they would on a server tuned for them); not used with --dsn",
    )
    parser.add_argument(
        "--baseline-threads",
        type=int,
        default=4,
        metavar="N",
        help="threads (a connection each) of the /gpus baseline (default %(default)s)",
    )
    parser.set_defaults(run=_run, bench_parser=parser)


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, in words; ``None`` when nothing is."""
    if not 0.01 <= args.days <= 366:
        return "--days must be from 0.01 (15 minutes) to 366"
    if not 1 <= args.gpus <= 100_000:
        return "--gpus must be from 1 to 100000"
    if args.duration < 1:
        return "--duration must be at least 1 second"
    if args.rounds < 1:
        return "--rounds must be >= 1"
    if args.connections < 1:
        return "--connections must be >= 1"
    if args.pool_size < 1 or args.baseline_threads < 1 or args.workers < 1:
        return "--pool-size, --workers and --baseline-threads must be >= 1"
    rates = (("--metrics-rate", args.metrics_rate), ("--telemetry-rate", args.telemetry_rate))
    for name, rate in rates:
        if not (math.isfinite(rate) and rate > 0):
            return f"{name} must be > 0"
        if rate * args.duration < 1:
            return f"{name} x --duration must make at least one request"
    return None


def require_wrk(which: Callable[[str], str | None] = shutil.which) -> str:
    """The path of ``wrk``; ``CommandError`` naming the Debian package when it is missing."""
    path = which("wrk")
    if path is None:
        raise CommandError(
            f"wrk is not installed (it generates the /api/v1/gpus load): apt-get install "
            f"{WRK_PACKAGE}"
        )
    return path


def _run(args: argparse.Namespace) -> int:
    problem = check_arguments(args)
    if problem:
        args.bench_parser.error(problem)
    wrk = require_wrk()
    # clean up as on Ctrl-C; SIGINT set too, in case it was ignored when this process started
    previous = {n: signal.signal(n, _interrupted) for n in (signal.SIGTERM, signal.SIGINT)}
    try:
        results = run_api_bench(
            dsn=args.dsn,
            days=args.days,
            gpus=args.gpus,
            duration=args.duration,
            rounds=args.rounds,
            connections=args.connections,
            metrics_rate=args.metrics_rate,
            telemetry_rate=args.telemetry_rate,
            pool_size=args.pool_size,
            workers=args.workers,
            baseline_threads=args.baseline_threads,
            shared_buffers=args.shared_buffers,
            wrk=wrk,
            progress=sys.stderr,
        )
    finally:
        for number, handler in previous.items():  # None: not set from Python
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if results["verified"] and results["errors"] == 0 else 1


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


# -- pure parts: the data set, the requests, the schedule, the statistics ----------------------


@dataclass(frozen=True)
class Dataset:
    """What the load writes: one sample a minute of each metric of each GPU, ``minutes``
    of them, the first at ``start``."""

    uuids: tuple[str, ...]
    hostnames: tuple[str, ...]
    metrics: tuple[str, ...]
    start: datetime
    minutes: int

    @property
    def end(self) -> datetime:
        """The last sample's time."""
        return self.start + timedelta(minutes=self.minutes - 1)

    @property
    def rows(self) -> int:
        return len(self.uuids) * len(self.metrics) * self.minutes


def make_dataset(gpus: int, days: float, metrics: Sequence[str] | None = None) -> Dataset:
    """``gpus`` GPUs on hosts of 8 (names and UUIDs as ``tmq.telemetry.gen`` makes them),
    ``days`` of 1-minute samples ending at ``DATA_END``, of ``metrics`` (default: the 10
    fields of the real capture)."""
    from tmq.telemetry.gen import REAL_METRICS, gpu_uuid, host_name

    hostnames = tuple(host_name(index // GPUS_PER_HOST + 1) for index in range(gpus))
    uuids = tuple(
        gpu_uuid(_SEED, hostname, index % GPUS_PER_HOST) for index, hostname in enumerate(hostnames)
    )
    minutes = max(1, round(days * 24 * 60))
    start = DATA_END - timedelta(minutes=minutes - 1)
    return Dataset(uuids, hostnames, tuple(metrics or REAL_METRICS), start, minutes)


class HttpRequest(NamedTuple):
    """One request of an open loop: the GPU, the route's query arguments, and its path."""

    uuid: str
    args: dict[str, str]
    path: str


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _window(dataset: Dataset, rng: random.Random) -> tuple[datetime, datetime, int]:
    """A random window of 24 hours of samples (all of them when there are fewer): its first
    and last sample times (both inclusive) and the samples of one series in it."""
    span = min(WINDOW_MINUTES, dataset.minutes - 1)
    first = rng.randrange(dataset.minutes - span)
    start = dataset.start + timedelta(minutes=first)
    return start, start + timedelta(minutes=span), span + 1


def gpus_path() -> str:
    """Scenario 1's request: the first page of GPUs (the default 50)."""
    return "/api/v1/gpus"


def metrics_requests(dataset: Dataset, count: int, seed: int = 1) -> list[HttpRequest]:
    """``count`` ``/metrics`` requests: the average of one metric of one GPU over a 24-hour
    window, GPU, metric and window drawn at random (``seed``: the same requests every run)."""
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        uuid = rng.choice(dataset.uuids)
        start, end, _samples = _window(dataset, rng)
        args = {
            "metric_name": rng.choice(dataset.metrics),
            "aggregation": "avg",
            "start_time": _rfc3339(start),
            "end_time": _rfc3339(end),
        }
        path = f"/api/v1/gpus/{uuid}/metrics?{urllib.parse.urlencode(args)}"
        requests.append(HttpRequest(uuid, args, path))
    return requests


def telemetry_requests(dataset: Dataset, count: int, seed: int = 2) -> list[HttpRequest]:
    """``count`` ``/telemetry`` requests: a page of 1,000 samples of one GPU out of a 24-hour
    window, GPU, window and page drawn at random; every page full when the window holds
    1,000 samples or more."""
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        uuid = rng.choice(dataset.uuids)
        start, end, samples = _window(dataset, rng)
        rows = samples * len(dataset.metrics)
        page = rng.randrange(max(0, rows - PAGE_SIZE) // PAGE_SIZE + 1)
        args = {
            "start_time": _rfc3339(start),
            "end_time": _rfc3339(end),
            "limit": str(PAGE_SIZE),
            "offset": str(page * PAGE_SIZE),
        }
        path = f"/api/v1/gpus/{uuid}/telemetry?{urllib.parse.urlencode(args)}"
        requests.append(HttpRequest(uuid, args, path))
    return requests


def open_loop_schedule(rate: float, duration: float) -> list[float]:
    """Send times of an open loop of ``rate`` requests/s for ``duration`` s, in seconds from
    its start: evenly spaced, the first at 0, as many as fit before ``duration`` (at least
    one)."""
    if not (rate > 0 and duration > 0):
        raise ValueError("rate and duration must be > 0")
    count = max(1, math.ceil(rate * duration - 1e-9))
    return [index / rate for index in range(count)]


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of ``values``: the smallest value
    that at least ``p`` % of them do not exceed."""
    if not values:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered) - 1e-9)
    return ordered[max(rank, 1) - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, p99.9, max and mean of latencies in seconds, in milliseconds."""
    ordered = sorted(seconds)
    summary = {f"p{p:g}": round(percentile(ordered, p) * 1000, 3) for p in PERCENTILES}
    summary["max"] = round(ordered[-1] * 1000, 3)
    summary["mean"] = round(statistics.fmean(ordered) * 1000, 3)
    return summary


def best_round(rounds: Sequence[dict], key: str, *, lowest: bool = False) -> dict:
    """The round with the highest ``key`` (``lowest``: the lowest); a key with a dotted path
    (``latency_ms.p99``) looks inside."""

    def value(entry: dict) -> float:
        for part in key.split("."):
            entry = entry[part]
        return entry

    return (min if lowest else max)(rounds, key=value)


def parse_response_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    """The status and the headers (names lower-cased) of an HTTP/1.1 response head, up to and
    including its blank line; ``ValueError`` when it is not one."""
    lines = head.split(b"\r\n")
    match = re.fullmatch(rb"HTTP/1\.[01] (\d{3})(?: .*)?", lines[0])
    if match is None:
        raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise ValueError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(match.group(1)), headers


# -- the data --------------------------------------------------------------------------------

# One row per (minute, GPU, metric), in that order: a scrape's rows together, as the sink
# writes them. ``u`` is the GPU's utilisation (jobs of about 40 minutes' period, a phase per
# GPU, noise); the other fields follow it as they do on the real capture's H100s.
_INSERT = """
    INSERT INTO telemetry (time, gpu, metric, value, container, pod, namespace)
    SELECT r.time, r.gpu, r.metric,
        CASE r.metric
            WHEN 'DCGM_FI_DEV_GPU_UTIL' THEN round(r.u)
            WHEN 'DCGM_FI_DEV_MEM_COPY_UTIL' THEN round(r.u * 0.4)
            WHEN 'DCGM_FI_DEV_POWER_USAGE' THEN round((70 + 6.2 * r.u)::numeric, 3)
            WHEN 'DCGM_FI_DEV_GPU_TEMP' THEN round(31 + 0.45 * r.u)
            WHEN 'DCGM_FI_DEV_FB_USED' THEN CASE WHEN r.u >= 1 THEN 61440 ELSE 4 END
            WHEN 'DCGM_FI_DEV_FB_FREE' THEN CASE WHEN r.u >= 1 THEN 19567 ELSE 81003 END
            WHEN 'DCGM_FI_DEV_SM_CLOCK' THEN CASE WHEN r.u >= 1 THEN 1980 ELSE 345 END
            WHEN 'DCGM_FI_DEV_MEM_CLOCK' THEN 2619
            ELSE 0
        END,
        CASE WHEN r.gpu %% 4 <> 0 THEN 'trainer' END,
        CASE WHEN r.gpu %% 4 <> 0 THEN 'train-' || r.gpu / 8 || '-worker-' || r.gpu %% 8 END,
        CASE WHEN r.gpu %% 4 <> 0 THEN 'ml-training' END
    FROM (
        SELECT q.time, q.gpu, q.metric,
            greatest(0, least(100, 50 + 55 * sin(extract(epoch FROM q.time) / 2400 + q.gpu)
                                   + 10 * (random() - 0.5))) AS u
        FROM (
            SELECT %(start)s::timestamptz + (n / %(per_minute)s) * interval '1 minute' AS time,
                (%(ids)s::int[])[(n / %(metric_count)s) %% %(gpu_count)s + 1] AS gpu,
                (%(metrics)s::text[])[n %% %(metric_count)s + 1] AS metric
            FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
        ) AS q
    ) AS r
"""

_INSERT_GPU = """
    INSERT INTO gpus (uuid, hostname, device, gpu_index, model, driver, labels, first_seen,
                      last_seen)
    VALUES (%s, %s, %s, %s, 'NVIDIA H100 80GB HBM3', '535.129.03', %s, %s, %s)
"""


def _say(progress, text: str) -> None:
    if progress is not None:
        print(text, file=progress, flush=True)


def _is_hypertable(connection) -> bool:
    (view,) = connection.execute(
        "SELECT to_regclass('timescaledb_information.hypertables')"
    ).fetchone()
    if view is None:
        return False
    return (
        connection.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'telemetry' AND hypertable_schema = current_schema()"
        ).fetchone()[0]
        > 0
    )


def prepare(dsn: str) -> None:
    """Migrate the database at ``dsn``; ``CommandError`` unless it holds no GPU and no
    sample (the bench never mixes its rows with real ones, nor removes those)."""
    import psycopg

    from tmq.sink.schema import migrate

    with psycopg.connect(dsn, autocommit=True) as connection:
        migrate(connection)
        holding = connection.execute(
            "SELECT EXISTS (SELECT 1 FROM gpus), EXISTS (SELECT 1 FROM telemetry)"
        ).fetchone()
    if any(holding):
        raise CommandError(
            "--dsn: the database already holds GPUs or samples; give an empty one (the "
            "bench writes its own data there and empties it at the end)"
        )


def load(dsn: str, dataset: Dataset, progress=None) -> dict:
    """Migrate the database at ``dsn``, which must be empty (``prepare``), and write
    ``dataset`` into it; the load's figures."""
    import psycopg
    from psycopg.types.json import Jsonb

    started = time.perf_counter()
    prepare(dsn)
    with psycopg.connect(dsn, autocommit=True) as connection:
        rebuild = not _is_hypertable(connection)
        with connection.transaction():
            connection.execute("SET LOCAL jit = off")
            connection.execute("SELECT setseed(0.25)")
            with connection.cursor() as cursor:
                cursor.executemany(
                    _INSERT_GPU,
                    [
                        (uuid, hostname, f"nvidia{index % GPUS_PER_HOST}", index % GPUS_PER_HOST,
                         Jsonb({"instance": f"{hostname}:9400"}), dataset.start, dataset.end)
                        for index, (uuid, hostname) in enumerate(
                            zip(dataset.uuids, dataset.hostnames, strict=True)
                        )
                    ],
                )  # fmt: skip
            ids = [
                row[0]
                for row in connection.execute(
                    "SELECT id FROM gpus WHERE uuid = ANY(%s) ORDER BY array_position(%s, uuid)",
                    (list(dataset.uuids), list(dataset.uuids)),
                )
            ]
            rebuilds = _drop_indexes(connection) if rebuild else []
            per_minute = len(ids) * len(dataset.metrics)
            params = {
                "start": dataset.start,
                "per_minute": per_minute,
                "ids": ids,
                "metrics": list(dataset.metrics),
                "metric_count": len(dataset.metrics),
                "gpu_count": len(ids),
            }
            day = 24 * 60
            for first in range(0, dataset.minutes, day):
                last = min(first + day, dataset.minutes)
                connection.execute(
                    _INSERT, params | {"first": first * per_minute, "last": last * per_minute - 1}
                )
                _say(
                    progress,
                    f"  {last * per_minute:,} of {dataset.rows:,} rows "
                    f"({time.perf_counter() - started:.0f} s)",
                )
            inserted = time.perf_counter()
            if rebuilds:
                _say(progress, "  building the indexes ...")
                connection.execute("SET LOCAL maintenance_work_mem = '512MB'")
                for statement in rebuilds:
                    connection.execute(statement)
        indexed = time.perf_counter()
        _say(progress, "  VACUUM (ANALYZE) ...")
        connection.execute("VACUUM (ANALYZE) gpus")
        connection.execute("VACUUM (ANALYZE) telemetry")
        finished = time.perf_counter()
        (rows,) = connection.execute("SELECT count(*) FROM telemetry").fetchone()
        table_bytes, total_bytes = connection.execute(
            "SELECT pg_relation_size('telemetry'), pg_total_relation_size('telemetry')"
        ).fetchone()
    if rows != dataset.rows:
        raise CommandError(f"the load wrote {rows} rows instead of {dataset.rows}")
    return {
        "rows": rows,
        "seconds": round(finished - started, 1),
        "rows_per_s": round(rows / (finished - started)),
        "insert_seconds": round(inserted - started, 1),
        "index_build_seconds": round(indexed - inserted, 1) if rebuilds else None,
        "vacuum_analyze_seconds": round(finished - indexed, 1),
        "table_mb": round(table_bytes / 1e6),
        "table_with_indexes_mb": round(total_bytes / 1e6),
    }


def _drop_indexes(connection) -> list[str]:
    """Drop ``telemetry``'s constraints and indexes (in the caller's transaction); the
    statements that make them again, as the catalog defines them."""
    constraints = connection.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'telemetry'::regclass AND contype IN ('p', 'u') ORDER BY conname"
    ).fetchall()
    for name, _definition in constraints:
        connection.execute(f'ALTER TABLE telemetry DROP CONSTRAINT "{name}"')
    indexes = connection.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = 'telemetry'::regclass ORDER BY 1"
    ).fetchall()
    for name, _definition in indexes:
        connection.execute(f"DROP INDEX {name}")
    return [
        *(f'ALTER TABLE telemetry ADD CONSTRAINT "{name}" {definition}'
          for name, definition in constraints),
        *(definition for _name, definition in indexes),
    ]  # fmt: skip


def prewarm(dsn: str) -> float:
    """Read ``gpus``, ``telemetry`` and their indexes into shared buffers (``pg_prewarm``), as
    a server that has served them for a while holds them; the seconds it took."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        connection.execute(
            "SELECT pg_prewarm(relation) FROM ("
            " SELECT indrelid::regclass AS relation FROM pg_index"
            " WHERE indrelid IN ('telemetry'::regclass, 'gpus'::regclass)"
            " UNION SELECT indexrelid::regclass FROM pg_index"
            " WHERE indrelid IN ('telemetry'::regclass, 'gpus'::regclass)) AS relations"
        )
    return time.perf_counter() - started


def _empty(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("TRUNCATE telemetry, gpus")


# -- the API process ---------------------------------------------------------------------------


class ApiServer:
    """``tmq api`` on 127.0.0.1 and a free port, its output in ``directory/api.log``."""

    def __init__(self, dsn: str, directory: Path, pool_size: int, workers: int = 1):
        from .processes import die_with_parent_hook

        self.log_path = directory / "api.log"
        more = ["--workers", str(workers)] if workers > 1 else []
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tmq.tools.cli", "api", "--dsn", dsn,
                 "--listen", "127.0.0.1:0", "--pool-size", str(pool_size), *more],
                cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent_hook(signal.SIGTERM),
            )  # fmt: skip
        try:
            self.host, self.port = self._wait_for_address()
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def _wait_for_address(self, timeout: float = 60.0) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"listening on http://([\d.]+):(\d+)", self.log_path.read_text())
            if match:
                return match.group(1), int(match.group(2))
            if self.process.poll() is not None:
                raise CommandError(f"tmq api exited at start:\n{self._log_tail()}")
            time.sleep(0.05)
        raise CommandError(f"tmq api did not listen within {timeout:.0f} s:\n{self._log_tail()}")

    def _wait_until_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=10) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.process.poll() is not None:
                raise CommandError(f"tmq api exited:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise CommandError(f"tmq api was not ready within {timeout:.0f} s")
            time.sleep(0.1)

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=60) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> float:
        """CPU seconds of the API's processes (workers included)."""
        from .bench_sink import cpu_of_tree

        return cpu_of_tree(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- scenario 1: closed loops --------------------------------------------------------------------


def _wrk(wrk: str, url: str, connections: int, duration: int, directory: Path) -> dict:
    """wrk on one thread (it needs a fraction of one core here) for ``duration`` s; its
    figures."""
    script = directory / "report.lua"
    script.write_text(_WRK_SCRIPT)
    command = [wrk, "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--timeout", "30s",
               "-s", str(script), url]  # fmt: skip
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 120, cwd=directory
    )
    lines = [line for line in finished.stdout.splitlines() if line.startswith(_WRK_MARK)]
    if finished.returncode or not lines:
        raise CommandError(f"wrk failed ({finished.returncode}): {finished.stderr.strip()}")
    report = json.loads(lines[-1][len(_WRK_MARK) :])
    seconds = report["duration_us"] / 1e6
    errors = sum(report[key] for key in report if key.endswith(("_errors", "timeouts")))
    return {
        "requests_per_s": round(report["requests"] / seconds),
        "requests": report["requests"],
        "seconds": round(seconds, 2),
        "latency_ms": {
            **{f"p{p:g}": round(report[f"p{p:g}_us"] / 1000, 3) for p in PERCENTILES},
            "max": round(report["max_us"] / 1000, 3),
        },
        "errors": errors,
    }


def _closed_loop_sql(dsn: str, statement, threads: int, duration: float) -> dict:
    """``statement`` in a closed loop on ``threads`` threads, a psycopg connection each, for
    ``duration`` s: queries/s and latency."""
    import psycopg

    sql, params = statement
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()
    results: list = [None] * threads

    def worker(index: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as connection:
                cursor = connection.cursor()
                for _ in range(10):  # past psycopg's prepare threshold
                    cursor.execute(sql, params).fetchall()
                barrier.wait()
                latencies = []
                start = time.perf_counter()
                deadline = start + duration
                now = start
                while now < deadline and not stop.is_set():
                    cursor.execute(sql, params).fetchall()
                    finished = time.perf_counter()
                    latencies.append(finished - now)
                    now = finished
                results[index] = (latencies, now - start)
        except BaseException as error:
            results[index] = error
            barrier.abort()

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in workers:
        thread.start()
    try:
        barrier.wait()
        for thread in workers:
            thread.join()
    except threading.BrokenBarrierError:
        for thread in workers:
            thread.join()
    finally:
        stop.set()
    failures = [result for result in results if not isinstance(result, tuple)]
    if failures:
        raise CommandError(f"the psycopg baseline failed: {failures[0]!r}")
    latencies = [latency for result in results for latency in result[0]]
    rate = sum(len(result[0]) / result[1] for result in results)
    return {
        "queries_per_s": round(rate),
        "queries": len(latencies),
        "latency_ms": latency_summary(latencies),
    }


# -- scenarios 2 and 3: open loops ---------------------------------------------------------------


class _BadStatus(Exception):
    pass


class _Pool:
    """Connections opened on demand up to ``limit``; a request waits when all are busy.
    ``opened`` counts them."""

    def __init__(self, connect: Callable[[], Awaitable], close: Callable[[Any], Any], limit: int):
        self._connect = connect
        self._close = close
        self._idle: list = []
        self._slots = asyncio.Semaphore(limit)
        self.opened = 0

    async def warm(self, count: int) -> None:
        for _ in range(count):
            self._idle.append(await self._connect())
            self.opened += 1

    async def run(self, work: Callable[[Any], Awaitable[bool]]) -> None:
        """``work(connection)``, which says whether the connection can be used again."""
        async with self._slots:
            if self._idle:
                connection = self._idle.pop()
            else:
                connection = await self._connect()
                self.opened += 1
            try:
                reusable = await work(connection)
            except BaseException:
                await self._close(connection)
                raise
            if reusable:
                self._idle.append(connection)
            else:
                await self._close(connection)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._close(connection)


async def _skip_chunked(reader: asyncio.StreamReader) -> int:
    """Read a chunked body to its end without keeping it (the client must cost little);
    its length."""
    length = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
                pass
            return length
        await reader.readexactly(size + 2)
        length += size


def _http_pool(host: str, port: int) -> _Pool:
    async def connect():
        return await asyncio.open_connection(host, port, limit=1 << 20)

    async def close(connection) -> None:
        connection[1].close()

    return _Pool(connect, close, _MAX_CONNECTIONS)


def _http_sender(pool: _Pool, host: str, port: int) -> Callable[[HttpRequest], Awaitable]:
    async def send(request: HttpRequest) -> None:
        message = f"GET {request.path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        status = 0

        async def exchange(connection) -> bool:
            nonlocal status
            reader, writer = connection
            writer.write(message)
            status, headers = parse_response_head(await reader.readuntil(b"\r\n\r\n"))
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                await _skip_chunked(reader)
            elif b"content-length" in headers:
                await reader.readexactly(int(headers[b"content-length"]))
            else:
                await reader.read()
                return False
            return headers.get(b"connection", b"").lower() != b"close"

        await pool.run(exchange)
        if status != 200:
            raise _BadStatus(f"HTTP {status} for {request.path}")

    return send


def _sql_pool(dsn: str) -> _Pool:
    import psycopg

    async def connect():
        return await psycopg.AsyncConnection.connect(dsn, autocommit=True)

    async def close(connection) -> None:
        await connection.close()

    return _Pool(connect, close, _MAX_CONNECTIONS)


def _sql_sender(pool: _Pool) -> Callable[[tuple], Awaitable]:
    async def send(statement: tuple) -> None:
        sql, params = statement

        async def query(connection) -> bool:
            async with connection.cursor() as cursor:
                await cursor.execute(sql, params)
                await cursor.fetchall()
            return True

        await pool.run(query)

    return send


async def _open_loop(requests: Sequence, schedule: Sequence[float], send, pool: _Pool) -> dict:
    """Send ``requests[i]`` at ``schedule[i]`` s from the start, whatever is still pending;
    latency from each scheduled time."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    lags: list[float] = []
    errors: list[str] = []

    async def one(at: float, request) -> None:
        try:
            await asyncio.wait_for(send(request), _REQUEST_TIMEOUT_S)
        except Exception as error:  # counted, and the first one shown
            errors.append(f"{type(error).__name__}: {error}")
            return
        latencies.append(loop.time() - at)

    try:
        await pool.warm(_WARM_CONNECTIONS)
        begin = loop.time() + 0.1
        tasks = []
        for offset, request in zip(schedule, requests, strict=True):
            at = begin + offset
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(loop.time() - at)
            tasks.append(asyncio.ensure_future(one(at, request)))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - begin
    finally:
        await pool.close()
    result: dict[str, Any] = {
        "requests": len(requests),
        "achieved_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms": latency_summary(latencies) if latencies else None,
        "max_send_lag_ms": round(max(lags) * 1000, 3),
        "connections": pool.opened,
        "errors": len(errors),
    }
    if errors:
        result["first_error"] = errors[0]
    return result


def _open_loop_http(
    server: ApiServer, requests: Sequence[HttpRequest], schedule: Sequence[float]
) -> dict:
    async def main() -> dict:
        pool = _http_pool(server.host, server.port)
        send = _http_sender(pool, server.host, server.port)
        return await _open_loop(requests, schedule, send, pool)

    return asyncio.run(main())


def _open_loop_sql(dsn: str, statements: Sequence[tuple], schedule: Sequence[float]) -> dict:
    async def main() -> dict:
        pool = _sql_pool(dsn)
        return await _open_loop(statements, schedule, _sql_sender(pool), pool)

    return asyncio.run(main())


# -- the benchmark ---------------------------------------------------------------------------------


def _statements(dsn: str, operation_name: str, requests: Sequence[HttpRequest]) -> list[tuple]:
    """The statements the API runs for ``requests``: each parsed as the API parses it, then
    turned into SQL by ``tmq.api.queries``, with the GPU ids the database holds."""
    import psycopg

    from tmq.api import queries, validation

    operation = getattr(validation, operation_name)
    build = {"GPU_METRICS": queries.metrics, "GPU_TELEMETRY": queries.telemetry}[operation_name]
    with psycopg.connect(dsn) as connection:
        ids = dict(connection.execute("SELECT uuid, id FROM gpus").fetchall())
    return [tuple(build(_parsed(operation, request), ids[request.uuid])) for request in requests]


# What the answers must say, asked independently of tmq.api.queries.
_CHECK_METRICS = """
    SELECT avg(t.value), count(t.value) FROM telemetry AS t JOIN gpus AS g ON g.id = t.gpu
    WHERE g.uuid = %(uuid)s AND t.metric = %(metric)s AND t.time BETWEEN %(start)s AND %(end)s
"""
_CHECK_SAMPLES = """
    SELECT count(*) FROM telemetry AS t JOIN gpus AS g ON g.id = t.gpu
    WHERE g.uuid = %(uuid)s AND t.time BETWEEN %(start)s AND %(end)s
"""


def _verify(server: ApiServer, dsn: str, dataset: Dataset, metrics, telemetry) -> list[str]:
    """Problems with the API's answers to the first request of each kind, checked against
    the data set and against SQL of its own; none when all is well."""
    import psycopg

    from tmq.api import validation

    problems = []
    page = server.get_json(gpus_path())
    if page["total"] != len(dataset.uuids) or len(page["items"]) != min(50, len(dataset.uuids)):
        problems.append(f"/gpus: total {page['total']}, {len(page['items'])} items")
    with psycopg.connect(dsn, autocommit=True) as connection:
        query = _parsed(validation.GPU_METRICS, metrics)
        answer = server.get_json(metrics.path)
        value, samples = connection.execute(
            _CHECK_METRICS,
            {"uuid": query.gpu_id, "metric": query.metric_name, "start": query.start_time,
             "end": query.end_time},
        ).fetchone()  # fmt: skip
        same = answer["value"] == value or (
            None not in (answer["value"], value) and math.isclose(answer["value"], value)
        )
        if answer["samples"] != samples or not same:
            problems.append(f"/metrics: {answer['value']} of {answer['samples']} samples, "
                            f"the database says {value} of {samples}")  # fmt: skip
        query = _parsed(validation.GPU_TELEMETRY, telemetry)
        answer = server.get_json(telemetry.path)
        (total,) = connection.execute(
            _CHECK_SAMPLES, {"uuid": query.gpu_id, "start": query.start_time, "end": query.end_time}
        ).fetchone()
        expected = max(0, min(query.limit, total - query.offset))
        if answer["total"] != total or len(answer["items"]) != expected:
            problems.append(f"/telemetry: {len(answer['items'])} items of {answer['total']}, "
                            f"the database says {expected} of {total}")  # fmt: skip
    return problems


def _parsed(operation, request: HttpRequest):
    """``request`` read as the API reads it."""
    from tmq.api import validation

    args = {name.encode(): [value.encode()] for name, value in request.args.items()}
    return validation.parse_query(operation, args, request.uuid)


def _cpu(server: ApiServer, postgres) -> tuple[float, float | None]:
    from .bench_sink import cpu_of_tree

    return server.cpu_seconds(), (cpu_of_tree(postgres.pid) if postgres is not None else None)


def _with_cpu(result: dict, before, after, requests: int) -> dict:
    result["api_cpu_us_per_request"] = round((after[0] - before[0]) / requests * 1e6, 1)
    if before[1] is not None:
        result["postgres_cpu_us_per_request"] = round((after[1] - before[1]) / requests * 1e6, 1)
    return result


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def run_api_bench(
    *,
    dsn: str | None,
    days: float,
    gpus: int,
    duration: int,
    rounds: int,
    connections: int,
    metrics_rate: float,
    telemetry_rate: float,
    pool_size: int,
    workers: int = 1,
    shared_buffers: str = "2GB",
    baseline_threads: int,
    wrk: str,
    progress=None,
) -> dict:
    """Load the data, start ``tmq api``, measure every scenario ``rounds`` times next to its
    baseline, stop everything; the JSON-ready results."""
    import psycopg

    from tmq.api import queries, validation

    from .postgres import PostgresError, ThrowawayPostgres

    dataset = make_dataset(gpus, days)
    metrics_schedule = open_loop_schedule(metrics_rate, duration)
    telemetry_schedule = open_loop_schedule(telemetry_rate, duration)
    directory = Path(tempfile.mkdtemp(prefix="tmq-bench-api-"))
    postgres = server = None
    loaded = False
    try:
        if dsn is None:
            try:
                postgres = ThrowawayPostgres(
                    durable=False, settings={"shared_buffers": shared_buffers}
                ).start()
            except PostgresError as error:
                raise CommandError(str(error)) from None
            target = postgres.create_database("bench_api")
        else:
            target = dsn
        prepare(target)
        loaded = True  # empty before: the bench may empty it again
        shape = f"{len(dataset.uuids)} GPUs x {len(dataset.metrics)} metrics"
        _say(progress, f"loading {dataset.rows:,} rows ({shape} x {dataset.minutes:,} min) ...")
        load_figures = load(target, dataset, progress)
        _say(progress, f"loaded in {load_figures['seconds']} s")
        if postgres is not None:
            _say(progress, "reading the tables into shared buffers (pg_prewarm) ...")
            load_figures["prewarm_seconds"] = round(prewarm(target), 1)
        with psycopg.connect(target) as connection:
            version, shared_buffers = (
                connection.execute("SHOW server_version").fetchone()[0],
                connection.execute("SHOW shared_buffers").fetchone()[0],
            )
        metric_requests = metrics_requests(dataset, len(metrics_schedule))
        page_requests = telemetry_requests(dataset, len(telemetry_schedule))
        metric_statements = _statements(target, "GPU_METRICS", metric_requests)
        page_statements = _statements(target, "GPU_TELEMETRY", page_requests)
        gpus_query = validation.parse_query(validation.GPUS, {}, None)
        gpus_statement = tuple(queries.gpus(gpus_query))

        api_command = f"tmq api --pool-size {pool_size}" + (
            f" --workers {workers}" if workers > 1 else ""
        )
        _say(progress, f"starting {api_command} ...")
        server = ApiServer(target, directory, pool_size, workers)
        problems = _verify(server, target, dataset, metric_requests[0], page_requests[0])
        for problem in problems:
            _say(progress, f"WRONG ANSWER: {problem}")
        _wrk(wrk, server.base + gpus_path(), connections, 1, directory)  # warm-up

        every: dict[str, list[dict]] = {"gpus": [], "metrics": [], "telemetry": []}
        for number in range(1, rounds + 1):
            _say(progress, f"round {number} of {rounds}:")
            _say(progress, f"  /api/v1/gpus, wrk, {connections} connections, {duration} s ...")
            before = _cpu(server, postgres)
            api = _wrk(wrk, server.base + gpus_path(), connections, duration, directory)
            api = _with_cpu(api, before, _cpu(server, postgres), max(1, api["requests"]))
            _say(progress, f"  the same SQL on psycopg, {baseline_threads} threads ...")
            baseline = _closed_loop_sql(target, gpus_statement, baseline_threads, duration)
            ratio = _ratio(api["requests_per_s"], baseline["queries_per_s"])
            every["gpus"].append({"api": api, "baseline": baseline, "ratio": ratio})
            _say(progress, f"  -> {api['requests_per_s']:,} req/s (psycopg "
                           f"{baseline['queries_per_s']:,} queries/s)")  # fmt: skip

            for name, rate, schedule, requests, statements in (
                ("metrics", metrics_rate, metrics_schedule, metric_requests, metric_statements),
                ("telemetry", telemetry_rate, telemetry_schedule, page_requests, page_statements),
            ):
                _say(progress, f"  /{name}, open loop, {rate:g} req/s, {duration} s ...")
                before = _cpu(server, postgres)
                api = _open_loop_http(server, requests, schedule)
                api = _with_cpu(api, before, _cpu(server, postgres), len(requests))
                _say(progress, f"  the same SQL on psycopg, {rate:g} queries/s ...")
                baseline = _open_loop_sql(target, statements, schedule)
                entry = {"api": api, "baseline": baseline}
                if api["latency_ms"] and baseline["latency_ms"]:
                    entry["p99_ratio"] = _ratio(api["latency_ms"]["p99"],
                                                baseline["latency_ms"]["p99"])  # fmt: skip
                every[name].append(entry)
                _say(progress, f"  -> p50/p99 {_p(api, 50)}/{_p(api, 99)} ms (psycopg "
                               f"{_p(baseline, 50)}/{_p(baseline, 99)} ms)")  # fmt: skip
    finally:
        if server is not None:
            server.stop()
        if dsn is not None and loaded:
            _empty(dsn)
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(directory, ignore_errors=True)

    errors = sum(
        entry[side]["errors"] for rounds_ in every.values() for entry in rounds_
        for side in ("api", "baseline") if "errors" in entry[side]
    )  # fmt: skip
    results = {
        "benchmark": "api",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "config": {
            "gpus": len(dataset.uuids),
            "metrics": len(dataset.metrics),
            "days": days,
            "rows": dataset.rows,
            "sample_interval": "1 minute",
            "first_sample": _rfc3339(dataset.start),
            "last_sample": _rfc3339(dataset.end),
            "postgres": (
                f"throwaway cluster, PostgreSQL {version}, durable=False (fsync, "
                f"synchronous_commit and full_page_writes off), shared_buffers {shared_buffers}"
                if dsn is None
                else f"the database of --dsn, PostgreSQL {version}, shared_buffers {shared_buffers}"
            ),
            "api": api_command + (f" ({workers} processes)" if workers > 1 else ", one process"),
            "duration_s": duration,
            "rounds": rounds,
            "baselines": "the same statements (tmq.api.queries) on psycopg "
            f"{psycopg.__version__}, autocommit, default prepare threshold",
        },
        "load": load_figures,
        "verified": not problems,
        "problems": problems,
        "errors": errors,
        "gpus": _gpus_summary(every["gpus"], connections, baseline_threads),
        "metrics": _open_summary(
            every["metrics"],
            "GET /api/v1/gpus/{uuid}/metrics?metric_name=M&aggregation=avg&start_time=S"
            "&end_time=S+24h (random GPU, metric and window)",
            metrics_rate,
            FLOORS["metrics_p99_ms"],
        ),
        "telemetry": _open_summary(
            every["telemetry"],
            "GET /api/v1/gpus/{uuid}/telemetry?start_time=S&end_time=S+24h&limit=1000"
            "&offset=K*1000 (random GPU, window and full page)",
            telemetry_rate,
            FLOORS["telemetry_p99_ms"],
        ),
    }
    results["meets_floors"] = all(results[name]["meets_floor"] for name in every)
    return results


def _p(result: dict, p: int) -> str:
    return "-" if not result["latency_ms"] else f"{result['latency_ms'][f'p{p}']:.1f}"


def _gpus_summary(rounds: list[dict], connections: int, threads: int) -> dict:
    api = best_round([entry["api"] for entry in rounds], "requests_per_s")
    baseline = best_round([entry["baseline"] for entry in rounds], "queries_per_s")
    return {
        "request": "GET /api/v1/gpus (the first page: 50 GPUs, and the total)",
        "load": f"closed loop, {connections} keep-alive connections (wrk, one thread)",
        "requests_per_s": api["requests_per_s"],
        "median_requests_per_s": statistics.median(e["api"]["requests_per_s"] for e in rounds),
        "latency_ms": api["latency_ms"],
        "baseline": {
            "what": f"the same SQL on psycopg, closed loop, {threads} threads (a connection each)",
            "queries_per_s": baseline["queries_per_s"],
            "latency_ms": baseline["latency_ms"],
        },
        "ratio_to_baseline": _ratio(api["requests_per_s"], baseline["queries_per_s"]),
        "floor_requests_per_s": FLOORS["gpus_requests_per_s"],
        "meets_floor": api["requests_per_s"] >= FLOORS["gpus_requests_per_s"]
        and api["errors"] == 0,
        "rounds": rounds,
    }


def _open_summary(rounds: list[dict], request: str, rate: float, floor_ms: float) -> dict:
    measured = [entry for entry in rounds if entry["api"]["latency_ms"]]
    api = None
    if measured:
        api = best_round([entry["api"] for entry in measured], "latency_ms.p99", lowest=True)
    timed = [entry["baseline"] for entry in rounds if entry["baseline"]["latency_ms"]]
    baseline = best_round(timed, "latency_ms.p99", lowest=True) if timed else None
    api_p99 = api["latency_ms"]["p99"] if api else None
    base_p99 = baseline["latency_ms"]["p99"] if baseline else None
    return {
        "request": request,
        "load": f"open loop, {rate:g} requests/s, latency from the scheduled send time",
        "latency_ms": api["latency_ms"] if api else None,
        "median_p99_ms": statistics.median(e["api"]["latency_ms"]["p99"] for e in measured)
        if measured
        else None,
        "baseline": {
            "what": f"the same SQL on psycopg (asyncio), open loop, {rate:g} queries/s",
            "latency_ms": baseline["latency_ms"] if baseline else None,
        },
        "p99_ratio_to_baseline": _ratio(api_p99, base_p99) if api_p99 and base_p99 else None,
        "floor_p99_ms": floor_ms,
        "meets_floor": api_p99 is not None and api_p99 <= floor_ms and api["errors"] == 0,
        "rounds": rounds,
    }
