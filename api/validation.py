"""The REST API's parameters, checked before any SQL runs (DESIGN §7).

Each operation of the API is an ``Operation``: its path, its parameters and what it answers.
The same objects drive the Klein routes (``tmq.api.app``) and the OpenAPI document
(``tmq.api.openapi``), so the spec cannot drift from what the server accepts.

``parse_query(operation, args, path)`` turns a request's query string into a typed query
object, or raises ``ApiError`` (status 400) naming the parameter, the value received and
what is allowed. The rules:

* A parameter given twice, or one the operation does not know, is an error (a typo such as
  ``metric=`` must not silently widen a query).
* Times are RFC 3339 with a time zone (``2025-07-18T20:42:34Z``, ``...+02:00``), with at most
  microsecond precision kept: a finer ``start_time`` rounds up and a finer ``end_time`` rounds
  down, so the inclusive bounds never take in a sample outside what was asked.
  ``start_time <= end_time``.
* ``interval`` is a whole number and a unit: ``s``, ``m``, ``h`` or ``d`` (``10s``, ``1m``,
  ``1h``), from 1 second to 366 days.
* ``metric_name`` is a field of the DCGM catalog (``tmq.telemetry.model.METRICS``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tmq.telemetry.model import METRICS

__all__ = [
    "AGGREGATIONS",
    "GPUS",
    "GPU_LATEST",
    "GPU_METRICS",
    "GPU_TELEMETRY",
    "MAX_GPU_ID_LENGTH",
    "OPERATIONS",
    "ApiError",
    "GpuListQuery",
    "LatestQuery",
    "MetricsQuery",
    "Operation",
    "Param",
    "TelemetryQuery",
    "parse_gpu_id",
    "parse_interval",
    "parse_query",
    "parse_time",
]

#: The aggregations of ``/metrics``. ``count`` counts the samples that have a value (a DCGM
#: blank is stored as NULL and counted by no aggregation).
AGGREGATIONS = ("avg", "min", "max", "sum", "count")

#: The longest GPU id looked up; a longer one is a 400, not a query.
MAX_GPU_ID_LENGTH = 128

#: Offsets stay in PostgreSQL's bigint and far below any real table.
MAX_OFFSET = 1_000_000_000


class ApiError(Exception):
    """An error answer: HTTP ``status`` and the body
    ``{"error": {"code": code, "message": message, "details": details}}``."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any] = {}):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def _invalid(name: str, value: str, allowed: str, why: str | None = None) -> ApiError:
    message = f"invalid {name} {value!r}: {why or 'expected ' + allowed}"
    return ApiError(
        400, "invalid_parameter", message, {"parameter": name, "value": value, "allowed": allowed}
    )


# --- value parsers: str -> value, raising ValueError(why) ------------------------------------

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def parse_time(text: str, round_up: bool = False) -> datetime:
    """An RFC 3339 time as an aware UTC datetime. Digits past the microsecond round down, or
    up when ``round_up``; a time an offset moves past either end of the years 1-9999 is held
    at that end. Raises ``ValueError`` saying what is wrong."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("expected an RFC 3339 time such as 2025-07-18T20:42:34Z")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    micros = int(fraction[:6].ljust(6, "0")) if fraction else 0
    carry = round_up and fraction[6:].strip("0") != ""
    if zone in ("Z", "z"):
        offset = timedelta(0)
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"time zone offset {zone} out of range")
        offset = timedelta(hours=hours, minutes=minutes) * (1 if zone[0] == "+" else -1)
    if second == 60:
        raise ValueError("leap seconds are not supported")
    try:
        local = datetime(max(year, 1), month, day, hour, minute, second, micros, tzinfo=UTC)
    except ValueError as error:
        raise ValueError(f"not a valid time ({error})") from None
    if year == 0:  # RFC 3339 allows year 0000: before any sample, as year 1 is
        return _EARLIEST
    try:
        return local - offset + timedelta(microseconds=carry)
    except OverflowError:  # past either end of the datetime range, by the offset
        return _EARLIEST if local.year == 1 else _LATEST


_INTERVAL = re.compile(r"([1-9][0-9]{0,8})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_INTERVAL = timedelta(days=366)


def parse_interval(text: str) -> timedelta:
    """``10s``, ``1m``, ``1h``, ``1d``: a bucket width from 1 second to 366 days."""
    match = _INTERVAL.fullmatch(text)
    if match is None:
        raise ValueError("expected a whole number and a unit s, m, h or d, such as 10s or 1h")
    width = timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if width > MAX_INTERVAL:
        raise ValueError("longer than 366d")
    return width


def parse_gpu_id(text: str) -> str:
    """A GPU id from the path: any printable text up to ``MAX_GPU_ID_LENGTH`` characters
    (whether such a GPU exists is the database's answer, a 404)."""
    if len(text) > MAX_GPU_ID_LENGTH or not text.isprintable():
        raise _invalid(
            "gpu_id",
            text[:MAX_GPU_ID_LENGTH],
            f"a GPU UUID (GPU-...) of at most {MAX_GPU_ID_LENGTH} printable characters",
        )
    return text


# --- parameters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One query parameter: how to read it, and its OpenAPI description.

    :ivar parse: text -> value, raising ``ValueError(why)``.
    :ivar allowed: what is allowed, in words, for error messages.
    :ivar schema: its OpenAPI schema (``default`` included when it has one).
    """

    name: str
    description: str
    parse: Callable[[str], Any]
    allowed: str
    schema: Mapping[str, Any]
    default: Any = None
    required: bool = False


def _integer(name: str, description: str, low: int, high: int, default: int) -> Param:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[+-]?[0-9]{1,10}", text):
            raise ValueError(f"expected a whole number from {low} to {high}")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"out of range: allowed {low} to {high}")
        return value

    schema = {"type": "integer", "minimum": low, "maximum": high, "default": default}
    return Param(name, description, parse, f"an integer from {low} to {high}", schema, default)


def _choice(
    name: str, description: str, values: Sequence[str], default: str | None, required: bool
) -> Param:
    def parse(text: str) -> str:
        if text not in values:
            raise ValueError(f"not one of the {len(values)} allowed values")
        return text

    allowed = "one of " + ", ".join(values)
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    if default is not None:
        schema["default"] = default
    return Param(name, description, parse, allowed, schema, default, required)


def _time(name: str, description: str, round_up: bool) -> Param:
    return Param(
        name,
        description,
        lambda text: parse_time(text, round_up=round_up),
        "an RFC 3339 time such as 2025-07-18T20:42:34Z",
        {"type": "string", "format": "date-time"},
    )


def _limit(maximum: int, default: int) -> Param:
    return _integer("limit", "Page size: the most items returned.", 1, maximum, default)


OFFSET = _integer("offset", "Items to skip before the page starts.", 0, MAX_OFFSET, 0)
START_TIME = _time("start_time", "Earliest sample time, inclusive (RFC 3339).", round_up=True)
END_TIME = _time("end_time", "Latest sample time, inclusive (RFC 3339).", round_up=False)
_METRIC_NAMES = tuple(METRICS)
_METRIC_DESCRIPTION = "A DCGM field name, such as DCGM_FI_DEV_GPU_TEMP."
METRIC_FILTER = _choice(
    "metric_name", "Only this DCGM field.", _METRIC_NAMES, default=None, required=False
)
METRIC_REQUIRED = _choice(
    "metric_name", _METRIC_DESCRIPTION, _METRIC_NAMES, default=None, required=True
)
AGGREGATION = _choice(
    "aggregation",
    "How samples combine: avg, min, max, sum, or count (samples that have a value).",
    AGGREGATIONS,
    default="avg",
    required=False,
)


def _hostname(text: str) -> str:
    if len(text) > 255:
        raise ValueError("longer than 255 characters")
    if "\x00" in text:  # PostgreSQL text cannot hold one: the query would fail (a 500)
        raise ValueError("contains a NUL character")
    return text


HOSTNAME = Param(
    "hostname",
    "Only GPUs of this host.",
    _hostname,
    "a host name of at most 255 characters, without NUL",
    {"type": "string", "maxLength": 255, "pattern": "^[^\\x00]*$"},
)
INTERVAL = Param(
    "interval",
    "Bucket width (10s, 1m, 1h, 1d): one aggregate per bucket instead of one in all. Buckets "
    "are aligned to the Unix epoch.",
    parse_interval,
    "a whole number and a unit s, m, h or d (1s to 366d), such as 10s or 1h",
    {"type": "string", "pattern": "^[1-9][0-9]{0,8}[smhd]$"},
)


# --- queries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuListQuery:
    limit: int
    offset: int
    hostname: str | None


@dataclass(frozen=True)
class TelemetryQuery:
    gpu_id: str
    start_time: datetime | None
    end_time: datetime | None
    metric_name: str | None
    limit: int
    offset: int


@dataclass(frozen=True)
class MetricsQuery:
    gpu_id: str
    metric_name: str
    aggregation: str
    start_time: datetime | None
    end_time: datetime | None
    interval: timedelta | None
    limit: int
    offset: int


@dataclass(frozen=True)
class LatestQuery:
    gpu_id: str
    metric_name: str | None
    limit: int
    offset: int


@dataclass(frozen=True)
class Operation:
    """One route: ``path`` in OpenAPI form (``{gpu_id}``), its parameters, the query object
    they build, and its documentation (``response`` names a schema of ``tmq.api.openapi``)."""

    name: str
    path: str
    summary: str
    description: str
    params: tuple[Param, ...]
    query: type
    response: str
    gpu_path: bool = False
    errors: tuple[int, ...] = field(default=(400, 503))

    def param(self, name: str) -> Param | None:
        return next((param for param in self.params if param.name == name), None)


GPUS = Operation(
    "listGpus",
    "/api/v1/gpus",
    "List GPUs",
    "Every GPU the sink has seen, ordered by UUID, one page at a time.",
    (_limit(1000, 50), OFFSET, HOSTNAME),
    GpuListQuery,
    "GpuPage",
)
GPU_TELEMETRY = Operation(
    "getGpuTelemetry",
    "/api/v1/gpus/{gpu_id}/telemetry",
    "Samples of one GPU",
    "The GPU's samples in a time window, ordered by time, then metric name.",
    (START_TIME, END_TIME, METRIC_FILTER, _limit(10_000, 1000), OFFSET),
    TelemetryQuery,
    "SamplePage",
    gpu_path=True,
    errors=(400, 404, 503),
)
GPU_METRICS = Operation(
    "getGpuMetrics",
    "/api/v1/gpus/{gpu_id}/metrics",
    "Aggregate one metric of one GPU",
    "One aggregate over the time window; with interval, one per time bucket, ordered by "
    "bucket start and paginated. A bucket with no sample is left out; one whose samples "
    "are all blank (DCGM reported no value) has value null and samples 0.",
    (
        METRIC_REQUIRED,
        AGGREGATION,
        START_TIME,
        END_TIME,
        INTERVAL,
        _limit(10_000, 1000),
        OFFSET,
    ),
    MetricsQuery,
    "Aggregate",
    gpu_path=True,
    errors=(400, 404, 503),
)
GPU_LATEST = Operation(
    "getGpuLatest",
    "/api/v1/gpus/{gpu_id}/latest",
    "Newest sample of each metric",
    "The newest sample of each metric of the GPU, ordered by metric name.",
    (METRIC_FILTER, _limit(1000, 100), OFFSET),
    LatestQuery,
    "LatestPage",
    gpu_path=True,
    errors=(400, 404, 503),
)

#: The data operations, in the order the spec lists them.
OPERATIONS = (GPUS, GPU_TELEMETRY, GPU_METRICS, GPU_LATEST)


def parse_query(operation: Operation, args: Mapping[bytes, list[bytes]], gpu_id: str | None):
    """The query object of ``operation`` for a request's decoded query ``args`` (Twisted's
    ``request.args``) and, for per-GPU routes, its ``gpu_id``; ``ApiError`` on bad input."""
    values: dict[str, Any] = {}
    known = {param.name for param in operation.params}
    for raw_name, raw_values in args.items():
        name = raw_name.decode("utf-8", "replace")
        if name not in known:
            raise ApiError(
                400,
                "unknown_parameter",
                f"unknown query parameter {name!r}; allowed: {', '.join(sorted(known))}",
                {"parameter": name, "allowed": sorted(known)},
            )
        if len(raw_values) != 1:
            raise ApiError(
                400,
                "invalid_parameter",
                f"{name} given {len(raw_values)} times; give it once",
                {"parameter": name},
            )
    for param in operation.params:
        raw = args.get(param.name.encode("ascii"))
        if raw is None:
            if param.required:
                raise ApiError(
                    400,
                    "missing_parameter",
                    f"{param.name} is required: {param.allowed}",
                    {"parameter": param.name, "allowed": param.allowed},
                )
            values[param.name] = param.default
            continue
        try:
            text = raw[0].decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid(param.name, repr(raw[0])[2:-1], param.allowed, "not UTF-8") from None
        try:
            values[param.name] = param.parse(text)
        except ValueError as error:
            raise _invalid(param.name, text, param.allowed, str(error)) from None
    start, end = values.get("start_time"), values.get("end_time")
    if start is not None and end is not None and start > end:
        raise ApiError(
            400,
            "invalid_parameter",
            "start_time is after end_time (both bounds are inclusive)",
            {"parameter": "start_time", "allowed": "a time no later than end_time"},
        )
    if operation.gpu_path:
        assert gpu_id is not None
        values["gpu_id"] = parse_gpu_id(gpu_id)
    return operation.query(**values)
