"""``tmq bench produce --replication-factor N``: the pieces that need no cluster (the replica
comparison, the expected key counts, the ISR check, the log scan, usage errors). The end-to-end
run is an integration test."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_helpers import run_main

from tmq.client.cluster import PartitionInfo, TopicInfo
from tmq.tools import bench_clients, bench_cluster


class _Disks:
    """Stands in for a ``BenchCluster``: each broker's replica directories under ``root``."""

    def __init__(self, root: Path, brokers=(1, 2, 3)):
        self.root = root
        self.brokers = brokers

    def replica_dirs(self, topic, partition):
        found = {}
        for broker_id in self.brokers:
            path = self.root / f"broker-{broker_id}" / f"{topic}-{partition}"
            if path.is_dir():
                found[broker_id] = path
        return found

    def write(self, broker_id, topic, partition, name, data: bytes) -> Path:
        path = self.root / f"broker-{broker_id}" / f"{topic}-{partition}"
        path.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
        return path / name


SEGMENT = "00000000000000000000.log"


class CompareReplicasTests:
    def test_equal_segment_files_are_identical(self, tmp_path):
        """The same segment files on every replica: identical, counted once per partition."""
        disks = _Disks(tmp_path)
        for broker_id in (1, 2, 3):
            for partition in (0, 1):
                disks.write(broker_id, "t", partition, SEGMENT, b"batch" * 100)
                disks.write(broker_id, "t", partition, "00000000000000000000.index", b"x")
        found = bench_cluster.compare_replicas(disks, ["t"], 2, 3, wait=0)
        assert found == {
            "identical": True,
            "partitions": 2,
            "log_bytes_per_replica": 1000,
            "mismatches": [],
        }

    def test_a_shorter_replica_is_a_mismatch(self, tmp_path):
        """A replica with fewer bytes differs; the message gives the bytes per broker."""
        disks = _Disks(tmp_path)
        for broker_id in (1, 2, 3):
            disks.write(broker_id, "t", 0, SEGMENT, b"batch" * (100 if broker_id != 2 else 99))
        found = bench_cluster.compare_replicas(disks, ["t"], 1, 3, wait=0)
        assert found["identical"] is False
        assert found["mismatches"] == ["t-0: log bytes by broker {1: 500, 2: 495, 3: 500}"]

    def test_same_size_other_bytes_is_a_mismatch(self, tmp_path):
        """Equal sizes do not suffice: the CRC-32 of the contents is compared too."""
        disks = _Disks(tmp_path)
        for broker_id in (1, 2, 3):
            disks.write(broker_id, "t", 0, SEGMENT, b"a" * 10 if broker_id != 3 else b"b" * 10)
        found = bench_cluster.compare_replicas(disks, ["t"], 1, 3, wait=0)
        assert found["identical"] is False
        assert "equal sizes, different CRC-32" in found["mismatches"][0]

    def test_a_missing_replica_is_a_mismatch(self, tmp_path):
        """A partition on fewer brokers than its replication factor is not identical."""
        disks = _Disks(tmp_path)
        for broker_id in (1, 3):
            disks.write(broker_id, "t", 0, SEGMENT, b"batch")
        found = bench_cluster.compare_replicas(disks, ["t"], 1, 3, wait=0)
        assert found["identical"] is False
        assert found["mismatches"] == ["t-0: on brokers [1, 3], not 3 replicas"]

    def test_segments_with_other_names_are_a_mismatch(self, tmp_path):
        """The segment files' names (base offsets) are compared as well."""
        disks = _Disks(tmp_path, brokers=(1, 2))
        disks.write(1, "t", 0, SEGMENT, b"batch")
        disks.write(2, "t", 0, "00000000000000000007.log", b"batch")
        found = bench_cluster.compare_replicas(disks, ["t"], 1, 2, wait=0)
        assert found["identical"] is False


class ExpectedKeyCountsTests:
    @pytest.mark.parametrize("messages", [1, 63, 64, 65, 20_000, 1_000_001])
    def test_counts_add_up_to_the_messages_sent(self, messages):
        """Message i carries key i % 64: every key sent counts, none with zero."""
        counts = bench_cluster._expected_key_counts(messages)
        assert sum(counts.values()) == messages
        assert len(counts) == min(messages, 64)
        assert max(counts.values()) - min(counts.values()) <= 1


def _partition(leader=1, replicas=(1, 2, 3), isr=(1, 2, 3), index=0):
    return PartitionInfo("t", index, leader, 0, tuple(replicas), tuple(isr))


class InSyncTests:
    def test_every_partition_with_a_leader_and_full_isr(self):
        """Ready: the partitions exist, each has a leader and its replicas all in the ISR."""
        topic = TopicInfo("t", {0: _partition(), 1: _partition(index=1, isr=(3, 2, 1))})
        assert bench_cluster.in_sync(topic, 2, 3)

    @pytest.mark.parametrize(
        "partition",
        [_partition(leader=-1), _partition(isr=(1, 2)), _partition(replicas=(1, 2), isr=(1, 2))],
    )
    def test_no_leader_a_short_isr_or_too_few_replicas_is_not_ready(self, partition):
        """A partition without a leader, with a replica out of the ISR, or with fewer replicas
        than asked for is not ready."""
        assert not bench_cluster.in_sync(TopicInfo("t", {0: partition}), 1, 3)

    def test_an_unknown_topic_or_missing_partitions_is_not_ready(self):
        """No topic yet, or fewer partitions than asked for, is not ready."""
        assert not bench_cluster.in_sync(None, 1, 3)
        assert not bench_cluster.in_sync(TopicInfo("t", {0: _partition()}), 2, 3)


class LogProblemsTests:
    def test_warnings_errors_tracebacks_and_isr_shrinks_are_reported(self, tmp_path):
        """Lines above info level and tracebacks are counted and the first few quoted; ISR
        shrinks (logged at info) are counted apart."""
        shrink = (
            "2026 [tmq.broker.broker#info] t-1: followers [3] fell behind; shrinking the ISR "
            "to [2, 1]"
        )
        log = tmp_path / "broker.log"
        log.write_text(
            "2026 [tmq.service#info] broker 1 listening\n"
            "2026 [tmq.broker.broker#warn] t-0: ISR write failed: boom\n"
            "2026 [twisted.internet.base#critical] while calling from thread\n"
            "\tTraceback (most recent call last):\n"
            f"{shrink}\n"
        )
        cluster = object.__new__(bench_cluster.BenchCluster)
        cluster.brokers = [SimpleNamespace(broker_id=1, log_path=log)]
        report = cluster.log_problems()["broker-1"]
        assert report["lines"] == 5
        assert report["problems"] == 3
        assert (
            report["first_problems"][0]
            == "2026 [tmq.broker.broker#warn] t-0: ISR write failed: boom"
        )
        assert (report["isr_shrinks"], report["first_isr_shrinks"]) == (1, [shrink])


class ClusterSummaryTests:
    def test_without_a_floor_meets_floor_is_none(self):
        """A figure without a floor (the RF=1 reference, clients without one) says None."""
        run = {
            "seconds": 0.01,
            "client_cpu_seconds": 0.004,
            "broker_cpu_seconds": 0.001,
            "error_count": 0,
            "errors": [],
            "stored": 1000,
            "latency": {"p50_ms": 1.0, "p99_ms": 2.0, "samples": 16},
        }
        summary = bench_clients._summary("produce", "confluent", [run], 1000, 200, floor=None)
        assert (summary["floor"], summary["meets_floor"]) == (None, None)
        assert summary["verified"] is True


class ClusterUsageTests:
    @pytest.mark.parametrize(
        "argv", [["--replication-factor", "0"], ["--acks", "0"], ["--acks", "-1"]]
    )
    def test_bad_values_are_usage_errors(self, argv):
        """A replication factor below 1, or acks other than 1 and all, is refused."""
        status, err = run_main("bench", "produce", *argv)
        assert status == 2
        assert "error" in err

    def test_consume_has_no_replication_factor(self):
        """Only the produce benchmark runs against a cluster."""
        status, err = run_main("bench", "consume", "--replication-factor", "3")
        assert status == 2
        assert "unrecognized arguments" in err

    def test_missing_etcd_names_the_package(self, monkeypatch, tmp_path):
        """Without an etcd binary the cluster benchmark stops at once, naming the package,
        and leaves no directory behind."""
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        status, err = run_main(
            "bench", "produce", "--replication-factor", "3", "--client", "bundled",
            "--dir", str(tmp_path),
        )  # fmt: skip
        assert status == 1
        assert "apt-get install etcd-server" in err
        assert list(tmp_path.iterdir()) == []
