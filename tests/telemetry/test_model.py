"""The DCGM facts of tmq.telemetry.model: the field catalog, blank sentinels, value text."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.telemetry.model import (
    DCGM_FP64_BLANK,
    DCGM_INT32_BLANK,
    DCGM_INT64_BLANK,
    METRICS,
    RowError,
    Sample,
    format_value,
    is_blank,
    is_metric_name,
)

# The ten fields of the real capture.
REAL_FIELDS = {
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
}

# dcgm-exporter's default-counters.csv (enabled rows, current and earlier releases).
EXPORTER_DEFAULTS = {
    "DCGM_FI_DEV_SM_CLOCK": "gauge",
    "DCGM_FI_DEV_MEM_CLOCK": "gauge",
    "DCGM_FI_DEV_MEMORY_TEMP": "gauge",
    "DCGM_FI_DEV_GPU_TEMP": "gauge",
    "DCGM_FI_DEV_POWER_USAGE": "gauge",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "counter",
    "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": "counter",
    "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": "counter",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "counter",
    "DCGM_FI_DEV_GPU_UTIL": "gauge",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "gauge",
    "DCGM_FI_DEV_ENC_UTIL": "gauge",
    "DCGM_FI_DEV_DEC_UTIL": "gauge",
    "DCGM_FI_DEV_XID_ERRORS": "gauge",
    "DCGM_FI_DEV_FB_FREE": "gauge",
    "DCGM_FI_DEV_FB_USED": "gauge",
    "DCGM_FI_DEV_FB_RESERVED": "gauge",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": "counter",
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS": "gauge",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "counter",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "counter",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "gauge",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gauge",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "gauge",
    "DCGM_FI_PROF_DRAM_ACTIVE": "gauge",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "gauge",
    "DCGM_FI_PROF_PCIE_RX_BYTES": "gauge",
}


class CatalogTests:
    """METRICS describes every field dcgm-exporter exports by default."""

    def test_covers_the_real_capture_and_the_exporter_defaults(self):
        """The ten fields of the real capture and every default field are in the catalog,
        each with the Prometheus type the exporter declares."""
        assert METRICS.keys() >= REAL_FIELDS
        assert {name: METRICS[name].kind for name in EXPORTER_DEFAULTS} == EXPORTER_DEFAULTS

    def test_units_of_the_real_fields(self):
        """The real capture's fields carry the units its values are in."""
        units = {name: METRICS[name].unit for name in REAL_FIELDS}
        assert units == {
            "DCGM_FI_DEV_GPU_UTIL": "%",
            "DCGM_FI_DEV_MEM_COPY_UTIL": "%",
            "DCGM_FI_DEV_ENC_UTIL": "%",
            "DCGM_FI_DEV_DEC_UTIL": "%",
            "DCGM_FI_DEV_POWER_USAGE": "W",
            "DCGM_FI_DEV_GPU_TEMP": "C",
            "DCGM_FI_DEV_FB_USED": "MiB",
            "DCGM_FI_DEV_FB_FREE": "MiB",
            "DCGM_FI_DEV_SM_CLOCK": "MHz",
            "DCGM_FI_DEV_MEM_CLOCK": "MHz",
        }

    def test_every_entry_is_well_formed(self):
        """Every catalog name is a DCGM field name, every kind gauge or counter, every
        description one non-empty line."""
        for name, info in METRICS.items():
            assert is_metric_name(name), name
            assert info.kind in ("gauge", "counter"), name
            assert info.description and "\n" not in info.description, name


class MetricNameTests:
    """Field names outside the catalog are valid when they look like DCGM's."""

    @pytest.mark.parametrize(
        "name", ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_NVLINK_BANDWIDTH_L0", "DCGM_FI_PROF_X1"]
    )
    def test_dcgm_names(self, name):
        """DCGM_FI_ followed by capitals, digits and underscores is a field name."""
        assert is_metric_name(name)

    @pytest.mark.parametrize(
        "name",
        ["", "DCGM_FI_", "DCGM_FI_dev_util", "DCGM_EXP_XID_ERRORS_COUNT", "go_gc_duration",
         "DCGM_FI_DEV GPU", "DCGM_FI_DEV_GPU_UTIL\n", "xDCGM_FI_DEV_GPU_UTIL"],
    )  # fmt: skip
    def test_other_names(self, name):
        """Anything else, including exporter-computed DCGM_EXP_ fields, is not."""
        assert not is_metric_name(name)


class BlankTests:
    """DCGM's blank sentinels are recognised; measurements are not mistaken for them."""

    @pytest.mark.parametrize(
        "value",
        [
            float(DCGM_INT32_BLANK),  # 2147483632, blank
            float(DCGM_INT32_BLANK + 1),  # not found
            float(DCGM_INT32_BLANK + 2),  # not supported
            float(DCGM_INT32_BLANK + 3),  # not permissioned
            2147483647.0,
            float(DCGM_INT64_BLANK),
            float("9223372036854775794"),  # the int64 "not supported", as an exporter prints it
            float(DCGM_INT64_BLANK + 3),
            DCGM_FP64_BLANK,  # 2 ** 47
            DCGM_FP64_BLANK + 1,
            DCGM_FP64_BLANK + 3,
            DCGM_FP64_BLANK + 15,
            1e30,
        ],
    )
    def test_sentinels_are_blank(self, value):
        """The reserved ranges base .. base + 15 of each type are blanks."""
        assert is_blank(value)

    def test_sentinel_constants(self):
        """The constants are dcgm_structs.h's."""
        assert DCGM_INT32_BLANK == 2147483632
        assert DCGM_INT64_BLANK == 9223372036854775792
        assert DCGM_FP64_BLANK == 2.0**47 == 140737488355328.0

    @pytest.mark.parametrize(
        "value",
        [0.0, 100.0, 156.596, -1.0, 2147483631.0, 2147483648.5, 2147483648.0, 4294967296.0,
         DCGM_FP64_BLANK - 1, DCGM_FP64_BLANK + 0.5, DCGM_FP64_BLANK + 16, 2.0**62,
         math.inf, -math.inf, math.nan],
    )  # fmt: skip
    def test_measurements_are_not_blank(self, value):
        """Values next to the reserved ranges, fractions inside them and non-finite values
        are not blanks."""
        assert not is_blank(value)

    @given(st.floats(min_value=-2147483631.0, max_value=2147483631.0))
    def test_no_value_below_the_int32_sentinels_is_blank(self, value):
        """Every value below the smallest sentinel is a measurement."""
        assert not is_blank(value)


class FormatValueTests:
    """Values print the way DCGM exporters print them, and read back exactly."""

    @pytest.mark.parametrize(
        ("value", "text"),
        [(0.0, "0"), (73420.0, "73420"), (156.596, "156.596"), (-2.5, "-2.5"),
         (1e20, "1e+20"), (0.1, "0.1"), (None, "140737488355328")],
    )  # fmt: skip
    def test_text(self, value, text):
        """Integral values have no fraction; None is the double blank."""
        assert format_value(value) == text

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_reads_back_as_the_same_float(self, value):
        """float(format_value(v)) == v for every finite v."""
        assert float(format_value(value)) == value

    def test_none_reads_back_as_a_blank(self):
        """The text of None is a blank sentinel."""
        assert is_blank(float(format_value(None)))


class SampleTests:
    """The Sample and RowError records."""

    def test_driver_comes_from_the_labels(self):
        """Sample.driver is the DCGM_FI_DRIVER_VERSION label, or "" without one."""
        base = dict(
            time_us=0, metric="DCGM_FI_DEV_GPU_UTIL", gpu_index=0, device="nvidia0",
            uuid="GPU-1", model="m", hostname="h", container="", pod="", namespace="",
            value=1.0,
        )  # fmt: skip
        assert Sample(**base, labels={"DCGM_FI_DRIVER_VERSION": "535.129.03"}).driver == (
            "535.129.03"
        )
        assert Sample(**base, labels={}).driver == ""

    def test_row_error_fields(self):
        """A RowError names its line number, reason and raw line."""
        error = RowError(7, "bad value 'x': not a number", "raw")
        assert (error.line_number, error.reason, error.raw_line) == (7, error.reason, "raw")
