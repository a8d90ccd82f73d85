"""``FollowerPartition`` (the follower's side of the replication stream) and the leader's
``divergence`` check: epochs fenced both ways, no push before the subscription settles, the
high watermark bounded by the follower's log, and the idempotent-producer state a follower
carries into its own leadership."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from tmq.broker.producer_state import ProducerStateManager
from tmq.protocol.errors import ErrorCode
from tmq.protocol.records import Record, build_batch, read_batch_header
from tmq.replication.follower import FollowerPartition, StaleLeader
from tmq.replication.leader import divergence
from tmq.storage.config import LogConfig
from tmq.storage.log import PartitionLog
from tmq.storage.memory_fs import MemoryFileSystem

NOW = 1_700_000_000_000


class Answer(NamedTuple):
    leader_epoch: int
    diverging: bool
    diverging_epoch: int
    diverging_end_offset: int
    high_watermark: int


def new_log(name: str = "t-0") -> PartitionLog:
    fs = MemoryFileSystem()
    fs.makedirs("/data")
    return PartitionLog.create(fs, f"/data/{name}", "t", 0, LogConfig(), lambda: NOW)


def batch(*values: bytes, producer_id: int = -1, sequence: int = -1) -> bytes:
    records = [Record(i, 0, None, v, ()) for i, v in enumerate(values)]
    return build_batch(
        records,
        base_timestamp=NOW,
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=sequence,
    )


def follower(log: PartitionLog, epoch: int = 3, hw: int = 0) -> FollowerPartition:
    return FollowerPartition(
        "t", 0, log, leader_id=1, leader_epoch=epoch, high_watermark=hw,
        producers=ProducerStateManager(), clock_ms=lambda: NOW,
    )  # fmt: skip


def settled(partition: FollowerPartition, epoch: int = 3, hw: int = 0) -> FollowerPartition:
    assert partition.on_subscribed(Answer(epoch, False, -1, -1, hw))
    return partition


class DivergenceTests:
    def test_prefix_needs_no_truncation(self):
        """A follower whose last epoch the leader has, ending at or after the follower's
        offset, holds a prefix: the leader pushes from there."""
        leader = new_log()
        leader.append(batch(b"a", b"b"), leader_epoch=1)
        leader.append(batch(b"c"), leader_epoch=2)
        assert divergence(leader.epochs, 3, fetch_offset=2, last_fetched_epoch=1) is None
        assert divergence(leader.epochs, 3, fetch_offset=3, last_fetched_epoch=2) is None
        assert divergence(leader.epochs, 3, fetch_offset=0, last_fetched_epoch=-1) is None

    def test_longer_epoch_or_unknown_epoch_diverges(self):
        """A follower past the end of its epoch on the leader, or with an epoch the leader
        never had, gets the leader's floor epoch and its end."""
        leader = new_log()
        leader.append(batch(b"a", b"b"), leader_epoch=1)
        leader.append(batch(b"c"), leader_epoch=4)
        assert divergence(leader.epochs, 3, fetch_offset=3, last_fetched_epoch=1) == (1, 2)
        assert divergence(leader.epochs, 3, fetch_offset=3, last_fetched_epoch=3) == (1, 2)
        assert divergence(leader.epochs, 3, fetch_offset=9, last_fetched_epoch=-1) == (-1, -1)


class FollowerPartitionTests:
    def test_subscription_names_where_the_log_stands(self):
        """The subscription carries the LEO and the epoch of the last batch."""
        log = new_log()
        log.append(batch(b"a"), leader_epoch=2)
        assert follower(log).subscription() == {
            "topic": "t",
            "partition": 0,
            "current_leader_epoch": 3,
            "fetch_offset": 1,
            "last_fetched_epoch": 2,
        }

    def test_pushes_append_and_the_hw_stays_within_the_log(self):
        """Pushed batches are appended as they are; the HW learned is never above the LEO."""
        leader = new_log("l-0")
        leader.start_epoch(3)
        leader.append(batch(b"a", b"b"), leader_epoch=3)
        partition = settled(follower(new_log()))
        assert partition.on_push(3, 5, leader.read(0, 1 << 20).read()) == 2
        assert partition.high_watermark == 2
        assert partition.on_push(3, 1, b"") == 2 and partition.high_watermark == 2

    @pytest.mark.parametrize(
        ("epoch", "code"),
        [(2, ErrorCode.FENCED_LEADER_EPOCH), (4, ErrorCode.UNKNOWN_LEADER_EPOCH)],
    )
    def test_other_epochs_are_refused(self, epoch, code):
        """A push or an answer from another epoch is refused, nothing appended."""
        partition = settled(follower(new_log()))
        with pytest.raises(StaleLeader) as raised:
            partition.on_push(epoch, 0, batch(b"x"))
        assert raised.value.error_code == code and partition.log.log_end_offset == 0
        with pytest.raises(StaleLeader):
            partition.on_subscribed(Answer(epoch, False, -1, -1, 0))

    def test_no_push_before_the_subscription_settles(self):
        """Until an answer without divergence, pushes are refused."""
        partition = follower(new_log())
        with pytest.raises(StaleLeader) as raised:
            partition.on_push(3, 0, b"")
        assert raised.value.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER

    def test_divergence_truncates_and_asks_again(self):
        """A diverging answer truncates by it and leaves the follower subscribing."""
        log = new_log()
        log.append(batch(b"a", b"b"), leader_epoch=1)
        log.append(batch(b"x"), leader_epoch=2)
        partition = follower(log, hw=1)
        assert not partition.on_subscribed(Answer(3, True, 1, 2, 1))
        assert log.log_end_offset == 2 and partition.high_watermark == 1
        assert partition.subscription()["last_fetched_epoch"] == 1

    def test_producer_state_follows_the_log(self):
        """A follower records the producers of what it appends, so as the next leader it
        recognises a retry; truncation forgets what it cut."""
        leader = new_log("l-0")
        leader.start_epoch(3)
        leader.append(batch(b"a", producer_id=7, sequence=0), leader_epoch=3)
        leader.append(batch(b"b", producer_id=7, sequence=1), leader_epoch=3)
        log = new_log()
        partition = settled(follower(log))
        partition.on_push(3, 0, leader.read(0, 1 << 20).read())
        retry = read_batch_header(batch(b"b", producer_id=7, sequence=1))
        assert partition.producers.check(retry, NOW).duplicate
        partition.following = False
        partition.on_subscribed(Answer(3, True, 3, 1, 0))  # the leader's epoch 3 ends at 1
        assert log.log_end_offset == 1
        assert not partition.producers.check(retry, NOW).duplicate
