"""Follower truncation (``tmq.replication.follower.plan_truncation``) over real partition logs
on memory file systems: the KIP-101 and KIP-279 scenarios of kafka-notes §4.4 (F6, F7, F9),
whose timing real processes cannot force, end with converged logs; and a property run of
random failovers, writes and crashes keeps every acknowledged value and converges.

The harness replicates the way DESIGN §4 does: ``truncate`` runs rounds of
OffsetForLeaderEpoch against the leader's epoch cache (``plan_truncation`` alone, for the
scenario tests' exact plans), ``catch_up`` appends the leader's batches byte for byte
(``append_replicated``), and ``follow`` runs the stream's own state machines end to end (the
leader's ``divergence`` check, ``FollowerPartition``'s subscription and pushes); a new leader
starts its epoch (``start_epoch``) and stamps it on what it appends. A crash keeps what was
fsynced and loses the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from tmq.broker.producer_state import ProducerStateManager
from tmq.protocol.records import Record, build_batch, decode_batch, read_batch_header
from tmq.replication.follower import FollowerPartition, Truncation, plan_truncation
from tmq.replication.leader import divergence
from tmq.storage.config import LogConfig
from tmq.storage.leader_epoch import UNDEFINED_EPOCH, UNDEFINED_OFFSET
from tmq.storage.log import PartitionLog
from tmq.storage.memory_fs import MemoryFileSystem

DIRECTORY = "/data/t-0"


def _clock() -> int:
    return 1_700_000_000_000


@dataclass
class Replica:
    name: str
    fs: MemoryFileSystem = field(default_factory=MemoryFileSystem)
    log: PartitionLog | None = None
    hw: int = 0

    def __post_init__(self):
        self.fs.makedirs("/data")
        self.fs.fsync_dir("/")
        self.log = PartitionLog.create(self.fs, DIRECTORY, "t", 0, LogConfig(), _clock)

    @property
    def leo(self) -> int:
        return self.log.log_end_offset

    def write(self, epoch: int, *values: bytes) -> int:
        """Append one batch of ``values`` as leader of ``epoch``; its base offset."""
        records = [Record(i, 0, None, value, ()) for i, value in enumerate(values)]
        return self.log.append(build_batch(records, base_timestamp=_clock()), leader_epoch=epoch)

    def flush(self) -> None:
        self.log.flush()

    def crash(self) -> None:
        """Lose everything not fsynced, then recover the log as a restart does."""
        self.fs.crash()
        self.log, _ = PartitionLog.load(
            self.fs, DIRECTORY, "t", 0, LogConfig(), _clock, recovery_point=0
        )
        self.hw = min(self.hw, self.leo)

    def values(self, end: int | None = None) -> list[tuple[int, bytes]]:
        """(offset, value) of every record below ``end`` (default: the LEO)."""
        end = self.leo if end is None else end
        found = []
        offset = self.log.log_start_offset
        while offset < end:
            read = self.log.read(offset, 1 << 20, max_offset=end)
            if read is None:
                break
            data = read.read()
            for batch in _batches(data):
                header, records = decode_batch(batch)
                for record in records:
                    if header.base_offset + record.offset_delta < end:
                        found.append((header.base_offset + record.offset_delta, record.value))
                offset = header.last_offset + 1
        return found

    def crcs(self, end: int) -> list[int]:
        """The CRC of every batch wholly below ``end``."""
        read = self.log.read(self.log.log_start_offset, 1 << 30, max_offset=end)
        if read is None:
            return []
        return [read_batch_header(b).crc for b in _batches(read.read())]


def _batches(data: bytes):
    position = 0
    while position < len(data):
        header = read_batch_header(data[position:])
        yield data[position : position + header.size]
        position += header.size


def become_leader(replica: Replica, epoch: int) -> None:
    replica.log.start_epoch(epoch)


def truncate(follower: Replica, leader: Replica) -> list[Truncation]:
    """The OffsetForLeaderEpoch rounds; the plans made."""
    plans = []
    while True:
        asked = follower.log.epochs.latest_epoch
        if asked == UNDEFINED_EPOCH:
            answer = (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
        else:
            answer = leader.log.epochs.end_offset_for(asked, leader.leo)
        plan = plan_truncation(follower.log.epochs, follower.leo, follower.hw, *answer)
        plans.append(plan)
        follower.log.truncate_to(plan.offset)
        follower.hw = min(follower.hw, follower.leo)
        if plan.done:
            return plans
        assert len(plans) < 100, "truncation does not converge"


def catch_up(follower: Replica, leader: Replica, upto: int | None = None) -> None:
    """Copy the leader's batches from the follower's LEO (up to offset ``upto``), then learn
    the leader's HW."""
    end = leader.leo if upto is None else upto
    while follower.leo < end:
        read = leader.log.read(follower.leo, 1 << 20, max_offset=end)
        if read is None:
            break
        for batch in _batches(read.read()):
            follower.log.append_replicated(batch)
    follower.hw = min(leader.hw, follower.leo)


class _Answer(NamedTuple):
    """A ReplicaSubscribe answer for one partition (the fields the follower reads)."""

    leader_epoch: int
    diverging: bool
    diverging_epoch: int
    diverging_end_offset: int
    high_watermark: int


def follow(follower: Replica, leader: Replica) -> None:
    """The replication stream's state machines end to end: the follower subscribes until the
    leader sees no divergence (``divergence``, ``FollowerPartition.on_subscribed``), then
    takes the leader's batches as pushes (``on_push``) and learns the HW."""
    epoch = leader.log.epochs.latest_epoch
    partition = FollowerPartition(
        "t", 0, follower.log, leader_id=0, leader_epoch=epoch, high_watermark=follower.hw,
        producers=ProducerStateManager(), clock_ms=_clock,
    )  # fmt: skip
    for _ in range(100):
        wanted = partition.subscription()
        found = divergence(
            leader.log.epochs, leader.leo, wanted["fetch_offset"], wanted["last_fetched_epoch"]
        )
        diverging_epoch, end = found if found is not None else (-1, -1)
        answer = _Answer(epoch, found is not None, diverging_epoch, end, leader.hw)
        if partition.on_subscribed(answer):
            break
    else:
        raise AssertionError("the subscription does not settle")
    while follower.leo < leader.leo:
        read = leader.log.read(follower.leo, 1 << 20)
        partition.on_push(epoch, leader.hw, read.read())
    follower.hw = partition.high_watermark


def assert_converged(*replicas: Replica) -> None:
    first = replicas[0]
    for other in replicas[1:]:
        assert other.leo == first.leo, (other.name, other.leo, first.leo)
        assert other.crcs(first.leo) == first.crcs(first.leo)
        assert _written_epochs(other) == _written_epochs(first)


def _written_epochs(replica: Replica) -> list[tuple[int, int]]:
    """The epoch entries that have data (a leader's epoch that wrote nothing yet has an
    entry at its LEO that a follower, which learns epochs from batches, cannot have)."""
    return [(e, start) for e, start in replica.log.epochs.entries if start < replica.leo]


class KipScenarioTests:
    def test_f6_kip101_follower_restart_before_hw_then_leader_dies(self):
        """KIP-101 scenario 1: B (follower) has m2 but not yet the HW that covers it; B
        restarts, then A (leader) dies and B leads. m2 was acknowledged and must survive:
        the follower truncates by epoch, not to its HW."""
        a, b = Replica("a"), Replica("b")
        become_leader(a, 0)
        a.write(0, b"m1")
        follow(b, a)
        a.hw = 1
        a.write(0, b"m2")
        catch_up(b, a)  # B has m2; the HW it learned still says 1
        a.hw = 2  # acks=all: both have m2, m2 is acknowledged
        assert b.hw == 1
        a.flush()
        b.flush()
        b.crash()
        truncate(b, a)  # B rejoins A: epoch 0 is shared up to A's LEO
        assert b.leo == 2
        # A dies; B leads epoch 1
        become_leader(b, 1)
        assert b.values() == [(0, b"m1"), (1, b"m2")]

    def test_f7_divergent_logs_after_both_crash(self):
        """KIP-101 scenario 2 (shouldNotAllowDivergentLogs): both crash with unflushed tails
        of different lengths; the first back leads and writes at offsets the other still
        holds with different content; the other truncates by epoch and converges."""
        a, b = Replica("a"), Replica("b")
        become_leader(a, 0)
        a.write(0, b"m1")
        follow(b, a)
        a.flush()
        b.flush()
        a.write(0, b"a2", b"a3")
        catch_up(b, a)
        b.flush()  # b keeps a2,a3; a loses them
        a.crash()
        b.crash()
        assert (a.leo, b.leo) == (1, 3)
        become_leader(a, 1)
        a.write(1, b"n2")
        a.write(1, b"n3", b"n4")
        plans = truncate(b, a)
        assert plans[-1] == Truncation(1, True)
        catch_up(b, a)
        assert_converged(a, b)
        assert b.values() == [(0, b"m1"), (1, b"n2"), (2, b"n3"), (3, b"n4")]

    def test_f9_kip279_fast_double_failover(self):
        """KIP-279: A leads epoch 0 (m1, m2); B has only m1 and leads epoch 1, writing m3 at
        offset 1; A leads again at epoch 2. B asks for epoch 1, which A never saw: A answers
        epoch 0 ending at 2, B's epoch 0 ends at 1, so B cuts m3 and copies m2."""
        a, b = Replica("a"), Replica("b")
        become_leader(a, 0)
        a.write(0, b"m1")
        follow(b, a)
        a.write(0, b"m2")
        become_leader(b, 1)
        b.write(1, b"m3")
        become_leader(a, 2)
        plans = truncate(b, a)
        assert plans == [Truncation(1, True)]
        catch_up(b, a)
        assert_converged(a, b)
        assert b.values() == [(0, b"m1"), (1, b"m2")]

    def test_f9_follower_with_epochs_the_leader_never_saw(self):
        """Several epochs the leader never saw take several rounds, each cutting back to an
        older shared epoch, until the logs agree."""
        a, b = Replica("a"), Replica("b")
        become_leader(a, 0)
        a.write(0, b"m1", b"m2")
        follow(b, a)
        for epoch in (1, 2, 3):  # B alone through three epochs
            become_leader(b, epoch)
            b.write(epoch, b"b%d" % epoch)
        become_leader(a, 4)
        a.write(4, b"a4")
        plans = truncate(b, a)
        assert plans[-1].done and b.leo == 2
        catch_up(b, a)
        assert_converged(a, b)

    def test_follower_missing_the_epoch_the_leader_answers(self):
        """The leader answers epoch 2, which B never saw (B went from 0 to 3): B cuts back to
        the end of its epoch 0 and asks again, instead of keeping its epoch-3 record at an
        offset where the leader holds epoch 2's."""
        a, b, c = Replica("a"), Replica("b"), Replica("c")
        become_leader(a, 0)
        a.write(0, b"m1")
        follow(b, a)
        follow(c, a)
        become_leader(c, 2)
        c.write(2, b"c2")
        follow(a, c)
        become_leader(b, 3)
        b.write(3, b"b3")
        become_leader(a, 5)
        a.write(5, b"a5")
        assert truncate(b, a) == [Truncation(1, False), Truncation(1, True)]
        catch_up(b, a)
        assert_converged(a, b)
        assert b.values() == [(0, b"m1"), (1, b"c2"), (2, b"a5")]

    def test_leader_with_empty_log_and_follower_without_epochs(self):
        """An empty follower needs no truncation; a follower's data from epochs older than
        anything the leader has shares nothing and is cut to the start."""
        a, b = Replica("a"), Replica("b")
        become_leader(a, 3)
        assert truncate(b, a) == [Truncation(0, True)]
        c = Replica("c")
        become_leader(c, 1)
        c.write(1, b"old")
        assert truncate(c, a)[-1] == Truncation(0, True) and c.leo == 0


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 3)),
        st.tuples(st.just("replicate"), st.integers(0, 2)),
        st.tuples(st.just("flush"), st.integers(0, 2)),
        st.tuples(st.just("commit"), st.just(0)),
        st.tuples(st.just("crash"), st.integers(0, 2)),
        st.tuples(st.just("failover"), st.integers(0, 2)),
    ),
    max_size=50,
)


class RandomFailoverTests:
    @settings(max_examples=300, deadline=None)
    @given(ACTIONS)
    def test_clean_failovers_keep_acknowledged_values_and_converge(self, actions):
        """Three replicas, acks=all, min.insync.replicas=2, flush.policy=always on followers
        (a follower fsyncs before it reports its log end offset). The leader's high watermark
        is the smallest durable log end offset of the ISR, counted only once every ISR member
        has reported in the current epoch. A dead broker leaves the ISR; a crashed leader
        gives way to the first other ISR member (itself only if it stands alone), and a
        voluntary failover picks any ISR member; each new leader starts a new epoch.
        Unacknowledged writes, replication, leader flushes, commits, crashes and failovers in
        any order: every acknowledged value stays at its offset on the leader, and once all
        follow the last leader the logs are identical, batch CRCs and epochs alike."""
        replicas = {name: Replica(name) for name in "abc"}
        leader, epoch = replicas["a"], 0
        become_leader(leader, epoch)
        isr = {"a"}
        reported = {"a"}  # ISR members that followed the current leader
        acknowledged: dict[int, bytes] = {}
        counter = 0

        def elect(new_leader: Replica, new_isr: set[str]) -> None:
            nonlocal leader, epoch, isr, reported
            epoch += 1
            leader, isr, reported = new_leader, new_isr, {new_leader.name}
            become_leader(leader, epoch)

        for action, argument in actions:
            chosen = replicas["abc"[argument % 3]]  # (a write's argument is a count)
            if action == "write":
                leader.write(epoch, *[b"v%d" % (counter + i) for i in range(argument)])
                counter += argument
            elif action == "replicate" and chosen is not leader:
                follow(chosen, leader)
                chosen.flush()
                reported.add(chosen.name)
                isr.add(chosen.name)  # caught up to the leader's LEO: it may join
            elif action == "flush":
                leader.flush()
            elif action == "commit" and len(isr) >= 2 and isr <= reported:
                hw = min(replicas[name].log.durable_offset for name in isr)
                leader.hw = max(leader.hw, hw)
                for offset, value in leader.values(leader.hw):
                    acknowledged.setdefault(offset, value)
            elif action == "crash":
                chosen.crash()
                if chosen is leader:
                    others = sorted(isr - {chosen.name})
                    if others:
                        elect(replicas[others[0]], isr - {chosen.name})
                    else:  # the last replica standing comes back as leader
                        elect(chosen, {chosen.name})
                else:
                    isr.discard(chosen.name)
                    reported.discard(chosen.name)
            elif action == "failover" and chosen is not leader and chosen.name in isr:
                elect(chosen, set(isr))
            have = dict(leader.values())
            for offset, value in acknowledged.items():
                assert have.get(offset) == value, (offset, value)
        for replica in replicas.values():
            if replica is not leader:
                follow(replica, leader)
        assert_converged(leader, *[r for r in replicas.values() if r is not leader])
