"""Crashes through the injectable file layer: what an fsync promised must survive a power cut.

``MemoryFileSystem.crash`` keeps only what was fsynced (file contents) and ``fsync_dir``'d
(directory entries), plus any prefix of the unsynced bytes a test chooses to keep. With
``flush.policy=always`` the caller waits for ``log.durable(last_offset)`` after each append, so
every append reported durable must survive ``crash`` and the load that follows. With ``never``
nothing is promised, but the log must still come back as a prefix of what was appended.
``LogManager`` adds the clean-shutdown marker and the recovery-point checkpoint.
"""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import (
    T0,
    BatchSpec,
    append_spec,
    batch_specs,
    check_append_continues,
    check_log,
    client_batch,
    clock,
    create_log,
    is_prefix,
    load_log,
    new_fs,
)

from tmq.protocol.compression import Codec
from tmq.storage.checkpoints import read_offset_checkpoint
from tmq.storage.config import FlushPolicy, LogConfig
from tmq.storage.flusher import Flusher
from tmq.storage.log_manager import LogManager
from tmq.storage.memory_fs import MemoryFileSystem
from tmq.storage.names import (
    CLEAN_SHUTDOWN,
    LOG_SUFFIX,
    RECOVERY_POINT_CHECKPOINT,
    segment_file,
)

WAIT = 10  # seconds a test waits for the flusher thread at most
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,
)


def small_batch(salt: int, epoch: int = 0) -> BatchSpec:
    """A batch of two records, about 200 bytes."""
    return BatchSpec(2, 6, 50 + salt % 7, Codec.NONE, epoch, T0 + salt)


def recovered_batches(log, appended) -> list:
    """The appended batches below the recovered log end offset."""
    return [batch for batch in appended if batch.last_offset < log.log_end_offset]


def random_keep(data):
    """A crash ``keep`` under hypothesis' control: each changed file keeps its durable bytes
    and any number of the unsynced ones after them."""

    def keep(path: str, durable_size: int, current_size: int) -> int:
        least = min(durable_size, current_size)
        return data.draw(st.integers(least, current_size), label=f"kept of {path}")

    return keep


class AlwaysPolicyTests:
    """flush.policy=always: an append is acknowledged once ``durable`` resolves."""

    def append_durably(self, log, spec: BatchSpec, salt: int, appended: list) -> None:
        """Append, flush as the flusher would, and check the durability future resolved."""
        batch = append_spec(log, spec, salt)
        future = log.durable(batch.last_offset)
        log.flush()
        assert future.done() and future.result() > batch.last_offset
        appended.append(batch)

    @PROPERTY
    @given(specs=batch_specs(max_batches=20), data=st.data())
    def test_durable_appends_survive_a_crash_within_one_segment(self, specs, data):
        """In one segment, appends acknowledged durable, then unacknowledged appends, then a
        crash keeping any part of the unsynced bytes: the log recovers a prefix holding at
        least every acknowledged append, from recovery point 0 or from the durable offset."""
        config = LogConfig(flush_policy=FlushPolicy.ALWAYS)
        fs = new_fs()
        log = create_log(fs, config)
        acknowledged: list = []
        split = data.draw(st.integers(0, len(specs)), label="acknowledged")
        for salt, spec in enumerate(specs[:split]):
            self.append_durably(log, spec, salt, acknowledged)
        rest = [append_spec(log, spec, salt) for salt, spec in enumerate(specs) if salt >= split]
        recovery_point = data.draw(st.sampled_from([0, log.durable_offset]), label="recovery")
        fs.crash(keep=random_keep(data))
        log, _ = load_log(fs, config, recovery_point=recovery_point)
        found = recovered_batches(log, acknowledged + rest)
        assert len(found) >= len(acknowledged)
        check_log(fs, log, found)
        check_append_continues(log, max(spec.epoch for spec in specs))

    @PROPERTY
    @given(
        specs=batch_specs(max_batches=30),
        segment_bytes=st.integers(400, 1500),
        data=st.data(),
    )
    def test_durable_appends_survive_a_crash_across_segment_rolls(self, specs, segment_bytes, data):
        """The same across segment rolls (small ``segment.bytes``): every append
        acknowledged durable survives the crash, whichever segment it went to."""
        largest = max(len(client_batch(spec, salt)[0]) for salt, spec in enumerate(specs))
        config = LogConfig(segment_bytes=max(segment_bytes, largest), index_interval_bytes=128)
        fs = new_fs()
        log = create_log(fs, config)
        acknowledged: list = []
        for salt, spec in enumerate(specs):
            self.append_durably(log, spec, salt, acknowledged)
        fs.crash(keep=random_keep(data))
        log, _ = load_log(fs, config, recovery_point=0)
        check_log(fs, log, acknowledged, every_offset=False)

    def test_durable_append_right_after_a_roll_survives_a_crash(self):
        """One epoch, small segments: the append that rolled the log into a new segment is
        acknowledged durable, then the power fails. The new segment's file (created by the
        roll) must have been made durable in the directory, so the append survives."""
        config = LogConfig(segment_bytes=1024, index_interval_bytes=128)
        fs = new_fs()
        log = create_log(fs, config)
        acknowledged: list = []
        salt = 0
        while len(log.segments) < 2:
            self.append_durably(log, small_batch(salt), salt, acknowledged)
            salt += 1
        assert log.durable_offset == acknowledged[-1].last_offset + 1
        fs.crash()
        log, _ = load_log(fs, config, recovery_point=0)
        check_log(fs, log, acknowledged)

    def test_appends_acknowledged_by_the_flusher_survive_a_crash_in_one_segment(self):
        """Through the flusher thread (group commit): every append whose durability future
        resolved survives a crash, and the fsyncs ran on the flusher thread."""
        config = LogConfig()
        fs = new_fs()
        log = create_log(fs, config)
        flusher = Flusher("data")
        flusher.register(log)
        flusher.start()
        try:
            acknowledged = []
            for salt in range(20):
                batch = append_spec(log, small_batch(salt), salt)
                assert log.durable(batch.last_offset).result(timeout=WAIT) > batch.last_offset
                acknowledged.append(batch)
            unacknowledged = append_spec(log, small_batch(99), 99)
            fs.crash()
        finally:
            flusher.stop()
        assert flusher.flushes >= 1 and fs.fsync_count >= 1
        log, _ = load_log(fs, config, recovery_point=0)
        found = recovered_batches(log, [*acknowledged, unacknowledged])
        assert len(found) >= len(acknowledged)
        check_log(fs, log, found)

    def test_appends_acknowledged_by_the_flusher_survive_a_crash_across_rolls(self):
        """The same with segments rolling under the flusher (small ``segment.bytes``): every
        append whose durability future resolved survives the crash."""
        config = LogConfig(segment_bytes=1024, index_interval_bytes=128)
        fs = new_fs()
        log = create_log(fs, config)
        flusher = Flusher("data")
        flusher.register(log)
        flusher.start()
        try:
            futures, appended = [], []
            for salt in range(30):
                batch = append_spec(log, small_batch(salt), salt)
                futures.append(log.durable(batch.last_offset))
                appended.append(batch)
            for future, batch in zip(futures, appended, strict=True):
                assert future.result(timeout=WAIT) > batch.last_offset
            assert len(log.segments) >= 4
            fs.crash()
        finally:
            flusher.stop()
        log, _ = load_log(fs, config, recovery_point=0)
        check_log(fs, log, appended)


class NeverPolicyTests:
    """flush.policy=never: no waits and no fsyncs but the ones a roll asks for."""

    @PROPERTY
    @given(
        specs=batch_specs(max_batches=30),
        segment_bytes=st.integers(300, 2000),
        data=st.data(),
    )
    def test_unflushed_log_crashes_to_a_valid_prefix(self, specs, segment_bytes, data):
        """Appends with only the flushes roll requests trigger (run at once, as the flusher
        would), then a crash keeping any part of every unsynced file: the log recovers a
        prefix of what was appended, sound, and takes new appends."""
        largest = max(len(client_batch(spec, salt)[0]) for salt, spec in enumerate(specs))
        config = LogConfig(
            segment_bytes=max(segment_bytes, largest),
            index_interval_bytes=100,
            flush_policy=FlushPolicy.NEVER,
        )
        fs = new_fs()
        log = create_log(fs, config)
        requested = []
        log.flush_requested = requested.append
        appended = []
        for salt, spec in enumerate(specs):
            appended.append(append_spec(log, spec, salt))
            if requested:
                requested.clear()
                log.flush()
        fs.crash(keep=random_keep(data))
        log, _ = load_log(fs, config, recovery_point=0)
        found = recovered_batches(log, appended)
        assert is_prefix(found, appended)
        check_log(fs, log, found)
        check_append_continues(log, max(spec.epoch for spec in specs))

    def test_unflushed_log_with_the_flusher_thread_crashes_to_a_valid_prefix(self):
        """The same with the real flusher thread serving the roll requests, and a crash that
        keeps every unsynced byte of some files and only the synced ones of the others."""
        config = LogConfig(segment_bytes=1024, flush_policy=FlushPolicy.NEVER)
        fs = new_fs()
        log = create_log(fs, config)
        flusher = Flusher("data")
        flusher.register(log)
        flusher.start()
        try:
            appended = [append_spec(log, small_batch(salt), salt) for salt in range(40)]
            fs.crash(keep=lambda path, durable, current: current if odd(path) else durable)
        finally:
            flusher.stop()
        log, _ = load_log(fs, config, recovery_point=0)
        found = recovered_batches(log, appended)
        check_log(fs, log, found)
        check_append_continues(log, 0)


def odd(path: str) -> bool:
    """A fixed, arbitrary half of the paths (by the parity of their bytes)."""
    return sum(path.encode()) % 2 == 1


def new_manager(fs: MemoryFileSystem, dirs=("/a", "/b"), config: LogConfig | None = None):
    config = config or LogConfig(segment_bytes=1024, index_interval_bytes=128)
    return LogManager(fs, list(dirs), lambda topic: config, clock)


def stop_flushers(manager: LogManager) -> None:
    """End the flusher threads of a manager that is abandoned without ``shutdown``."""
    for flusher in manager.flushers.values():
        flusher.stop()


class LogManagerCrashTests:
    """Startup and shutdown of all logs: the clean-shutdown marker and the recovery point."""

    def fill(self, manager: LogManager, partitions: int = 2, batches: int = 12, wait=True):
        """Create ``partitions`` logs of topic gpu and append to each; with ``wait`` every
        append is acknowledged durable through the flusher. Returns the appended batches."""
        appended = {}
        for partition in range(partitions):
            log = manager.create_log("gpu", partition)
            batches_of = appended[partition] = []
            for salt in range(batches):
                batch = append_spec(log, small_batch(salt), salt)
                if wait:
                    assert log.durable(batch.last_offset).result(timeout=WAIT)
                batches_of.append(batch)
        return appended

    def test_clean_shutdown_then_start_recovers_nothing_and_keeps_everything(self):
        """After ``shutdown`` the next ``startup`` finds the marker: no log is recovered, each
        log holds everything appended (several segments each), and the marker is gone."""
        fs = new_fs()
        manager = new_manager(fs)
        manager.startup()
        appended = self.fill(manager, wait=False)
        manager.shutdown()
        again = new_manager(fs)
        reports = again.startup()
        try:
            assert {key: report.recovered for key, report in reports.items()} == {
                ("gpu", 0): 0,
                ("gpu", 1): 0,
            }
            assert not fs.exists(posixpath.join("/a", CLEAN_SHUTDOWN))
            for partition, batches in appended.items():
                log = again.get_log("gpu", partition)
                assert len(log.segments) >= 3
                check_log(fs, log, batches, directory=log.directory)
        finally:
            again.shutdown()

    def test_clean_shutdown_survives_a_power_cut(self):
        """A clean shutdown flushes everything, so a power cut right after it loses nothing:
        the next start is clean (the marker was made durable) and finds every batch, in
        every segment, including the segments that rolls created."""
        fs = new_fs()
        manager = new_manager(fs)
        manager.startup()
        appended = self.fill(manager, wait=False)
        manager.shutdown()
        fs.crash()
        again = new_manager(fs)
        reports = again.startup()
        try:
            assert all(report.recovered == 0 for report in reports.values())
            for partition, batches in appended.items():
                log = again.get_log("gpu", partition)
                check_log(fs, log, batches, directory=log.directory)
        finally:
            again.shutdown()

    def test_unclean_start_recovers_from_the_checkpointed_recovery_point(self):
        """The broker dies (no shutdown, page cache intact) after checkpointing a recovery
        point in the third segment: the next start recovers the segment holding the
        recovery point and every later one (not the first two), cuts a batch that rotted
        after the recovery point, and keeps everything before it."""
        fs = new_fs()
        manager = new_manager(fs, dirs=("/a",))
        manager.startup()
        log = manager.create_log("gpu", 0)
        appended = []
        salt = 0
        while len(log.segments) < 3:
            appended.append(append_spec(log, small_batch(salt), salt))
            salt += 1
        assert log.durable(appended[-1].last_offset).result(timeout=WAIT)
        manager.checkpoint_recovery_points()
        recovery_point = log.durable_offset
        while len(log.segments) < 5:
            appended.append(append_spec(log, small_batch(salt), salt))
            salt += 1
        for extra in range(salt, salt + 2):  # the last segment holds three batches
            appended.append(append_spec(log, small_batch(extra), extra))
        assert len(log.segments) == 5
        stop_flushers(manager)  # killed: no shutdown, nothing lost from the page cache
        assert read_offset_checkpoint(fs, f"/a/{RECOVERY_POINT_CHECKPOINT}") == {
            ("gpu", 0): recovery_point
        }
        rotten = appended[-2]  # in the last segment, after the recovery point
        base = log.segments[-1].base_offset
        assert base <= rotten.base_offset and recovery_point < base
        path = posixpath.join(log.directory, segment_file(base, LOG_SUFFIX))
        position = sum(len(b.data) for b in appended if base <= b.base_offset < rotten.base_offset)
        fs.corrupt(path, position + 70, fs.read_file(path)[position + 70] ^ 0x20)
        again = new_manager(fs, dirs=("/a",))
        reports = again.startup()
        try:
            report = reports[("gpu", 0)]
            assert report.recovered == 3  # the segment holding the recovery point and later
            assert report.truncated_bytes > 0
            log = again.get_log("gpu", 0)
            kept = [b for b in appended if b.base_offset < rotten.base_offset]
            check_log(fs, log, kept, directory=log.directory)
            assert log.durable_offset == recovery_point
        finally:
            again.shutdown()

    def test_start_after_a_crash_without_shutdown_recovers(self):
        """A clean start removes the marker, so a power cut later is seen as unclean: the
        following start recovers and keeps every append acknowledged durable."""
        fs = new_fs()
        manager = new_manager(fs, config=LogConfig())
        manager.startup()
        self.fill(manager, partitions=1, batches=3)
        manager.shutdown()
        second = new_manager(fs, config=LogConfig())
        second.startup()
        log = second.get_log("gpu", 0)
        more = [append_spec(log, small_batch(salt), salt) for salt in range(5)]
        assert log.durable(more[-1].last_offset).result(timeout=WAIT)
        stop_flushers(second)
        fs.crash()
        third = new_manager(fs, config=LogConfig())
        reports = third.startup()
        try:
            assert reports[("gpu", 0)].recovered >= 1
            log = third.get_log("gpu", 0)
            assert log.log_end_offset == more[-1].last_offset + 1
            assert log.read(more[0].base_offset, 1).read() == more[0].data
        finally:
            third.shutdown()

    @pytest.mark.parametrize("step", ["write_file", "rename", "fsync_dir"])
    def test_crash_while_writing_the_recovery_point_checkpoint_keeps_the_old_one(self, step):
        """A crash at each step of the checkpoint write (tmp file, rename, directory fsync)
        leaves the previous checkpoint in force, and the next start recovers from it and
        keeps every acknowledged append."""
        fs = new_fs()
        manager = new_manager(fs, dirs=("/a",), config=LogConfig())
        manager.startup()
        log = manager.create_log("gpu", 0)
        appended = [append_spec(log, small_batch(salt), salt) for salt in range(4)]
        assert log.durable(appended[-1].last_offset).result(timeout=WAIT)
        manager.checkpoint_recovery_points()
        old = read_offset_checkpoint(fs, f"/a/{RECOVERY_POINT_CHECKPOINT}")
        appended += [append_spec(log, small_batch(salt), salt) for salt in range(4, 9)]
        assert log.durable(appended[-1].last_offset).result(timeout=WAIT)
        target = "/a" if step == "fsync_dir" else RECOVERY_POINT_CHECKPOINT
        fs.fail(step, path_contains=target)
        with pytest.raises(OSError):
            manager.checkpoint_recovery_points()
        stop_flushers(manager)
        fs.crash()
        assert read_offset_checkpoint(fs, f"/a/{RECOVERY_POINT_CHECKPOINT}") == old
        again = new_manager(fs, dirs=("/a",), config=LogConfig())
        reports = again.startup()
        try:
            assert reports[("gpu", 0)].recovered == 1
            log = again.get_log("gpu", 0)
            check_log(fs, log, appended, directory=log.directory)
        finally:
            again.shutdown()

    def test_crash_right_after_a_segment_roll_keeps_every_acknowledged_append(self):
        """Acknowledged appends roll a log into a new segment and the power fails right
        after: the next (unclean) start recovers every acknowledged append, also those in
        the segment the roll created."""
        fs = new_fs()
        manager = new_manager(fs, dirs=("/a",))
        manager.startup()
        log = manager.create_log("gpu", 0)
        appended = []
        salt = 0
        while len(log.segments) < 2:
            batch = append_spec(log, small_batch(salt), salt)
            assert log.durable(batch.last_offset).result(timeout=WAIT)
            appended.append(batch)
            salt += 1
        manager.checkpoint_recovery_points()
        stop_flushers(manager)
        fs.crash()
        again = new_manager(fs, dirs=("/a",))
        again.startup()
        try:
            log = again.get_log("gpu", 0)
            check_log(fs, log, appended, directory=log.directory)
        finally:
            again.shutdown()

    def test_crash_after_a_roll_keeps_the_segments_before_it(self):
        """Segments that existed when the log was created survive a crash after a roll
        with their acknowledged appends; the unacknowledged tail is a valid prefix."""
        fs = new_fs()
        manager = new_manager(fs, dirs=("/a",))
        manager.startup()
        log = manager.create_log("gpu", 0)
        first = []
        salt = 0
        while len(log.segments) < 2:
            first.append(append_spec(log, small_batch(salt), salt))
            salt += 1
        in_first_segment = [b for b in first if b.last_offset < log.segments[1].base_offset]
        assert log.durable(in_first_segment[-1].last_offset).result(timeout=WAIT)
        stop_flushers(manager)
        fs.crash()
        again = new_manager(fs, dirs=("/a",))
        again.startup()
        try:
            log = again.get_log("gpu", 0)
            found = recovered_batches(log, first)
            assert len(found) >= len(in_first_segment)
            check_log(fs, log, found, directory=log.directory)
        finally:
            again.shutdown()
