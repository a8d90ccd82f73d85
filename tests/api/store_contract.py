"""The ``TelemetryStore`` contract (``tmq.api.store``), stated once over a small data set.

``TelemetryStoreContract`` is run by ``test_memory_store.py`` against the unit tests' in-memory
store and by ``tests/integration/test_api_store_postgres.py`` against ``PostgresStore`` on
real PostgreSQL. A subclass supplies ``make_store(samples)`` and ``run(call)``, which calls
``call()`` where the store lives and returns the result of the Deferred it gives.

The data set (``SAMPLES``), all on 2025-07-18 from 20:00:00Z (``T0``):

* GPU A (host h1): ``GPU_TEMP`` every 10 s from T0 to T0+110 s, values 40..51, then one at
  T0+115.25 s, value 60, with a workload (container trainer, pod p1, namespace ml);
  ``POWER_USAGE`` at the same 12 times, values 100.5 + i, blank (NULL) at T0+50 s.
* GPU B (host h2): ``GPU_TEMP`` 30 at T0.
* GPU C (host h1): ``POWER_USAGE`` 200 at T0+5 s.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from tmq.api.validation import GpuListQuery, LatestQuery, MetricsQuery, TelemetryQuery
from tmq.sink.schema import SCHEMA_VERSION
from tmq.telemetry.model import Sample

A = "GPU-aaaaaaaa-0000-0000-0000-000000000001"
B = "GPU-bbbbbbbb-0000-0000-0000-000000000002"
C = "GPU-cccccccc-0000-0000-0000-000000000003"
TEMP = "DCGM_FI_DEV_GPU_TEMP"
POWER = "DCGM_FI_DEV_POWER_USAGE"
T0 = datetime(2025, 7, 18, 20, 0, tzinfo=UTC)
T0_US = int(T0.timestamp()) * 1_000_000
MODEL = "NVIDIA H100 80GB HBM3"


def _sample(uuid, host, index, seconds, metric, value, workload=("", "", "")) -> Sample:
    return Sample(
        T0_US + round(seconds * 1_000_000), metric, index, f"nvidia{index}", uuid, MODEL, host,
        *workload, value, {},
    )  # fmt: skip


SAMPLES = (
    [_sample(A, "h1", 0, 10 * i, TEMP, 40.0 + i) for i in range(12)]
    + [_sample(A, "h1", 0, 115.25, TEMP, 60.0, ("trainer", "p1", "ml"))]
    + [_sample(A, "h1", 0, 10 * i, POWER, None if i == 5 else 100.5 + i) for i in range(12)]
    + [_sample(B, "h2", 1, 0, TEMP, 30.0), _sample(C, "h1", 2, 5, POWER, 200.0)]
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def telemetry(gpu_id=A, start=None, end=None, metric=None, limit=1000, offset=0):
    return TelemetryQuery(gpu_id, start, end, metric, limit, offset)


def metrics(aggregation, metric=TEMP, start=None, end=None, interval=None, limit=1000, offset=0):
    return MetricsQuery(A, metric, aggregation, start, end, interval, limit, offset)


class TelemetryStoreContract:
    def make_store(self, samples):
        raise NotImplementedError

    def run(self, call):
        raise NotImplementedError

    def store_and_a(self):
        store = self.make_store(SAMPLES)
        return store, self.run(lambda: store.gpu_id(A))

    # -- gpus ------------------------------------------------------------------------------

    def test_gpus_in_uuid_order_with_their_facts(self):
        """/gpus lists every GPU by uuid, with its host, device, index, model and the times
        of its first and last samples in RFC 3339 UTC."""
        store = self.make_store(SAMPLES)
        page = self.run(lambda: store.gpus(GpuListQuery(50, 0, None)))
        assert page["total"] == 3 and page["limit"] == 50 and page["offset"] == 0
        assert [gpu["uuid"] for gpu in page["items"]] == [A, B, C]
        assert page["items"][0] == {
            "uuid": A,
            "hostname": "h1",
            "device": "nvidia0",
            "gpu_index": 0,
            "model_name": MODEL,
            "first_seen": "2025-07-18T20:00:00Z",
            "last_seen": "2025-07-18T20:01:55.25Z",
        }

    def test_gpu_pages_and_hostname_filter(self):
        """Pages slice the uuid order and keep the total; an offset past the end gives no
        items and the total; hostname keeps that host's GPUs."""
        store = self.make_store(SAMPLES)
        second = self.run(lambda: store.gpus(GpuListQuery(2, 1, None)))
        assert [g["uuid"] for g in second["items"]] == [B, C] and second["total"] == 3
        past = self.run(lambda: store.gpus(GpuListQuery(5, 7, None)))
        assert past["items"] == [] and past["total"] == 3 and past["offset"] == 7
        host = self.run(lambda: store.gpus(GpuListQuery(50, 0, "h1")))
        assert [g["uuid"] for g in host["items"]] == [A, C] and host["total"] == 2
        none = self.run(lambda: store.gpus(GpuListQuery(50, 0, "nowhere")))
        assert none["items"] == [] and none["total"] == 0

    def test_gpu_id_of_unknown_uuid_is_none(self):
        """A known uuid has an id (the same each time); an unknown one has None."""
        store = self.make_store(SAMPLES)
        first = self.run(lambda: store.gpu_id(B))
        assert isinstance(first, int) and self.run(lambda: store.gpu_id(B)) == first
        assert self.run(lambda: store.gpu_id("GPU-unknown")) is None

    # -- telemetry -------------------------------------------------------------------------

    def test_samples_in_time_then_metric_order(self):
        """All 25 samples of A come by time, then metric name; a blank is null; workload
        labels are null when there is none; fractional seconds are kept."""
        store, a = self.store_and_a()
        page = self.run(lambda: store.telemetry(telemetry(), a))
        assert page["total"] == 25 and len(page["items"]) == 25
        keys = [(s["timestamp"], s["metric_name"]) for s in page["items"]]
        assert keys[:3] == [
            ("2025-07-18T20:00:00Z", TEMP),
            ("2025-07-18T20:00:00Z", POWER),
            ("2025-07-18T20:00:10Z", TEMP),
        ]
        assert keys[-1] == ("2025-07-18T20:01:55.25Z", TEMP)
        blank = [s for s in page["items"] if s["timestamp"] == "2025-07-18T20:00:50Z"]
        assert [s["value"] for s in blank] == [45.0, None]
        assert page["items"][0] == {
            "timestamp": "2025-07-18T20:00:00Z",
            "metric_name": TEMP,
            "value": 40.0,
            "container": None,
            "pod": None,
            "namespace": None,
        }
        assert page["items"][-1]["container"] == "trainer"
        assert (page["items"][-1]["pod"], page["items"][-1]["namespace"]) == ("p1", "ml")

    def test_sample_window_bounds_are_inclusive(self):
        """start_time and end_time both include a sample exactly on them; one microsecond
        less excludes it; start = end at a sample's time gives that sample."""
        store, a = self.store_and_a()
        page = self.run(
            lambda: store.telemetry(telemetry(start=at(10), end=at(30), metric=TEMP), a)
        )
        assert [s["value"] for s in page["items"]] == [41.0, 42.0, 43.0]
        shy = at(30) - timedelta(microseconds=1)
        page = self.run(lambda: store.telemetry(telemetry(start=at(10), end=shy, metric=TEMP), a))
        assert [s["value"] for s in page["items"]] == [41.0, 42.0]
        one = self.run(lambda: store.telemetry(telemetry(start=at(20), end=at(20)), a))
        assert [(s["metric_name"], s["value"]) for s in one["items"]] == [
            (TEMP, 42.0),
            (POWER, 102.5),
        ]

    def test_sample_pages_concatenate_to_the_whole(self):
        """Pages of 4 over A's 25 samples join up to the full ordered list; past the end the
        page is empty and the total stays."""
        store, a = self.store_and_a()
        whole = self.run(lambda: store.telemetry(telemetry(), a))["items"]
        joined = []
        for offset in range(0, 28, 4):
            page = self.run(
                lambda offset=offset: store.telemetry(telemetry(limit=4, offset=offset), a)
            )
            assert page["total"] == 25 and page["limit"] == 4 and page["offset"] == offset
            joined += page["items"]
        assert joined == whole

    def test_samples_of_a_gpu_without_any_in_the_window(self):
        """A window with no sample gives an empty page with total 0."""
        store, a = self.store_and_a()
        page = self.run(lambda: store.telemetry(telemetry(start=at(500)), a))
        assert page == {"items": [], "total": 0, "limit": 1000, "offset": 0}

    # -- metrics ---------------------------------------------------------------------------

    def test_every_aggregation_over_all_samples(self):
        """avg, min, max, sum and count over A's temperatures (13 values) and power (11
        values: the blank counts in none of them)."""
        store, a = self.store_and_a()
        temps = [40.0 + i for i in range(12)] + [60.0]
        powers = [100.5 + i for i in range(12) if i != 5]
        for metric, values in ((TEMP, temps), (POWER, powers)):
            expected = {
                "avg": math.fsum(values) / len(values),
                "min": min(values),
                "max": max(values),
                "sum": math.fsum(values),
                "count": len(values),
            }
            for aggregation, value in expected.items():
                answer = self.run(lambda ag=aggregation, m=metric: store.metrics(metrics(ag, m), a))
                assert math.isclose(answer["value"], value, rel_tol=1e-12), (metric, aggregation)
                assert answer["samples"] == len(values)
                assert answer == {
                    "gpu_id": A,
                    "metric_name": metric,
                    "aggregation": aggregation,
                    "start_time": None,
                    "end_time": None,
                    "value": answer["value"],
                    "samples": len(values),
                }

    def test_aggregate_over_a_window(self):
        """Inclusive bounds hold for aggregates; the answer echoes them in RFC 3339 UTC."""
        store, a = self.store_and_a()
        answer = self.run(lambda: store.metrics(metrics("sum", start=at(10), end=at(30)), a))
        assert answer["value"] == 41.0 + 42.0 + 43.0 and answer["samples"] == 3
        assert answer["start_time"] == "2025-07-18T20:00:10Z"
        assert answer["end_time"] == "2025-07-18T20:00:30Z"

    def test_aggregate_of_nothing(self):
        """With no value in the window, count is 0 and every other aggregation null."""
        store, a = self.store_and_a()
        for aggregation in ("avg", "min", "max", "sum"):
            answer = self.run(lambda ag=aggregation: store.metrics(metrics(ag, start=at(900)), a))
            assert answer["value"] is None and answer["samples"] == 0
        count = self.run(lambda: store.metrics(metrics("count", start=at(900)), a))
        assert count["value"] == 0 and count["samples"] == 0

    def test_buckets_aligned_to_the_epoch(self):
        """1-minute buckets start on the minute: [20:00, 20:01) holds 40..45, [20:01,
        20:02) holds 46..51 and 60; each says its start, end, value and samples."""
        store, a = self.store_and_a()
        answer = self.run(lambda: store.metrics(metrics("max", interval=timedelta(minutes=1)), a))
        assert answer["interval_seconds"] == 60 and answer["total"] == 2
        assert answer["items"] == [
            {
                "start": "2025-07-18T20:00:00Z",
                "end": "2025-07-18T20:01:00Z",
                "value": 45.0,
                "samples": 6,
            },
            {
                "start": "2025-07-18T20:01:00Z",
                "end": "2025-07-18T20:02:00Z",
                "value": 60.0,
                "samples": 7,
            },
        ]

    def test_bucket_pages(self):
        """25 s buckets of A's temperatures (epoch-aligned: 20:00:00 is a multiple of 25 s)
        page by limit and offset, with the total of buckets."""
        store, a = self.store_and_a()
        width = timedelta(seconds=25)
        whole = self.run(lambda: store.metrics(metrics("count", interval=width), a))
        assert [b["value"] for b in whole["items"]] == [3, 2, 3, 2, 3]
        assert whole["total"] == 5
        page = self.run(
            lambda: store.metrics(metrics("count", interval=width, limit=2, offset=3), a)
        )
        assert page["items"] == whole["items"][3:] and page["total"] == 5
        past = self.run(lambda: store.metrics(metrics("count", interval=width, offset=9), a))
        assert past["items"] == [] and past["total"] == 5

    def test_bucket_with_only_blanks(self):
        """A bucket whose samples are all blank is listed, with a null value and 0
        samples (count: 0)."""
        store, a = self.store_and_a()
        width = timedelta(seconds=10)
        window = {"start": at(50), "end": at(50), "interval": width}
        answer = self.run(lambda: store.metrics(metrics("avg", POWER, **window), a))
        assert answer["items"] == [
            {
                "start": "2025-07-18T20:00:50Z",
                "end": "2025-07-18T20:01:00Z",
                "value": None,
                "samples": 0,
            }
        ]

    # -- latest ----------------------------------------------------------------------------

    def test_latest_sample_of_each_metric(self):
        """The newest sample of each of A's metrics, by metric name."""
        store, a = self.store_and_a()
        page = self.run(lambda: store.latest(LatestQuery(A, None, 100, 0), a))
        assert page["gpu_id"] == A and page["total"] == 2
        assert [(s["metric_name"], s["timestamp"], s["value"]) for s in page["items"]] == [
            (TEMP, "2025-07-18T20:01:55.25Z", 60.0),
            (POWER, "2025-07-18T20:01:50Z", 111.5),
        ]
        assert page["items"][0]["container"] == "trainer"

    def test_latest_of_one_metric_and_pages(self):
        """metric_name keeps one metric (none when the GPU lacks it); pages slice the list."""
        store, a = self.store_and_a()
        power = self.run(lambda: store.latest(LatestQuery(A, POWER, 100, 0), a))
        assert [s["value"] for s in power["items"]] == [111.5] and power["total"] == 1
        b = self.run(lambda: store.gpu_id(B))
        missing = self.run(lambda: store.latest(LatestQuery(B, POWER, 100, 0), b))
        assert missing["items"] == [] and missing["total"] == 0
        second = self.run(lambda: store.latest(LatestQuery(A, None, 1, 1), a))
        assert [s["metric_name"] for s in second["items"]] == [POWER] and second["total"] == 2

    def test_schema_version(self):
        """A store that answers reports the schema version of tmq.sink.schema."""
        store = self.make_store(SAMPLES)
        assert self.run(store.schema_version) == SCHEMA_VERSION
