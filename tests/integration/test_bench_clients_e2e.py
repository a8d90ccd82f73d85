"""``tmq bench produce|consume`` end to end: a real broker, the bundled and the confluent
client, each run verified. Tiny runs; nothing here asserts performance."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

MESSAGES = 20_000
ROUNDS = 2


def _bench(kind: str, tmp_path) -> dict:
    parent = tmp_path / "bench"
    parent.mkdir()
    finished = subprocess.run(
        [
            sys.executable, "-m", "tmq.tools.cli", "bench", kind,
            "--messages", str(MESSAGES), "--rounds", str(ROUNDS), "--partitions", "3",
            "--dir", str(parent),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert list(parent.iterdir()) == [], "the broker's directory is left behind"
    survivors = subprocess.run(["pgrep", "-f", str(parent)], capture_output=True, text=True)
    assert survivors.stdout == "", "a broker process is left behind"
    return json.loads(finished.stdout)


@pytest.fixture(scope="module", params=["produce", "consume"])
def results(request, tmp_path_factory):
    return request.param, _bench(request.param, tmp_path_factory.mktemp(request.param))


class BenchClientsTests:
    def test_every_client_ran_every_round_and_was_verified(self, results):
        kind, data = results
        assert data["benchmark"] == kind
        assert set(data["results"]) == {"bundled", "confluent"}
        assert data["verified"] is True
        for result in data["results"].values():
            assert result["verified"] is True
            assert len(result["rounds_messages_per_s"]) == ROUNDS
            assert result["messages_per_s"] == max(result["rounds_messages_per_s"])

    def test_figures_agree_with_each_other(self, results):
        _, data = results
        value_bytes = data["config"]["value_bytes"]
        for result in data["results"].values():
            expected_mb = result["messages_per_s"] * value_bytes / 1_000_000
            assert result["mb_per_s"] == pytest.approx(expected_mb, abs=0.06)
            assert result["client_cpu_us_per_message"] > 0
            assert result["broker_cpu_us_per_message"] > 0
            assert result["meets_floor"] is (result["messages_per_s"] >= result["floor"])
        assert data["meets_floors"] is all(r["meets_floor"] for r in data["results"].values())

    def test_baselines_come_from_the_same_run(self, results):
        _, data = results
        baselines = data["baselines"]
        assert baselines["loopback_tcp"]["mb_per_s"] > 0
        assert baselines["raw_write_fsync_256k"]["fsyncs_per_s"] > 0
        value_bytes = data["config"]["value_bytes"]
        tcp = baselines["loopback_tcp"]
        assert tcp["messages_per_s"] == pytest.approx(tcp["mb_per_s"] * 1e6 / value_bytes, rel=0.01)

    def test_producers_report_sampled_latency(self, results):
        kind, data = results
        for result in data["results"].values():
            if kind == "consume":
                assert "latency" not in result
                continue
            latency = result["latency"]
            assert latency["samples"] == math.ceil(MESSAGES / 64)
            assert 0 < latency["p50_ms"] <= latency["p99_ms"]
