"""Write errors: a full disk (ENOSPC) and a failing disk (EIO) on append, fsync and the files
around the log.

The contract (``tmq.storage.errors.KafkaStorageError``, ``PartitionLog.append``): a failed
write surfaces to the caller as ``KafkaStorageError`` (or fails the durability future, for an
fsync), nothing of the failed append is served, the log stays readable, and appends work again
once there is space. A failed fsync takes the log offline (``log.failure``); a reload then
recovers a valid prefix.
"""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import (
    LOG_DIR,
    T0,
    BatchSpec,
    append_spec,
    batch_specs,
    check_append_continues,
    check_log,
    client_batch,
    clock,
    create_log,
    load_log,
    new_fs,
)

from tmq.protocol.compression import Codec
from tmq.storage.checkpoints import read_epoch_checkpoint
from tmq.storage.config import LogConfig
from tmq.storage.errors import KafkaStorageError
from tmq.storage.files import OsFileSystem
from tmq.storage.flusher import Flusher
from tmq.storage.leader_epoch import LeaderEpochCache
from tmq.storage.log import PartitionLog
from tmq.storage.log_manager import LogManager
from tmq.storage.memory_fs import MemoryFileSystem
from tmq.storage.names import (
    CLEAN_SHUTDOWN,
    INDEX_SUFFIX,
    LEADER_EPOCH_CHECKPOINT,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
)

WAIT = 10  # seconds a test waits for the flusher thread at most
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,
)


def used_bytes(fs: MemoryFileSystem, directory: str = LOG_DIR) -> int:
    """Bytes held by the files of the partition directory (the only files on this fs)."""
    return sum(len(fs.read_file(f"{directory}/{name}")) for name in fs.listdir(directory))


def spec(salt: int, epoch: int = 0, value_bytes: int = 80) -> BatchSpec:
    return BatchSpec(2, 6, value_bytes, Codec.NONE, epoch, T0 + salt)


def fails_cleanly(log: PartitionLog, batch_spec: BatchSpec, salt: int) -> None:
    """Appending ``batch_spec`` raises ``KafkaStorageError`` and leaves the log exactly as it
    was: same log end offset, nothing of the failed batch served."""
    end = log.log_end_offset
    with pytest.raises(KafkaStorageError):
        append_spec(log, batch_spec, salt)
    assert log.log_end_offset == end
    assert log.read(end, 1) is None


class NoSpaceTests:
    """ENOSPC from ``MemoryFileSystem(capacity_bytes=...)``."""

    def test_full_disk_refuses_the_batch_and_later_appends_work(self):
        """A batch that does not fit fails with KafkaStorageError; the log still reads back
        every earlier batch; once space is freed the next append continues at the same
        offset."""
        fs = new_fs()
        log = create_log(fs, LogConfig(index_interval_bytes=1 << 20))
        appended = [append_spec(log, spec(salt), salt) for salt in range(5)]
        fs.capacity_bytes = used_bytes(fs) + len(client_batch(spec(5), 5)[0]) - 1
        fails_cleanly(log, spec(5), 5)
        check_log(fs, log, appended)
        fs.capacity_bytes = None
        appended.append(check_append_continues(log, 0))
        check_log(fs, log, appended)

    @pytest.mark.parametrize("suffix", [INDEX_SUFFIX, TIME_INDEX_SUFFIX])
    def test_full_disk_while_writing_the_index_entry_serves_nothing_of_the_batch(self, suffix):
        """The batch fits in the ``.log`` but its index entry then does not (ENOSPC on the
        ``.index``, or on the ``.timeindex`` after the ``.index`` entry was written): the
        append fails with KafkaStorageError and the batch is not served (the caller was told
        it failed; a retry must not duplicate it); the indexes stay sound and appends work
        once there is space."""
        fs = new_fs()
        log = create_log(fs, LogConfig(index_interval_bytes=0))  # an entry for every batch
        appended = [append_spec(log, spec(salt), salt) for salt in range(3)]
        room = len(client_batch(spec(3), 3)[0]) + (8 if suffix == TIME_INDEX_SUFFIX else 0)
        fs.capacity_bytes = used_bytes(fs) + room
        fails_cleanly(log, spec(3), 3)
        fs.capacity_bytes = None
        check_log(fs, log, appended)
        appended.append(check_append_continues(log, 0))
        check_log(fs, log, appended)

    def test_full_disk_while_writing_the_epoch_checkpoint_serves_nothing_of_the_batch(self):
        """The first batch of a new leader epoch: the new ``leader-epoch-checkpoint`` cannot
        be written (ENOSPC on its temporary file) while the ``.log`` would still take the
        batch. The append fails with KafkaStorageError (not a bare OSError), the batch is not
        served, and with space again the append under that epoch works and the checkpoint
        on disk then records the epoch (the failed write must not leave the in-memory cache
        believing it was recorded)."""
        fs = new_fs()
        log = create_log(fs, LogConfig(index_interval_bytes=1 << 20))
        appended = [append_spec(log, spec(salt), salt) for salt in range(3)]
        fs.fail("write_file", errno.ENOSPC, path_contains=LEADER_EPOCH_CHECKPOINT)
        fails_cleanly(log, spec(3, epoch=1), 3)
        check_log(fs, log, appended)
        appended.append(check_append_continues(log, 1))
        check_log(fs, log, appended)

    def test_full_disk_at_a_roll_leaves_an_empty_segment_that_takes_the_next_append(self):
        """The batch that rolls the log does not fit: the new (empty) segment stays, nothing
        is served, and the append succeeds there once there is space."""
        fs = new_fs()
        config = LogConfig(segment_bytes=600, index_interval_bytes=1 << 20)
        log = create_log(fs, config)
        appended = []
        while log.active.size + len(client_batch(spec(len(appended)), 0)[0]) <= 600:
            appended.append(append_spec(log, spec(len(appended)), len(appended)))
        fs.capacity_bytes = used_bytes(fs)
        fails_cleanly(log, spec(99), 99)
        fs.capacity_bytes = None
        appended.append(check_append_continues(log, 0))
        assert len(log.segments) == 2
        check_log(fs, log, appended)

    @PROPERTY
    @given(
        specs=batch_specs(max_batches=30, max_value=200),
        segment_bytes=st.integers(300, 3000),
        interval=st.integers(0, 600),
        data=st.data(),
    )
    def test_appends_on_a_filling_disk_either_land_whole_or_fail_cleanly(
        self, specs, segment_bytes, interval, data
    ):
        """Appends on a disk whose free space changes at random (shrinks, grows): each
        append either succeeds or raises KafkaStorageError — nothing else; after each the
        log holds exactly the acknowledged batches; at the end, with space again, a new
        append continues, and a reload from recovery point 0 finds the same log."""
        largest = max(len(client_batch(s, salt)[0]) for salt, s in enumerate(specs))
        config = LogConfig(segment_bytes=max(segment_bytes, largest), index_interval_bytes=interval)
        fs = new_fs()
        log = create_log(fs, config)
        acknowledged = []
        for salt, batch_spec in enumerate(specs):
            headroom = data.draw(st.integers(0, 2 * largest), label="free bytes")
            fs.capacity_bytes = used_bytes(fs) + headroom
            end = log.log_end_offset
            try:
                acknowledged.append(append_spec(log, batch_spec, salt))
            except KafkaStorageError:
                assert log.log_end_offset == end
        fs.capacity_bytes = None
        check_log(fs, log, acknowledged, every_offset=False)
        top = max(s.epoch for s in specs)
        acknowledged.append(check_append_continues(log, top))
        log.flush()
        log.close()
        again, _ = load_log(fs, config, recovery_point=0)
        check_log(fs, again, acknowledged, every_offset=False)


class InjectedIoErrorTests:
    """EIO injected with ``MemoryFileSystem.fail``."""

    def test_eio_on_the_log_append_fails_it_and_the_log_stays_usable(self):
        """A failed ``.log`` write is KafkaStorageError; the log reads back as before and the
        next append (the error was transient) continues at the same offset."""
        fs = new_fs()
        log = create_log(fs, LogConfig())
        appended = [append_spec(log, spec(salt), salt) for salt in range(4)]
        fs.fail("append", errno.EIO, path_contains=LOG_SUFFIX)
        fails_cleanly(log, spec(4), 4)
        check_log(fs, log, appended)
        appended.append(check_append_continues(log, 0))
        check_log(fs, log, appended)

    def test_eio_on_the_index_append_serves_nothing_of_the_batch(self):
        """The ``.log`` write succeeds but the ``.index`` write fails: the append fails with
        KafkaStorageError and the batch is not served."""
        fs = new_fs()
        log = create_log(fs, LogConfig(index_interval_bytes=0))
        appended = [append_spec(log, spec(salt), salt) for salt in range(3)]
        fs.fail("append", errno.EIO, path_contains=INDEX_SUFFIX)
        fails_cleanly(log, spec(3), 3)
        check_log(fs, log, appended)
        appended.append(check_append_continues(log, 0))
        check_log(fs, log, appended)

    def test_eio_writing_the_epoch_checkpoint_serves_nothing_of_the_batch(self):
        """The ``leader-epoch-checkpoint`` cannot be written for a new epoch: the append
        fails with KafkaStorageError (not a bare OSError) and the batch is not served; the
        retried append records the epoch in the checkpoint."""
        fs = new_fs()
        log = create_log(fs, LogConfig())
        appended = [append_spec(log, spec(salt), salt) for salt in range(3)]
        fs.fail("write_file", errno.EIO, path_contains=LEADER_EPOCH_CHECKPOINT)
        fails_cleanly(log, spec(3, epoch=2), 3)
        check_log(fs, log, appended)
        appended.append(check_append_continues(log, 2))
        check_log(fs, log, appended)

    def test_failed_epoch_checkpoint_write_leaves_the_epoch_cache_unchanged(self):
        """``LeaderEpochCache.assign`` whose checkpoint write fails raises ``OSError`` and
        leaves the cache as it was, in memory as on disk, so that the same assignment is
        tried (and persisted) again later."""
        fs = new_fs()
        fs.makedirs(LOG_DIR)
        path = f"{LOG_DIR}/{LEADER_EPOCH_CHECKPOINT}"
        cache = LeaderEpochCache(fs, path)
        cache.assign(0, 0)
        fs.fail("write_file", errno.EIO, path_contains=LEADER_EPOCH_CHECKPOINT)
        with pytest.raises(OSError):
            cache.assign(1, 10)
        assert cache.entries == [(0, 0)]
        assert read_epoch_checkpoint(fs, path) == [(0, 0)]
        cache.assign(1, 10)
        assert read_epoch_checkpoint(fs, path) == [(0, 0), (1, 10)]

    def test_eio_on_fsync_fails_the_waiters_and_takes_the_log_offline(self):
        """A failed fsync fails the durability futures with KafkaStorageError and sets
        ``log.failure``; later appends raise KafkaStorageError and later futures fail; what
        is in the log can still be read; after a crash the reload recovers a valid prefix
        holding everything acknowledged before the failure."""
        fs = new_fs()
        config = LogConfig(index_interval_bytes=300)
        log = create_log(fs, config)
        acknowledged = []
        for salt in range(6):
            batch = append_spec(log, spec(salt), salt)
            future = log.durable(batch.last_offset)
            log.flush()
            assert future.result(timeout=0) > batch.last_offset
            acknowledged.append(batch)
        pending = [append_spec(log, spec(salt), salt) for salt in range(6, 9)]
        future = log.durable(pending[-1].last_offset)
        fs.fail("fsync", errno.EIO)
        log.flush()
        assert isinstance(future.exception(timeout=0), KafkaStorageError)
        assert isinstance(log.failure, OSError)
        with pytest.raises(KafkaStorageError):
            append_spec(log, spec(9), 9)
        later = log.durable(pending[-1].last_offset)
        log.flush()
        assert isinstance(later.exception(timeout=0), KafkaStorageError)
        check_log(fs, log, acknowledged + pending, every_offset=False)
        fs.crash()
        again, _ = load_log(fs, config, recovery_point=0)
        found = [b for b in acknowledged + pending if b.last_offset < again.log_end_offset]
        assert len(found) >= len(acknowledged)
        check_log(fs, again, found)
        check_append_continues(again, 0)

    def test_eio_on_fsync_under_the_flusher_fails_the_futures(self):
        """With the flusher thread, a failed fsync fails the waiting futures with
        KafkaStorageError (the waiter does not hang) and the log goes offline."""
        fs = new_fs()
        log = create_log(fs, LogConfig())
        flusher = Flusher("data")
        flusher.register(log)
        flusher.start()
        try:
            batch = append_spec(log, spec(0), 0)
            assert log.durable(batch.last_offset).result(timeout=WAIT) > batch.last_offset
            fs.fail("fsync", errno.EIO, times=10)
            batch = append_spec(log, spec(1), 1)
            with pytest.raises(KafkaStorageError):
                log.durable(batch.last_offset).result(timeout=WAIT)
            with pytest.raises(KafkaStorageError):
                append_spec(log, spec(2), 2)
        finally:
            flusher.stop()
        assert log.failure is not None

    def test_eio_on_fsync_keeps_the_next_start_unclean(self):
        """Through ``LogManager``: after a failed fsync, ``shutdown`` does not write the
        clean-shutdown marker, so the next start recovers the log (and finds every batch
        that was acknowledged)."""
        fs = new_fs()
        config = LogConfig()

        def manager() -> LogManager:
            return LogManager(fs, ["/a"], lambda topic: config, clock)

        first = manager()
        first.startup()
        log = first.create_log("gpu", 0)
        acknowledged = [append_spec(log, spec(salt), salt) for salt in range(3)]
        assert log.durable(acknowledged[-1].last_offset).result(timeout=WAIT)
        fs.fail("fsync", errno.EIO, path_contains="/a/gpu-0/", times=100)
        append_spec(log, spec(3), 3)
        first.shutdown()
        assert log.failure is not None
        assert not fs.exists(f"/a/{CLEAN_SHUTDOWN}")
        fs.crash()
        second = manager()
        reports = second.startup()
        try:
            assert reports[("gpu", 0)].recovered >= 1
            log = second.get_log("gpu", 0)
            found = [b for b in acknowledged if b.last_offset < log.log_end_offset]
            assert found == acknowledged
            check_log(fs, log, found, directory=log.directory)
        finally:
            second.shutdown()

    def test_eio_on_read_is_a_storage_error(self):
        """A failed read of the ``.log`` surfaces as KafkaStorageError (the errors module
        names reads among the disk failures it covers), not as a bare OSError."""
        fs = new_fs()
        log = create_log(fs, LogConfig())
        for salt in range(3):
            append_spec(log, spec(salt), salt)
        fs.fail("read", errno.EIO, path_contains=LOG_SUFFIX)
        with pytest.raises(KafkaStorageError):
            log.read(2, 1)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs mounted for the test (needs root), unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield str(mount_point)
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


class RealDiskFullTests:
    """ENOSPC from a real (tmpfs) file system through ``OsFileSystem``."""

    def test_real_enospc_fails_the_append_cleanly_and_space_brings_appends_back(self, small_disk):
        """On a nearly full 256 KiB tmpfs, appends of 3 KiB batches go on until the disk is
        full: that append fails with KafkaStorageError, the ``.log`` on disk holds no partial
        batch (same size as before), every acknowledged batch reads back; after a filler
        file is deleted, appends continue, and a reload from disk finds them all."""
        fs = OsFileSystem()
        data_dir = os.path.join(small_disk, "data")
        directory = os.path.join(data_dir, "gpu-0")
        os.mkdir(data_dir)
        filler = os.path.join(small_disk, "filler")
        with open(filler, "wb") as handle:
            handle.write(b"\0" * (200 * 1024))
        config = LogConfig(index_interval_bytes=4096)
        log = PartitionLog.create(fs, directory, "gpu", 0, config, clock)
        acknowledged: list = []
        try:
            big = [BatchSpec(1, 8, 3000, Codec.NONE, 0, T0 + i) for i in range(100)]
            with pytest.raises(KafkaStorageError) as failure:
                for salt, batch_spec in enumerate(big):
                    size_before = os.path.getsize(log.active.log.path)
                    acknowledged.append(append_spec(log, batch_spec, salt))
            assert failure.value.__cause__.errno == errno.ENOSPC
            assert len(acknowledged) >= 3
            assert os.path.getsize(log.active.log.path) == size_before == log.active.size
            check_log(fs, log, acknowledged, directory=directory)
            os.unlink(filler)
            acknowledged.append(check_append_continues(log, 0))
            log.flush()
        finally:
            log.close()
        again, _ = PartitionLog.load(fs, directory, "gpu", 0, config, clock, recovery_point=0)
        try:
            check_log(fs, again, acknowledged, directory=directory)
        finally:
            again.close()
