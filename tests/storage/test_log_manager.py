"""LogManager: data directories, startup/shutdown, group commit through the flusher thread."""

from __future__ import annotations

from tmq.protocol.records import Record, build_batch
from tmq.storage.config import LogConfig
from tmq.storage.log_manager import LogManager
from tmq.storage.memory_fs import MemoryFileSystem

T0 = 1_700_000_000_000


def batch(count: int = 2) -> bytes:
    return build_batch([Record(i, 0, None, b"x" * 50) for i in range(count)], base_timestamp=T0)


def manager(fs, dirs=("/a", "/b")) -> LogManager:
    config = LogConfig()
    return LogManager(fs, list(dirs), lambda topic: config, lambda: T0)


class LogManagerTests:
    """Lifecycle of the logs of a broker."""

    def test_logs_spread_over_data_dirs(self):
        """New logs go to the data directory with the fewest partitions."""
        fs = MemoryFileSystem()
        logs = manager(fs)
        logs.startup()
        for partition in range(4):
            logs.create_log("gpu", partition)
        assert fs.listdir("/a") == ["gpu-0", "gpu-2"]
        assert fs.listdir("/b") == ["gpu-1", "gpu-3"]
        logs.shutdown()

    def test_clean_shutdown_then_clean_start(self):
        """After shutdown the marker is present; the next start trusts the logs (nothing is
        recovered), removes the marker and finds every record."""
        fs = MemoryFileSystem()
        logs = manager(fs)
        logs.startup()
        log = logs.create_log("gpu", 0)
        for _ in range(10):
            log.append(batch(), leader_epoch=0)
        logs.shutdown()
        assert fs.exists("/a/.tmq_cleanshutdown")
        fs.crash()  # a clean shutdown leaves nothing unsynced
        again = manager(fs)
        reports = again.startup()
        assert reports[("gpu", 0)].recovered == 0
        assert not fs.exists("/a/.tmq_cleanshutdown")
        assert again.get_log("gpu", 0).log_end_offset == 20
        again.shutdown()

    def test_unclean_start_recovers_from_the_recovery_point(self):
        """Without the marker each log is recovered from its checkpointed recovery point."""
        fs = MemoryFileSystem()
        logs = manager(fs, dirs=("/a",))
        logs.startup()
        log = logs.create_log("gpu", 0)
        log.append(batch(), leader_epoch=0)
        log.flush()
        logs.checkpoint_recovery_points()
        log.append(batch(), leader_epoch=0)  # never flushed
        fs.crash()
        again = manager(fs, dirs=("/a",))
        reports = again.startup()
        assert reports[("gpu", 0)].recovered == 1
        assert again.get_log("gpu", 0).log_end_offset == 2
        again.shutdown()

    def test_group_commit_through_the_flusher_thread(self):
        """Many appends waiting on durability are covered by far fewer fsync rounds, and each
        future resolves only once its offset is durable."""
        fs = MemoryFileSystem()
        logs = manager(fs, dirs=("/a",))
        logs.startup()
        log = logs.create_log("gpu", 0)
        futures = [log.durable(log.append(batch(), leader_epoch=0).last_offset) for _ in range(50)]
        results = [f.result(timeout=10) for f in futures]
        last_offsets = range(1, 100, 2)
        assert all(done > last for done, last in zip(results, last_offsets, strict=True))
        logs.shutdown()
        rounds = logs.flushers["/a"].flushes
        assert 1 <= rounds < 50

    def test_delete_log_removes_its_directory(self):
        """A deleted log's directory is gone and the log is forgotten."""
        fs = MemoryFileSystem()
        logs = manager(fs, dirs=("/a",))
        logs.startup()
        logs.create_log("gpu", 0).append(batch(), leader_epoch=0)
        logs.delete_log("gpu", 0)
        assert fs.listdir("/a") == []
        assert logs.get_log("gpu", 0) is None
        logs.shutdown()

    def test_high_watermark_checkpoint(self):
        """High watermarks are checkpointed per data directory and read back."""
        fs = MemoryFileSystem()
        logs = manager(fs)
        logs.startup()
        logs.create_log("gpu", 0)
        logs.create_log("gpu", 1)
        logs.write_high_watermarks({("gpu", 0): 5, ("gpu", 1): 9})
        assert fs.read_file("/b/replication-offset-checkpoint") == b"0\n1\ngpu 1 9\n"
        assert logs.read_high_watermarks() == {("gpu", 0): 5, ("gpu", 1): 9}
        logs.shutdown()
