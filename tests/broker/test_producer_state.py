"""ProducerStateManager: Kafka's idempotent-producer checks for one partition (duplicates of the
last 5 batches, sequence gaps, producer epochs, wrap-around), rebuilding from the log, expiry.

A ``MiniLeader`` stands in for a partition leader: it checks a batch, appends it to a list that
plays the log (assigning offsets) and records the stored header, as the broker does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmq.broker.producer_state import (
    DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    NUM_BATCHES_TO_RETAIN,
    BatchMetadata,
    ProducerStateManager,
    Verdict,
)
from tmq.protocol.errors import ErrorCode
from tmq.protocol.records import Record, RecordBatchHeader, build_batch, read_batch_header

INT32_MAX = 2**31 - 1
DAY = DEFAULT_PRODUCER_ID_EXPIRATION_MS
T0 = 1_700_000_000_000
OUT_OF_ORDER = ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def batch(
    producer_id: int,
    epoch: int,
    sequence: int,
    count: int = 1,
    *,
    base_offset: int = 0,
    timestamp: int = T0,
) -> RecordBatchHeader:
    """A client batch's header: ``count`` records from ``sequence`` on."""
    return RecordBatchHeader(
        base_offset=base_offset,
        batch_length=49 + 8 * count,
        partition_leader_epoch=-1,
        magic=2,
        crc=0,
        attributes=0,
        last_offset_delta=count - 1,
        base_timestamp=timestamp,
        max_timestamp=timestamp + count - 1,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
        records_count=count,
    )


@dataclass(frozen=True)
class Answer:
    """The part of a produce response the producer state decides."""

    error: ErrorCode
    base_offset: int = -1
    last_offset: int = -1
    duplicate: bool = False


@dataclass
class MiniLeader:
    """check -> append (offsets assigned) -> record, with a list as the log."""

    state: ProducerStateManager = field(default_factory=ProducerStateManager)
    log: list[RecordBatchHeader] = field(default_factory=list)

    @property
    def end_offset(self) -> int:
        return self.log[-1].last_offset + 1 if self.log else 0

    def produce(self, header: RecordBatchHeader, now_ms: int = T0) -> Answer:
        verdict = self.state.check(header, now_ms)
        if verdict.duplicate:
            return Answer(ErrorCode.NONE, verdict.base_offset, verdict.last_offset, True)
        if verdict.error != ErrorCode.NONE:
            return Answer(verdict.error)
        stored = header._replace(base_offset=self.end_offset)
        self.log.append(stored)
        self.state.record(stored, now_ms)
        return Answer(ErrorCode.NONE, stored.base_offset, stored.last_offset)


def without_activity(state: ProducerStateManager) -> dict[int, tuple[int, tuple]]:
    """The state as producer id -> (epoch, batches): what a rebuild must reproduce."""
    return {pid: (entry.epoch, entry.batches) for pid, entry in state.entries.items()}


class ProducerStateCheckTests:
    """The leader's verdicts on client batches."""

    def test_batches_without_producer_id_always_append(self):
        """A batch without a producer id is appended every time and leaves no state."""
        leader = MiniLeader()
        plain = batch(-1, -1, -1, 3)
        assert leader.produce(plain) == Answer(ErrorCode.NONE, 0, 2)
        assert leader.produce(plain) == Answer(ErrorCode.NONE, 3, 5)
        assert leader.state.entries == {}

    def test_in_order_batches_append(self):
        """Batches continuing the producer's sequence get consecutive offsets."""
        leader = MiniLeader()
        assert leader.produce(batch(7, 0, 0, 3)) == Answer(ErrorCode.NONE, 0, 2)
        assert leader.produce(batch(7, 0, 3, 2)) == Answer(ErrorCode.NONE, 3, 4)
        assert leader.produce(batch(7, 0, 5)) == Answer(ErrorCode.NONE, 5, 5)
        entry = leader.state.entries[7]
        assert (entry.epoch, entry.last_sequence) == (0, 5)
        assert entry.batches[0] == BatchMetadata(0, 2, 0, 2, T0 + 2)

    def test_duplicates_of_each_of_the_last_five_get_the_original_offsets(self):
        """A retry of any of the last 5 batches is answered with that batch's offsets and
        max timestamp, and nothing is appended."""
        leader = MiniLeader()
        sent = [batch(7, 0, 2 * i, 2, timestamp=T0 + i) for i in range(7)]
        answers = [leader.produce(header) for header in sent]
        for header, first in list(zip(sent, answers, strict=True))[-NUM_BATCHES_TO_RETAIN:]:
            verdict = leader.state.check(header, T0)
            assert verdict == Verdict(
                duplicate=True,
                base_offset=first.base_offset,
                last_offset=first.last_offset,
                max_timestamp=header.max_timestamp,
            )
            assert leader.produce(header) == Answer(
                ErrorCode.NONE, first.base_offset, first.last_offset, True
            )
        assert len(leader.log) == 7

    def test_retry_older_than_the_last_five_is_out_of_order(self):
        """Kafka keeps 5 batches: a retry of an older one is not recognised and, its sequence
        being behind, gets OUT_OF_ORDER_SEQUENCE_NUMBER."""
        leader = MiniLeader()
        sent = [batch(7, 0, i) for i in range(7)]
        for header in sent:
            leader.produce(header)
        for header in sent[:2]:
            assert leader.produce(header) == Answer(OUT_OF_ORDER)
        assert len(leader.log) == 7

    @pytest.mark.parametrize(
        ("sequence", "count"),
        [
            (4, 1),  # one sequence skipped
            (100, 1),  # far ahead
            (2, 1),  # behind: the sequence of a record inside the last batch
            (0, 2),  # overlaps retained batches without matching one exactly
        ],
    )
    def test_sequence_gap_or_overlap_is_out_of_order(self, sequence, count):
        """Only the next sequence or an exact retry is accepted; anything else is
        OUT_OF_ORDER_SEQUENCE_NUMBER and nothing is appended."""
        leader = MiniLeader()
        leader.produce(batch(7, 0, 0, 1))
        leader.produce(batch(7, 0, 1, 2))
        verdict = leader.state.check(batch(7, 0, sequence, count), T0)
        assert verdict.error == OUT_OF_ORDER
        assert "expected 3" in verdict.message
        assert len(leader.log) == 2

    def test_new_epoch_starting_at_zero_is_accepted(self):
        """A higher epoch starting at sequence 0 is appended and replaces the producer's
        batches; retries from the old epoch are then fenced."""
        leader = MiniLeader()
        old = batch(7, 0, 0)
        leader.produce(old)
        leader.produce(batch(7, 0, 1))
        assert leader.produce(batch(7, 1, 0, 2)) == Answer(ErrorCode.NONE, 2, 3)
        entry = leader.state.entries[7]
        assert (entry.epoch, entry.batches) == (1, (BatchMetadata(0, 1, 2, 3, T0 + 1),))
        assert leader.produce(old) == Answer(ErrorCode.INVALID_PRODUCER_EPOCH)
        assert leader.produce(batch(7, 1, 2)) == Answer(ErrorCode.NONE, 4, 4)

    def test_new_epoch_not_starting_at_zero_is_out_of_order(self):
        """A higher epoch must restart the sequence at 0."""
        leader = MiniLeader()
        leader.produce(batch(7, 0, 0))
        verdict = leader.state.check(batch(7, 1, 1), T0)
        assert verdict.error == OUT_OF_ORDER
        assert "new epoch 1" in verdict.message

    def test_stale_epoch_is_rejected(self):
        """An epoch below the producer's current one gets INVALID_PRODUCER_EPOCH, even when its
        sequence range matches a retained batch (duplicates are searched in the same epoch)."""
        leader = MiniLeader()
        leader.produce(batch(7, 3, 0))
        for header in (batch(7, 2, 1), batch(7, 2, 0), batch(7, -1, 1)):
            verdict = leader.state.check(header, T0)
            assert verdict.error == ErrorCode.INVALID_PRODUCER_EPOCH
            assert not verdict.duplicate

    def test_unknown_producer_accepts_any_first_sequence(self):
        """KIP-360 (Kafka >= 2.5): a producer id without state here is appended whatever its
        sequence (no UNKNOWN_PRODUCER_ID), and its sequence is checked from then on."""
        leader = MiniLeader()
        assert leader.produce(batch(7, 4, 42)) == Answer(ErrorCode.NONE, 0, 0)
        assert leader.produce(batch(7, 4, 44)) == Answer(OUT_OF_ORDER)
        assert leader.produce(batch(7, 4, 43)) == Answer(ErrorCode.NONE, 1, 1)

    def test_producer_id_without_sequence_is_invalid(self):
        """A producer id with base sequence -1 is an INVALID_RECORD, as in LogValidator."""
        verdict = ProducerStateManager().check(batch(7, 0, -1), T0)
        assert verdict.error == ErrorCode.INVALID_RECORD

    def test_batch_ending_at_int32_max_is_followed_by_zero(self):
        """Sequences wrap: after INT32_MAX comes 0, and INT32_MAX + 1 is never expected."""
        leader = MiniLeader()
        leader.produce(batch(7, 0, INT32_MAX - 1, 2))
        assert leader.state.entries[7].last_sequence == INT32_MAX
        assert leader.state.check(batch(7, 0, 1), T0).error == OUT_OF_ORDER
        assert leader.produce(batch(7, 0, 0)) == Answer(ErrorCode.NONE, 2, 2)

    def test_batch_across_int32_max_wraps(self):
        """A batch whose sequences run past INT32_MAX ends at a small sequence, is found again
        as a duplicate, and is followed by the next one."""
        leader = MiniLeader()
        across = batch(7, 0, INT32_MAX, 3)
        leader.produce(across)
        assert leader.state.entries[7].last_sequence == 1
        assert leader.produce(across) == Answer(ErrorCode.NONE, 0, 2, True)
        assert leader.produce(batch(7, 0, 0)) == Answer(OUT_OF_ORDER)
        assert leader.produce(batch(7, 0, 2)) == Answer(ErrorCode.NONE, 3, 3)

    def test_interleaved_producers_are_independent(self):
        """Each producer id has its own epoch, sequence and window of batches."""
        leader = MiniLeader()
        a0, b0, a1, b1 = batch(1, 0, 0), batch(2, 5, 10, 2), batch(1, 0, 1), batch(2, 5, 12)
        for header in (a0, b0, a1, b1):
            assert leader.produce(header).error == ErrorCode.NONE
        assert leader.produce(batch(1, 0, 3)) == Answer(OUT_OF_ORDER)
        assert leader.produce(b0) == Answer(ErrorCode.NONE, 1, 2, True)
        assert leader.produce(a0) == Answer(ErrorCode.NONE, 0, 0, True)
        assert leader.produce(batch(2, 5, 13)) == Answer(ErrorCode.NONE, 5, 5)
        assert leader.produce(batch(1, 0, 2)) == Answer(ErrorCode.NONE, 6, 6)

    def test_producer_without_epoch_gets_no_sequence_checks(self):
        """As in Kafka, a producer id whose batches carry no epoch (-1) is not sequence-checked;
        exact retries are still duplicates."""
        leader = MiniLeader()
        first = batch(7, -1, 5)
        leader.produce(first)
        assert leader.produce(batch(7, -1, 50)) == Answer(ErrorCode.NONE, 1, 1)
        assert leader.produce(first) == Answer(ErrorCode.NONE, 0, 0, True)
        assert leader.produce(batch(7, 0, 9)) == Answer(ErrorCode.NONE, 2, 2)

    def test_check_changes_nothing(self):
        """check only answers: the state is the same after any verdict."""
        leader = MiniLeader()
        leader.produce(batch(7, 0, 0))
        before = dict(leader.state.entries)
        for header in (batch(7, 0, 1), batch(7, 0, 0), batch(7, 0, 9), batch(7, 1, 0)):
            leader.state.check(header, T0 + 1)
        assert dict(leader.state.entries) == before

    def test_headers_of_real_batches(self):
        """Headers read from built batches carry what the checks need (producer fields, the
        last offset delta and the wrapped last sequence)."""
        records = [Record(i, i, None, b"v") for i in range(3)]

        def header(sequence: int) -> RecordBatchHeader:
            data = build_batch(
                records,
                base_timestamp=T0,
                producer_id=11,
                producer_epoch=2,
                base_sequence=sequence,
            )
            return read_batch_header(data)

        leader = MiniLeader()
        assert leader.produce(header(INT32_MAX - 1)) == Answer(ErrorCode.NONE, 0, 2)
        assert leader.state.entries[11].batches == (BatchMetadata(INT32_MAX - 1, 0, 0, 2, T0 + 2),)
        assert leader.produce(header(INT32_MAX - 1)).duplicate
        assert leader.produce(header(1)) == Answer(ErrorCode.NONE, 3, 5)


class ProducerStateReplicationTests:
    """Followers record what they append, so a new leader deduplicates retries."""

    def test_new_leader_deduplicates_a_retry_after_failover(self):
        """A batch the old leader appended and replicated, whose response the producer never
        got, is answered by the new leader with the original offsets."""
        old, follower = MiniLeader(), ProducerStateManager()
        sent = [batch(7, 0, 0, 2), batch(7, 0, 2), batch(3, 0, 0)]
        for header in sent:
            old.produce(header)
        for stored in old.log:
            follower.record(stored, T0)
        new = MiniLeader(follower, list(old.log))
        assert new.produce(sent[1]) == Answer(ErrorCode.NONE, 2, 2, True)
        assert new.produce(batch(7, 0, 3)) == Answer(ErrorCode.NONE, 4, 4)

    def test_record_trusts_the_batch(self):
        """record applies a batch unchecked, as Kafka's replication path does: a gap moves the
        sequence on and any other epoch becomes the producer's epoch."""
        state = ProducerStateManager()
        state.record(batch(7, 2, 0, base_offset=0), T0)
        state.record(batch(7, 2, 9, base_offset=1), T0)
        assert state.entries[7].last_sequence == 9
        state.record(batch(7, 1, 4, base_offset=2), T0)
        assert state.entries[7] == (1, (BatchMetadata(4, 4, 2, 2, T0),), T0)

    def test_window_keeps_the_last_five_batches(self):
        """Recording a sixth batch of the same epoch drops the oldest."""
        state = ProducerStateManager()
        for i in range(NUM_BATCHES_TO_RETAIN + 1):
            state.record(batch(7, 0, i, base_offset=i), T0)
        assert [b.base_sequence for b in state.entries[7].batches] == [1, 2, 3, 4, 5]


class ProducerStateRebuildTests:
    """rebuild gives the state that recording the log's batches gave."""

    def test_rebuild_reproduces_the_state(self):
        """Rebuilding from the log's headers gives the same entries and the same verdicts;
        batches without a producer id leave no state."""
        leader = MiniLeader()
        for i in range(8):
            leader.produce(batch(1, 0, i))
            leader.produce(batch(-1, -1, -1))
            leader.produce(batch(2, 0, 2 * i, 2))
        leader.produce(batch(2, 1, 0))
        rebuilt = ProducerStateManager()
        rebuilt.rebuild(iter(leader.log), T0)
        assert rebuilt.entries == leader.state.entries
        for header in (batch(1, 0, 4), batch(1, 0, 2), batch(1, 0, 8), batch(2, 0, 14, 2)):
            assert rebuilt.check(header, T0) == leader.state.check(header, T0)

    def test_rebuild_replaces_the_previous_state(self):
        """Producers the headers do not mention are forgotten; a truncated log rebuilds the
        state the shorter log had."""
        leader = MiniLeader()
        leader.produce(batch(1, 0, 0))
        leader.produce(batch(1, 0, 1))
        kept = without_activity(leader.state)
        leader.produce(batch(1, 1, 0))
        leader.produce(batch(2, 0, 0))
        leader.state.rebuild(leader.log[:2], T0)
        assert without_activity(leader.state) == kept

    def test_rebuilt_producers_are_active_at_rebuild_time(self):
        """The log stores no append times: every rebuilt producer counts as active at the
        rebuild's now_ms, whatever its batches' timestamps."""
        state = ProducerStateManager()
        state.rebuild([batch(7, 0, 0, timestamp=0)], T0)
        assert state.entries[7].last_activity_ms == T0
        assert state.remove_expired(T0 + DAY - 1) == 0


@dataclass
class Client:
    """A simulated idempotent producer: its id, epoch, next sequence and what it sent."""

    producer_id: int
    epoch: int
    next_sequence: int
    sent: list[RecordBatchHeader] = field(default_factory=list)


ACTIONS = ("next", "next", "next", "retry", "retry", "bump", "gap", "stale")
operations = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(ACTIONS), st.integers(1, 3), st.integers(1, 8)),
    max_size=60,
)


def client_batch(client: Client, action: str, n: int, back: int) -> RecordBatchHeader:
    """The batch ``client`` sends for ``action``: ``n`` records (or a gap of ``n``), or the
    retry of the batch it sent ``back`` batches ago (the first one if it sent fewer)."""
    if action == "retry" and client.sent:
        return client.sent[-min(back, len(client.sent))]
    if action == "bump":
        client.epoch += 1
        client.next_sequence = 0
    sequence = client.next_sequence
    if action == "gap":
        sequence = (sequence + n) % (INT32_MAX + 1)
    epoch = client.epoch - 1 if action == "stale" else client.epoch
    return batch(client.producer_id, epoch, sequence, n)


def window(log: list[RecordBatchHeader], producer_id: int) -> list[RecordBatchHeader]:
    """The producer's last 5 stored batches of its latest epoch, from the log alone."""
    mine = [header for header in log if header.producer_id == producer_id]
    if not mine:
        return []
    epoch = mine[-1].producer_epoch
    current = [header for header in mine if header.producer_epoch == epoch]
    return current[-NUM_BATCHES_TO_RETAIN:]


class ProducerStateWorkloadTests:
    """Random workloads of several producers: retries, gaps, epoch bumps, stale epochs and
    sequences near INT32_MAX."""

    @settings(max_examples=200, deadline=None)
    @given(
        ops=operations,
        starts=st.lists(st.sampled_from([0, 17, INT32_MAX - 3]), min_size=3, max_size=3),
    )
    def test_duplicates_and_sequences(self, ops, starts):
        """A batch is a duplicate exactly when it matches one of its producer's last 5 stored
        batches of the current epoch (and then gets its offsets); the log holds each producer
        epoch's sequences once and in order."""
        leader = MiniLeader()
        clients = [Client(pid, 1, start) for pid, start in zip((10, 20, 30), starts, strict=True)]
        for index, action, n, back in ops:
            client = clients[index]
            header = client_batch(client, action, n, back)
            matches = [
                stored
                for stored in window(leader.log, client.producer_id)
                if (stored.producer_epoch, stored.base_sequence, stored.last_sequence)
                == (header.producer_epoch, header.base_sequence, header.last_sequence)
            ]
            answer = leader.produce(header)
            if matches:
                (stored,) = matches
                assert answer == Answer(
                    ErrorCode.NONE, stored.base_offset, stored.last_offset, True
                )
            else:
                assert not answer.duplicate
            if answer.error == ErrorCode.NONE and not answer.duplicate:
                client.next_sequence = (header.last_sequence + 1) % (INT32_MAX + 1)
            client.sent.append(header)
        previous: dict[tuple[int, int], RecordBatchHeader] = {}
        for stored in leader.log:
            key = (stored.producer_id, stored.producer_epoch)
            if key in previous:
                expected = (previous[key].last_sequence + 1) % (INT32_MAX + 1)
                assert stored.base_sequence == expected
            previous[key] = stored

    @settings(max_examples=200, deadline=None)
    @given(ops=operations, cut=st.integers(0, 60))
    def test_rebuild_equals_incremental_state(self, ops, cut):
        """Rebuilding from the log (or from a truncated prefix of it) gives the state recorded
        incrementally up to there, and the same verdict for every batch ever sent."""
        leader = MiniLeader()
        clients = [Client(pid, 1, 0) for pid in (10, 20, 30)]
        states_by_length = {0: {}}
        now = T0
        for index, action, n, back in ops:
            now += 1000
            header = client_batch(clients[index], action, n, back)
            answer = leader.produce(header, now)
            if answer.error == ErrorCode.NONE and not answer.duplicate:
                clients[index].next_sequence = (header.last_sequence + 1) % (INT32_MAX + 1)
                states_by_length[len(leader.log)] = without_activity(leader.state)
            clients[index].sent.append(header)

        rebuilt = ProducerStateManager()
        rebuilt.rebuild(leader.log, now)
        assert without_activity(rebuilt) == without_activity(leader.state)
        probes = [header for client in clients for header in client.sent]
        probes += [batch(c.producer_id, c.epoch, c.next_sequence) for c in clients]
        for header in probes:
            assert rebuilt.check(header, now) == leader.state.check(header, now)

        cut = min(cut, len(leader.log))
        rebuilt.rebuild(leader.log[:cut], now)
        assert without_activity(rebuilt) == states_by_length[cut]


class ProducerStateExpiryTests:
    """Producers inactive for producer.id.expiration.ms are forgotten (injected clock)."""

    def test_inactive_producers_expire(self):
        """remove_expired drops producers whose last batch is expiration_ms old or older."""
        state = ProducerStateManager()
        state.record(batch(1, 0, 0), T0)
        state.record(batch(2, 0, 0), T0 + 1)
        assert state.remove_expired(T0 + DAY - 1) == 0
        assert state.remove_expired(T0 + DAY) == 1
        assert list(state.entries) == [2]

    def test_activity_is_the_last_record(self):
        """Each recorded batch restarts the producer's inactivity clock."""
        state = ProducerStateManager()
        state.record(batch(1, 0, 0), T0)
        state.record(batch(1, 0, 1, base_offset=1), T0 + 5000)
        assert state.remove_expired(T0 + DAY) == 0
        assert state.remove_expired(T0 + DAY + 5000) == 1

    def test_expired_producer_is_unknown_before_the_sweep(self):
        """Once expired, a producer is unknown to check and record even if remove_expired has
        not run: any sequence is appended and a new entry starts."""
        leader = MiniLeader(ProducerStateManager(expiration_ms=60_000))
        last = batch(7, 0, 0)
        leader.produce(last, T0)
        assert leader.produce(last, T0 + 59_999).duplicate
        assert leader.produce(last, T0 + 60_000) == Answer(ErrorCode.NONE, 1, 1)
        assert leader.state.entries[7].batches == (BatchMetadata(0, 0, 1, 1, T0),)
        assert leader.produce(batch(7, 0, 9), T0 + 200_000) == Answer(ErrorCode.NONE, 2, 2)

    def test_expiration_must_be_positive(self):
        """A zero or negative expiration is a configuration error."""
        with pytest.raises(ValueError):
            ProducerStateManager(expiration_ms=0)
