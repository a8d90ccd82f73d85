"""The API's SQL, and the JSON it makes of the rows (no I/O: ``tmq.api.app`` runs them).

Every statement takes named parameters and answers in one round trip. A page comes from one
statement shaped ``count subquery LEFT JOIN LATERAL page subquery``: its first row always
carries the total, and the page's columns are NULL when the page is empty (an offset past
the end), so ``total`` is right on every page.

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

Times go out as RFC 3339 in UTC with a ``Z``; a value that is NULL (a DCGM blank) or not
finite goes out as ``null``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
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
    "gpu_page",
    "gpus",
    "latest",
    "latest_page",
    "metrics",
    "sample_page",
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
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
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


def _page(count_from: str, page_select: str) -> str:
    return (
        f"SELECT c.total, p.* FROM (SELECT count(*) AS total FROM {count_from}) AS c "
        f"LEFT JOIN LATERAL ({page_select} LIMIT %(limit)s OFFSET %(offset)s) AS p ON true"
    )


_GPU_COLUMNS = "uuid, hostname, device, gpu_index, model, first_seen, last_seen"


def gpus(query: GpuListQuery) -> Statement:
    where = "" if query.hostname is None else " WHERE hostname = %(hostname)s"
    sql = _page(f"gpus{where}", f"SELECT {_GPU_COLUMNS} FROM gpus{where} ORDER BY uuid")
    return Statement(
        sql, {"hostname": query.hostname, "limit": query.limit, "offset": query.offset}
    )


def _paged(rows: Sequence[tuple], limit: int, offset: int, item) -> dict[str, Any]:
    total = rows[0][0] if rows else 0
    items = [item(row[1:]) for row in rows if row[1] is not None]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _gpu(row: tuple) -> dict[str, Any]:
    uuid, hostname, device, gpu_index, model, first_seen, last_seen = row
    return {
        "uuid": uuid,
        "hostname": hostname,
        "device": device,
        "gpu_index": gpu_index,
        "model_name": model,
        "first_seen": format_time(first_seen),
        "last_seen": format_time(last_seen),
    }


def gpu_page(rows: Sequence[tuple], query: GpuListQuery) -> dict[str, Any]:
    return _paged(rows, query.limit, query.offset, _gpu)


def _window(start: datetime | None, end: datetime | None) -> str:
    conditions = ""
    if start is not None:
        conditions += " AND time >= %(start)s"
    if end is not None:
        conditions += " AND time <= %(end)s"
    return conditions


_SAMPLE_COLUMNS = "time, metric, value, container, pod, namespace"


def telemetry(query: TelemetryQuery, gpu: int) -> Statement:
    where = "telemetry WHERE gpu = %(gpu)s" + _window(query.start_time, query.end_time)
    if query.metric_name is not None:
        where += " AND metric = %(metric)s"
    sql = _page(where, f"SELECT {_SAMPLE_COLUMNS} FROM {where} ORDER BY time, metric")
    params = {
        "gpu": gpu,
        "start": query.start_time,
        "end": query.end_time,
        "metric": query.metric_name,
        "limit": query.limit,
        "offset": query.offset,
    }
    return Statement(sql, params)


def _sample(row: tuple) -> dict[str, Any]:
    time, metric, value, container, pod, namespace = row
    return {
        "timestamp": format_time(time),
        "metric_name": metric,
        "value": _number(value),
        "container": container,
        "pod": pod,
        "namespace": namespace,
    }


def sample_page(rows: Sequence[tuple], limit: int, offset: int) -> dict[str, Any]:
    return _paged(rows, limit, offset, _sample)


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
    sql = _page(
        f"(SELECT DISTINCT {bucket} FROM {where}) AS buckets",
        f"SELECT {bucket} AS bucket, {aggregate}, count(value) FROM {where} "
        "GROUP BY bucket ORDER BY bucket",
    )
    params.update(
        interval=query.interval, origin=BUCKET_ORIGIN, limit=query.limit, offset=query.offset
    )
    return Statement(sql, params)


def _seconds(width: timedelta) -> int:
    return int(width.total_seconds())


def aggregate_result(rows: Sequence[tuple], query: MetricsQuery) -> dict[str, Any]:
    """The ``/metrics`` answer: the query echoed, then ``value`` and ``samples`` (no
    interval), or pages of ``{"start", "end", "value", "samples"}`` buckets."""
    result: dict[str, Any] = {
        "gpu_id": query.gpu_id,
        "metric_name": query.metric_name,
        "aggregation": query.aggregation,
        "start_time": format_time(query.start_time),
        "end_time": format_time(query.end_time),
    }
    if query.interval is None:
        value, samples = rows[0]
        result.update(value=_number(value), samples=samples)
        return result
    width = query.interval

    def bucket(row: tuple) -> dict[str, Any]:
        start, value, samples = row
        return {
            "start": format_time(start),
            "end": format_time(start + width),
            "value": _number(value),
            "samples": samples,
        }

    result["interval_seconds"] = _seconds(width)
    result.update(_paged(rows, query.limit, query.offset, bucket))
    return result


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
    SELECT s.time, m.metric, s.value, s.container, s.pod, s.namespace
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
        sql = _page(f"({newest}) AS newest", newest)
        return Statement(sql, params)
    newest = _NEWEST.format(metrics="metrics AS m", where="WHERE m.metric IS NOT NULL")
    counted = "metrics WHERE metric IS NOT NULL"
    return Statement(_METRICS_OF_GPU + _page(counted, newest), params)


def latest_page(rows: Sequence[tuple], query: LatestQuery) -> dict[str, Any]:
    return {"gpu_id": query.gpu_id, **sample_page(rows, query.limit, query.offset)}
