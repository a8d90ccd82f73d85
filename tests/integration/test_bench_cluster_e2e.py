"""``tmq bench produce --replication-factor 3 --acks all`` end to end: a real etcd, three real
brokers, the bundled and the confluent client, RF=3 and RF=1 topics, each run verified and the
replicas compared on disk. A tiny run; nothing here asserts performance."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

MESSAGES = 20_000
PARTITIONS = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run: its JSON, and what is left of its parent directory and processes."""
    tmp_path = tmp_path_factory.mktemp("bench-cluster")
    parent = tmp_path / "bench"
    parent.mkdir()
    finished = subprocess.run(
        [
            sys.executable, "-m", "tmq.tools.cli", "bench", "produce",
            "--messages", str(MESSAGES), "--rounds", "1", "--partitions", str(PARTITIONS),
            "--replication-factor", "3", "--acks", "all", "--dir", str(parent),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    survivors = subprocess.run(["pgrep", "-af", str(parent)], capture_output=True, text=True)
    return {
        "returncode": finished.returncode,
        "stderr": finished.stderr,
        "data": json.loads(finished.stdout) if finished.stdout else None,
        "left_in_parent": list(parent.iterdir()),
        "survivors": survivors.stdout,
    }


@pytest.fixture(scope="module")
def data(run):
    assert run["returncode"] == 0, run["stderr"]
    return run["data"]


class BenchClusterTests:
    def test_nothing_is_left_behind(self, run):
        """No etcd or broker process survives the run and its directory is removed."""
        assert run["survivors"] == "", "a broker or etcd process is left behind"
        assert run["left_in_parent"] == [], "the cluster's directory is left behind"

    def test_the_run_is_verified_and_the_replicas_are_identical(self, data):
        """Every message was stored exactly once (read back from the leaders) and the three
        replicas of each partition hold the same segment files."""
        assert data["verified"] is True
        replication = data["replication"]
        assert replication["replicas_identical"] is True
        check = replication["replica_check"]
        assert check["mismatches"] == []
        assert check["partitions"] == 2 * PARTITIONS  # two clients, one round each
        assert check["log_bytes_per_replica"] > 2 * MESSAGES * data["config"]["value_bytes"]

    def test_the_config_names_the_cluster_and_the_reference(self, data):
        """The JSON says what ran: RF=3, acks=all, min.insync.replicas=2, and how the RF=1
        figure was measured."""
        assert data["benchmark"] == "produce"
        config = data["config"]
        assert (config["replication_factor"], config["acks"]) == (3, "all")
        assert config["min_insync_replicas"] == 2
        assert config["idempotence"] is False
        assert "same cluster" in config["rf1_reference"]
        assert data["baselines"]["loopback_tcp"]["mb_per_s"] > 0
        assert data["baselines"]["raw_write_fsync_256k"]["fsyncs_per_s"] > 0

    def test_each_client_has_rf3_figures_with_latency_and_cpu(self, data):
        """Both clients report messages/s, MB/s, p50/p99 latency of every 64th record and
        client and broker CPU per message, like the one-broker benchmark."""
        assert set(data["results"]) == {"bundled", "confluent"}
        value_bytes = data["config"]["value_bytes"]
        for result in data["results"].values():
            assert result["verified"] is True
            assert result["rounds_messages_per_s"] == [result["messages_per_s"]]
            expected_mb = result["messages_per_s"] * value_bytes / 1_000_000
            assert result["mb_per_s"] == pytest.approx(expected_mb, abs=0.06)
            assert result["client_cpu_us_per_message"] > 0
            assert result["broker_cpu_us_per_message"] > 0
            latency = result["latency"]
            assert latency["samples"] == math.ceil(MESSAGES / 64)
            assert 0 < latency["p50_ms"] <= latency["p99_ms"]

    def test_only_the_bundled_rf3_acks_all_figure_has_a_floor(self, data):
        """The floor of 100,000 msg/s applies to the bundled client; the confluent one has
        none here, and meets_floors reflects the floors that apply."""
        bundled, confluent = data["results"]["bundled"], data["results"]["confluent"]
        assert bundled["floor"] == 100_000
        assert bundled["meets_floor"] is (bundled["messages_per_s"] >= 100_000)
        assert (confluent["floor"], confluent["meets_floor"]) == (None, None)
        assert data["meets_floors"] is bundled["meets_floor"]

    def test_the_replication_cost_is_the_ratio_of_the_rf1_and_rf3_rates(self, data):
        """Per client, the RF=1 figure of the same run (verified too) next to the RF=3 one,
        and replication_cost = RF=1 msg/s / RF=3 msg/s."""
        replication = data["replication"]
        assert (replication["replication_factor"], replication["acks"]) == (3, "all")
        assert set(replication["results"]) == set(data["results"])
        for client, figures in replication["results"].items():
            rf1 = figures["rf1"]
            assert rf1["verified"] is True
            assert rf1["floor"] is None
            assert rf1["latency"]["samples"] == math.ceil(MESSAGES / 64)
            assert figures["messages_per_s"] == data["results"][client]["messages_per_s"]
            assert figures["rf1_messages_per_s"] == rf1["messages_per_s"]
            expected = rf1["messages_per_s"] / figures["messages_per_s"]
            assert figures["replication_cost"] == pytest.approx(expected, abs=0.006)

    def test_the_broker_logs_are_reported_without_tracebacks(self, data):
        """Each broker's log was read after the run (ISR shrinks counted); none holds a
        traceback or a critical error."""
        logs = data["broker_logs"]
        assert set(logs) == {"broker-1", "broker-2", "broker-3"}
        for log in logs.values():
            assert log["lines"] > 0
            assert len(log["first_isr_shrinks"]) == min(log["isr_shrinks"], 5)
            assert not any(
                "Traceback" in line or "#critical]" in line for line in log["first_problems"]
            ), log
