"""Synthetic DCGM telemetry at any scale, shaped like the real capture, and its CSV writer.

:func:`generate` simulates a fleet of ``hosts`` x ``gpus_per_host`` NVIDIA H100 80GB HBM3
GPUs scraped ``scrapes`` times, ``interval_s`` apart. Every scrape yields every field of every
GPU at the scrape's time, field after field (each field for all GPUs, host after host, as the
real capture is ordered), so samples come in time order.

Names and labels follow the real capture: hosts ``sim-dgx1-hgpu-001``, ``-002`` …; devices
``nvidia0`` …; UUIDs ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`` derived from (seed, host,
GPU), so a GPU keeps its UUID whatever the fleet's size; labels ``DCGM_FI_DRIVER_VERSION``,
``Hostname``, ``UUID``, ``__name__``, ``device``, ``gpu``, ``instance`` (``host:9400``),
``job``, ``modelName``; no Kubernetes workload (container, pod, namespace empty).

Values behave like the capture's. Each GPU runs jobs of about half an hour with idle gaps of
about the same length (so about half the fleet is busy), and spends about a tenth of a job
loading (memory held, not computing):

* idle: utilisation 0, power about 66 to 80 W, SM clock 345 MHz, 4 MiB of frame buffer used;
* loading: utilisation 0, power about 105 to 125 W, SM clock 1980 MHz, the job's memory held;
* busy: utilisation around the job's level (mostly 90 to 100 %, down to 30 %), memory-copy
  utilisation a job-specific fraction of it, power 70 W plus up to 620 W with utilisation and
  the job's intensity (the SM clock drops to 1965 MHz above 640 W), the job's memory held.

The temperature follows power with a one-minute lag; FB used + free is always 81007 MiB (and
552 reserved); the memory clock is 2619 MHz; encoder and decoder utilisation are 0. With
``extra_metrics`` the fleet also reports memory temperature, total energy (a counter in mJ
that grows by power x interval), PCIe replays and XID errors (rare), FB reserved and three
profiling ratios. The output is a function of the arguments alone.

:func:`write_csv` writes samples exactly as the real capture is written, which
``tmq.telemetry.csv_source`` reads back into the same samples.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Iterator
from typing import TextIO

from .csv_source import HEADER, format_rfc3339
from .exposition import format_labels
from .model import MAX_GPU_INDEX, Sample, format_value

__all__ = [
    "DEFAULT_START_US",
    "EXTRA_METRICS",
    "HOST_PREFIX",
    "REAL_METRICS",
    "generate",
    "gpu_uuid",
    "host_name",
    "write_csv",
]

#: The fields of the real capture, in its order.
REAL_METRICS = (
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_ENC_UTIL",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
)
#: The fields ``extra_metrics`` adds, all from dcgm-exporter's default list.
EXTRA_METRICS = (
    "DCGM_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_FB_RESERVED",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE",
)

#: 2025-07-18T20:42:34Z, the real capture's first timestamp: the default start.
DEFAULT_START_US = 1_752_871_354_000_000
#: Host names are this prefix, a dash and the host's number (from 1, at least three digits).
HOST_PREFIX = "sim-dgx1-hgpu"

_MODEL = "NVIDIA H100 80GB HBM3"
_DRIVER = "535.129.03"
_JOB = "dgx_dcgm_exporter"
_EXPORTER_PORT = 9400
_FB_USABLE_MIB = 81007  # FB used + free on the capture's H100s
_FB_RESERVED_MIB = 552
_MEM_CLOCK_MHZ = 2619.0
_SM_CLOCK_IDLE_MHZ = 345.0
_SM_CLOCK_MHZ = 1980.0
_SM_CLOCK_THROTTLED_MHZ = 1965.0
_THROTTLE_WATTS = 640.0
_IDLE_FB_MIB = 4

_MEAN_JOB_S = 1800.0
_MEAN_GAP_S = 1800.0
_MEAN_LOADING_S = 60.0
_MEAN_COMPUTING_S = 540.0
_TEMPERATURE_LAG_S = 60.0
_XID_CODES = (13, 31, 43, 48, 63, 74, 79)


def host_name(number: int) -> str:
    """The name of host ``number`` (from 1): ``sim-dgx1-hgpu-001``."""
    return f"{HOST_PREFIX}-{number:03d}"


def gpu_uuid(seed: int, hostname: str, gpu_index: int) -> str:
    """The UUID of a simulated GPU, a function of (seed, host, GPU index) alone."""
    digest = hashlib.blake2b(f"{seed}/{hostname}/{gpu_index}".encode(), digest_size=16).hexdigest()
    return f"GPU-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


class _Gpu:
    """One simulated GPU: its identity, its labels and the state of its workload."""

    def __init__(self, seed: int, hostname: str, index: int, metrics: tuple[str, ...]) -> None:
        self.hostname = hostname
        self.index = index
        self.device = f"nvidia{index}"
        self.uuid = gpu_uuid(seed, hostname, index)
        common = {
            "DCGM_FI_DRIVER_VERSION": _DRIVER,
            "Hostname": hostname,
            "UUID": self.uuid,
        }
        after = {
            "device": self.device,
            "gpu": str(index),
            "instance": f"{hostname}:{_EXPORTER_PORT}",
            "job": _JOB,
            "modelName": _MODEL,
        }
        self.labels = {metric: {**common, "__name__": metric, **after} for metric in metrics}
        rng = self.rng = random.Random(f"{seed}/{hostname}/{index}")
        self.idle_watts = rng.uniform(67.0, 76.0)
        self.temperature_offset = rng.uniform(-3.0, 5.0)
        self.memory_temperature_offset = rng.uniform(2.0, 8.0)
        self.energy_mj = round(rng.uniform(1.0, 30.0) * 86400 * 200.0 * 1000)
        self.pcie_replays = 0
        self.xid = 0
        # The job's shape, drawn when a job starts.
        self.loading = False
        self.job_fb_mib = _IDLE_FB_MIB
        self.job_util = self.job_intensity = self.job_copy_ratio = self.job_tensor_ratio = 0.0
        # Start in the steady state: busy half of the time, loading a tenth of a job.
        self.in_job = rng.random() < _MEAN_JOB_S / (_MEAN_JOB_S + _MEAN_GAP_S)
        if self.in_job:
            self._start_job()
        self.temperature = self._target_temperature(self._power())

    def _start_job(self) -> None:
        rng = self.rng
        self.in_job = True
        self.loading = rng.random() < _MEAN_LOADING_S / (_MEAN_LOADING_S + _MEAN_COMPUTING_S)
        self.job_fb_mib = rng.randint(2000, 77400)
        self.job_util = max(30.0, 100.0 - rng.expovariate(1 / 6.0))
        self.job_intensity = rng.uniform(0.3, 1.0)
        self.job_copy_ratio = rng.uniform(0.15, 0.8)
        self.job_tensor_ratio = rng.uniform(0.05, 0.6)

    def _computing(self) -> bool:
        return self.in_job and not self.loading

    def _power(self) -> float:
        if not self.in_job:
            return self.idle_watts
        if self.loading:
            return self.idle_watts + 40.0
        return 70.0 + self.job_util / 100 * self.job_intensity * 620.0

    def _target_temperature(self, watts: float) -> float:
        return 25.0 + watts * 0.06 + self.temperature_offset

    def _advance(self, interval_s: float) -> None:
        rng = self.rng
        if self.in_job:
            if rng.random() < -math.expm1(-interval_s / _MEAN_JOB_S):
                self.in_job = False
            elif rng.random() < -math.expm1(
                -interval_s / (_MEAN_LOADING_S if self.loading else _MEAN_COMPUTING_S)
            ):
                self.loading = not self.loading
        elif rng.random() < -math.expm1(-interval_s / _MEAN_GAP_S):
            self._start_job()
        if rng.random() < 1e-4:
            self.pcie_replays += rng.randint(1, 5)
        if rng.random() < 1e-5:
            self.xid = rng.choice(_XID_CODES)

    def reading(self, interval_s: float, first: bool) -> dict[str, float]:
        """Every field's value at the next scrape (the first scrape: the initial state)."""
        if not first:
            self._advance(interval_s)
        rng = self.rng
        if self._computing():
            util = float(min(100, max(0, round(self.job_util + rng.gauss(0.0, 3.0)))))
            copy = float(min(100, max(0, round(util * self.job_copy_ratio + rng.gauss(0.0, 4.0)))))
            watts = 70.0 + util / 100 * self.job_intensity * 620.0 + rng.gauss(0.0, 15.0)
        else:
            util = copy = 0.0
            watts = self._power() + rng.gauss(0.0, 1.5)
        watts = round(min(700.0, max(60.0, watts)), 3)
        if not first:
            self.energy_mj += round(watts * interval_s * 1000)
            pull = -math.expm1(-interval_s / _TEMPERATURE_LAG_S)
            self.temperature += (self._target_temperature(watts) - self.temperature) * pull
        fb_used = self.job_fb_mib if self.in_job else _IDLE_FB_MIB
        if not self.in_job:
            sm_clock = _SM_CLOCK_IDLE_MHZ
        elif watts > _THROTTLE_WATTS:
            sm_clock = _SM_CLOCK_THROTTLED_MHZ
        else:
            sm_clock = _SM_CLOCK_MHZ
        temperature = float(round(self.temperature))
        busy = util / 100
        return {
            "DCGM_FI_DEV_GPU_UTIL": util,
            "DCGM_FI_DEV_MEM_COPY_UTIL": copy,
            "DCGM_FI_DEV_POWER_USAGE": watts,
            "DCGM_FI_DEV_GPU_TEMP": temperature,
            "DCGM_FI_DEV_FB_USED": float(fb_used),
            "DCGM_FI_DEV_FB_FREE": float(_FB_USABLE_MIB - fb_used),
            "DCGM_FI_DEV_DEC_UTIL": 0.0,
            "DCGM_FI_DEV_ENC_UTIL": 0.0,
            "DCGM_FI_DEV_SM_CLOCK": sm_clock,
            "DCGM_FI_DEV_MEM_CLOCK": _MEM_CLOCK_MHZ,
            "DCGM_FI_DEV_MEMORY_TEMP": temperature + round(self.memory_temperature_offset),
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": float(self.energy_mj),
            "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": float(self.pcie_replays),
            "DCGM_FI_DEV_XID_ERRORS": float(self.xid),
            "DCGM_FI_DEV_FB_RESERVED": float(_FB_RESERVED_MIB),
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE": round(busy * rng.uniform(0.85, 0.99), 6),
            "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": round(busy * self.job_tensor_ratio, 6),
            "DCGM_FI_PROF_DRAM_ACTIVE": round(min(1.0, copy / 100 * rng.uniform(0.9, 1.1)), 6),
        }


def generate(
    *,
    hosts: int,
    gpus_per_host: int,
    scrapes: int,
    interval_s: float = 1.0,
    start_us: int = DEFAULT_START_US,
    seed: int = 0,
    extra_metrics: bool = False,
) -> Iterator[Sample]:
    """The samples of ``scrapes`` scrapes of a simulated fleet (see the module docstring).

    Scrape ``k`` is at ``start_us + k * interval_s`` (rounded to the microsecond).

    :raises ValueError: ``hosts``, ``gpus_per_host`` (at most ``MAX_GPU_INDEX + 1``) or
        ``scrapes`` below 1, or ``interval_s`` not a positive number of at least 1 µs.
    """
    for name, count in (("hosts", hosts), ("gpus_per_host", gpus_per_host), ("scrapes", scrapes)):
        if count < 1:
            raise ValueError(f"{name} must be at least 1, not {count}")
    if gpus_per_host > MAX_GPU_INDEX + 1:
        raise ValueError(f"gpus_per_host must be at most {MAX_GPU_INDEX + 1}")
    if not (math.isfinite(interval_s) and interval_s >= 1e-6):
        raise ValueError(f"interval_s must be a positive number of seconds, not {interval_s}")
    metrics = REAL_METRICS + EXTRA_METRICS if extra_metrics else REAL_METRICS
    return _scrapes(
        [
            _Gpu(seed, host_name(number), index, metrics)
            for number in range(1, hosts + 1)
            for index in range(gpus_per_host)
        ],
        metrics,
        scrapes,
        interval_s,
        start_us,
    )


def _scrapes(
    gpus: list[_Gpu], metrics: tuple[str, ...], scrapes: int, interval_s: float, start_us: int
) -> Iterator[Sample]:
    for scrape in range(scrapes):
        time_us = start_us + round(scrape * interval_s * 1_000_000)
        readings = [gpu.reading(interval_s, scrape == 0) for gpu in gpus]
        for metric in metrics:
            for gpu, reading in zip(gpus, readings, strict=True):
                yield Sample(
                    time_us, metric, gpu.index, gpu.device, gpu.uuid, _MODEL, gpu.hostname,
                    "", "", "", reading[metric], gpu.labels[metric],
                )  # fmt: skip


def write_csv(samples: Iterable[Sample], stream: TextIO) -> int:
    """Write ``samples`` to ``stream`` as a DCGM CSV capture, in the real capture's exact
    format: the header unquoted, then one row per sample with every field quoted (quotes
    inside doubled), ``labels_raw`` as ``name="value"`` pairs, ``\\n`` line ends, times as
    ``format_rfc3339`` writes them, values as ``format_value`` does (``None`` as the blank
    sentinel). Returns the number of rows written."""
    write = stream.write
    write(",".join(HEADER) + "\n")
    labels_fields: dict[int, tuple[object, str]] = {}  # id(labels) -> (labels, CSV text)
    time_us = timestamp = None
    rows = 0
    for sample in samples:
        if sample.time_us != time_us:
            time_us = sample.time_us
            timestamp = format_rfc3339(time_us)
        labels = sample.labels
        known = labels_fields.get(id(labels))
        if known is not None and known[0] is labels:
            labels_field = known[1]
        else:
            labels_field = _csv_quoted(format_labels(labels.items()))
            if len(labels_fields) >= 65536:
                labels_fields.clear()
            labels_fields[id(labels)] = (labels, labels_field)
        texts = (
            sample.metric, str(sample.gpu_index), sample.device, sample.uuid, sample.model,
            sample.hostname, sample.container, sample.pod, sample.namespace,
        )  # fmt: skip
        middle = '","'.join(map(_csv_quoted, texts))
        write(f'"{timestamp}","{middle}","{format_value(sample.value)}","{labels_field}"\n')
        rows += 1
    return rows


def _csv_quoted(text: str) -> str:
    """``text`` as it goes between the quotes of a CSV field."""
    return text.replace('"', '""') if '"' in text else text
