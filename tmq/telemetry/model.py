"""The telemetry sample: one DCGM field of one GPU at one instant; and what DCGM fields are.

A sample is what one CSV row, or one line of a dcgm-exporter scrape, says. It travels as one
Kafka record whose key is the GPU UUID (so one GPU's samples keep their order inside a
partition) and whose value is ``tmq.telemetry.codec``'s msgpack map of these fields.

This module also holds the facts every source and sink shares:

* ``METRICS``, the catalog of DCGM fields: every field dcgm-exporter exports by default (its
  ``default-counters.csv``, current and earlier releases) and the common optional ones, each with
  its unit, Prometheus kind and a one-line description. A field outside the catalog is still a
  valid sample when its name matches ``DCGM_FI_[A-Z0-9_]+`` (``is_metric_name``): the exporter
  can be configured to export any DCGM field.
* DCGM's blank sentinels (``dcgm_structs.h``): the values DCGM reports instead of a number when
  a field has no value, was not found, is not supported or is not permitted. ``is_blank`` tells
  them apart from real values; samples carry ``None`` instead.
* ``RowError``: what a source yields for an input line it cannot turn into a sample.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Literal, NamedTuple

__all__ = [
    "DCGM_FP64_BLANK",
    "DCGM_INT32_BLANK",
    "DCGM_INT64_BLANK",
    "MAX_GPU_INDEX",
    "METRICS",
    "MetricInfo",
    "RowError",
    "Sample",
    "format_value",
    "is_blank",
    "is_metric_name",
]


class Sample(NamedTuple):
    """One DCGM field value (a named tuple: immutable, and the cheapest object Python makes;
    the sink decodes one per record).

    :ivar time_us: when the value was observed, in microseconds since the Unix epoch (UTC).
    :ivar metric: the DCGM field name, e.g. ``DCGM_FI_DEV_GPU_UTIL``.
    :ivar gpu_index: the GPU's index on its host (DCGM's ``gpu`` label).
    :ivar device: the device node name, e.g. ``nvidia0``.
    :ivar uuid: the GPU UUID, e.g. ``GPU-5fd4f087-86f3-7a43-b711-4771313afc50``; never empty.
    :ivar model: the GPU model name (``modelName``).
    :ivar hostname: the host the GPU is in.
    :ivar container: the Kubernetes container using the GPU, ``""`` when none.
    :ivar pod: the Kubernetes pod using the GPU, ``""`` when none.
    :ivar namespace: the Kubernetes namespace of that pod, ``""`` when none.
    :ivar value: the field's value; ``None`` when DCGM reported one of its blank sentinels
        (no value, not a number to chart).
    :ivar labels: every exporter label of the sample (``labels_raw``), parsed, quotes removed;
        e.g. ``DCGM_FI_DRIVER_VERSION`` gives the driver version. The parsers share one
        mapping between the samples of a label set: treat it as read-only.
    """

    time_us: int
    metric: str
    gpu_index: int
    device: str
    uuid: str
    model: str
    hostname: str
    container: str
    pod: str
    namespace: str
    value: float | None
    labels: Mapping[str, str]

    @property
    def driver(self) -> str:
        """The driver version from the labels, ``""`` when the exporter did not say."""
        return self.labels.get("DCGM_FI_DRIVER_VERSION", "")


class RowError(NamedTuple):
    """An input line that is not a valid sample; sources yield it and carry on.

    :ivar line_number: the physical line number in the input, the first line being 1.
    :ivar reason: what is wrong, in words, naming the offending field and value.
    :ivar raw_line: the line as read, without its line break.
    """

    line_number: int
    reason: str
    raw_line: str


#: The highest GPU index a sample may carry. DCGM numbers a host's GPUs from 0 and supports a
#: few dozen per host; the bound keeps a corrupt index out of the database's integer column.
MAX_GPU_INDEX = 65535

_METRIC_NAME = re.compile(r"DCGM_FI_[A-Z0-9_]+")


def is_metric_name(name: str) -> bool:
    """Whether ``name`` is a DCGM field name (``DCGM_FI_[A-Z0-9_]+``), in the catalog or not."""
    return _METRIC_NAME.fullmatch(name) is not None


# --- DCGM blank sentinels (dcgm_structs.h) ----------------------------------------------------
#
# Each value type has a base "blank" value; base + 1 means not found, + 2 not supported, + 3 not
# permissioned, and DCGM reserves base .. base + 15. An exporter prints the raw number, so a
# sentinel reaches us as a (float) value.

#: Base of the 32-bit integer blanks, 0x7ffffff0.
DCGM_INT32_BLANK = 0x7FFFFFF0
#: Base of the 64-bit integer blanks, 0x7ffffffffffffff0.
DCGM_INT64_BLANK = 0x7FFFFFFFFFFFFFF0
#: Base of the double blanks, 2 ** 47.
DCGM_FP64_BLANK = 140737488355328.0

_BLANK_RANGE = 16
_INT32_BLANKS = (float(DCGM_INT32_BLANK), float(DCGM_INT32_BLANK + _BLANK_RANGE - 1))
_FP64_BLANKS = (DCGM_FP64_BLANK, DCGM_FP64_BLANK + _BLANK_RANGE - 1)
# The 64-bit blanks are all within 16 of 2 ** 63, where doubles are 1024 apart: each of them,
# printed and read back as a float, is 2 ** 63 — beyond any real int64 value.
_INT64_BLANK_FLOAT = float(DCGM_INT64_BLANK)


def is_blank(value: float) -> bool:
    """Whether ``value`` is one of DCGM's blank sentinels rather than a measurement.

    True for the whole integer ranges DCGM reserves: 0x7ffffff0..0x7fffffff (int32 fields),
    2 ** 47 .. 2 ** 47 + 15 (double fields), and any finite value from float(0x7ffffffffffffff0)
    up (int64 fields; no real int64 value gets there). The value's field type is not known here,
    so a 64-bit counter (energy in mJ, say) that happens to read exactly one of those 32 int32
    or double sentinel numbers is taken for a blank; every other value is a measurement.
    """
    if value >= _INT64_BLANK_FLOAT:
        return value != math.inf
    if not value.is_integer():
        return False
    return (
        _INT32_BLANKS[0] <= value <= _INT32_BLANKS[1] or _FP64_BLANKS[0] <= value <= _FP64_BLANKS[1]
    )


def format_value(value: float | None) -> str:
    """A value as DCGM exporters print it: integral values without a fraction (``"73420"``),
    others in the shortest form that reads back as the same float (``"156.596"``). ``None``
    prints as DCGM's double blank sentinel (``"140737488355328"``), which parsers read back as
    ``None``."""
    if value is None:
        return "140737488355328"
    if value.is_integer() and -1e18 < value < 1e18:
        return str(int(value))
    return repr(value)


# --- The catalog ------------------------------------------------------------------------------


class MetricInfo(NamedTuple):
    """What a DCGM field measures.

    :ivar unit: the unit of its values (``"MHz"``, ``"W"``, ``"%"``, ``"ratio"`` for 0..1,
        ``""`` for counts and codes).
    :ivar kind: its Prometheus metric type as dcgm-exporter declares it.
    :ivar description: one line, for ``# HELP`` and API documentation.
    """

    unit: str
    kind: Literal["gauge", "counter"]
    description: str


def _gauge(unit: str, description: str) -> MetricInfo:
    return MetricInfo(unit, "gauge", description)


def _counter(unit: str, description: str) -> MetricInfo:
    return MetricInfo(unit, "counter", description)


#: DCGM field name -> what it measures. Every field of dcgm-exporter's default counter list
#: (current and earlier releases; the ten fields of the real capture among them), then the
#: optional fields its list carries commented out.
METRICS: Mapping[str, MetricInfo] = {
    # Clocks
    "DCGM_FI_DEV_SM_CLOCK": _gauge("MHz", "SM clock frequency (in MHz)."),
    "DCGM_FI_DEV_MEM_CLOCK": _gauge("MHz", "Memory clock frequency (in MHz)."),
    # Temperatures
    "DCGM_FI_DEV_MEMORY_TEMP": _gauge("C", "Memory temperature (in C)."),
    "DCGM_FI_DEV_GPU_TEMP": _gauge("C", "GPU temperature (in C)."),
    # Power
    "DCGM_FI_DEV_POWER_USAGE": _gauge("W", "Power draw (in W)."),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": _counter(
        "mJ", "Total energy consumed since the driver was loaded (in mJ)."
    ),
    # PCIe
    "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": _counter("KB", "Total bytes sent over PCIe (in KB)."),
    "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": _counter("KB", "Total bytes received over PCIe (in KB)."),
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": _counter("", "Total number of PCIe retries."),
    # Utilisation (the sampling period depends on the product)
    "DCGM_FI_DEV_GPU_UTIL": _gauge("%", "GPU utilization (in %)."),
    "DCGM_FI_DEV_MEM_COPY_UTIL": _gauge("%", "Memory utilization (in %)."),
    "DCGM_FI_DEV_ENC_UTIL": _gauge("%", "Encoder utilization (in %)."),
    "DCGM_FI_DEV_DEC_UTIL": _gauge("%", "Decoder utilization (in %)."),
    # Errors
    "DCGM_FI_DEV_XID_ERRORS": _gauge("", "Value of the last XID error encountered."),
    # Frame buffer
    "DCGM_FI_DEV_FB_FREE": _gauge("MiB", "Frame buffer memory free (in MiB)."),
    "DCGM_FI_DEV_FB_USED": _gauge("MiB", "Frame buffer memory used (in MiB)."),
    "DCGM_FI_DEV_FB_RESERVED": _gauge("MiB", "Frame buffer memory reserved (in MiB)."),
    # NVLink
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": _counter(
        "", "Total NVLink bandwidth counter over all lanes."
    ),
    # vGPU
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS": _gauge("", "vGPU license status."),
    # Row remapping
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": _counter(
        "", "Number of rows remapped for uncorrectable errors."
    ),
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": _counter(
        "", "Number of rows remapped for correctable errors."
    ),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": _gauge("", "Whether remapping rows has failed (1) or not."),
    # Datacenter profiling (DCP), Volta and newer
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": _gauge(
        "ratio", "Ratio of time the graphics or compute engine is active."
    ),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": _gauge(
        "ratio", "Ratio of cycles the tensor (HMMA) pipe is active."
    ),
    "DCGM_FI_PROF_DRAM_ACTIVE": _gauge(
        "ratio", "Ratio of cycles the device memory interface is sending or receiving data."
    ),
    "DCGM_FI_PROF_PCIE_TX_BYTES": _gauge("B/s", "PCIe transmit rate, headers included."),
    "DCGM_FI_PROF_PCIE_RX_BYTES": _gauge("B/s", "PCIe receive rate, headers included."),
    # --- optional fields (commented out in the default list) ---
    "DCGM_FI_DEV_FB_TOTAL": _gauge("MiB", "Total frame buffer memory (in MiB)."),
    "DCGM_FI_DEV_POWER_VIOLATION": _counter("ns", "Throttling time due to power limits."),
    "DCGM_FI_DEV_THERMAL_VIOLATION": _counter("ns", "Throttling time due to thermal limits."),
    "DCGM_FI_DEV_SYNC_BOOST_VIOLATION": _counter("ns", "Throttling time due to sync boost."),
    "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION": _counter("ns", "Throttling time due to board limits."),
    "DCGM_FI_DEV_LOW_UTIL_VIOLATION": _counter("ns", "Throttling time due to low utilization."),
    "DCGM_FI_DEV_RELIABILITY_VIOLATION": _counter(
        "ns", "Throttling time due to reliability limits."
    ),
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": _counter("", "Single-bit volatile ECC errors."),
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": _counter("", "Double-bit volatile ECC errors."),
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": _counter("", "Single-bit persistent ECC errors."),
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": _counter("", "Double-bit persistent ECC errors."),
    "DCGM_FI_DEV_RETIRED_SBE": _counter("", "Pages retired because of single-bit errors."),
    "DCGM_FI_DEV_RETIRED_DBE": _counter("", "Pages retired because of double-bit errors."),
    "DCGM_FI_DEV_RETIRED_PENDING": _counter("", "Pages pending retirement."),
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": _counter(
        "", "NVLink flow-control CRC errors."
    ),
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": _counter("", "NVLink data CRC errors."),
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL": _counter("", "NVLink retries."),
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": _counter("", "NVLink recovery errors."),
    "DCGM_FI_PROF_SM_ACTIVE": _gauge("ratio", "Ratio of cycles an SM has a warp assigned."),
    "DCGM_FI_PROF_SM_OCCUPANCY": _gauge(
        "ratio", "Ratio of resident warps to the maximum an SM can hold."
    ),
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE": _gauge("ratio", "Ratio of cycles the FP64 pipes are active."),
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE": _gauge("ratio", "Ratio of cycles the FP32 pipes are active."),
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE": _gauge("ratio", "Ratio of cycles the FP16 pipes are active."),
    "DCGM_FI_PROF_NVLINK_TX_BYTES": _gauge("B/s", "NVLink transmit rate, headers included."),
    "DCGM_FI_PROF_NVLINK_RX_BYTES": _gauge("B/s", "NVLink receive rate, headers included."),
}
