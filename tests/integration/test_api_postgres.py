"""The REST API (DESIGN §7) end to end: the real ``tmq api`` process over real PostgreSQL.

Every expected answer is computed here from the CSV files themselves, read with the ``csv``
module (not tmq's parser): the real DCGM capture, and a seeded ``tmq gen`` fleet with many
samples per series (and DCGM blank sentinels put in on purpose). Also: the query plans of the
API's statements on a table big enough to need its indexes, a database that goes away and
comes back under a running API, a database without the schema, and the command line.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import psycopg
import psycopg2
import pytest
from api_helpers import ApiProcess, load_csv

from tmq.api import queries
from tmq.api.validation import GpuListQuery, LatestQuery, MetricsQuery, TelemetryQuery
from tmq.sink.schema import SCHEMA_VERSION, migrate
from tmq.telemetry.csv_source import HEADER, real_capture_path
from tmq.telemetry.model import is_blank

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
AGGREGATIONS = ("avg", "min", "max", "sum", "count")
POWER = "DCGM_FI_DEV_POWER_USAGE"
FB_USED = "DCGM_FI_DEV_FB_USED"
TEMP = "DCGM_FI_DEV_GPU_TEMP"
SM_CLOCK = "DCGM_FI_DEV_SM_CLOCK"
REAL_GPU = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
REAL_HOST = "mtv5-dgx1-hgpu-031"
UNKNOWN_GPU = "GPU-00000000-0000-0000-0000-000000000000"
#: How long a recovery (or a first connection) may take: the API retries every 2 s at most.
RECOVERY_TIMEOUT = 20.0


# --- reading the CSV files independently ----------------------------------------------------


class Row(NamedTuple):
    time_us: int
    uuid: str
    hostname: str
    metric: str
    value: float | None  # None: a DCGM blank


def micros(text: str) -> int:
    """An RFC 3339 time (as the CSV and the API write them) in microseconds since the epoch."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def rfc3339(time_us: int, offset_minutes: int = 0, extra_digits: str = "") -> str:
    """``time_us`` as RFC 3339 with six fraction digits (then ``extra_digits``, finer than
    a microsecond), in UTC (``Z``) or at a ``±HH:MM`` offset."""
    zone = timezone(timedelta(minutes=offset_minutes))
    local = (EPOCH + timedelta(microseconds=time_us)).astimezone(zone)
    text = local.strftime("%Y-%m-%dT%H:%M:%S.%f") + extra_digits
    if offset_minutes == 0:
        return text + "Z"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{'+' if offset_minutes > 0 else '-'}{hours:02d}:{minutes:02d}"


def read_rows(path: Path) -> list[Row]:
    rows = []
    with open(path, newline="") as stream:
        for row in csv.DictReader(stream):
            value = float(row["value"])
            rows.append(
                Row(
                    micros(row["timestamp"]),
                    row["uuid"],
                    row["Hostname"],
                    row["metric_name"],
                    None if is_blank(value) else value,
                )
            )
    return rows


def aggregate(values: list[float | None], aggregation: str) -> float | int | None:
    """What ``/metrics`` should answer: blanks count in no aggregation."""
    present = [value for value in values if value is not None]
    if aggregation == "count":
        return len(present)
    if not present:
        return None
    if aggregation == "avg":
        return math.fsum(present) / len(present)
    if aggregation == "sum":
        return math.fsum(present)
    return min(present) if aggregation == "min" else max(present)


def assert_same_number(actual: Any, expected: float | int | None, what: object) -> None:
    if expected is None or isinstance(expected, int):
        assert actual == expected, what
    else:
        assert actual is not None and math.isclose(actual, expected, rel_tol=1e-9), (
            what,
            actual,
            expected,
        )


def sample_items(rows: list[Row]) -> list[tuple[int, str, float | None]]:
    """Rows as /telemetry orders them: time, then metric name."""
    return sorted((row.time_us, row.metric, row.value) for row in rows)


def answered_items(items: list[dict]) -> list[tuple[int, str, float | None]]:
    return [(micros(item["timestamp"]), item["metric_name"], item["value"]) for item in items]


# --- talking to the API ---------------------------------------------------------------------


def get(api: ApiProcess, path: str, **params: Any) -> tuple[int, dict]:
    """GET ``path`` with the query ``params`` (URL-encoded: ``+`` in an offset stays ``+``)."""
    query = urlencode({name: value for name, value in params.items() if value is not None})
    return api.get(f"{path}?{query}" if query else path)


def get_ok(api: ApiProcess, path: str, **params: Any) -> dict:
    status, body = get(api, path, **params)
    assert status == 200, (path, params, status, body)
    return body


def gpu_path(uuid: str, route: str) -> str:
    return f"/api/v1/gpus/{quote(uuid, safe='')}/{route}"


def wait_for_answer(
    api: ApiProcess,
    path: str,
    accept: Callable[[int, dict], bool],
    what: str,
    timeout: float = RECOVERY_TIMEOUT,
) -> tuple[int, dict]:
    """Poll GET ``path`` until ``accept(status, body)``; fail with the last answer and the
    API's log after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = api.get(path)
        if accept(status, body):
            return status, body
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: still {status} {body} after {timeout} s\n"
                f"--- api log:\n{api.log_path.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.1)


def wait_until_ready(api: ApiProcess) -> None:
    wait_for_answer(api, "/readyz", lambda status, _: status == 200, "/readyz never answered 200")


def assert_error(status: int, body: dict, expected_status: int, code: str) -> dict:
    """The error shape of DESIGN §7; returns the error object."""
    assert status == expected_status, body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, body
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["details"], dict), body
    return error


def walk_pages(
    api: ApiProcess, path: str, limit: int, **params: Any
) -> tuple[list[dict], list[dict]]:
    """Every page of ``path`` at ``limit`` items a page; returns the items and the pages.
    Every page must report the same total."""
    pages, items, offset = [], [], 0
    while True:
        page = get_ok(api, path, limit=limit, offset=offset, **params)
        assert page["limit"] == limit and page["offset"] == offset, page
        if pages:
            assert page["total"] == pages[0]["total"], "the total changed between pages"
        pages.append(page)
        items += page["items"]
        offset += limit
        if offset >= page["total"]:
            break
        assert len(page["items"]) == limit, "a page before the last is short"
        assert len(pages) < 10_000
    assert len(items) == pages[0]["total"]
    return items, pages


@pytest.fixture(scope="class")
def class_dir(tmp_path_factory) -> Path:
    """A working directory outside the checkout for the processes of a test class."""
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="class")
def class_database(postgres_cluster) -> Iterator[str]:
    """A new database of the session's PostgreSQL for one test class, dropped after it."""
    from uuid import uuid4

    name = f"api_{uuid4().hex[:16]}"
    dsn = postgres_cluster.create_database(name)
    yield dsn
    postgres_cluster.drop_database(name)


@contextmanager
def running_api(dsn: str, cwd: Path) -> Iterator[ApiProcess]:
    """``tmq api`` over ``dsn``, ready; stopped on leaving."""
    api = ApiProcess(dsn, cwd)
    try:
        wait_until_ready(api)
        yield api
    finally:
        api.stop()


# --- 1. the real capture ----------------------------------------------------------------------


class RealCapture(NamedTuple):
    api: ApiProcess
    rows: list[Row]


@pytest.fixture(scope="class")
def real_capture(class_database, class_dir) -> Iterator[RealCapture]:
    """The real DCGM capture loaded into a database, and ``tmq api`` over it."""
    path = real_capture_path()
    assert load_csv(class_database, path) == 2470
    with running_api(class_database, class_dir) as api:
        yield RealCapture(api, read_rows(path))


class RealCaptureApiTests:
    """The API's answers over the real capture: 247 GPUs, one sample per GPU and field,
    source timestamps."""

    def test_gpu_pages_walk_every_gpu_in_uuid_order(self, real_capture):
        """/gpus counts 247 GPUs; its pages of 100 give each once, in ascending uuid order,
        with the GPU's facts; an offset past the end gives no items and the same total."""
        api, rows = real_capture
        items, pages = walk_pages(api, "/api/v1/gpus", 100)
        assert len(pages) == 3 and pages[0]["total"] == 247
        uuids = [item["uuid"] for item in items]
        assert uuids == sorted(set(uuids)) and len(uuids) == 247
        assert set(uuids) == {row.uuid for row in rows}
        (gpu,) = [item for item in items if item["uuid"] == REAL_GPU]
        times = [row.time_us for row in rows if row.uuid == REAL_GPU]
        assert gpu["hostname"] == REAL_HOST and gpu["device"] == "nvidia0"
        assert gpu["gpu_index"] == 0 and gpu["model_name"] == "NVIDIA H100 80GB HBM3"
        assert micros(gpu["first_seen"]) == min(times)
        assert micros(gpu["last_seen"]) == max(times)
        past = get_ok(api, "/api/v1/gpus", limit=100, offset=300)
        assert past == {"items": [], "total": 247, "limit": 100, "offset": 300}
        default = get_ok(api, "/api/v1/gpus")
        assert default["limit"] == 50 and default["offset"] == 0
        assert [item["uuid"] for item in default["items"]] == uuids[:50]

    def test_hostname_filter(self, real_capture):
        """hostname= keeps that host's GPUs (8 on mtv5-dgx1-hgpu-031), in uuid order; an
        unknown host has none."""
        api, rows = real_capture
        expected = sorted({row.uuid for row in rows if row.hostname == REAL_HOST})
        assert len(expected) == 8
        page = get_ok(api, "/api/v1/gpus", hostname=REAL_HOST)
        assert page["total"] == 8
        assert [item["uuid"] for item in page["items"]] == expected
        assert {item["hostname"] for item in page["items"]} == {REAL_HOST}
        second = get_ok(api, "/api/v1/gpus", hostname=REAL_HOST, limit=3, offset=3)
        assert [item["uuid"] for item in second["items"]] == expected[3:6]
        assert second["total"] == 8
        nobody = get_ok(api, "/api/v1/gpus", hostname="no-such-host")
        assert nobody["items"] == [] and nobody["total"] == 0

    def test_known_aggregates_of_one_gpu(self, real_capture):
        """The capture's own figures: average power 156.596 W and frame buffer used at most
        73420 MiB on GPU-5fd4f087..., each over one sample."""
        api, _ = real_capture
        power = get_ok(api, gpu_path(REAL_GPU, "metrics"), metric_name=POWER, aggregation="avg")
        assert power["value"] == 156.596 and power["samples"] == 1
        assert power["gpu_id"] == REAL_GPU and power["metric_name"] == POWER
        assert power["aggregation"] == "avg"
        assert power["start_time"] is None and power["end_time"] is None
        used = get_ok(api, gpu_path(REAL_GPU, "metrics"), metric_name=FB_USED, aggregation="max")
        assert used["value"] == 73420 and used["samples"] == 1

    def test_telemetry_equals_the_csv(self, real_capture):
        """/telemetry of GPU-5fd4f087... holds exactly its CSV rows (time, metric name,
        value; blanks null), ordered by time, then metric name, without workload labels."""
        api, rows = real_capture
        expected = sample_items([row for row in rows if row.uuid == REAL_GPU])
        assert len(expected) == 10
        page = get_ok(api, gpu_path(REAL_GPU, "telemetry"))
        assert page["total"] == 10 and page["limit"] == 1000 and page["offset"] == 0
        assert answered_items(page["items"]) == expected
        for item in page["items"]:
            assert item["container"] is None and item["pod"] is None
            assert item["namespace"] is None
            assert item["timestamp"].endswith("Z")

    def test_latest_gives_one_item_per_metric(self, real_capture):
        """/latest lists each of the GPU's 10 fields once, by name, with its sample;
        metric_name= keeps one."""
        api, rows = real_capture
        mine = {row.metric: row for row in rows if row.uuid == REAL_GPU}
        page = get_ok(api, gpu_path(REAL_GPU, "latest"))
        assert page["gpu_id"] == REAL_GPU and page["total"] == len(mine) == 10
        assert [item["metric_name"] for item in page["items"]] == sorted(mine)
        for item in page["items"]:
            row = mine[item["metric_name"]]
            assert (micros(item["timestamp"]), item["value"]) == (row.time_us, row.value)
        one = get_ok(api, gpu_path(REAL_GPU, "latest"), metric_name=FB_USED)
        assert one["total"] == 1
        assert [(i["metric_name"], i["value"]) for i in one["items"]] == [(FB_USED, 73420)]

    def test_concurrent_requests(self, real_capture):
        """40 requests at once, more than the API's 4 database connections, each get their
        own GPU's samples."""
        api, rows = real_capture
        uuids = sorted({row.uuid for row in rows})[:40]
        with ThreadPoolExecutor(max_workers=20) as pool:
            pages = list(pool.map(lambda uuid: get_ok(api, gpu_path(uuid, "telemetry")), uuids))
        for uuid, page in zip(uuids, pages, strict=True):
            expected = sample_items([row for row in rows if row.uuid == uuid])
            assert answered_items(page["items"]) == expected, uuid

    def test_unknown_gpu_is_404(self, real_capture):
        """Every per-GPU route answers 404 gpu_not_found, in the error shape, for a GPU that
        does not exist."""
        api, _ = real_capture
        for route, params in (
            ("telemetry", {}),
            ("metrics", {"metric_name": POWER}),
            ("latest", {}),
        ):
            status, body = get(api, gpu_path(UNKNOWN_GPU, route), **params)
            error = assert_error(status, body, 404, "gpu_not_found")
            assert UNKNOWN_GPU in error["message"], body


# --- 2. a synthetic fleet with many samples per series ----------------------------------------

SCRAPES = 300
#: The gen run: source times from 2025-07-18T20:42:34Z, 7.25 s apart (fractional seconds).
GEN_OPTIONS = (
    "--hosts", "2", "--gpus-per-host", "2", "--scrapes", str(SCRAPES),
    "--interval", "7.25", "--seed", "7",
)  # fmt: skip
#: ``interval`` values and their widths in seconds.
INTERVALS = (("30s", 30), ("45s", 45), ("1m", 60), ("1h", 3600), ("1d", 86400))
FP64_BLANK, INT64_BLANK, INT32_BLANK = "140737488355328", "9223372036854775794", "2147483647"


def put_blanks(source: Path, target: Path) -> None:
    """Copy a ``tmq gen`` CSV, replacing some values by DCGM blank sentinels: power every
    11th scrape, and on the first GPU scrapes 100-112 (whole blank buckets) and the last one
    (a blank newest sample); frame buffer used every 17th, temperature every 23rd."""
    with open(source, newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        rows = list(reader)
    assert tuple(header) == HEADER
    at, metric_at, uuid_at, value_at = (
        HEADER.index(name) for name in ("timestamp", "metric_name", "uuid", "value")
    )
    scrape_of = {text: n for n, text in enumerate(sorted({r[at] for r in rows}, key=micros))}
    assert len(scrape_of) == SCRAPES
    first_gpu = rows[0][uuid_at]
    for row in rows:
        scrape, metric = scrape_of[row[at]], row[metric_at]
        if metric == POWER and (
            scrape % 11 == 3
            or (row[uuid_at] == first_gpu and (100 <= scrape <= 112 or scrape == SCRAPES - 1))
        ):
            row[value_at] = FP64_BLANK
        elif metric == FB_USED and scrape % 17 == 5:
            row[value_at] = INT64_BLANK
        elif metric == TEMP and scrape % 23 == 0:
            row[value_at] = INT32_BLANK
    with open(target, "w", newline="") as stream:
        writer = csv.writer(stream, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


class Fleet(NamedTuple):
    api: ApiProcess
    rows: list[Row]
    uuids: list[str]  # in the CSV's order: the first has the long run of blank power

    def series(self, uuid: str, metric: str) -> list[tuple[int, float | None]]:
        return sorted(
            (r.time_us, r.value) for r in self.rows if (r.uuid, r.metric) == (uuid, metric)
        )

    def of_gpu(self, uuid: str) -> list[Row]:
        return [row for row in self.rows if row.uuid == uuid]


@pytest.fixture(scope="class")
def fleet(class_database, class_dir) -> Iterator[Fleet]:
    """A seeded ``tmq gen`` fleet (4 GPUs, 300 scrapes, 12,000 samples) with blanks put in,
    loaded into a database, and ``tmq api`` over it."""
    generated, loaded = class_dir / "gen.csv", class_dir / "blanks.csv"
    result = subprocess.run(
        [sys.executable, "-m", "tmq.tools.cli", "gen", *GEN_OPTIONS, "--output", str(generated)],
        cwd=class_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    put_blanks(generated, loaded)
    rows = read_rows(loaded)
    assert len(rows) == 4 * SCRAPES * 10 and any(row.value is None for row in rows)
    assert load_csv(class_database, loaded) == len(rows)
    uuids = list(dict.fromkeys(row.uuid for row in rows))
    with running_api(class_database, class_dir) as api:
        yield Fleet(api, rows, uuids)


class SyntheticFleetApiTests:
    """Aggregates, windows, buckets and pages over a synthetic fleet, against Python's own
    arithmetic over the CSV."""

    def check_aggregates(self, fleet: Fleet, uuid: str, metric: str, start=None, end=None):
        """Every aggregation of ``metric`` of ``uuid`` between ``start`` and ``end``
        (microseconds, inclusive; ``None``: unbounded) against the CSV."""
        values = [
            value
            for time_us, value in fleet.series(uuid, metric)
            if (start is None or time_us >= start) and (end is None or time_us <= end)
        ]
        for aggregation in AGGREGATIONS:
            answer = get_ok(
                fleet.api,
                gpu_path(uuid, "metrics"),
                metric_name=metric,
                aggregation=aggregation,
                start_time=None if start is None else rfc3339(start),
                end_time=None if end is None else rfc3339(end),
            )
            what = (uuid, metric, aggregation, start, end)
            assert_same_number(answer["value"], aggregate(values, aggregation), what)
            assert answer["samples"] == aggregate(values, "count"), what
            assert answer["aggregation"] == aggregation and answer["metric_name"] == metric
        return values

    def test_every_aggregation_over_all_samples(self, fleet):
        """avg, min, max, sum and count (values only: blanks count in none) of four fields of
        every GPU, over all their samples."""
        for uuid in fleet.uuids:
            for metric in (POWER, FB_USED, TEMP, SM_CLOCK):
                values = self.check_aggregates(fleet, uuid, metric)
                assert len(values) == SCRAPES
        blanks = [v for _, v in fleet.series(fleet.uuids[0], POWER) if v is None]
        assert len(blanks) > 13  # the test saw blanks being left out

    def test_windows_bounded_by_sample_times_are_inclusive(self, fleet):
        """Windows whose bounds are sample times take both end samples in; start = end = a
        sample's time takes exactly that sample; one microsecond less leaves it out."""
        first = fleet.uuids[0]
        for uuid in (first, fleet.uuids[3]):
            for metric in (POWER, FB_USED):
                times = [time_us for time_us, _ in fleet.series(uuid, metric)]
                for start, end in (
                    (times[10], times[57]),
                    (times[0], times[-1]),
                    (times[10] + 1, times[57]),
                    (times[10], times[57] - 1),
                    (times[100], times[120]),
                    (times[57], times[57]),
                    (times[57] + 1, times[58] - 1),
                ):
                    self.check_aggregates(fleet, uuid, metric, start, end)
        times = [time_us for time_us, _ in fleet.series(first, POWER)]
        one = self.check_aggregates(fleet, first, POWER, times[57], times[57])
        assert len(one) == 1 and one[0] is not None
        short = self.check_aggregates(fleet, first, POWER, times[10], times[57] - 1)
        whole = self.check_aggregates(fleet, first, POWER, times[10], times[57])
        assert len(whole) == len(short) + 1
        blank = get_ok(
            fleet.api,
            gpu_path(first, "metrics"),
            metric_name=POWER,
            aggregation="count",
            start_time=rfc3339(times[105]),
            end_time=rfc3339(times[105]),
        )
        assert blank["value"] == 0 and blank["samples"] == 0
        gap = get_ok(
            fleet.api,
            gpu_path(first, "metrics"),
            metric_name=POWER,
            aggregation="max",
            start_time=rfc3339(times[57] + 1),
            end_time=rfc3339(times[58] - 1),
        )
        assert gap["value"] is None and gap["samples"] == 0

    def test_offsets_name_the_same_instant(self, fleet):
        """A window given at +02:00, -05:30 or +00:00, or with digits finer than a
        microsecond (a start rounding up, an end rounding down), is the same window as in UTC;
        the answer echoes its bounds in UTC."""
        uuid = fleet.uuids[1]
        times = [time_us for time_us, _ in fleet.series(uuid, POWER)]
        start, end = times[21], times[141]  # 20:45:06.25, 20:59:36.25
        path = gpu_path(uuid, "metrics")
        reference = get_ok(
            fleet.api,
            path,
            metric_name=POWER,
            aggregation="sum",
            start_time=rfc3339(start),
            end_time=rfc3339(end),
        )
        assert reference["samples"] > 100
        spellings = [
            (rfc3339(start, 120), rfc3339(end, 120)),
            (rfc3339(start, -330), rfc3339(end, -330)),
            (rfc3339(start, 0).replace("Z", "+00:00"), rfc3339(end, -45)),
            (rfc3339(start - 1, extra_digits="001"), rfc3339(end, extra_digits="999")),
            (rfc3339(start - 1, 120, "000000001"), rfc3339(end, -600, "999999")),
        ]
        for start_text, end_text in spellings:
            answer = get_ok(
                fleet.api,
                path,
                metric_name=POWER,
                aggregation="sum",
                start_time=start_text,
                end_time=end_text,
            )
            assert answer == reference, (start_text, end_text)
        assert micros(reference["start_time"]) == start and reference["start_time"][-1] == "Z"
        assert micros(reference["end_time"]) == end and reference["end_time"][-1] == "Z"
        # Finer digits never widen a window: a start just past a sample, an end just before.
        inside = get_ok(
            fleet.api,
            path,
            metric_name=POWER,
            aggregation="count",
            start_time=rfc3339(start, extra_digits="001"),
            end_time=rfc3339(end - 1, extra_digits="999"),
        )
        assert inside["value"] == inside["samples"] == reference["samples"] - 2

    def test_telemetry_windows_are_inclusive(self, fleet):
        """/telemetry with start = end = a sample's time gives exactly the samples of that
        instant (one with metric_name); windows on sample times match the CSV; bounds at +02:00
        mean the same instants."""
        uuid = fleet.uuids[2]
        rows = fleet.of_gpu(uuid)
        times = sorted({row.time_us for row in rows})
        path = gpu_path(uuid, "telemetry")
        t = times[42]
        exact = get_ok(fleet.api, path, start_time=rfc3339(t), end_time=rfc3339(t))
        assert answered_items(exact["items"]) == sample_items([r for r in rows if r.time_us == t])
        assert exact["total"] == 10
        one = get_ok(fleet.api, path, start_time=rfc3339(t), end_time=rfc3339(t), metric_name=TEMP)
        assert answered_items(one["items"]) == [
            (t, TEMP, next(r.value for r in rows if (r.time_us, r.metric) == (t, TEMP)))
        ]
        for start, end, metric in (
            (times[5], times[40], None),
            (times[5], times[40] - 1, None),
            (times[5] + 1, times[40], TEMP),
            (times[200], times[-1], POWER),
        ):
            expected = sample_items(
                [
                    r
                    for r in rows
                    if start <= r.time_us <= end and (metric is None or r.metric == metric)
                ]
            )
            for offset_minutes in (0, 120):
                page = get_ok(
                    fleet.api,
                    path,
                    metric_name=metric,
                    start_time=rfc3339(start, offset_minutes),
                    end_time=rfc3339(end, offset_minutes),
                    limit=10_000,
                )
                assert answered_items(page["items"]) == expected, (start, end, metric)
                assert page["total"] == len(expected)

    @staticmethod
    def python_buckets(series, width_us: int, aggregation: str, start=None, end=None):
        """(start, end, value, samples) of each epoch-aligned bucket holding a sample."""
        groups: dict[int, list[float | None]] = defaultdict(list)
        for time_us, value in series:
            if (start is None or time_us >= start) and (end is None or time_us <= end):
                groups[time_us - time_us % width_us].append(value)
        return [
            (first, first + width_us, aggregate(values, aggregation), aggregate(values, "count"))
            for first, values in sorted(groups.items())
        ]

    def test_buckets_match_python_bucketing(self, fleet):
        """interval= buckets (30s, 45s, 1m, 1h, 1d) are aligned to the Unix epoch and hold, bucket
        by bucket, the aggregate and the count of values Python computes over the CSV, over all
        data and over a window; a bucket of blanks only is listed with 0 samples."""
        uuid = fleet.uuids[0]
        times = [time_us for time_us, _ in fleet.series(uuid, POWER)]
        windows = ((None, None), (times[33], times[250]))
        for metric in (POWER, FB_USED):
            series = fleet.series(uuid, metric)
            for interval, width_s in INTERVALS:
                for start, end in windows:
                    for aggregation in AGGREGATIONS:
                        expected = self.python_buckets(
                            series, width_s * 1_000_000, aggregation, start, end
                        )
                        answer = get_ok(
                            fleet.api,
                            gpu_path(uuid, "metrics"),
                            metric_name=metric,
                            aggregation=aggregation,
                            interval=interval,
                            limit=10_000,
                            start_time=None if start is None else rfc3339(start),
                            end_time=None if end is None else rfc3339(end),
                        )
                        what = (metric, interval, aggregation, start, end)
                        assert answer["interval_seconds"] == width_s, what
                        assert answer["total"] == len(expected), what
                        assert len(answer["items"]) == len(expected), what
                        for bucket, (first, last, value, samples) in zip(
                            answer["items"], expected, strict=True
                        ):
                            assert micros(bucket["start"]) == first, (what, bucket)
                            assert micros(bucket["end"]) == last, (what, bucket)
                            assert bucket["samples"] == samples, (what, bucket)
                            assert_same_number(bucket["value"], value, (what, bucket))
        minute = self.python_buckets(fleet.series(uuid, POWER), 60_000_000, "avg")
        assert any(samples == 0 and value is None for _, _, value, samples in minute)
        assert len(self.python_buckets(fleet.series(uuid, POWER), 3_600_000_000, "avg")) == 2

    def test_bucket_pages(self, fleet):
        """Buckets page by limit and offset: the pages together are the whole list, each
        reports the same total, and an offset past the end gives no items."""
        uuid = fleet.uuids[0]
        params = {"metric_name": POWER, "aggregation": "avg", "interval": "30s"}
        path = gpu_path(uuid, "metrics")
        whole = get_ok(fleet.api, path, limit=10_000, **params)
        assert whole["total"] == len(whole["items"]) > 50
        items, pages = walk_pages(fleet.api, path, 7, **params)
        assert items == whole["items"] and len(pages) > 7
        past = get_ok(fleet.api, path, limit=7, offset=whole["total"] + 3, **params)
        assert past["items"] == [] and past["total"] == whole["total"]

    def test_telemetry_pages(self, fleet):
        """The pages of a GPU's samples, concatenated, are its full list (by time, then metric
        name) as the CSV has it; the total is the same on every page; an offset past the end
        gives no items and the total."""
        uuid = fleet.uuids[3]
        path = gpu_path(uuid, "telemetry")
        expected = sample_items(fleet.of_gpu(uuid))
        whole = get_ok(fleet.api, path, limit=10_000)
        assert answered_items(whole["items"]) == expected and whole["total"] == len(expected)
        items, pages = walk_pages(fleet.api, path, 437)
        assert items == whole["items"] and len(pages) == math.ceil(len(expected) / 437)
        past = get_ok(fleet.api, path, limit=100, offset=len(expected))
        assert past == {"items": [], "total": len(expected), "limit": 100, "offset": len(expected)}
        times = sorted({r.time_us for r in fleet.of_gpu(uuid)})
        window = {
            "metric_name": FB_USED,
            "start_time": rfc3339(times[7], 60),
            "end_time": rfc3339(times[211], -60),
        }
        items, _ = walk_pages(fleet.api, path, 9, **window)
        assert answered_items(items) == [
            (t, m, v) for t, m, v in expected if m == FB_USED and times[7] <= t <= times[211]
        ]

    def test_latest_is_the_newest_sample_of_each_metric(self, fleet):
        """/latest gives, per metric and by name, the newest sample, a blank one (null)
        included."""
        for uuid in fleet.uuids:
            newest: dict[str, Row] = {}
            for row in fleet.of_gpu(uuid):
                if row.metric not in newest or row.time_us > newest[row.metric].time_us:
                    newest[row.metric] = row
            page = get_ok(fleet.api, gpu_path(uuid, "latest"))
            assert page["total"] == len(newest) == 10
            assert answered_items(page["items"]) == [
                (row.time_us, metric, row.value) for metric, row in sorted(newest.items())
            ]
        page = get_ok(fleet.api, gpu_path(fleet.uuids[0], "latest"), metric_name=POWER)
        assert [item["value"] for item in page["items"]] == [None]


# --- 3. query plans ---------------------------------------------------------------------------

PLAN_METRICS = (
    "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED",
)  # fmt: skip
PLAN_T0 = datetime(2025, 7, 18, tzinfo=UTC)
TELEMETRY_INDEXES = {"telemetry_gpu_metric_time", "telemetry_gpu_time"}


def plan_nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


class Plan(NamedTuple):
    nodes: list[dict]

    def seq_scans(self, table: str) -> list[dict]:
        return [
            n for n in self.nodes if n["Node Type"] == "Seq Scan" and n["Relation Name"] == table
        ]

    def indexes(self) -> set[str]:
        """The indexes scanned (Index Scan, Index Only Scan, Bitmap Index Scan)."""
        return {node["Index Name"] for node in self.nodes if "Index Name" in node}


@pytest.fixture(scope="class")
def big_table(class_database) -> Iterator[tuple[Any, int]]:
    """300,000 samples (50 GPUs x 10 fields x 600 s, in time order as a sink writes them)
    and 20,000 GPUs on 2,500 hosts, vacuumed and analysed; a psycopg2 connection to it and
    the ``gpus.id`` of a GPU with samples."""
    with psycopg.connect(class_database, autocommit=True) as connection:
        migrate(connection)
        connection.execute(
            """
            INSERT INTO gpus (uuid, hostname, device, gpu_index, model, first_seen, last_seen)
            SELECT 'GPU-' || md5(g::text), 'host-' || lpad((g / 8)::text, 4, '0'),
                   'nvidia' || (g %% 8), g %% 8, 'NVIDIA H100 80GB HBM3', %(t0)s, %(t0)s
            FROM generate_series(0, 19999) AS g
            """,
            {"t0": PLAN_T0},
        )
        connection.execute(
            """
            INSERT INTO telemetry (time, gpu, metric, value)
            SELECT %(t0)s + s * interval '1 second', g.id, m.metric, random() * 100
            FROM generate_series(0, 599) AS s,
                 (SELECT id FROM gpus ORDER BY id LIMIT 50) AS g,
                 unnest(%(metrics)s::text[]) AS m(metric)
            ORDER BY s, m.metric, g.id
            """,
            {"t0": PLAN_T0, "metrics": list(PLAN_METRICS)},
        )
        connection.execute("VACUUM ANALYZE telemetry")
        connection.execute("ANALYZE gpus")
        gpu = connection.execute("SELECT id FROM gpus ORDER BY id OFFSET 25 LIMIT 1").fetchone()[0]
    blocking = psycopg2.connect(class_database, options="-c TimeZone=UTC")
    try:
        yield blocking, gpu
    finally:
        blocking.close()


def explain(connection, statement: queries.Statement) -> Plan:
    """The plan of ``statement`` with its parameters put in as psycopg2 (txpostgres) does."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + cursor.mogrify(*statement).decode())
        (document,) = cursor.fetchone()
    return Plan(list(plan_nodes(document[0]["Plan"])))


def api_statements(gpu: int) -> dict[str, tuple[queries.Statement, set[str]]]:
    """The statements tmq.api.queries builds, named, each with the index it must use (an
    empty set: either telemetry index)."""
    start, end = PLAN_T0 + timedelta(seconds=100), PLAN_T0 + timedelta(seconds=250)
    minute, gpu_metric_time = timedelta(minutes=1), {"telemetry_gpu_metric_time"}

    def telemetry(metric, start=None, end=None):
        return queries.telemetry(TelemetryQuery("GPU-x", start, end, metric, 1000, 0), gpu)

    def metrics(start=None, end=None, interval=None):
        query = MetricsQuery("GPU-x", TEMP, "avg", start, end, interval, 1000, 0)
        return queries.metrics(query, gpu)

    return {
        "telemetry": (telemetry(None), set()),
        "telemetry window": (telemetry(None, start, end), set()),
        "telemetry metric": (telemetry(TEMP), gpu_metric_time),
        "telemetry metric window": (telemetry(TEMP, start, end), gpu_metric_time),
        "metrics": (metrics(), gpu_metric_time),
        "metrics window": (metrics(start, end), gpu_metric_time),
        "metrics interval": (metrics(interval=minute), gpu_metric_time),
        "metrics interval window": (metrics(start, end, minute), gpu_metric_time),
        "latest": (queries.latest(LatestQuery("GPU-x", None, 100, 0), gpu), gpu_metric_time),
        "latest metric": (
            queries.latest(LatestQuery("GPU-x", TEMP, 100, 0), gpu),
            gpu_metric_time,
        ),
    }


class QueryPlanTests:
    """The API's statements use the telemetry indexes, never a sequential scan of it, on a
    table where a sequential scan is what the planner picks without them."""

    def test_telemetry_statements_use_the_indexes(self, big_table):
        """No plan of /telemetry, /metrics (with and without window and interval) or /latest
        (with and without metric_name) scans telemetry sequentially; each scans a telemetry
        index, the (gpu, metric, time) one when the metric is given."""
        connection, gpu = big_table
        for name, (statement, required) in api_statements(gpu).items():
            plan = explain(connection, statement)
            assert plan.seq_scans("telemetry") == [], (name, plan.nodes[0])
            used = plan.indexes() & TELEMETRY_INDEXES
            assert used, (name, plan.indexes())
            assert required <= used, (name, used)

    def test_gpu_statements_use_the_indexes(self, big_table):
        """/gpus?hostname= reads the gpus_hostname index, and the lookup of a GPU by uuid its
        primary key; neither scans gpus sequentially."""
        connection, _ = big_table
        by_host = explain(connection, queries.gpus(GpuListQuery(50, 0, "host-0100")))
        assert by_host.seq_scans("gpus") == [] and "gpus_hostname" in by_host.indexes()
        lookup = explain(connection, queries.Statement(queries.GPU_ID, {"uuid": "GPU-x"}))
        assert lookup.seq_scans("gpus") == [] and lookup.indexes() == {"gpus_pkey"}
        listing = explain(connection, queries.gpus(GpuListQuery(50, 0, None)))
        assert "gpus_pkey" in listing.indexes()

    def test_without_the_indexes_telemetry_is_scanned(self, big_table):
        """The control: with telemetry's indexes dropped (in a transaction rolled back), the
        same statements scan it sequentially, so the table is big enough for the test to
        mean something."""
        connection, gpu = big_table
        statements = api_statements(gpu)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "ALTER TABLE telemetry DROP CONSTRAINT telemetry_gpu_metric_time;"
                    "DROP INDEX telemetry_gpu_time; DROP INDEX telemetry_time_brin"
                )
            for name in ("telemetry", "metrics", "metrics interval window", "latest metric"):
                plan = explain(connection, statements[name][0])
                assert plan.seq_scans("telemetry"), (name, plan.nodes[0])
        finally:
            connection.rollback()
        plan = explain(connection, statements["metrics"][0])
        assert plan.seq_scans("telemetry") == []


# --- 4. the database goes away and comes back -------------------------------------------------


def data_paths(uuid: str) -> list[str]:
    query = urlencode({"metric_name": POWER})
    return [
        "/api/v1/gpus?limit=5",
        gpu_path(uuid, "telemetry"),
        f"{gpu_path(uuid, 'metrics')}?{query}",
        gpu_path(uuid, "latest"),
        # a GPU the API has not looked up yet: its lookup needs the database
        gpu_path("GPU-bc7a12ab-4998-fdc5-0785-2678a929a142", "latest"),
    ]


@pytest.fixture(scope="class")
def restartable_postgres() -> Iterator[Any]:
    """A PostgreSQL of its own (fixed directory and port, so it can be stopped and started
    again), holding the real capture."""
    from tmq.tools.postgres import ThrowawayPostgres
    from tmq.tools.processes import free_port

    directory = tempfile.mkdtemp(prefix="tmq-api-pg-")
    cluster = ThrowawayPostgres(directory, port=free_port(), durable=False)
    try:
        cluster.start()
        load_csv(cluster.dsn(), real_capture_path())
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def is_unavailable(status: int, body: dict) -> bool:
    return status == 503 and body.get("error", {}).get("code") == "database_unavailable"


class DatabaseOutageTests:
    """A database outage is a 503, and the running API recovers by itself."""

    def test_database_down_then_back(self, restartable_postgres, tmp_path):
        """With PostgreSQL stopped, the data routes and /readyz answer 503
        database_unavailable while /healthz stays 200; once it is started again (same
        directory and port) the same API process answers 200 and the same bodies again."""
        cluster = restartable_postgres
        cluster.start()
        api = ApiProcess(cluster.dsn(), tmp_path)
        try:
            wait_until_ready(api)
            paths = data_paths(REAL_GPU)
            before = {path: get_ok(api, path) for path in paths}
            assert before[paths[0]]["total"] == 247
            pid = api.process.pid
            cluster.stop()
            for path in [*paths, "/readyz"]:
                status, body = wait_for_answer(
                    api, path, is_unavailable, f"{path} with the database down"
                )
                error = assert_error(status, body, 503, "database_unavailable")
                assert error["message"].startswith("database unavailable"), body
            assert api.get("/healthz") == (200, {"status": "ok"})
            cluster.start()
            wait_until_ready(api)
            assert api.get("/readyz") == (
                200,
                {"status": "ready", "schema_version": SCHEMA_VERSION},
            )
            for path in paths:
                wait_for_answer(api, path, lambda status, _: status == 200, f"{path} after restart")
                assert get_ok(api, path) == before[path], path
            assert api.process.pid == pid and api.process.poll() is None
        finally:
            api.stop()

    def test_api_started_before_the_database(self, restartable_postgres, tmp_path):
        """An API started while PostgreSQL is down answers 503 (and /healthz 200), then
        becomes ready by itself once PostgreSQL starts."""
        cluster = restartable_postgres
        cluster.stop()
        api = ApiProcess(cluster.dsn(), tmp_path)
        try:
            for path in ("/readyz", "/api/v1/gpus", gpu_path(REAL_GPU, "latest")):
                status, body = api.get(path)
                assert_error(status, body, 503, "database_unavailable")
            assert api.get("/healthz") == (200, {"status": "ok"})
            pid = api.process.pid
            cluster.start()
            wait_until_ready(api)
            assert get_ok(api, "/api/v1/gpus")["total"] == 247
            assert len(get_ok(api, gpu_path(REAL_GPU, "latest"))["items"]) == 10
            assert api.process.pid == pid and api.process.poll() is None
        finally:
            api.stop()


# --- 5. no schema -----------------------------------------------------------------------------


class MissingSchemaTests:
    """A database the sink never migrated."""

    def test_readyz_and_data_routes_say_the_schema_is_missing(self, pg_dsn, tmp_path):
        """/readyz and /gpus answer 503 database_unavailable saying the schema is missing
        (not a 500), and per-GPU routes too; /healthz is 200."""
        api = ApiProcess(pg_dsn, tmp_path)
        try:
            for path in ("/readyz", "/api/v1/gpus", gpu_path(REAL_GPU, "telemetry")):
                status, body = wait_for_answer(
                    api,
                    path,
                    lambda status, body: "schema is missing" in str(body),
                    f"{path} on a database without the schema",
                )
                assert_error(status, body, 503, "database_unavailable")
            assert api.get("/healthz") == (200, {"status": "ok"})
        finally:
            api.stop()


# --- 6. the command line ----------------------------------------------------------------------


def run_api_command(cwd: Path, *arguments: str, timeout: float = 60):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TMQ_")}
    return subprocess.run(
        [sys.executable, "-m", "tmq.tools.cli", "api", *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ApiCommandLineTests:
    """``tmq api``'s exit statuses and messages."""

    def test_dsn_is_required(self, tmp_path):
        """Without --dsn (nor TMQ_DSN), tmq api exits 2 naming --dsn."""
        result = run_api_command(tmp_path, "--listen", "127.0.0.1:0")
        assert result.returncode == 2, result.stderr
        assert "--dsn" in result.stderr.splitlines()[-1]

    def test_bad_listen_address(self, tmp_path):
        """--listen nope (or a port past 65535) exits 2 naming --listen."""
        for address in ("nope", "127.0.0.1:70000"):
            result = run_api_command(
                tmp_path, "--dsn", "host=127.0.0.1 port=1", "--listen", address
            )
            assert result.returncode == 2, (address, result.stderr)
            assert "--listen" in result.stderr.splitlines()[-1], result.stderr

    def test_port_in_use(self, tmp_path):
        """Listening on a port another socket holds exits 1 with a one-line reason (no
        traceback)."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            result = run_api_command(
                tmp_path, "--dsn", "host=127.0.0.1 port=1 dbname=x", "--listen", f"127.0.0.1:{port}"
            )
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"tmq api: error: cannot listen on 127.0.0.1:{port}"), result.stderr
        assert "address already in use" in last.lower(), result.stderr

    def test_help(self, tmp_path):
        """--help exits 0 and describes the options."""
        result = run_api_command(tmp_path, "--help")
        assert result.returncode == 0, result.stderr
        assert "--dsn" in result.stdout and "--listen" in result.stdout
