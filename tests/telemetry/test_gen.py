"""Synthetic fleets: deterministic, shaped like the real capture, written in its format."""

from __future__ import annotations

import io
import itertools
import re
import statistics
from collections import defaultdict

import pytest

from tmq.telemetry.csv_source import parse_csv, parse_rfc3339, real_capture_path
from tmq.telemetry.gen import (
    DEFAULT_START_US,
    EXTRA_METRICS,
    REAL_METRICS,
    generate,
    gpu_uuid,
    host_name,
    write_csv,
)
from tmq.telemetry.model import METRICS, Sample

UUID = re.compile(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def fleet(**arguments) -> list[Sample]:
    return list(generate(**{"hosts": 2, "gpus_per_host": 4, "scrapes": 3, **arguments}))


@pytest.fixture(scope="module")
def big_fleet() -> list[Sample]:
    """250 GPUs over 60 scrapes a minute apart, every field."""
    return fleet(hosts=50, gpus_per_host=5, scrapes=60, interval_s=60.0, extra_metrics=True)


def by_gpu(samples: list[Sample], metric: str) -> dict[str, list[float]]:
    series = defaultdict(list)
    for sample in samples:
        if sample.metric == metric:
            series[sample.uuid].append(sample.value)
    return series


def readings(samples: list[Sample]) -> list[dict[str, float]]:
    """Each GPU's values at each scrape, as {metric: value}."""
    points = defaultdict(dict)
    for sample in samples:
        points[sample.uuid, sample.time_us][sample.metric] = sample.value
    return list(points.values())


class ShapeTests:
    """Hosts x GPUs x scrapes x fields, in time order, named like the real capture."""

    def test_counts_and_order(self):
        """Every field of every GPU at every scrape, scrape after scrape, each scrape field
        by field (host after host within a field), as the real capture is ordered."""
        samples = fleet()
        assert len(samples) == 2 * 4 * 3 * len(REAL_METRICS)
        times = [sample.time_us for sample in samples]
        assert times == sorted(times)
        assert sorted(set(times)) == [DEFAULT_START_US + k * 1_000_000 for k in range(3)]
        first_scrape = samples[: 8 * len(REAL_METRICS)]
        assert [s.metric for s in first_scrape[::8]] == list(REAL_METRICS)
        assert [(s.hostname, s.gpu_index) for s in first_scrape[:8]] == [
            (host_name(h), g) for h in (1, 2) for g in range(4)
        ]

    def test_extra_metrics(self):
        """extra_metrics adds its fields after the real ones, all in the catalog."""
        samples = fleet(scrapes=1, extra_metrics=True)
        assert [s.metric for s in samples[::8]] == [*REAL_METRICS, *EXTRA_METRICS]
        assert set(EXTRA_METRICS) <= METRICS.keys()

    def test_start_and_fractional_interval(self):
        """Scrape k is at start + k * interval, to the microsecond."""
        start = parse_rfc3339("2030-01-02T03:04:05.5Z")
        samples = fleet(scrapes=4, interval_s=0.25, start_us=start)
        assert sorted({s.time_us for s in samples}) == [start + k * 250_000 for k in range(4)]

    def test_names_and_labels_like_the_real_capture(self):
        """Hosts sim-dgx1-hgpu-NNN, devices nvidiaN, GPU-… UUIDs, and the real capture's label
        names in its order, with matching values; no workload."""
        with real_capture_path().open(newline="") as stream:
            real = next(parse_csv(stream))
        sample = fleet()[5]
        assert (sample.hostname, sample.device, sample.gpu_index) == (
            "sim-dgx1-hgpu-002", "nvidia1", 1,
        )  # fmt: skip
        assert UUID.fullmatch(sample.uuid)
        assert list(sample.labels) == list(real.labels)
        assert sample.labels == {
            **real.labels,
            "Hostname": "sim-dgx1-hgpu-002",
            "UUID": sample.uuid,
            "device": "nvidia1",
            "gpu": "1",
            "instance": "sim-dgx1-hgpu-002:9400",
        }
        assert (sample.model, sample.driver) == (real.model, real.driver)
        assert (sample.container, sample.pod, sample.namespace) == ("", "", "")
        assert host_name(1234) == "sim-dgx1-hgpu-1234"

    @pytest.mark.parametrize(
        "arguments",
        [{"hosts": 0}, {"gpus_per_host": 0}, {"gpus_per_host": 65537}, {"scrapes": 0},
         {"interval_s": 0.0}, {"interval_s": -1.0}, {"interval_s": float("nan")},
         {"interval_s": float("inf")}],
    )  # fmt: skip
    def test_bad_arguments(self, arguments):
        """Sizes below 1, too many GPUs and intervals that are not positive are refused."""
        with pytest.raises(ValueError):
            fleet(**arguments)


class DeterminismTests:
    """The output is a function of the arguments; a GPU's identity of (seed, host, GPU)."""

    def test_same_arguments_same_samples(self):
        assert fleet(seed=7, extra_metrics=True) == fleet(seed=7, extra_metrics=True)

    def test_seed_changes_uuids_and_values(self):
        """Another seed gives other UUIDs and other values."""
        one, other = fleet(seed=1, scrapes=1), fleet(seed=2, scrapes=1)
        assert {s.uuid for s in one}.isdisjoint({s.uuid for s in other})
        assert [s.value for s in one] != [s.value for s in other]

    def test_gpus_do_not_depend_on_the_fleet_size(self):
        """A GPU has the same UUID and the same values in a bigger fleet, and with or without
        the extra fields."""
        small = [s for s in fleet(hosts=1, gpus_per_host=2) if s.gpu_index == 1]
        big = [
            s
            for s in fleet(hosts=3, gpus_per_host=8, extra_metrics=True)
            if (s.hostname, s.gpu_index) == (host_name(1), 1) and s.metric in REAL_METRICS
        ]
        assert small == big
        assert small[0].uuid == gpu_uuid(0, host_name(1), 1)


class ValueTests:
    """Value ranges and relations like the real capture's."""

    def test_busy_and_idle_gpus(self, big_fleet):
        """Utilisation is a whole percentage; about half the fleet is busy at a time, and the
        busy ones mostly run at 85 % or more."""
        points = readings(big_fleet)
        utils = [p["DCGM_FI_DEV_GPU_UTIL"] for p in points]
        assert all(u == int(u) and 0 <= u <= 100 for u in utils)
        busy = [u for u in utils if u > 0]
        assert 0.3 < len(busy) / len(utils) < 0.7
        assert statistics.median(busy) >= 85

    def test_power_follows_utilisation(self, big_fleet):
        """Power stays within 60..700 W; idle GPUs draw 60..90 W, busy ones far more on
        average; the SM clock drops only above 640 W and idles at 345 MHz."""
        points = readings(big_fleet)
        for p in points:
            assert 60 <= p["DCGM_FI_DEV_POWER_USAGE"] <= 700
            assert p["DCGM_FI_DEV_SM_CLOCK"] in (345.0, 1965.0, 1980.0)
            if p["DCGM_FI_DEV_SM_CLOCK"] == 1965.0:
                assert p["DCGM_FI_DEV_POWER_USAGE"] > 640
        idle = [p["DCGM_FI_DEV_POWER_USAGE"] for p in points if p["DCGM_FI_DEV_FB_USED"] == 4]
        busy = [p["DCGM_FI_DEV_POWER_USAGE"] for p in points if p["DCGM_FI_DEV_GPU_UTIL"] > 0]
        assert max(idle) < 90
        assert statistics.mean(busy) > statistics.mean(idle) + 200
        assert all(p["DCGM_FI_DEV_SM_CLOCK"] == 345.0 for p in points
                   if p["DCGM_FI_DEV_FB_USED"] == 4)  # fmt: skip

    def test_memory_clocks_and_codecs(self, big_fleet):
        """FB used + free is 81007 MiB, 552 reserved; the memory clock is 2619 MHz; the
        encoder and decoder are idle; memory-copy utilisation is 0 when the GPU is idle."""
        for p in readings(big_fleet):
            assert p["DCGM_FI_DEV_FB_USED"] + p["DCGM_FI_DEV_FB_FREE"] == 81007
            assert 4 <= p["DCGM_FI_DEV_FB_USED"] <= 77400
            assert p["DCGM_FI_DEV_FB_RESERVED"] == 552
            assert p["DCGM_FI_DEV_MEM_CLOCK"] == 2619
            assert p["DCGM_FI_DEV_ENC_UTIL"] == p["DCGM_FI_DEV_DEC_UTIL"] == 0
            assert 0 <= p["DCGM_FI_DEV_MEM_COPY_UTIL"] <= 100
            if p["DCGM_FI_DEV_GPU_UTIL"] == 0:
                assert p["DCGM_FI_DEV_MEM_COPY_UTIL"] == 0
            for ratio in ("GR_ENGINE_ACTIVE", "PIPE_TENSOR_ACTIVE", "DRAM_ACTIVE"):
                assert 0 <= p[f"DCGM_FI_PROF_{ratio}"] <= 1

    def test_temperatures(self, big_fleet):
        """GPU temperatures are whole degrees in 20..85 C, memory a few degrees warmer, and
        move by little between scrapes a minute apart."""
        for p in readings(big_fleet):
            assert 20 <= p["DCGM_FI_DEV_GPU_TEMP"] <= 85
            assert 2 <= p["DCGM_FI_DEV_MEMORY_TEMP"] - p["DCGM_FI_DEV_GPU_TEMP"] <= 8
        for series in by_gpu(big_fleet, "DCGM_FI_DEV_GPU_TEMP").values():
            assert max(abs(b - a) for a, b in itertools.pairwise(series)) <= 40

    def test_counters_only_grow(self, big_fleet):
        """Total energy grows by about power x interval every scrape; PCIe replays never
        fall."""
        energy = by_gpu(big_fleet, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")
        power = by_gpu(big_fleet, "DCGM_FI_DEV_POWER_USAGE")
        for uuid, series in energy.items():
            steps = [b - a for a, b in itertools.pairwise(series)]
            assert steps == [round(w * 60 * 1000) for w in power[uuid][1:]]
        for series in by_gpu(big_fleet, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER").values():
            assert series == sorted(series)

    def test_values_are_floats(self, big_fleet):
        assert all(type(sample.value) is float for sample in big_fleet)


class CsvWriterTests:
    """write_csv writes the real capture's format, which csv_source reads back."""

    def test_generated_samples_read_back(self):
        """A generated fleet written as CSV parses back to the same samples."""
        samples = fleet(extra_metrics=True, scrapes=2, interval_s=0.5)
        out = io.StringIO()
        assert write_csv(samples, out) == len(samples)
        assert list(parse_csv(io.StringIO(out.getvalue()))) == samples

    def test_real_capture_is_rewritten_byte_for_byte(self):
        """The real capture's samples, written, are the real capture's file exactly: header,
        quoting of every field, doubled label quotes, values, times, line ends."""
        original = real_capture_path().read_bytes()
        with real_capture_path().open(newline="") as stream:
            samples = list(parse_csv(stream))
        out = io.StringIO(newline="")
        write_csv(samples, out)
        assert out.getvalue().encode() == original

    def test_quotes_and_blanks(self):
        """Quotes in fields and labels are doubled, None is the blank sentinel: both read
        back."""
        sample = Sample(
            1, "DCGM_FI_DEV_GPU_UTIL", 0, 'dev"0', "GPU-1", "m,1", "h", "", "", "", None,
            {"a": 'x"y', "b": "\\"},
        )  # fmt: skip
        out = io.StringIO()
        write_csv([sample], out)
        assert '"dev""0"' in out.getvalue()
        assert list(parse_csv(io.StringIO(out.getvalue()))) == [sample]
