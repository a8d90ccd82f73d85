"""Flusher: group commit rounds and the commit delay, driven without the thread."""

from __future__ import annotations

from tmq.protocol.records import Record, build_batch
from tmq.storage.config import LogConfig
from tmq.storage.flusher import Flusher
from tmq.storage.log import PartitionLog
from tmq.storage.memory_fs import MemoryFileSystem

T0 = 1_700_000_000_000


def setup():
    fs = MemoryFileSystem()
    fs.makedirs("/d")
    fs.fsync_dir("/")
    log = PartitionLog.create(fs, "/d/gpu-0", "gpu", 0, LogConfig(), lambda: T0)
    sleeps: list[float] = []
    flusher = Flusher("d", commit_delay=0.0005, sleep=sleeps.append)
    flusher.register(log)
    return fs, log, flusher, sleeps


def append(log: PartitionLog):
    batch = build_batch([Record(0, 0, None, b"x")], base_timestamp=T0)
    return log.durable(log.append(batch, leader_epoch=0).last_offset)


class FlusherTests:
    """What one round does."""

    def test_one_round_covers_every_waiter_and_fsyncs_once(self):
        """Three waiting appends are resolved by one round: one fsync of the .log."""
        fs, log, flusher, _ = setup()
        futures = [append(log) for _ in range(3)]
        before = fs.fsync_count
        flusher.run_round([log, log, log])
        assert fs.fsync_count - before == 1
        assert all(f.result(timeout=0) == 3 for f in futures)

    def test_commit_delay_only_after_a_concurrent_round(self):
        """A lone appender never waits; after a round that covered several waiters the next
        round first waits commit_delay to gather more."""
        _, log, flusher, sleeps = setup()
        append(log)
        flusher.run_round([log])
        append(log)
        flusher.run_round([log])
        assert sleeps == []
        append(log)
        append(log)
        flusher.run_round([log])  # covers two waiters: concurrency seen
        append(log)
        flusher.run_round([log])
        assert sleeps == [0.0005]
        append(log)
        flusher.run_round([log])  # the previous round covered one: no more waiting
        assert sleeps == [0.0005]
