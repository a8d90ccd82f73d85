"""A follower's appends (``PartitionLog.append_replicated``) and a new leader's epoch start
(``PartitionLog.start_epoch``): batches are kept byte for byte, out-of-place or stale batches
are refused, and the epoch cache answers OffsetForLeaderEpoch for an epoch that wrote nothing."""

from __future__ import annotations

import pytest
from storage_helpers import (
    BatchSpec,
    append_spec,
    create_log,
    load_log,
    new_fs,
)

from tmq.protocol.records import Codec
from tmq.storage.config import LogConfig
from tmq.storage.errors import CorruptRecord, InvalidRecord, StaleEpoch

SPEC = BatchSpec(3, 4, 20, Codec.NONE, epoch=0, timestamp=1_700_000_000_000)


def leader_with(epochs: list[int]):
    """A leader log with one 3-record batch per entry of ``epochs``, and the batches."""
    fs = new_fs()
    log = create_log(fs, LogConfig())
    batches = [
        append_spec(log, BatchSpec(3, 4, 20, Codec.NONE, e, SPEC.timestamp), i)
        for i, e in enumerate(epochs)
    ]
    return log, batches


class AppendReplicatedTests:
    def test_copies_are_byte_identical(self):
        """A follower that appends the leader's batches holds the same bytes, offsets and
        epochs, and the same epoch cache."""
        leader, batches = leader_with([0, 0, 2, 5])
        fs = new_fs()
        follower = create_log(fs, LogConfig(), directory="/data/f-0")
        for batch in batches:
            info = follower.append_replicated(batch.data)
            assert (info.base_offset, info.last_offset) == (batch.base_offset, batch.last_offset)
        assert follower.epochs.entries == leader.epochs.entries == [(0, 0), (2, 6), (5, 9)]
        read = follower.read(0, 1 << 20)
        assert read.read() == b"".join(batch.data for batch in batches)

    def test_survives_a_reload(self):
        """Replicated batches and their epochs are what a reload finds."""
        _, batches = leader_with([1, 3])
        fs = new_fs()
        follower = create_log(fs, LogConfig())
        for batch in batches:
            follower.append_replicated(batch.data)
        follower.flush()
        follower.close()
        again, _ = load_log(fs, LogConfig(), recovery_point=None)
        assert again.log_end_offset == 6 and again.epochs.entries == [(1, 0), (3, 3)]

    def test_offset_gap_or_overlap_refused(self):
        """A batch that does not start at the log end offset is refused; nothing changes."""
        _, batches = leader_with([0, 0])
        follower = create_log(new_fs(), LogConfig())
        with pytest.raises(InvalidRecord, match="ends at 0"):
            follower.append_replicated(batches[1].data)
        follower.append_replicated(batches[0].data)
        with pytest.raises(InvalidRecord):
            follower.append_replicated(batches[0].data)
        assert follower.log_end_offset == 3

    def test_stale_epoch_refused(self):
        """A batch from an epoch older than the follower's latest is refused
        (FENCED_LEADER_EPOCH): a deposed leader's data never lands."""
        _, batches = leader_with([0])
        follower = create_log(new_fs(), LogConfig())
        follower.start_epoch(4)
        with pytest.raises(StaleEpoch) as raised:
            follower.append_replicated(batches[0].data)
        assert raised.value.error_code == 74 and follower.log_end_offset == 0

    def test_corrupt_batch_refused(self):
        """A batch whose CRC fails is refused."""
        _, batches = leader_with([0])
        damaged = bytearray(batches[0].data)
        damaged[-1] ^= 0xFF
        follower = create_log(new_fs(), LogConfig())
        with pytest.raises(CorruptRecord):
            follower.append_replicated(bytes(damaged))


class StartEpochTests:
    def test_new_leader_epoch_is_answered_before_any_write(self):
        """After start_epoch(7) at LEO 6, asking for epoch 5 (a follower's) answers the last
        epoch at or below it and 7's start, and epoch 7 answers the LEO."""
        leader, _ = leader_with([1, 3])
        leader.start_epoch(7)
        assert leader.epochs.end_offset_for(5, leader.log_end_offset) == (3, 6)
        assert leader.epochs.end_offset_for(7, leader.log_end_offset) == (7, 6)

    def test_empty_epochs_collapse(self):
        """Two epochs started without writes in between keep only the newer one."""
        leader, _ = leader_with([1])
        leader.start_epoch(2)
        leader.start_epoch(3)
        assert leader.epochs.entries == [(1, 0), (3, 3)]

    def test_truncating_at_the_end_drops_epochs_without_data(self):
        """A former leader that started an epoch but wrote nothing loses that epoch when it
        truncates at its log end offset to follow, so it can take older-epoch batches."""
        _, batches = leader_with([1, 1])
        replica = create_log(new_fs(), LogConfig())
        replica.start_epoch(2)
        replica.truncate_to(0)
        assert replica.epochs.entries == []
        replica.append_replicated(batches[0].data)
        assert replica.epochs.entries == [(1, 0)]

    def test_older_epoch_refused(self):
        """An epoch below the latest is StaleEpoch."""
        leader, _ = leader_with([4])
        with pytest.raises(StaleEpoch):
            leader.start_epoch(3)


class RestartAtTests:
    def test_an_empty_log_starts_over_at_the_leaders_log_start(self):
        """restart_at drops every segment and epoch; the log is empty at the new offset,
        takes the leader's batches from there, and a reload finds exactly that."""
        _, batches = leader_with([0, 0, 1, 1])
        fs = new_fs()
        follower = create_log(fs, LogConfig(segment_bytes=200))
        for batch in batches[:2]:
            follower.append_replicated(batch.data)
        follower.roll()
        follower.restart_at(9)
        assert (follower.log_start_offset, follower.log_end_offset) == (9, 9)
        assert follower.epochs.entries == [] and len(follower.segments) == 1
        info = follower.append_replicated(batches[3].data)
        assert (info.base_offset, follower.epochs.entries) == (9, [(1, 9)])
        follower.flush()
        follower.close()
        again, _ = load_log(fs, LogConfig(segment_bytes=200), recovery_point=None)
        assert (again.log_start_offset, again.log_end_offset) == (9, 12)
        assert again.read(9, 1 << 20).read() == batches[3].data
