"""``tmq bench produce|consume``: the pieces that need no broker (the values, the read
check, the summary, usage errors). The end-to-end runs are integration tests."""

from __future__ import annotations

import sys

import msgpack
import pytest
from cli_helpers import run_main

from tmq.tools import bench_clients
from tmq.tools.cli import main


class SampleValuesTests:
    @pytest.mark.parametrize("size", [170, 200, 255, 400])
    def test_values_have_exactly_the_size_and_decode_as_samples(self, size):
        values = bench_clients.sample_values(300, size)
        assert {len(v) for v in values} == {size}
        assert len(set(values)) == 300
        sample = msgpack.unpackb(values[7])
        assert sample["metric"] == "DCGM_FI_DEV_POWER_USAGE"
        assert sample["uuid"].startswith("GPU-")

    def test_too_small_or_too_large_is_refused(self):
        with pytest.raises(ValueError):
            bench_clients.sample_values(1, 100)
        with pytest.raises(ValueError):
            bench_clients.sample_values(1, 1000)


class ReadCheckTests:
    def test_contiguous_runs_count(self):
        check = bench_clients._ReadCheck(2)
        check.run(0, 0, 9, 10, 2000)
        check.run(1, 0, 4, 5, 1000)
        check.run(0, 10, 10, 1, 200)
        assert (check.count, check.bytes, check.gaps) == (16, 3200, [])

    def test_a_skipped_or_repeated_offset_is_a_gap(self):
        check = bench_clients._ReadCheck(1)
        check.run(0, 0, 4, 5, 0)
        check.run(0, 6, 6, 1, 0)
        check.run(0, 6, 6, 1, 0)
        assert len(check.gaps) == 2


class SummaryTests:
    def _run(self, seconds, *, stored=1000, errors=0):
        return {
            "seconds": seconds,
            "client_cpu_seconds": 0.004,
            "broker_cpu_seconds": 0.001,
            "error_count": errors,
            "errors": ["boom"] * errors,
            "stored": stored,
            "latency": {"p50_ms": 1.0, "p99_ms": 2.0, "samples": 16},
        }

    def test_the_best_round_counts(self):
        runs = [self._run(0.01), self._run(0.005)]
        summary = bench_clients._summary("produce", "bundled", runs, 1000, 200)
        assert summary["messages_per_s"] == 200_000
        assert summary["rounds_messages_per_s"] == [100_000, 200_000]
        assert summary["client_cpu_us_per_message"] == 4.0
        assert summary["broker_cpu_us_per_message"] == 1.0
        assert summary["mb_per_s"] == 40.0
        assert summary["meets_floor"] is True
        assert summary["verified"] is True

    def test_a_lost_message_or_an_error_fails_verification(self):
        lost = bench_clients._summary("produce", "bundled", [self._run(1, stored=999)], 1000, 200)
        assert lost["verified"] is False
        failed = bench_clients._summary("produce", "bundled", [self._run(1, errors=1)], 1000, 200)
        assert failed["verified"] is False
        assert failed["errors"] == ["boom"]


class UsageTests:
    @pytest.mark.parametrize(
        "argv",
        [
            ["--messages", "0"],
            ["--rounds", "0"],
            ["--partitions", "0"],
            ["--value-bytes", "100"],
            ["--client", "kcat"],
        ],
    )
    def test_bad_values_are_usage_errors(self, argv):
        status, err = run_main("bench", "produce", *argv)
        assert status == 2
        assert "error" in err

    def test_missing_confluent_client_names_the_package(self, monkeypatch, tmp_path):
        monkeypatch.setitem(sys.modules, "confluent_kafka", None)
        status, err = run_main("bench", "consume", "--client", "confluent", "--dir", str(tmp_path))
        assert status == 1
        assert "pip install confluent-kafka" in err
        assert list(tmp_path.iterdir()) == []

    def test_help_names_the_baselines(self, capsys):
        with pytest.raises(SystemExit):
            main(["bench", "produce", "--help"])
        assert "fsync" in capsys.readouterr().out
