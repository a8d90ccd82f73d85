"""The safety invariants of a replicated run (kafka-notes §5.3, I1-I9), checked after the run.

Pure Python: the inputs are plain records of what happened, gathered by the harness
(``process_cluster``) or written by hand in a test:

* ``Attempt``: every send, with its final outcome: ``"acked"``, ``"failed"`` (a definite
  error: nothing was written; ``error`` names it) or ``"indeterminate"`` (the write may or may
  not be in the log: NOT_ENOUGH_REPLICAS_AFTER_APPEND, REQUEST_TIMED_OUT, a lost connection,
  a client-side timeout after retries).
* ``Ack``: a write the producer saw acknowledged with acks=all, at the offset the produce
  response gave (``None`` when the client did not learn it).
* ``Read``: what a full read from the log start to the high watermark returned. Each ``source``
  (default ``"leader"``) is one complete read of every partition; several sources (a read per
  replica, a read before and after a failover) are compared with each other.
* ``ReplicaLog``: one replica's log read from disk after the brokers stopped: its batches
  (``replica_log_from_disk``), optionally its records, and what the scan found wrong.
* the high watermark of each partition when it was read.

``check`` returns the ``Violation``s (invariant id and a message naming partition, offsets and
values); ``assert_invariants`` fails with all of them. Violations with the id ``"harness"``
say that the inputs contradict each other (an ``Ack`` without an acked ``Attempt``, ...): a
bug of the recording, not of the broker.

Values are made with ``make_value`` (``b"<producer>-p<partition>-<seq>"``, seq counting the
producer's sends to that partition from 0), so the send order can be read back from the
values themselves (I2).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from tmq.protocol.errors import ProtocolError
from tmq.protocol.framing import MAX_FRAME_BYTES
from tmq.protocol.records import decode_batch
from tmq.storage.files import OsFileSystem
from tmq.storage.names import LOG_SUFFIX, base_offset_of, parse_partition_dir
from tmq.storage.scan import Corruption, scan_batches

__all__ = [
    "ACKED",
    "FAILED",
    "INDETERMINATE",
    "Ack",
    "Attempt",
    "Batch",
    "Read",
    "ReplicaLog",
    "ValueId",
    "Violation",
    "assert_invariants",
    "check",
    "format_violations",
    "make_value",
    "parse_value",
    "replica_log_from_disk",
]

ACKED = "acked"
FAILED = "failed"
INDETERMINATE = "indeterminate"
OUTCOMES = frozenset({ACKED, FAILED, INDETERMINATE})


# -- values ------------------------------------------------------------------------------------

_VALUE = re.compile(rb"^([A-Za-z0-9_.]+)-p(\d+)-(\d+)$")


class ValueId(NamedTuple):
    """What a value made by ``make_value`` says: who sent it, to which partition, as which of
    that producer's sends to that partition (0, 1, ...)."""

    producer: str
    partition: int
    seq: int


def make_value(partition: int, seq: int, producer: str = "w") -> bytes:
    """The unique value of ``producer``'s send number ``seq`` to ``partition``:
    ``make_value(3, 42)`` is ``b"w-p3-000000042"``. ``producer`` is letters, digits, ``_``
    and ``.``."""
    if not re.fullmatch(r"[A-Za-z0-9_.]+", producer):
        raise ValueError(f"producer name {producer!r}: letters, digits, '_' and '.' only")
    if partition < 0 or seq < 0:
        raise ValueError(f"partition {partition} and seq {seq} must not be negative")
    return b"%s-p%d-%09d" % (producer.encode(), partition, seq)


def parse_value(value: bytes | None) -> ValueId | None:
    """The ``ValueId`` of a value ``make_value`` made; ``None`` for any other value."""
    if value is None:
        return None
    match = _VALUE.match(value)
    if match is None:
        return None
    return ValueId(match.group(1).decode(), int(match.group(2)), int(match.group(3)))


# -- inputs and output -------------------------------------------------------------------------


class Ack(NamedTuple):
    """A write acknowledged with acks=all at ``offset`` (``None``: offset not reported)."""

    partition: int
    offset: int | None
    value: bytes


class Attempt(NamedTuple):
    """One send and its final outcome (``ACKED``, ``FAILED``, ``INDETERMINATE``); ``error``
    names the error of a failed or indeterminate send (``"NOT_ENOUGH_REPLICAS"``, ...)."""

    partition: int
    value: bytes
    outcome: str
    error: str | None = None


class Read(NamedTuple):
    """One record of a full read: ``value`` at ``offset`` of ``partition``, as ``source``
    returned it."""

    partition: int
    offset: int
    value: bytes | None
    source: str = "leader"


class Batch(NamedTuple):
    """One record batch of a replica's log: its offsets, CRC and partition leader epoch."""

    base_offset: int
    last_offset: int
    crc: int
    leader_epoch: int


class ReplicaLog(NamedTuple):
    """One replica's log of one partition, in file order.

    :ivar records: ``(offset, value)`` of every record, when they were read (else empty).
    :ivar problems: what the disk scan found wrong: a CRC mismatch, a corrupt or truncated
        tail, a batch whose records do not decode.
    """

    broker_id: int
    partition: int
    batches: Sequence[Batch]
    records: Sequence[tuple[int, bytes | None]] = ()
    problems: Sequence[str] = ()

    @property
    def log_end_offset(self) -> int | None:
        """The offset after the last batch (``None`` for an empty log)."""
        return self.batches[-1].last_offset + 1 if self.batches else None


class Violation(NamedTuple):
    """A broken invariant: its id (``"I1"`` ... ``"I9"``, or ``"harness"``) and what broke."""

    invariant: str
    message: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.message}"


# -- the checks --------------------------------------------------------------------------------


def check(
    acks: Iterable[Ack],
    attempts: Iterable[Attempt],
    reads: Iterable[Read],
    replica_logs: Iterable[ReplicaLog],
    high_watermarks: Mapping[int, int],
    sent_order: Mapping[int, Sequence[bytes]] | None = None,
    *,
    log_start_offsets: Mapping[int, int] | None = None,
    isr: Mapping[int, Collection[int]] | None = None,
) -> list[Violation]:
    """Every violation of I1, I2, I3, I4, I5 (the parts checkable after the run), I6, I8 and
    I9 the inputs show; empty when all hold.

    :param attempts: every send of the run (a value read back that no attempt sent to that
        partition is reported under I6).
    :param reads: full reads, ``log_start_offsets[p]`` (default 0) to ``high_watermarks[p]``
        for each partition, one per ``source``.
    :param replica_logs: replicas' logs from disk. Only batches wholly below the high
        watermark are compared (a replica may hold more, not committed, past it).
    :param high_watermarks: the high watermark of each partition at the read.
    :param sent_order: per partition, the values in the order they were sent; by default the
        order is the ``seq`` of ``parse_value`` (per producer), and values it does not parse are
        not order-checked.
    :param isr: per partition, the brokers in sync at the end: each of their logs must hold the
        whole committed prefix, batch for batch (default: not checked).
    """
    starts = dict(log_start_offsets or {})
    hws = dict(high_watermarks)
    run = _Run(list(acks), list(attempts), list(reads), list(replica_logs), hws, starts)
    violations = _check_inputs(run)
    violations += _check_acks(run)
    violations += _check_order(run, sent_order)
    violations += _check_agreement(run)
    violations += _check_replica_prefixes(run, isr or {})
    violations += _check_high_watermarks(run, isr or {})
    violations += _check_failed_writes(run)
    violations += _check_duplicates(run)
    violations += _check_replica_logs(run)
    return violations


def assert_invariants(*args, **kwargs) -> None:
    """``check(*args, **kwargs)``; raise an ``AssertionError`` listing every violation."""
    violations = check(*args, **kwargs)
    if violations:
        raise AssertionError(format_violations(violations))


def format_violations(violations: Sequence[Violation], limit: int = 60) -> str:
    """A report: the count per invariant, then the first ``limit`` violations, one a line."""
    counts: dict[str, int] = defaultdict(int)
    for violation in violations:
        counts[violation.invariant] += 1
    head = ", ".join(f"{name} x{count}" for name, count in sorted(counts.items()))
    lines = [f"{len(violations)} invariant violations ({head}):"]
    lines += [f"  {violation}" for violation in violations[:limit]]
    if len(violations) > limit:
        lines.append(f"  ... and {len(violations) - limit} more")
    return "\n".join(lines)


class _Run:
    """The inputs, indexed: per source and partition, the ``(offset, value)`` observations."""

    def __init__(self, acks, attempts, reads, replica_logs, hws, starts):
        self.acks: list[Ack] = acks
        self.attempts: list[Attempt] = attempts
        self.replica_logs: list[ReplicaLog] = replica_logs
        self.hws: dict[int, int] = hws
        self.starts: dict[int, int] = starts
        #: read sources, in order of first appearance ("leader" when there is no read at all)
        self.sources: list[str] = list(dict.fromkeys(read.source for read in reads)) or ["leader"]
        self.read: dict[tuple[str, int], list[tuple[int, bytes | None]]] = defaultdict(list)
        for read in reads:
            self.read[read.source, read.partition].append((read.offset, read.value))
        #: every place a value was seen, by partition: "read '<source>'", "acks", and
        #: "log of broker N" (its committed part)
        self.seen: dict[tuple[str, int], list[tuple[int, bytes | None]]] = defaultdict(list)
        for (source, partition), observed in self.read.items():
            self.seen[f"read {source!r}", partition] = list(observed)
        for ack in acks:
            if ack.offset is not None:
                self.seen["acks", ack.partition].append((ack.offset, ack.value))
        for log in replica_logs:
            hw = hws.get(log.partition)
            if hw is None:
                continue
            # The records of whole batches below the high watermark: as for the CRCs, a
            # replica's batch across it (a tail not truncated yet) is not compared.
            prefix = _committed_prefix(log, hw)
            limit = prefix[-1].last_offset + 1 if prefix else (hw if not log.batches else 0)
            committed = [(o, v) for o, v in log.records if o < limit]
            if committed:
                self.seen[f"log of broker {log.broker_id}", log.partition].extend(committed)
        self.partitions: list[int] = sorted(
            set(hws)
            | {a.partition for a in attempts}
            | {a.partition for a in acks}
            | {partition for _, partition in self.read}
            | {log.partition for log in replica_logs}
        )
        self.sent: dict[tuple[int, bytes], Attempt] = {}
        for attempt in attempts:
            self.sent.setdefault((attempt.partition, attempt.value), attempt)


def _show(value: bytes | None) -> str:
    if value is None:
        return "null"
    text = value.decode(errors="backslashreplace")
    return text if len(text) <= 60 else text[:57] + "..."


def _check_inputs(run: _Run) -> list[Violation]:
    """``harness``: inputs that contradict each other."""
    found = []
    counted: dict[tuple[int, bytes], int] = defaultdict(int)
    for attempt in run.attempts:
        counted[attempt.partition, attempt.value] += 1
        if attempt.outcome not in OUTCOMES:
            found.append(
                f"attempt of {_show(attempt.value)} has the outcome {attempt.outcome!r}, not "
                f"one of {sorted(OUTCOMES)}"
            )
    found += [
        f"{_show(value)} was sent to partition {partition} {count} times (values must be unique)"
        for (partition, value), count in counted.items()
        if count > 1
    ]
    acked = {(ack.partition, ack.value) for ack in run.acks}
    for ack in run.acks:
        attempt = run.sent.get((ack.partition, ack.value))
        if attempt is None or attempt.outcome != ACKED:
            outcome = "no attempt" if attempt is None else f"an attempt {attempt.outcome}"
            found.append(
                f"ack of {_show(ack.value)} at partition {ack.partition} offset {ack.offset} "
                f"has {outcome}"
            )
    found += [
        f"attempt of {_show(attempt.value)} to partition {attempt.partition} was acked but "
        "there is no Ack for it"
        for attempt in run.attempts
        if attempt.outcome == ACKED and (attempt.partition, attempt.value) not in acked
    ]
    found += [
        f"partition {partition} has data but no high watermark was given"
        for partition in run.partitions
        if partition not in run.hws
    ]
    return [Violation("harness", message) for message in found]


def _check_acks(run: _Run) -> list[Violation]:
    """I1: every acked write is in every full read, at its offset, with its value."""
    found = []
    for source in run.sources:
        at: dict[int, dict[int, list[bytes | None]]] = defaultdict(lambda: defaultdict(list))
        where: dict[int, dict[bytes | None, list[int]]] = defaultdict(lambda: defaultdict(list))
        for (name, partition), observed in run.read.items():
            if name == source:
                for offset, value in observed:
                    at[partition][offset].append(value)
                    where[partition][value].append(offset)
        for ack in run.acks:
            label = f"acked {_show(ack.value)} at partition {ack.partition}"
            if ack.offset is None:
                if ack.value not in where[ack.partition]:
                    found.append(f"{label} (offset not reported) is missing from read {source!r}")
                continue
            values = at[ack.partition].get(ack.offset)
            if values is None:
                offsets = sorted(at[ack.partition])
                span = f"{offsets[0]}..{offsets[-1]}" if offsets else "nothing"
                elsewhere = where[ack.partition].get(ack.value)
                moved = f"; the value is at {elsewhere}" if elsewhere else ""
                found.append(
                    f"{label} offset {ack.offset} is missing from read {source!r} (which holds "
                    f"offsets {span}{moved})"
                )
            elif ack.value not in values:
                shown = ", ".join(_show(value) for value in values)
                found.append(
                    f"{label} offset {ack.offset}: read {source!r} has {shown} at that offset"
                )
    for ack in run.acks:
        hw = run.hws.get(ack.partition)
        if ack.offset is not None and hw is not None and ack.offset >= hw:
            found.append(
                f"acked {_show(ack.value)} at partition {ack.partition} offset {ack.offset} is "
                f"at or above the high watermark {hw} (acks=all acks only committed writes)"
            )
    return [Violation("I1", message) for message in found]


def _check_order(run: _Run, sent_order: Mapping[int, Sequence[bytes]] | None) -> list[Violation]:
    """I2: each full read covers its partition's offsets from the log start to the high
    watermark, strictly increasing without a gap, and each producer's values are in send
    order."""
    found = []
    ranks = (
        {p: {value: i for i, value in enumerate(values)} for p, values in sent_order.items()}
        if sent_order is not None
        else None
    )
    for source in run.sources:
        for partition in run.partitions:
            observed = run.read.get((source, partition), [])
            start = run.starts.get(partition, 0)
            hw = run.hws.get(partition)
            label = f"read {source!r} of partition {partition}"
            previous = None
            for offset, _value in observed:
                if previous is None:
                    if offset != start:
                        found.append(f"{label} starts at offset {offset}, the log start is {start}")
                elif offset <= previous:
                    found.append(f"{label}: offset {offset} comes after offset {previous}")
                elif offset != previous + 1:
                    found.append(
                        f"{label}: gap, offsets {previous + 1}..{offset - 1} missing "
                        f"(between {previous} and {offset})"
                    )
                previous = offset if previous is None else max(previous, offset)
            if hw is not None and hw > start:
                if previous is None:
                    found.append(f"{label} is empty, the high watermark is {hw} (from {start})")
                elif previous < hw - 1:
                    found.append(
                        f"{label} ends at offset {previous}, the high watermark is {hw}: offsets "
                        f"{previous + 1}..{hw - 1} missing"
                    )
            found += _order_in(label, partition, observed, ranks)
    return [Violation("I2", message) for message in found]


def _order_in(
    label: str,
    partition: int,
    observed: list[tuple[int, bytes | None]],
    ranks: Mapping[int, Mapping[bytes, int]] | None,
) -> list[str]:
    """Send-order inversions among the first occurrences of values in ``observed``."""
    found = []
    last: dict[str, tuple[int, int, bytes | None]] = {}  # producer -> rank, offset, value
    seen: set[bytes | None] = set()
    for offset, value in sorted(observed, key=lambda item: item[0]):
        if value in seen:
            continue  # a duplicate: I8 reports it
        seen.add(value)
        if ranks is not None:
            rank = ranks.get(partition, {}).get(value)
            producer = ""
        else:
            parsed = parse_value(value)
            if parsed is None or parsed.partition != partition:
                continue
            rank, producer = parsed.seq, parsed.producer
        if rank is None:
            continue
        before = last.get(producer)
        if before is not None and rank < before[0]:
            found.append(
                f"{label}: {_show(value)} (send #{rank}) at offset {offset} comes after "
                f"{_show(before[2])} (send #{before[0]}) at offset {before[1]}: not in send order"
            )
        else:
            last[producer] = (rank, offset, value)
    return found


def _check_agreement(run: _Run) -> list[Violation]:
    """I3 (values) and I4: one value per offset and one offset per value, across reads, acks
    and replicas' committed records; no read at or above the high watermark."""
    found = []
    for partition in run.partitions:
        by_offset: dict[int, dict[bytes | None, set[str]]] = defaultdict(lambda: defaultdict(set))
        by_value: dict[bytes | None, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
        for (source, p), observed in run.seen.items():
            if p != partition:
                continue
            for offset, value in observed:
                by_offset[offset][value].add(source)
                by_value[value][source].add(offset)
        for offset in sorted(by_offset):
            values = by_offset[offset]
            if len(values) > 1:
                shown = "; ".join(
                    f"{_show(value)} in {', '.join(sorted(sources))}"
                    for value, sources in values.items()
                )
                found.append(
                    f"partition {partition} offset {offset} holds {len(values)} values: {shown}"
                )
        for value, offsets in by_value.items():
            everywhere = set().union(*offsets.values())
            if len(everywhere) > max(len(each) for each in offsets.values()):
                shown = "; ".join(
                    f"{source} at {sorted(each)}" for source, each in sorted(offsets.items())
                )
                found.append(
                    f"partition {partition}: {_show(value)} is at different offsets: {shown}"
                )
    above = []
    for (source, partition), observed in run.read.items():
        hw = run.hws.get(partition)
        above += [
            f"read {source!r} of partition {partition} returned offset {offset} "
            f"({_show(value)}), at or above the high watermark {hw}"
            for offset, value in observed
            if hw is not None and offset >= hw
        ]
    return [Violation("I3", m) for m in found] + [Violation("I4", m) for m in above]


def _committed_prefix(log: ReplicaLog, hw: int) -> list[Batch]:
    return [batch for batch in log.batches if batch.last_offset < hw]


def _logs_by_partition(run: _Run) -> list[tuple[int, list[ReplicaLog]]]:
    """The replica logs of the run, grouped by partition, in partition order."""
    by_partition: dict[int, list[ReplicaLog]] = defaultdict(list)
    for log in run.replica_logs:
        by_partition[log.partition].append(log)
    return sorted(by_partition.items())


def _check_replica_prefixes(run: _Run, isr: Mapping[int, Collection[int]]) -> list[Violation]:
    """I3 (bytes): the replicas' batches below the high watermark (offsets, CRC, epoch) are
    the same, position by position; a replica in ``isr`` holds the whole committed prefix."""
    found = []
    for partition, logs in _logs_by_partition(run):
        hw = run.hws.get(partition)
        if hw is None:
            continue
        prefixes = {log.broker_id: _committed_prefix(log, hw) for log in logs}
        longest = max(len(prefix) for prefix in prefixes.values())
        for index in range(longest):
            here = {b: prefix[index] for b, prefix in prefixes.items() if index < len(prefix)}
            if len(set(here.values())) > 1:
                shown = "; ".join(
                    f"broker {b}: offsets {batch.base_offset}..{batch.last_offset} crc "
                    f"{batch.crc:#010x} epoch {batch.leader_epoch}"
                    for b, batch in sorted(here.items())
                )
                found.append(
                    f"partition {partition}: replicas differ below the high watermark {hw} at "
                    f"batch #{index}: {shown}"
                )
                break  # every later batch differs as a consequence
        start = run.starts.get(partition, 0)
        for log in logs:
            if log.broker_id not in isr.get(partition, ()):
                continue
            prefix = prefixes[log.broker_id]
            covered = prefix[-1].last_offset + 1 if prefix else start
            end = log.log_end_offset
            if end is not None and end >= hw and covered != hw:
                found.append(
                    f"partition {partition}: in-sync broker {log.broker_id} has a batch across "
                    f"the high watermark {hw} (its whole batches end at offset {covered - 1})"
                )
    return [Violation("I3", message) for message in found]


def _check_high_watermarks(run: _Run, isr: Mapping[int, Collection[int]]) -> list[Violation]:
    """I5: the high watermark is not above the log end of any in-sync replica, and some
    replica holds the log up to it."""
    found = []
    for partition, logs in _logs_by_partition(run):
        hw = run.hws.get(partition)
        start = run.starts.get(partition, 0)
        if hw is None or hw <= start:
            continue
        ends = {log.broker_id: log.log_end_offset or start for log in logs}
        if max(ends.values()) < hw:
            shown = ", ".join(f"broker {b}: {end}" for b, end in sorted(ends.items()))
            found.append(
                f"partition {partition}: the high watermark {hw} is above every replica's log "
                f"end ({shown})"
            )
        found += [
            f"partition {partition}: the high watermark {hw} is above in-sync broker {b}'s "
            f"log end {ends[b]}"
            for b in sorted(isr.get(partition, ()))
            if b in ends and ends[b] < hw
        ]
    return [Violation("I5", message) for message in found]


def _check_failed_writes(run: _Run) -> list[Violation]:
    """I6: no value whose send failed definitely is anywhere, and nothing that was never sent
    (to that partition) is."""
    found = []
    for (source, partition), observed in sorted(run.seen.items()):
        if source == "acks":
            continue
        for offset, value in observed:
            attempt = run.sent.get((partition, value))
            where = f"partition {partition} offset {offset} in {source}"
            if attempt is None:
                found.append(f"{_show(value)} at {where} was never sent to that partition")
            elif attempt.outcome == FAILED:
                found.append(f"{_show(value)} failed with {attempt.error} but is at {where}")
    return [Violation("I6", message) for message in found]


def _check_duplicates(run: _Run) -> list[Violation]:
    """I8: no value twice in one read or one replica's log."""
    found = []
    for (source, partition), observed in sorted(run.seen.items()):
        if source == "acks":
            continue
        offsets: dict[bytes | None, list[int]] = defaultdict(list)
        for offset, value in observed:
            offsets[value].append(offset)
        found += [
            f"{_show(value)} is {len(at)} times in {source} of partition {partition}, at "
            f"offsets {sorted(at)}"
            for value, at in offsets.items()
            if len(set(at)) > 1
        ]
    return [Violation("I8", message) for message in found]


def _check_replica_logs(run: _Run) -> list[Violation]:
    """I9: each replica's batches are dense and do not overlap, epochs never go down, and the
    disk scan found nothing wrong."""
    found = []
    for log in run.replica_logs:
        label = f"broker {log.broker_id} partition {log.partition}"
        previous: Batch | None = None
        for batch in log.batches:
            if batch.last_offset < batch.base_offset:
                found.append(
                    f"{label}: batch {batch.base_offset}..{batch.last_offset} ends before it starts"
                )
            if previous is not None:
                if batch.base_offset <= previous.last_offset:
                    found.append(
                        f"{label}: batch {batch.base_offset}..{batch.last_offset} overlaps the "
                        f"batch before it ({previous.base_offset}..{previous.last_offset})"
                    )
                elif batch.base_offset != previous.last_offset + 1:
                    found.append(
                        f"{label}: gap, offsets {previous.last_offset + 1}.."
                        f"{batch.base_offset - 1} missing before batch {batch.base_offset}"
                    )
                if batch.leader_epoch < previous.leader_epoch:
                    found.append(
                        f"{label}: leader epoch {batch.leader_epoch} at offset "
                        f"{batch.base_offset} after epoch {previous.leader_epoch} at offset "
                        f"{previous.base_offset}"
                    )
            previous = batch
        found += [f"{label}: {problem}" for problem in log.problems]
    return [Violation("I9", message) for message in found]


# -- reading a replica's log from disk ---------------------------------------------------------


def replica_log_from_disk(
    broker_id: int, partition_dir: Path, *, records: bool = True
) -> ReplicaLog:
    """The batches of a partition directory's segments (``<topic>-<partition>/*.log``), in
    offset order, read with the scanner recovery and ``tmq debug dump-log`` use
    (``tmq.storage.scan``, lenient: a batch that breaks a rule is kept and its problem noted).

    :param records: also decode each batch's records (``ReplicaLog.records``).
    :raises ValueError: the directory's name is not ``<topic>-<partition>``.
    """
    partition_dir = Path(partition_dir)
    parsed = parse_partition_dir(partition_dir.name)
    if parsed is None:
        raise ValueError(f"{partition_dir} is not a <topic>-<partition> directory")
    segments = sorted(
        (base, path)
        for path in partition_dir.iterdir()
        if path.name.endswith(LOG_SUFFIX) and (base := base_offset_of(path.name)) is not None
    )
    batches: list[Batch] = []
    values: list[tuple[int, bytes | None]] = []
    problems: list[str] = []
    fs = OsFileSystem()
    for base, path in segments:
        file = fs.open(str(path), writable=False)
        try:
            scanned = scan_batches(
                file,
                expected_offset=base,
                max_batch_bytes=MAX_FRAME_BYTES,
                keep_data=records,
                lenient=True,
            )
            for result in scanned:
                if isinstance(result, Corruption):
                    problems.append(
                        f"{path.name} position {result.position}: {result.reason} "
                        f"({file.size - result.position} bytes to the end)"
                    )
                    continue
                header = result.header
                batches.append(
                    Batch(
                        header.base_offset,
                        header.last_offset,
                        header.crc,
                        header.partition_leader_epoch,
                    )
                )
                if result.problem is not None:
                    problems.append(f"{path.name} position {result.position}: {result.problem}")
                if records:
                    try:
                        _, decoded = decode_batch(result.data, max_batch_size=MAX_FRAME_BYTES)
                    except ProtocolError as error:
                        problems.append(f"{path.name} position {result.position}: {error}")
                    else:
                        values += [
                            (header.base_offset + record.offset_delta, record.value)
                            for record in decoded
                        ]
        finally:
            file.close()
    return ReplicaLog(broker_id, parsed[1], batches, values, problems)
