"""``tmq bench sink`` and ``tmq bench e2e`` end to end on a tiny data set: real broker, real
PostgreSQL, every row verified. Nothing here asserts performance."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ROWS = 4000


def _bench(*arguments: str, cwd) -> dict:
    finished = subprocess.run(
        [sys.executable, "-m", "tmq.tools.cli", "bench", *arguments, "--rows", str(ROWS)],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout)


class BenchSinkTests:
    def test_every_writer_and_the_ceiling_store_every_row(self, tmp_path):
        data = _bench("sink", "--dir", str(tmp_path), cwd=tmp_path)
        assert data["verified"] is True
        assert data["ceiling"]["verified"] is True
        assert set(data["results"]) == {"copy", "txpostgres"}
        ceiling = data["ceiling"]["rows_per_s"]
        for result in data["results"].values():
            assert result["verified"] is True
            assert result["ratio_to_ceiling"] == pytest.approx(
                result["rows_per_s"] / ceiling, abs=0.002
            )
            assert result["sink_cpu_us_per_row"] > 0 and result["server_cpu_us_per_row"] > 0
        default = data["results"][data["config"]["default_writer"]]
        assert default["meets_floor"] is (default["ratio_to_ceiling"] >= 0.5)
        assert list(tmp_path.iterdir()) == []

    def test_bad_row_counts_are_usage_errors(self, tmp_path):
        finished = subprocess.run(
            [sys.executable, "-m", "tmq.tools.cli", "bench", "sink", "--rows", "3999"],
            cwd=tmp_path, capture_output=True, text=True,
        )  # fmt: skip
        assert finished.returncode == 2
        assert "multiple of 4000" in finished.stderr


class BenchEndToEndTests:
    def test_the_pipeline_stores_every_row_and_reports_each_stage(self, tmp_path):
        data = _bench("e2e", "--rounds", "2", "--dir", str(tmp_path), cwd=tmp_path)
        assert data["verified"] is True
        assert len(data["rounds"]) == 2
        assert all(result["verified"] is True for result in data["rounds"])
        best = max(data["rounds"], key=lambda result: result["rows_per_s"])
        assert data["rows_per_s"] == best["rows_per_s"]
        assert data["cpu_us_per_row"] == best["cpu_us_per_row"]
        assert set(data["cpu_us_per_row"]) == {"producer", "broker", "sink", "postgres"}
        assert all(value > 0 for value in data["cpu_us_per_row"].values())
        assert data["meets_floor"] is (data["rows_per_s"] >= data["floor_rows_per_s"])
        assert data["baselines"]["csv_parse_rows_per_s"] > 0
        assert data["baselines"]["raw_copy_rows_per_s"] > 0
        assert list(tmp_path.iterdir()) == []
