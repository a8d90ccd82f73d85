"""``tmq bench log``: JSON shape, figures that agree with each other, clean-up, usage errors.

Very short measurements (``--seconds 0.05``); nothing here asserts performance.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile

import pytest

from tmq.protocol.records import batch_crc_ok, decode_batch, read_batch_header
from tmq.tools import bench_log
from tmq.tools.cli import main

SECONDS = "0.05"
BATCH_BYTES = 16384
POLICY_OF = {
    "never": "never",
    "interval": "interval",
    "always_1_appender": "always",
    "always_8_appenders": "always",
}
FIGURES = ("mb_per_s", "batches_per_s", "batches", "seconds")


def _run(*argv: str) -> tuple[int, dict | None, str]:
    """Run ``tmq bench log`` with ``argv``; return the status, the parsed stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["bench", "log", *argv])
    text = out.getvalue()
    return status, (json.loads(text) if text else None), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One default-shaped run on a temporary directory: (parent dir, status, JSON, stderr)."""
    parent = tmp_path_factory.mktemp("bench-log")
    status, results, err = _run("--dir", str(parent), "--seconds", SECONDS)
    return parent, status, results, err


def _assert_consistent(entry: dict, batch_bytes: int) -> None:
    """Positive figures, and MB/s = batches/s x batch size and batches/s = batches / seconds
    up to the rounding of the printed values."""
    for key in FIGURES:
        assert entry[key] > 0, key
    expected_mb = entry["batches_per_s"] * batch_bytes / 1_000_000
    assert entry["mb_per_s"] == pytest.approx(expected_mb, abs=0.05 + batch_bytes / 1_000_000)
    assert entry["batches_per_s"] == pytest.approx(
        entry["batches"] / entry["seconds"], rel=0.03, abs=1
    )


class BenchLogOutputTests:
    """The JSON document of a run."""

    def test_exits_zero_with_json_on_stdout_and_progress_on_stderr(self, run):
        """Status 0, a JSON object on stdout, one progress line per measurement on stderr."""
        _, status, results, err = run
        assert status == 0
        assert results["benchmark"] == "log"
        assert err.count("measuring") == 6

    def test_describes_the_run(self, run):
        """Python version, batch geometry, segment size and the units are reported."""
        _, _, results, _ = run
        assert results["python"].count(".") == 2
        assert results["batch_bytes"] == BATCH_BYTES
        assert 60 <= results["records_per_batch"] <= 90
        assert results["compression"] == "none"
        assert results["segment_bytes"] == 128 * 1024 * 1024
        assert results["seconds"] == float(SECONDS)
        assert {"mb_per_s", "fsyncs_per_batch"} <= results["units"].keys()

    def test_works_in_a_fresh_subdirectory_that_is_removed(self, run):
        """The measurements ran in a new directory under --dir, which is gone afterwards and
        leaves --dir empty."""
        parent, _, results, _ = run
        assert os.path.dirname(results["directory"]) == str(parent)
        assert results["directory_removed"] is True
        assert not os.path.exists(results["directory"])
        assert os.listdir(parent) == []

    def test_reports_the_file_system_where_proc_mounts_exists(self, run):
        """On Linux the file system type and mount point of the directory are included."""
        _, _, results, _ = run
        if not os.path.exists("/proc/mounts"):
            assert results["filesystem"] is None
            return
        assert results["filesystem"]["type"]
        real = os.path.realpath(results["directory"])
        assert real.startswith(results["filesystem"]["mount_point"])

    def test_baselines_are_positive_and_consistent(self, run):
        """Both raw baselines have positive figures that agree with each other."""
        _, _, results, _ = run
        assert results["baselines"].keys() == {"raw_sequential_write", "raw_write_fsync"}
        for entry in results["baselines"].values():
            _assert_consistent(entry, BATCH_BYTES)

    def test_one_result_per_flush_policy_and_appender_count(self, run):
        """never, interval, always with 1 and with 8 appenders, each with its policy, its
        appender count and consistent, positive figures."""
        _, _, results, _ = run
        assert results["results"].keys() == POLICY_OF.keys()
        for name, entry in results["results"].items():
            assert entry["flush_policy"] == POLICY_OF[name]
            assert entry["appenders"] == (8 if name == "always_8_appenders" else 1)
            assert entry["segments"] >= 1
            _assert_consistent(entry, BATCH_BYTES)
        assert results["results"]["interval"]["flush_ms"] == 1000

    def test_ratios_are_computed_from_the_printed_figures(self, run):
        """Every ratio is its figure over the baseline it names (within rounding)."""
        _, _, results, _ = run
        raw = results["baselines"]["raw_sequential_write"]["mb_per_s"]
        raw_fsync = results["baselines"]["raw_write_fsync"]["batches_per_s"]
        entries = results["results"]
        for entry in entries.values():
            assert entry["ratio_to_raw_sequential_write"] == pytest.approx(
                entry["mb_per_s"] / raw, abs=0.001
            )
        for name in ("always_1_appender", "always_8_appenders"):
            assert entries[name]["ratio_to_raw_write_fsync"] == pytest.approx(
                entries[name]["batches_per_s"] / raw_fsync, abs=0.001
            )
        group, one = entries["always_8_appenders"], entries["always_1_appender"]
        assert group["ratio_to_one_fsync_per_batch"] == pytest.approx(
            group["batches_per_s"] / one["batches_per_s"], abs=0.001
        )

    def test_fsync_counts_agree_with_the_policies(self, run):
        """Waiting for every batch costs at least one .log fsync per batch; the per-batch
        figures are the counts over the batches; never fsyncs only on a roll."""
        _, _, results, _ = run
        entries = results["results"]
        for entry in entries.values():
            assert entry["fsync_calls"] >= entry["log_fsyncs"] >= 0
            assert entry["fsyncs_per_batch"] == pytest.approx(
                entry["log_fsyncs"] / entry["batches"], abs=0.0001
            )
            assert entry["fsync_calls_per_batch"] == pytest.approx(
                entry["fsync_calls"] / entry["batches"], abs=0.0001
            )
        one = entries["always_1_appender"]
        assert one["log_fsyncs"] >= one["batches"]
        assert entries["always_8_appenders"]["log_fsyncs"] > 0
        never = entries["never"]
        if never["segments"] == 1:
            assert never["log_fsyncs"] == 0

    def test_floors_are_reported_as_booleans_next_to_the_figures(self, run):
        """never carries its bandwidth floor and always-8 its fsyncs-per-batch floor, each
        with a meets_floor boolean that agrees with the figure; meets_floors sums them up."""
        _, _, results, _ = run
        never = results["results"]["never"]
        group = results["results"]["always_8_appenders"]
        assert never["floor_ratio_to_raw_sequential_write"] == 0.3
        assert never["meets_floor"] is (never["ratio_to_raw_sequential_write"] >= 0.3)
        assert group["floor_fsyncs_per_batch"] == 0.25
        assert group["meets_floor"] is (group["fsyncs_per_batch"] <= 0.25)
        assert results["meets_floors"] is (never["meets_floor"] and group["meets_floor"])


class BenchLogOptionTests:
    """Options other than the defaults, and usage errors."""

    def test_appenders_and_batch_bytes_are_honoured(self, tmp_path):
        """--appenders names and sizes the group-commit entry; --batch-bytes sets the size of
        every write."""
        status, results, _ = _run(
            "--dir", str(tmp_path), "--seconds", SECONDS, "--appenders", "3",
            "--batch-bytes", "4096",
        )  # fmt: skip
        assert status == 0
        assert results["batch_bytes"] == 4096
        group = results["results"]["always_3_appenders"]
        assert group["appenders"] == 3
        _assert_consistent(group, 4096)
        _assert_consistent(results["baselines"]["raw_sequential_write"], 4096)

    def test_default_directory_is_under_the_system_temporary_directory(self, tmp_path, monkeypatch):
        """Without --dir the run uses a fresh directory in the system temporary directory and
        removes it."""
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        status, results, _ = _run("--seconds", SECONDS)
        assert status == 0
        assert os.path.dirname(results["directory"]) == str(tmp_path)
        assert os.listdir(tmp_path) == []

    @pytest.mark.parametrize(
        "argv",
        [
            ("--seconds", "0"),
            ("--appenders", "0"),
            ("--batch-bytes", "10"),
            ("--batch-bytes", str(2 * 1024 * 1024)),
        ],
    )
    def test_bad_values_are_usage_errors(self, argv, capsys):
        """Out-of-range options exit with status 2 and a message naming the option."""
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", "log", *argv])
        assert exit_info.value.code == 2
        assert argv[0] in capsys.readouterr().err

    def test_missing_directory_fails_with_one_line(self, tmp_path, capsys):
        """A --dir that does not exist fails with status 1 and a one-line reason."""
        missing = tmp_path / "absent"
        assert main(["bench", "log", "--dir", str(missing), "--seconds", SECONDS]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert str(missing) in captured.err
        assert captured.err.count("\n") == 1

    def test_help_describes_the_floors(self, capsys):
        """--help explains what is measured and the two floors."""
        with pytest.raises(SystemExit):
            main(["bench", "log", "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "write+fsync" in text
        assert "0.25 fsyncs per batch" in text
        assert "30% of the raw sequential write" in text


class BenchBatchTests:
    """The pre-built batch the benchmark appends."""

    @pytest.mark.parametrize("size", [256, 1000, 4096, 16384, 16385, 100_000, 1024 * 1024 + 12])
    def test_batch_has_exactly_the_requested_size_and_is_valid(self, size):
        """The batch is exactly ``size`` bytes, with a valid header and CRC and as many
        records as it says."""
        batch, count = bench_log.build_bench_batch(size, base_timestamp=1_700_000_000_000)
        assert len(batch) == size
        header = read_batch_header(batch)
        assert header.size == size
        assert batch_crc_ok(batch, 0, header)
        assert header.records_count == count
        assert len(list(decode_batch(batch)[1])) == count
