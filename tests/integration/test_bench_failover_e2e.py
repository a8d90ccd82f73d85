"""``tmq bench failover`` end to end: etcd and three real brokers, one leader killed. A tiny
run; nothing here asserts performance."""

from __future__ import annotations

import json
import subprocess
import sys


def test_failover_bench_kills_a_leader_and_reports_the_time(tmp_path):
    """One round: the JSON names the lease TTL, the target (twice it), the baseline latency and
    one positive failover time that agrees with the median and maximum; the temporary
    directory and every process are gone afterwards."""
    parent = tmp_path / "bench"
    parent.mkdir()
    finished = subprocess.run(
        [
            sys.executable, "-m", "tmq.tools.cli", "bench", "failover",
            "--rounds", "1", "--warmup", "10", "--session-timeout-ms", "3000",
            "--dir", str(parent),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    data = json.loads(finished.stdout)
    assert data["benchmark"] == "failover"
    assert data["config"]["session_timeout_ms"] == 3000
    assert data["target_seconds"] == 6.0
    (seconds,) = data["rounds_seconds"]
    assert seconds > 0
    assert data["median_seconds"] == data["max_seconds"] == seconds
    assert data["meets_target"] is (seconds <= 6.0)
    assert (
        0
        < data["baseline"]["acks_all_latency_p50_ms"]
        <= data["baseline"]["acks_all_latency_p99_ms"]
    )
    assert "round 1/1: leader" in finished.stderr
    assert list(parent.iterdir()) == []
    survivors = subprocess.run(["pgrep", "-f", str(parent)], capture_output=True, text=True)
    assert survivors.stdout == ""
