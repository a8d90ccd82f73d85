"""LeaderEpochCache: assignment, truncation and OffsetForLeaderEpoch answers (KIP-101/279)."""

from __future__ import annotations

import pytest

from tmq.storage.checkpoints import read_epoch_checkpoint
from tmq.storage.leader_epoch import UNDEFINED_EPOCH, UNDEFINED_OFFSET, LeaderEpochCache
from tmq.storage.memory_fs import MemoryFileSystem

PATH = "/p/leader-epoch-checkpoint"


def cache(entries=()) -> tuple[MemoryFileSystem, LeaderEpochCache]:
    fs = MemoryFileSystem()
    fs.makedirs("/p")
    return fs, LeaderEpochCache(fs, PATH, list(entries))


class LeaderEpochCacheTests:
    """Epoch -> start offset bookkeeping."""

    def test_assign_persists_new_epochs_only(self):
        """A new epoch is recorded and checkpointed; repeating the latest one is a no-op."""
        fs, epochs = cache()
        epochs.assign(0, 0)
        epochs.assign(0, 5)
        epochs.assign(2, 10)
        assert epochs.entries == [(0, 0), (2, 10)]
        assert read_epoch_checkpoint(fs, PATH) == [(0, 0), (2, 10)]

    def test_epoch_that_wrote_nothing_is_replaced(self):
        """An epoch starting where the previous one started replaces it."""
        _, epochs = cache([(1, 5)])
        epochs.assign(2, 5)
        assert epochs.entries == [(2, 5)]

    def test_stale_epoch_is_refused(self):
        """Assigning an older epoch is an error."""
        _, epochs = cache([(3, 5)])
        with pytest.raises(ValueError):
            epochs.assign(2, 9)

    def test_truncate_from_end(self):
        """Epochs starting at or after the cut disappear."""
        _, epochs = cache([(0, 0), (1, 10), (4, 20)])
        epochs.truncate_from_end(20)
        assert epochs.entries == [(0, 0), (1, 10)]

    def test_truncate_from_start(self):
        """The epoch in force at the new log start now starts there."""
        _, epochs = cache([(0, 0), (1, 10), (4, 20)])
        epochs.truncate_from_start(15)
        assert epochs.entries == [(1, 15), (4, 20)]

    @pytest.mark.parametrize(
        ("requested", "expected"),
        [
            (4, (4, 30)),  # the latest epoch ends at the log end offset
            (1, (1, 20)),  # ends where the next known epoch starts
            (2, (1, 20)),  # unknown epoch between two known ones: the one below answers
            (0, (0, 10)),  # below the first known epoch: ends where the first one starts
            (5, (UNDEFINED_EPOCH, UNDEFINED_OFFSET)),  # above every known epoch
            (UNDEFINED_EPOCH, (UNDEFINED_EPOCH, UNDEFINED_OFFSET)),
        ],
    )
    def test_end_offset_for(self, requested, expected):
        """end_offset_for answers like Kafka's LeaderEpochFileCache.endOffsetFor."""
        _, epochs = cache([(1, 10), (4, 20)])
        assert epochs.end_offset_for(requested, 30) == expected
