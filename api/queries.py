"""The API's SQL, and the JSON it makes of the rows (no I/O: ``tmq.api.app`` runs them).

Every statement takes named parameters and answers in one round trip. A page comes from one
statement answering one row: the total, and the page's items as one JSON array that
PostgreSQL builds (``json_agg`` of ``json_build_object``), so the API copies the items'
text into the answer instead of making Python objects of every row and encoding them again
(the cost of a 1,000-sample page). ``page_body`` puts the envelope around it.

Which index serves what (schema in ``tmq.sink.schema``):

* ``/gpus``: ``gpus_pkey (uuid)``, or ``gpus_hostname (hostname, uuid)`` with ``hostname``.
* GPU lookup (uuid -> ``gpus.id``): ``gpus_pkey``. The id of a GPU never changes, so
  ``GpuIds`` keeps the ids it has found.
* ``/telemetry``: ``telemetry_gpu_time (gpu, time)``, or the unique
  ``(gpu, metric, time)`` index with ``metric_name``.
* ``/metrics``: the unique ``(gpu, metric, time)`` index (a range scan of one series).
* ``/latest``: the same index, walked as a loose index scan: a recursive query hops from one
  metric of the GPU to the next, then reads each metric's newest row backwards, so its cost
  is the number of metrics, not of samples.

Times go out as RFC 3339 in UTC with a ``Z``, with no trailing zeros in the fraction of a
second and none at all on a whole second (``format_time`` in Python, ``_time_sql`` in SQL:
the same text); a value that is NULL (a DCGM blank) or not finite goes out as ``null``.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from .validation import GpuListQuery, LatestQuery, MetricsQuery, TelemetryQuery

__all__ = [
    "BUCKET_ORIGIN",
    "GPU_ID",
    "READY",
    "GpuIds",
    "Statement",
    "aggregate_result",
    "format_time",
    "gpus",
    "latest",
    "metrics",
    "page_body",
    "telemetry",
]

#: Where ``interval`` buckets are aligned: the Unix epoch.
BUCKET_ORIGIN = datetime(1970, 1, 1, tzinfo=UTC)


class Statement(NamedTuple):
    sql: str
    params: dict[str, Any]


#: uuid -> gpus.id (no row: no such GPU).
GPU_ID = "SELECT id FROM gpus WHERE uuid = %(uuid)s"

#: Readiness: the database answers and has the schema.
READY = "SELECT max(version) FROM schema_migrations"


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return _format_utc(value)


# Cached: a page repeats its times (the metrics of a scrape share one; /gpus answers with the
# same first/last_seen until the next scrape), and hashing a datetime costs a tenth of
# formatting it. Equal UTC datetimes are the same instant.
@lru_cache(maxsize=4096)
def _format_utc(value: datetime) -> str:
    # isoformat() pads years before 1000 to the four digits RFC 3339 requires (strftime's %Y
    # does not) and costs half as much; [:-6] drops its "+00:00".
    text = value.isoformat()[:-6]
    if value.microsecond:
        text = text.rstrip("0")
    return text + "Z"


def _number(value: float | int | None) -> float | int | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


class GpuIds:
    """uuid -> ``gpus.id`` for GPUs found, at most ``capacity`` of them (least recently used
    go first). Ids never change, so an entry never goes stale; an unknown uuid is not kept,
    as the GPU may appear later."""

    def __init__(self, capacity: int = 100_000):
        self._capacity = capacity
        self._ids: OrderedDict[str, int] = OrderedDict()

    def get(self, uuid: str) -> int | None:
        gpu = self._ids.get(uuid)
        if gpu is not None:
            self._ids.move_to_end(uuid)
        return gpu

    def put(self, uuid: str, gpu: int) -> None:
        self._ids[uuid] = gpu
        self._ids.move_to_end(uuid)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


def _time_sql(column: str) -> str:
    """SQL for ``format_time`` of a timestamptz ``column`` (the same text): the UTC time as
    text in the ISO date style (``2025-07-18 20:42:34.25``: no trailing zeros, years padded
    to four digits), with a ``T`` and a ``Z``. A third of ``to_char``'s cost per row."""
    return f"replace((({column}) AT TIME ZONE 'UTC')::text, ' ', 'T') || 'Z'"


def _number_sql(column: str) -> str:
    """SQL for a double that goes out as ``null`` when it is not finite."""
    return (
        f"CASE WHEN {column} IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) "
        f"THEN NULL ELSE {column} END"
    )


def _page(count_from: str, page_select: str, item: str, order: str) -> str:
    """One row: the total of ``count_from``'s rows, and the items of the page of
    ``page_select`` (which ``item`` turns into a JSON object each; ``order`` is the page's
    order, over the page's columns) as one JSON array, ``[]`` for an empty page."""
    return (
        f"SELECT (SELECT count(*) FROM {count_from}), "
        f"coalesce(json_agg({item} ORDER BY {order}), '[]')::text "
        f"FROM ({page_select} LIMIT %(limit)s OFFSET %(offset)s) AS p"
    )


def page_body(rows: Sequence[tuple], limit: int, offset: int, **echo: Any) -> bytes:
    """The JSON answer of a page statement: ``echo``'s fields, the items, ``total``,
    ``limit`` and ``offset``."""
    ((total, items),) = rows
    head = json.dumps(
        {**echo, "total": total, "limit": limit, "offset": offset}, separators=(",", ":")
    )
    return f'{head[:-1]},"items":{items}}}'.encode()


_GPU_ITEM = (
    "json_build_object('uuid', p.uuid, 'hostname', p.hostname, 'device', p.device, "
    f"'gpu_index', p.gpu_index, 'model_name', p.model, 'first_seen', {_time_sql('p.first_seen')}, "
    f"'last_seen', {_time_sql('p.last_seen')})"
)


def gpus(query: GpuListQuery) -> Statement:
    where = "" if query.hostname is None else " WHERE hostname = %(hostname)s"
    sql = _page(
        f"gpus{where}",
        f"SELECT uuid, hostname, device, gpu_index, model, first_seen, last_seen FROM gpus{where} "
        "ORDER BY uuid",
        _GPU_ITEM,
        "p.uuid",
    )
    return Statement(
        sql, {"hostname": query.hostname, "limit": query.limit, "offset": query.offset}
    )


def _window(start: datetime | None, end: datetime | None) -> str:
    conditions = ""
    if start is not None:
        conditions += " AND time >= %(start)s"
    if end is not None:
        conditions += " AND time <= %(end)s"
    return conditions


_SAMPLE_COLUMNS = "time, metric, value, container, pod, namespace"
_SAMPLE_ITEM = (
    f"json_build_object('timestamp', {_time_sql('p.time')}, 'metric_name', p.metric, "
    f"'value', {_number_sql('p.value')}, 'container', p.container, 'pod', p.pod, "
    "'namespace', p.namespace)"
)


def telemetry(query: TelemetryQuery, gpu: int) -> Statement:
    where = "telemetry WHERE gpu = %(gpu)s" + _window(query.start_time, query.end_time)
    if query.metric_name is not None:
        where += " AND metric = %(metric)s"
    sql = _page(
        where,
        f"SELECT {_SAMPLE_COLUMNS} FROM {where} ORDER BY time, metric",
        _SAMPLE_ITEM,
        "p.time, p.metric",
    )
    params = {
        "gpu": gpu,
        "start": query.start_time,
        "end": query.end_time,
        "metric": query.metric_name,
        "limit": query.limit,
        "offset": query.offset,
    }
    return Statement(sql, params)


# The aggregations, as SQL; only these fixed strings ever reach a statement.
_AGGREGATES = {
    "avg": "avg(value)",
    "min": "min(value)",
    "max": "max(value)",
    "sum": "sum(value)",
    "count": "count(value)",
}


def metrics(query: MetricsQuery, gpu: int) -> Statement:
    aggregate = _AGGREGATES[query.aggregation]
    where = "telemetry WHERE gpu = %(gpu)s AND metric = %(metric)s" + _window(
        query.start_time, query.end_time
    )
    params: dict[str, Any] = {
        "gpu": gpu,
        "metric": query.metric_name,
        "start": query.start_time,
        "end": query.end_time,
    }
    if query.interval is None:
        return Statement(f"SELECT {aggregate}, count(value) FROM {where}", params)
    bucket = "date_bin(%(interval)s, time, %(origin)s)"
    value = "p.value" if query.aggregation == "count" else _number_sql("p.value")
    item = (
        f"json_build_object('start', {_time_sql('p.bucket')}, "
        f"'end', {_time_sql('p.bucket + %(interval)s')}, 'value', {value}, "
        "'samples', p.samples)"
    )
    sql = _page(
        f"(SELECT DISTINCT {bucket} FROM {where}) AS buckets",
        f"SELECT {bucket} AS bucket, {aggregate} AS value, count(value) AS samples "
        f"FROM {where} GROUP BY bucket ORDER BY bucket",
        item,
        "p.bucket",
    )
    params.update(
        interval=query.interval, origin=BUCKET_ORIGIN, limit=query.limit, offset=query.offset
    )
    return Statement(sql, params)


def aggregate_result(rows: Sequence[tuple], query: MetricsQuery) -> dict[str, Any] | bytes:
    """The ``/metrics`` answer: the query echoed, then ``value`` and ``samples`` (no
    interval), or a page of ``{"start", "end", "value", "samples"}`` buckets."""
    echo: dict[str, Any] = {
        "gpu_id": query.gpu_id,
        "metric_name": query.metric_name,
        "aggregation": query.aggregation,
        "start_time": format_time(query.start_time),
        "end_time": format_time(query.end_time),
    }
    if query.interval is None:
        value, samples = rows[0]
        return {**echo, "value": _number(value), "samples": samples}
    seconds = int(query.interval.total_seconds())
    return page_body(rows, query.limit, query.offset, **echo, interval_seconds=seconds)


# A loose index scan over the unique (gpu, metric, time) index: the GPU's metrics one hop
# each, then each metric's newest row.
_METRICS_OF_GPU = """
    WITH RECURSIVE metrics(metric) AS (
        (SELECT metric FROM telemetry WHERE gpu = %(gpu)s ORDER BY metric LIMIT 1)
        UNION ALL
        SELECT (SELECT t.metric FROM telemetry AS t
                WHERE t.gpu = %(gpu)s AND t.metric > m.metric ORDER BY t.metric LIMIT 1)
        FROM metrics AS m WHERE m.metric IS NOT NULL
    )
"""
_NEWEST = """
    SELECT s.time, m.metric AS metric, s.value, s.container, s.pod, s.namespace
    FROM {metrics} CROSS JOIN LATERAL (
        SELECT time, value, container, pod, namespace FROM telemetry AS t
        WHERE t.gpu = %(gpu)s AND t.metric = m.metric ORDER BY t.time DESC LIMIT 1) AS s
    {where} ORDER BY m.metric
"""


def latest(query: LatestQuery, gpu: int) -> Statement:
    params = {
        "gpu": gpu,
        "metric": query.metric_name,
        "limit": query.limit,
        "offset": query.offset,
    }
    if query.metric_name is not None:
        newest = _NEWEST.format(metrics="(VALUES (%(metric)s::text)) AS m(metric)", where="")
        sql = _page(f"({newest}) AS newest", newest, _SAMPLE_ITEM, "p.metric")
        return Statement(sql, params)
    newest = _NEWEST.format(metrics="metrics AS m", where="WHERE m.metric IS NOT NULL")
    counted = "metrics WHERE metric IS NOT NULL"
    return Statement(_METRICS_OF_GPU + _page(counted, newest, _SAMPLE_ITEM, "p.metric"), params)
