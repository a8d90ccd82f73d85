"""The invariant checker (``invariants.py``) on hand-made runs: each invariant holds on a clean
run and is reported, under its own id, when the run breaks it."""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import pytest
from invariants import (
    ACKED,
    FAILED,
    INDETERMINATE,
    Ack,
    Attempt,
    Batch,
    Read,
    ReplicaLog,
    ValueId,
    Violation,
    assert_invariants,
    check,
    make_value,
    parse_value,
    replica_log_from_disk,
)

from tmq.protocol.records import Record, build_batch, read_batch_header

BROKERS = (1, 2, 3)


def fake_crc(values: list[bytes | None], epoch: int) -> int:
    """A stand-in for a batch CRC: any function of the batch's content will do."""
    return zlib.crc32(b"|".join(v or b"" for v in values) + b"%d" % epoch)


def replica_log(
    broker: int,
    partition: int,
    values: list[bytes | None],
    *,
    start: int = 0,
    batch_size: int = 2,
    epochs: list[int] | None = None,
) -> ReplicaLog:
    """A replica's log holding ``values`` from offset ``start``, in batches of ``batch_size``
    records; ``epochs`` gives each batch's leader epoch (default 0)."""
    batches = []
    for number, first in enumerate(range(0, len(values), batch_size)):
        chunk = values[first : first + batch_size]
        epoch = epochs[number] if epochs else 0
        batches.append(
            Batch(start + first, start + first + len(chunk) - 1, fake_crc(chunk, epoch), epoch)
        )
    records = [(start + index, value) for index, value in enumerate(values)]
    return ReplicaLog(broker, partition, batches, records)


@dataclasses.dataclass
class Run:
    """Everything ``check`` takes, consistent until a test breaks it."""

    attempts: list[Attempt]
    acks: list[Ack]
    reads: list[Read]
    replica_logs: list[ReplicaLog]
    hws: dict[int, int]

    def violations(self, **options) -> list[Violation]:
        return check(self.acks, self.attempts, self.reads, self.replica_logs, self.hws, **options)

    def ids(self, **options) -> set[str]:
        return {violation.invariant for violation in self.violations(**options)}

    def set_log(self, partition: int, values: list[bytes | None], **layout) -> None:
        """Every replica and the leader read of ``partition`` now hold ``values``; the high
        watermark is their end."""
        start = layout.get("start", 0)
        self.reads = [r for r in self.reads if r.partition != partition] + [
            Read(partition, start + i, value) for i, value in enumerate(values)
        ]
        self.replica_logs = [log for log in self.replica_logs if log.partition != partition] + [
            replica_log(broker, partition, values, **layout) for broker in BROKERS
        ]
        self.hws[partition] = start + len(values)

    def set_replica(self, log: ReplicaLog) -> None:
        """Replace one broker's log of one partition."""
        self.replica_logs = [
            other
            for other in self.replica_logs
            if (other.broker_id, other.partition) != (log.broker_id, log.partition)
        ] + [log]

    def add_attempt(self, partition: int, value: bytes, outcome: str, error=None) -> None:
        self.attempts.append(Attempt(partition, value, outcome, error))

    def unack(self, partition: int, value: bytes, outcome: str, error: str | None) -> None:
        """Turn an acked send into a failed or indeterminate one."""
        self.attempts = [
            Attempt(a.partition, a.value, outcome, error)
            if (a.partition, a.value) == (partition, value)
            else a
            for a in self.attempts
        ]
        self.acks = [a for a in self.acks if (a.partition, a.value) != (partition, value)]

    def log_of(self, partition: int, broker: int = 1) -> ReplicaLog:
        (log,) = [
            log
            for log in self.replica_logs
            if (log.broker_id, log.partition) == (broker, partition)
        ]
        return log


def values_of(partition: int, count: int) -> list[bytes]:
    return [make_value(partition, seq) for seq in range(count)]


def clean_run(count: int = 10, partitions: tuple[int, ...] = (0, 1)) -> Run:
    """``count`` acked sends to each partition, all in every read and every replica."""
    run = Run([], [], [], [], {})
    for partition in partitions:
        values = values_of(partition, count)
        run.attempts += [Attempt(partition, value, ACKED) for value in values]
        run.acks += [Ack(partition, offset, value) for offset, value in enumerate(values)]
        run.set_log(partition, values)
    return run


def with_messages(run: Run, invariant: str) -> list[str]:
    return [v.message for v in run.violations() if v.invariant == invariant]


# -- values and a clean run ----------------------------------------------------------------------


def test_value_round_trips_through_parse_value():
    """``parse_value`` gives back the producer, partition and seq ``make_value`` encoded."""
    value = make_value(3, 42, producer="w2")
    assert value == b"w2-p3-000000042"
    assert parse_value(value) == ValueId("w2", 3, 42)


def test_foreign_values_do_not_parse():
    """A value ``make_value`` did not make (or null) parses to ``None``."""
    assert parse_value(b"hello") is None
    assert parse_value(None) is None
    assert parse_value(b"w-p1-2-extra") is None


def test_make_value_refuses_a_producer_name_that_would_not_parse():
    """A producer name with a separator in it is refused, as are negative numbers."""
    with pytest.raises(ValueError):
        make_value(0, 1, producer="a-b")
    with pytest.raises(ValueError):
        make_value(0, -1)


def test_clean_run_has_no_violation():
    """Acks read back in order from every replica and every read source break nothing."""
    run = clean_run()
    run.reads += [r._replace(source="broker 2") for r in run.reads]
    run.add_attempt(0, make_value(0, 10), INDETERMINATE, "REQUEST_TIMED_OUT")
    run.add_attempt(1, make_value(1, 10), FAILED, "NOT_ENOUGH_REPLICAS")
    assert run.violations(isr={0: BROKERS, 1: BROKERS}) == []
    assert_invariants(run.acks, run.attempts, run.reads, run.replica_logs, run.hws)


def test_assert_invariants_lists_every_violation():
    """``assert_invariants`` fails with each violation, its id first, and a count per id."""
    run = clean_run()
    run.reads = [r for r in run.reads if r.offset != 9]  # the acked last records are gone
    with pytest.raises(AssertionError) as failure:
        assert_invariants(run.acks, run.attempts, run.reads, run.replica_logs, run.hws)
    text = str(failure.value)
    assert "I1 x2" in text and "I2 x2" in text
    assert "I1: acked w-p0-000000009 at partition 0 offset 9 is missing" in text


# -- I1 ------------------------------------------------------------------------------------------


def test_acked_writes_lost_in_a_failover_are_i1():
    """A new leader whose log and HW end before the last acks loses them: I1 only."""
    run = clean_run()
    run.set_log(0, values_of(0, 8))
    assert run.ids() == {"I1"}
    messages = with_messages(run, "I1")
    assert any("w-p0-000000008 at partition 0 offset 8 is missing" in m for m in messages)
    assert any("offset 9 is at or above the high watermark 8" in m for m in messages)


def test_ack_without_an_offset_must_still_be_read():
    """An ack whose offset the client did not learn must be somewhere in the read."""
    run = clean_run()
    run.acks = [a._replace(offset=None) if a.offset == 3 else a for a in run.acks]
    assert run.violations() == []
    run.set_log(0, [v for v in values_of(0, 10) if v != make_value(0, 3)])
    assert "I1" in run.ids()
    assert any("(offset not reported) is missing" in m for m in with_messages(run, "I1"))


def test_another_value_at_an_acked_offset_is_i1_and_i3():
    """Another value at an acked offset loses the ack (I1) and doubles the offset (I3)."""
    run = clean_run()
    stranger = make_value(0, 10)
    run.add_attempt(0, stranger, INDETERMINATE, "NOT_ENOUGH_REPLICAS_AFTER_APPEND")
    run.set_log(0, [*values_of(0, 9), stranger])
    assert run.ids() == {"I1", "I3"}
    assert any("offset 9: read 'leader' has w-p0-000000010" in m for m in with_messages(run, "I1"))
    assert any("offset 9 holds 2 values" in m for m in with_messages(run, "I3"))


# -- I2 ------------------------------------------------------------------------------------------


def test_gap_in_a_read_is_i2():
    """A read that skips an offset (not an acked one) breaks contiguity: I2 only."""
    run = clean_run()
    run.unack(0, make_value(0, 4), INDETERMINATE, "REQUEST_TIMED_OUT")
    run.reads = [r for r in run.reads if (r.partition, r.offset) != (0, 4)]
    assert run.ids() == {"I2"}
    assert with_messages(run, "I2") == [
        "read 'leader' of partition 0: gap, offsets 4..4 missing (between 3 and 5)"
    ]


def test_read_ending_below_the_high_watermark_is_i2():
    """A read that stops before the high watermark misses committed offsets: I2."""
    run = clean_run()
    for seq in (8, 9):
        run.unack(1, make_value(1, seq), INDETERMINATE, "REQUEST_TIMED_OUT")
    run.reads = [r for r in run.reads if not (r.partition == 1 and r.offset >= 8)]
    assert run.ids() == {"I2"}
    assert "offsets 8..9 missing" in with_messages(run, "I2")[0]


def test_offsets_going_backwards_are_i2():
    """A read that returns an offset again is not strictly increasing: I2."""
    run = clean_run()
    run.reads.append(Read(0, 5, make_value(0, 5)))
    assert run.ids() == {"I2"}
    assert "offset 5 comes after offset 9" in with_messages(run, "I2")[0]


def test_read_from_the_log_start_given():
    """A log whose start moved (retention) reads from there: I2 unless the start is given."""
    run = clean_run()
    for seq in (0, 1):
        run.unack(0, make_value(0, seq), INDETERMINATE, "REQUEST_TIMED_OUT")
    run.set_log(0, values_of(0, 10)[2:], start=2)
    assert run.ids() == {"I2"}
    assert "starts at offset 2, the log start is 0" in with_messages(run, "I2")[0]
    assert run.violations(log_start_offsets={0: 2}) == []


def test_values_out_of_send_order_are_i2():
    """Two sends stored in the opposite order (everyone agreeing on it) break I2 only."""
    run = clean_run()
    values = values_of(0, 10)
    values[3], values[4] = values[4], values[3]
    run.set_log(0, values)
    run.acks = [a for a in run.acks if a.partition != 0]
    run.acks += [Ack(0, offset, value) for offset, value in enumerate(values)]
    assert run.ids() == {"I2"}
    assert with_messages(run, "I2") == [
        "read 'leader' of partition 0: w-p0-000000003 (send #3) at offset 4 comes after "
        "w-p0-000000004 (send #4) at offset 3: not in send order"
    ]


def test_each_producer_has_its_own_send_order():
    """Interleaved sends of two producers are in order as long as each producer's are."""
    run = clean_run(partitions=(1,))
    values = [make_value(0, seq, producer) for seq in range(4) for producer in ("a", "b")]
    run.attempts += [Attempt(0, value, ACKED) for value in values]
    run.acks += [Ack(0, offset, value) for offset, value in enumerate(values)]
    run.set_log(0, values)
    assert run.violations() == []


def test_sent_order_replaces_the_seq_of_the_values():
    """With ``sent_order``, values of any format are order-checked by their send position."""
    run = clean_run(partitions=(1,))
    run.attempts += [Attempt(0, value, ACKED) for value in (b"a", b"b", b"c")]
    run.acks += [Ack(0, 0, b"b"), Ack(0, 1, b"a"), Ack(0, 2, b"c")]
    run.set_log(0, [b"b", b"a", b"c"])
    assert run.violations() == []  # values it cannot parse are not order-checked
    assert run.ids(sent_order={0: [b"a", b"b", b"c"]}) == {"I2"}


# -- I3 ------------------------------------------------------------------------------------------


def test_value_at_two_offsets_is_i3():
    """An ack at one offset whose value the read holds at another puts it at two offsets."""
    run = clean_run()
    run.acks = [a._replace(offset=6) if a.value == make_value(0, 5) else a for a in run.acks]
    assert "I3" in run.ids()
    assert any(
        "w-p0-000000005 is at different offsets: acks at [6]; log of broker 1 at [5]; log of "
        "broker 2 at [5]; log of broker 3 at [5]; read 'leader' at [5]" in m
        for m in with_messages(run, "I3")
    )


def test_disagreeing_replicas_put_two_values_at_one_offset():
    """A replica with another value at a committed offset is I3, naming both values."""
    run = clean_run()
    stranger = make_value(0, 10)
    run.add_attempt(0, stranger, INDETERMINATE, "REQUEST_TIMED_OUT")
    values = values_of(0, 10)
    values[6] = stranger
    run.set_replica(replica_log(2, 0, values))
    assert run.ids() == {"I3"}
    messages = with_messages(run, "I3")
    assert any(
        "offset 6 holds 2 values: w-p0-000000006 in acks, log of broker 1, log of broker 3, "
        "read 'leader'; w-p0-000000010 in log of broker 2" in m
        for m in messages
    )
    assert any("replicas differ below the high watermark 10 at batch #3" in m for m in messages)


def test_diverging_crc_below_the_high_watermark_is_i3():
    """Batches that differ only in CRC below the high watermark are I3 (byte comparison)."""
    run = clean_run()
    log = run.log_of(1, broker=3)
    batches = list(log.batches)
    batches[2] = batches[2]._replace(crc=batches[2].crc ^ 1)
    run.set_replica(log._replace(batches=batches))
    assert run.ids() == {"I3"}
    (message,) = with_messages(run, "I3")
    assert message.startswith(
        "partition 1: replicas differ below the high watermark 10 at batch #2"
    )
    assert "broker 3: offsets 4..5" in message


def test_differences_above_the_high_watermark_are_tolerated():
    """Replicas may differ, or hold more, past the high watermark: not committed yet."""
    run = clean_run()
    for seq in (8, 9):
        run.unack(0, make_value(0, seq), INDETERMINATE, "NOT_ENOUGH_REPLICAS_AFTER_APPEND")
    run.add_attempt(0, make_value(0, 10), INDETERMINATE, "REQUEST_TIMED_OUT")
    run.add_attempt(0, make_value(0, 11), INDETERMINATE, "REQUEST_TIMED_OUT")
    run.reads = [r for r in run.reads if not (r.partition == 0 and r.offset >= 8)]
    run.hws[0] = 8
    log = run.log_of(0, broker=3)
    batches = list(log.batches)
    batches[4] = batches[4]._replace(crc=batches[4].crc ^ 1, leader_epoch=1)
    run.set_replica(log._replace(batches=batches, records=[(8, make_value(0, 11))]))
    run.set_replica(replica_log(1, 0, values_of(0, 12)))
    assert run.violations() == []


def test_in_sync_replica_with_a_batch_across_the_high_watermark():
    """A batch across the HW is tolerated out of sync and I3 on an ISR member."""
    run = clean_run()
    for seq in (8, 9):
        run.unack(0, make_value(0, seq), INDETERMINATE, "REQUEST_TIMED_OUT")
    run.reads = [r for r in run.reads if not (r.partition == 0 and r.offset >= 8)]
    run.hws[0] = 8
    log = run.log_of(0, broker=2)
    straddling = Batch(6, 9, 1234, 1)
    run.set_replica(log._replace(batches=[*log.batches[:3], straddling]))
    assert run.violations() == []
    assert run.ids(isr={0: BROKERS}) == {"I3"}
    (message,) = [v.message for v in run.violations(isr={0: BROKERS})]
    assert "in-sync broker 2 has a batch across the high watermark 8" in message


# -- I4, I5 --------------------------------------------------------------------------------------


def test_read_at_the_high_watermark_is_i4():
    """A read returning the offset at the high watermark read uncommitted data: I4."""
    run = clean_run()
    above = make_value(0, 10)
    run.add_attempt(0, above, INDETERMINATE, "REQUEST_TIMED_OUT")
    run.reads.append(Read(0, 10, above))
    assert run.ids() == {"I4"}
    assert (
        "returned offset 10 (w-p0-000000010), at or above the high watermark 10"
        in (with_messages(run, "I4")[0])
    )


def test_high_watermark_above_every_replica_is_i5():
    """A high watermark past every replica's log end was never replicated anywhere: I5."""
    run = clean_run()
    for broker in BROKERS:
        run.set_replica(replica_log(broker, 0, values_of(0, 8)))
    assert run.ids() == {"I5"}
    assert (
        "above every replica's log end (broker 1: 8, broker 2: 8, broker 3: 8)"
        in (with_messages(run, "I5")[0])
    )


def test_high_watermark_above_an_in_sync_replica_is_i5():
    """A lagging replica is fine, unless it is named in sync: then the HW is above its LEO."""
    run = clean_run()
    run.set_replica(replica_log(3, 0, values_of(0, 8)))
    assert run.violations() == []
    assert run.ids(isr={0: BROKERS}) == {"I5"}


# -- I6 ------------------------------------------------------------------------------------------


def test_failed_write_visible_is_i6():
    """A send that failed with a definite error must not be in the log: I6, naming the error."""
    run = clean_run()
    run.unack(0, make_value(0, 4), FAILED, "NOT_ENOUGH_REPLICAS")
    assert run.ids() == {"I6"}
    messages = with_messages(run, "I6")
    assert (
        "w-p0-000000004 failed with NOT_ENOUGH_REPLICAS but is at partition 0 offset 4 in log of "
        "broker 1" in messages
    )
    assert len(messages) == 4  # the leader read and the three replicas


def test_indeterminate_writes_may_or_may_not_appear():
    """An indeterminate send may be in the log or not: neither is a violation."""
    run = clean_run()
    run.unack(0, make_value(0, 4), INDETERMINATE, "NOT_ENOUGH_REPLICAS_AFTER_APPEND")
    run.add_attempt(0, make_value(0, 10), INDETERMINATE, "REQUEST_TIMED_OUT")
    assert run.violations() == []


def test_value_never_sent_is_i6():
    """A value no attempt sent to that partition (or another partition's) is I6."""
    run = clean_run()
    run.set_log(0, [*values_of(0, 10), make_value(1, 3)])
    assert run.ids() == {"I6"}
    assert (
        "w-p1-000000003 at partition 0 offset 10 in log of broker 1 was never sent"
        in (with_messages(run, "I6")[0])
    )


# -- I8 ------------------------------------------------------------------------------------------


def test_duplicate_is_i8():
    """A value stored twice (a retry appended again) is I8 and nothing else."""
    run = clean_run()
    run.set_log(0, [*values_of(0, 10), make_value(0, 5)])
    assert run.ids() == {"I8"}
    assert "w-p0-000000005 is 2 times in read 'leader' of partition 0, at offsets [5, 10]" in (
        with_messages(run, "I8")
    )


# -- I9 ------------------------------------------------------------------------------------------


def test_non_monotonic_epochs_are_i9():
    """A log whose leader epoch goes down (all replicas alike, so no I3) is I9."""
    run = clean_run()
    run.set_log(0, values_of(0, 10), epochs=[0, 0, 2, 1, 2])
    assert run.ids() == {"I9"}
    assert len(with_messages(run, "I9")) == 3
    assert "broker 1 partition 0: leader epoch 1 at offset 6 after epoch 2 at offset 4" in (
        with_messages(run, "I9")
    )


def test_overlapping_and_missing_offsets_between_batches_are_i9():
    """Batches that overlap, or leave a gap between them, are I9."""
    run = clean_run()
    log = run.log_of(0)
    batches = list(log.batches)
    batches[1] = batches[1]._replace(base_offset=1)
    batches[3] = batches[3]._replace(base_offset=7)
    run.set_replica(log._replace(batches=batches))
    messages = with_messages(run, "I9")
    assert messages == [
        "broker 1 partition 0: batch 1..3 overlaps the batch before it (0..1)",
        "broker 1 partition 0: gap, offsets 6..6 missing before batch 7",
    ]


def test_problems_found_on_disk_are_i9():
    """What the disk scan reported (CRC mismatch, corrupt tail) is I9."""
    run = clean_run()
    run.set_replica(run.log_of(1)._replace(problems=["00000000000000000000.log: CRC mismatch"]))
    assert run.ids() == {"I9"}


# -- inconsistent inputs -------------------------------------------------------------------------


def test_inconsistent_inputs_are_reported_as_harness_errors():
    """Inputs that contradict each other are reported as ``harness`` violations."""
    run = clean_run()
    run.acks.append(Ack(0, 3, make_value(0, 77)))
    run.attempts.append(Attempt(1, make_value(1, 3), INDETERMINATE))
    run.attempts.append(Attempt(1, make_value(1, 99), ACKED))
    del run.hws[1]
    messages = with_messages(run, "harness")
    assert messages == [
        "w-p1-000000003 was sent to partition 1 2 times (values must be unique)",
        "ack of w-p0-000000077 at partition 0 offset 3 has no attempt",
        "attempt of w-p1-000000099 to partition 1 was acked but there is no Ack for it",
        "partition 1 has data but no high watermark was given",
    ]


# -- reading replica logs from disk ---------------------------------------------------------------


def write_segment(directory: Path, base: int, batches: list[tuple[list[bytes], int]]) -> Path:
    """A segment file of ``batches`` (values, leader epoch) from offset ``base``."""
    path = directory / f"{base:020d}.log"
    offset = base
    with open(path, "wb") as segment:
        for values, epoch in batches:
            records = [Record(i, 0, None, value) for i, value in enumerate(values)]
            segment.write(
                build_batch(
                    records, base_offset=offset, base_timestamp=1, partition_leader_epoch=epoch
                )
            )
            offset += len(values)
    return path


def test_replica_log_from_disk_reads_batches_crcs_epochs_and_records(tmp_path):
    """Segments read back as their batches (offsets, CRC, epoch) and records, in order."""
    directory = tmp_path / "topic-0"
    directory.mkdir()
    values = values_of(0, 6)
    first = write_segment(directory, 0, [(values[:2], 0), (values[2:4], 0)])
    write_segment(directory, 4, [(values[4:], 1)])
    (directory / "leader-epoch-checkpoint").write_text("0\n")
    log = replica_log_from_disk(1, directory)
    data = first.read_bytes()
    header = read_batch_header(data)
    assert log.broker_id == 1 and log.partition == 0 and log.problems == []
    assert [(b.base_offset, b.last_offset, b.leader_epoch) for b in log.batches] == [
        (0, 1, 0),
        (2, 3, 0),
        (4, 5, 1),
    ]
    assert log.batches[0].crc == header.crc
    assert log.records == list(enumerate(values))
    attempts = [Attempt(0, value, ACKED) for value in values]
    acks = [Ack(0, offset, value) for offset, value in enumerate(values)]
    reads = [Read(0, offset, value) for offset, value in enumerate(values)]
    assert check(acks, attempts, reads, [log, log._replace(broker_id=2)], {0: 6}) == []


def test_corruption_on_disk_is_reported_by_replica_log_from_disk(tmp_path):
    """A flipped byte (CRC mismatch) and a batch cut short are the log's problems, so I9."""
    directory = tmp_path / "topic-3"
    directory.mkdir()
    values = values_of(3, 4)
    path = write_segment(directory, 0, [(values[:2], 0), (values[2:], 0)])
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the second batch's records: its CRC no longer matches
    path.write_bytes(bytes(data) + data[:20])  # and a torn third batch
    log = replica_log_from_disk(2, directory)
    assert log.partition == 3
    assert len(log.batches) == 2
    assert any("CRC mismatch in the batch at offset 2" in p for p in log.problems)
    assert any("truncated batch header: 20 bytes" in p for p in log.problems)
    violations = check([], [], [], [log], {3: 0})
    assert {v.invariant for v in violations} == {"I9"}


def test_replica_log_from_disk_refuses_a_directory_that_is_not_a_partition(tmp_path):
    """A directory not named ``<topic>-<partition>`` is refused."""
    with pytest.raises(ValueError, match="not a <topic>-<partition> directory"):
        replica_log_from_disk(1, tmp_path / "data")
