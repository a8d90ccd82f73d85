"""Checkpoint files: Kafka's text formats, atomic replacement, corruption detection."""

from __future__ import annotations

import pytest

from tmq.storage.checkpoints import (
    CorruptCheckpoint,
    read_epoch_checkpoint,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from tmq.storage.memory_fs import MemoryFileSystem

PATH = "/d/recovery-point-offset-checkpoint"


def fs_with_dir() -> MemoryFileSystem:
    fs = MemoryFileSystem()
    fs.makedirs("/d")
    fs.fsync_dir("/")
    return fs


class OffsetCheckpointTests:
    """recovery-point / replication-offset checkpoints."""

    def test_format_is_kafkas(self):
        """Version 0, the entry count, then one ``topic partition offset`` line each."""
        fs = fs_with_dir()
        write_offset_checkpoint(fs, PATH, {("gpu", 1): 7, ("gpu", 0): 12})
        assert fs.read_file(PATH) == b"0\n2\ngpu 0 12\ngpu 1 7\n"
        assert read_offset_checkpoint(fs, PATH) == {("gpu", 0): 12, ("gpu", 1): 7}

    def test_missing_file_is_empty(self):
        """No file means no checkpointed offsets."""
        assert read_offset_checkpoint(fs_with_dir(), PATH) == {}

    @pytest.mark.parametrize(
        "content",
        [b"1\n0\n", b"0\n2\ngpu 0 1\n", b"0\n1\ngpu x 1\n", b"0\n1\ngpu 0\n", b"\xff"],
    )
    def test_corrupt_file_is_detected(self, content):
        """Wrong version, count, field count, number or encoding raise CorruptCheckpoint."""
        fs = fs_with_dir()
        fs.write_file(PATH, content)
        with pytest.raises(CorruptCheckpoint):
            read_offset_checkpoint(fs, PATH)

    def test_crash_during_replacement_keeps_the_old_or_the_new(self):
        """A crash after the temporary file is written but before the directory is fsynced
        leaves the previous checkpoint intact; after a full write the new one is there."""
        fs = fs_with_dir()
        write_offset_checkpoint(fs, PATH, {("gpu", 0): 1})
        fs.fail("fsync_dir", path_contains="/d")
        with pytest.raises(OSError):
            write_offset_checkpoint(fs, PATH, {("gpu", 0): 2})
        fs.crash()
        assert read_offset_checkpoint(fs, PATH) == {("gpu", 0): 1}
        write_offset_checkpoint(fs, PATH, {("gpu", 0): 3})
        fs.crash()
        assert read_offset_checkpoint(fs, PATH) == {("gpu", 0): 3}


class EpochCheckpointTests:
    """leader-epoch-checkpoint files."""

    def test_round_trip(self):
        """Entries come back in order."""
        from tmq.storage.checkpoints import write_epoch_checkpoint

        fs = fs_with_dir()
        write_epoch_checkpoint(fs, "/d/leader-epoch-checkpoint", [(0, 0), (3, 42)])
        assert fs.read_file("/d/leader-epoch-checkpoint") == b"0\n2\n0 0\n3 42\n"
        assert read_epoch_checkpoint(fs, "/d/leader-epoch-checkpoint") == [(0, 0), (3, 42)]
