"""An in-memory ``TelemetryStore`` for the API's unit tests.

It answers from a list of samples with plain Python (sorting, slicing, ``statistics``-free
arithmetic), and is held to the same contract tests (``store_contract.py``) as
``PostgresStore``, which the integration tests run against real PostgreSQL. ``down = True``
makes every call fail with ``DatabaseUnavailable``, as an unreachable database does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from twisted.internet.defer import Deferred, fail, succeed

from tmq.api.database import DatabaseUnavailable
from tmq.api.queries import BUCKET_ORIGIN, format_time
from tmq.api.validation import GpuListQuery, LatestQuery, MetricsQuery, TelemetryQuery
from tmq.sink.schema import SCHEMA_VERSION
from tmq.telemetry.model import Sample


def _time(time_us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=time_us)


def _value(value):
    return None if value is None or not math.isfinite(value) else value


class MemoryStore:
    def __init__(self, samples: Iterable[Sample] = ()):
        self.down = False
        self._gpus: dict[str, dict] = {}
        self._ids: dict[str, int] = {}
        self._rows: list[tuple[int, datetime, Sample]] = []
        for sample in samples:
            self.add(sample)

    def add(self, sample: Sample) -> None:
        gpu = self._ids.setdefault(sample.uuid, len(self._ids) + 1)
        time = _time(sample.time_us)
        known = self._gpus.get(sample.uuid)
        first = min(known["first"], time) if known else time
        last = max(known["last"], time) if known else time
        self._gpus[sample.uuid] = {
            "uuid": sample.uuid,
            "hostname": sample.hostname,
            "device": sample.device,
            "gpu_index": sample.gpu_index,
            "model_name": sample.model,
            "first": first,
            "last": last,
        }
        self._rows.append((gpu, time, sample))

    def available(self) -> bool:
        return not self.down

    def _answer(self, compute) -> Deferred:
        if self.down:
            return fail(DatabaseUnavailable("PostgreSQL is unreachable: (memory store down)"))
        return succeed(compute())

    @staticmethod
    def _page(items: list, limit: int, offset: int) -> dict:
        return {
            "items": items[offset : offset + limit],
            "total": len(items),
            "limit": limit,
            "offset": offset,
        }

    def gpu_id(self, uuid: str) -> Deferred:
        return self._answer(lambda: self._ids.get(uuid))

    def gpus(self, query: GpuListQuery) -> Deferred:
        def compute():
            chosen = [
                gpu
                for _, gpu in sorted(self._gpus.items())
                if query.hostname is None or gpu["hostname"] == query.hostname
            ]
            items = [
                {
                    **{k: v for k, v in gpu.items() if k not in ("first", "last")},
                    "first_seen": format_time(gpu["first"]),
                    "last_seen": format_time(gpu["last"]),
                }
                for gpu in chosen
            ]
            return self._page(items, query.limit, query.offset)

        return self._answer(compute)

    def _series(self, gpu: int, metric: str | None, start, end) -> list[tuple[datetime, Sample]]:
        return sorted(
            (
                (time, sample)
                for row_gpu, time, sample in self._rows
                if row_gpu == gpu
                and (metric is None or sample.metric == metric)
                and (start is None or time >= start)
                and (end is None or time <= end)
            ),
            key=lambda pair: (pair[0], pair[1].metric),
        )

    @staticmethod
    def _sample(time: datetime, sample: Sample) -> dict:
        return {
            "timestamp": format_time(time),
            "metric_name": sample.metric,
            "value": _value(sample.value),
            "container": sample.container or None,
            "pod": sample.pod or None,
            "namespace": sample.namespace or None,
        }

    def telemetry(self, query: TelemetryQuery, gpu: int) -> Deferred:
        def compute():
            rows = self._series(gpu, query.metric_name, query.start_time, query.end_time)
            items = [self._sample(time, sample) for time, sample in rows]
            return self._page(items, query.limit, query.offset)

        return self._answer(compute)

    @staticmethod
    def _aggregate(name: str, values: list[float]):
        if name == "count":
            return len(values)
        if not values:
            return None
        if name == "avg":
            return math.fsum(values) / len(values)
        if name == "sum":
            return math.fsum(values)
        return min(values) if name == "min" else max(values)

    def metrics(self, query: MetricsQuery, gpu: int) -> Deferred:
        def compute():
            rows = self._series(gpu, query.metric_name, query.start_time, query.end_time)
            result = {
                "gpu_id": query.gpu_id,
                "metric_name": query.metric_name,
                "aggregation": query.aggregation,
                "start_time": format_time(query.start_time),
                "end_time": format_time(query.end_time),
            }
            if query.interval is None:
                values = [s.value for _, s in rows if s.value is not None]
                result["value"] = self._aggregate(query.aggregation, values)
                result["samples"] = len(values)
                return result
            buckets: dict[datetime, list[float]] = {}
            for time, sample in rows:
                start = BUCKET_ORIGIN + (time - BUCKET_ORIGIN) // query.interval * query.interval
                values = buckets.setdefault(start, [])
                if sample.value is not None:
                    values.append(sample.value)
            items = [
                {
                    "start": format_time(start),
                    "end": format_time(start + query.interval),
                    "value": self._aggregate(query.aggregation, values),
                    "samples": len(values),
                }
                for start, values in sorted(buckets.items())
            ]
            result["interval_seconds"] = int(query.interval.total_seconds())
            result.update(self._page(items, query.limit, query.offset))
            return result

        return self._answer(compute)

    def latest(self, query: LatestQuery, gpu: int) -> Deferred:
        def compute():
            newest: dict[str, tuple[datetime, Sample]] = {}
            for time, sample in self._series(gpu, query.metric_name, None, None):
                newest[sample.metric] = (time, sample)
            items = [self._sample(*newest[metric]) for metric in sorted(newest)]
            return {"gpu_id": query.gpu_id, **self._page(items, query.limit, query.offset)}

        return self._answer(compute)

    def schema_version(self) -> Deferred:
        return self._answer(lambda: SCHEMA_VERSION)
