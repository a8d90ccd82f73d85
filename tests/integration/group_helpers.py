"""Helpers of the consumer-group tests (issue #8): group consumers as real processes, the
values they read, and what the group's coordinator says.

* Run as a script (``python group_helpers.py --client CLIENT ...``) this module is one group
  consumer of confluent-kafka, kafka-python or aiokafka: it subscribes to a topic, prints one
  JSON line per event on stdout (``assigned``/``revoked`` with the partitions, ``records``
  with ``[partition, offset, value]`` triples, ``committed`` or ``commit_failed``,
  ``held``/``unheld``, ``closed``), commits the offsets of every batch it read
  (synchronously, after printing it: at-least-once), and on SIGTERM closes the consumer
  (LeaveGroup) and exits 0. It exits by itself after ``--max-seconds``. While
  ``--hold-file`` exists it pauses fetching but stays in the group (it keeps heartbeating).
* ``GroupConsumer`` starts that script (cwd outside the checkout); ``KcatConsumer`` runs
  ``kcat -G`` (librdkafka 2.0.2) and reads its assignments from its stderr. Each runs in its
  own process group and can be stopped (SIGTERM), killed, paused (SIGSTOP) and resumed;
  ``consumer_processes`` is the body of a fixture that kills whatever is left.
* ``produce``: values with known partitions, acks=all, returning where each landed.
* ``coordinator``, ``describe_group``, ``committed_offsets``: FindCoordinator, DescribeGroups
  (assignments decoded) and OffsetFetch over a bare connection (``RawClient``);
  ``wait_for_group`` and ``wait_for_commits`` poll them; ``tmq_json`` runs ``tmq ... --json``.
* ``split_ok``, ``assert_split``, ``check_reads``, ``read_all_of``: the checks.

The script part imports nothing but the standard library and its client; the harness part
imports the integration helpers and tmq lazily, so a consumer process starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

CLIENTS = ("confluent", "kafka-python", "aiokafka")

#: The heartbeat interval of every consumer: a rebalance reaches the members within it.
HEARTBEAT_MS = 500
#: A consumer's rebalance timeout (max.poll.interval.ms): long enough never to fire here.
MAX_POLL_INTERVAL_MS = 60_000


# -- the consumer process (run as a script) ----------------------------------------------------


def _emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout, flushed (the harness reads the file while we run)."""
    sys.stdout.write(json.dumps({"event": event, "t": round(time.time(), 3), **fields}) + "\n")
    sys.stdout.flush()


def _listener(base):
    """A rebalance listener (the client's ``base`` class) reporting each change."""

    class Listener(base):
        def on_partitions_revoked(self, revoked):
            _emit("revoked", partitions=sorted(p.partition for p in revoked))

        def on_partitions_assigned(self, assigned):
            _emit("assigned", partitions=sorted(p.partition for p in assigned))

    return Listener()


class _Confluent:
    def __init__(self, args):
        from confluent_kafka import Consumer, TopicPartition

        self._partition = lambda p, o: TopicPartition(args.topic, p, o)
        self.consumer = Consumer(
            {
                "bootstrap.servers": args.bootstrap,
                "group.id": args.group,
                "client.id": args.client_id,
                "session.timeout.ms": args.session_timeout_ms,
                "heartbeat.interval.ms": HEARTBEAT_MS,
                "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
                "reconnect.backoff.max.ms": 1000,
                "topic.metadata.refresh.interval.ms": 5000,
                **({"group.instance.id": args.instance_id} if args.instance_id else {}),
            }
        )
        listener = _listener(object)
        self.consumer.subscribe(
            [args.topic],
            on_assign=lambda _, partitions: listener.on_partitions_assigned(partitions),
            on_revoke=lambda _, partitions: listener.on_partitions_revoked(partitions),
        )

    def poll(self) -> list[list]:
        records = []
        for message in self.consumer.consume(num_messages=500, timeout=0.2):
            if message.error() is not None:
                _emit("error", error=str(message.error()))
            else:
                records.append([message.partition(), message.offset(), message.value().decode()])
        return records

    def commit(self, offsets: dict[int, int]) -> None:
        self.consumer.commit(
            offsets=[self._partition(p, o) for p, o in offsets.items()], asynchronous=False
        )

    def hold(self, held: bool) -> None:
        (self.consumer.pause if held else self.consumer.resume)(self.consumer.assignment())

    def close(self) -> None:
        self.consumer.close()


class _KafkaPython:
    def __init__(self, args):
        from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
        from kafka.structs import OffsetAndMetadata

        self._offset = lambda p, o: (TopicPartition(args.topic, p), OffsetAndMetadata(o, "", -1))
        self.consumer = KafkaConsumer(
            bootstrap_servers=args.bootstrap,
            group_id=args.group,
            client_id=args.client_id,
            session_timeout_ms=args.session_timeout_ms,
            heartbeat_interval_ms=HEARTBEAT_MS,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            reconnect_backoff_max_ms=1000,
        )
        self.consumer.subscribe([args.topic], listener=_listener(ConsumerRebalanceListener))
        # kafka-python 3.0.12 hangs for good (no heartbeats, no assignment) when a leader that
        # assigned without the topic's metadata rejoins once the metadata arrives and poll()'s
        # timeout ends during that rejoin: need_rejoin() turns false (the assignment and
        # metadata snapshots now agree, rejoin_needed was never set), so the finished
        # JoinGroup/SyncGroup task is never collected. Knowing the topic before the first poll
        # avoids that rejoin.
        deadline = time.monotonic() + 30
        while not self.consumer.partitions_for_topic(args.topic):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no metadata for {args.topic}")
            time.sleep(0.05)

    def poll(self) -> list[list]:
        batches = self.consumer.poll(timeout_ms=500, max_records=500)
        return [[r.partition, r.offset, r.value.decode()] for b in batches.values() for r in b]

    def commit(self, offsets: dict[int, int]) -> None:
        self.consumer.commit(dict(self._offset(p, o) for p, o in offsets.items()))

    def hold(self, held: bool) -> None:
        (self.consumer.pause if held else self.consumer.resume)(*self.consumer.assignment())

    def close(self) -> None:
        self.consumer.close()


class _AioKafka:
    """aiokafka driven from this thread: its loop runs while we poll or commit."""

    def __init__(self, args):
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

        self._partition = lambda p: TopicPartition(args.topic, p)
        self.loop = asyncio.new_event_loop()

        async def started():  # (the consumer binds to the running loop)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=args.bootstrap,
                group_id=args.group,
                client_id=args.client_id,
                session_timeout_ms=args.session_timeout_ms,
                heartbeat_interval_ms=HEARTBEAT_MS,
                max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                fetch_max_wait_ms=100,
            )
            await consumer.start()
            return consumer

        self.consumer = self.loop.run_until_complete(started())
        self.consumer.subscribe([args.topic], listener=_listener(ConsumerRebalanceListener))

    def poll(self) -> list[list]:
        batches = self.loop.run_until_complete(
            self.consumer.getmany(timeout_ms=200, max_records=500)
        )
        return [[r.partition, r.offset, r.value.decode()] for b in batches.values() for r in b]

    def commit(self, offsets: dict[int, int]) -> None:
        self.loop.run_until_complete(
            self.consumer.commit({self._partition(p): o for p, o in offsets.items()})
        )

    def hold(self, held: bool) -> None:
        (self.consumer.pause if held else self.consumer.resume)(*self.consumer.assignment())

    def close(self) -> None:
        self.loop.run_until_complete(self.consumer.stop())
        self.loop.close()


def consumer_main(argv: list[str] | None = None) -> int:
    """One group consumer (see the module): the body of ``python group_helpers.py``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--client-id", default="group-test")
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--hold-file")
    parser.add_argument("--instance-id", help="group.instance.id (static member; confluent)")
    args = parser.parse_args(argv)
    # the clients' own logs on stderr (the harness shows them when a test fails)
    logging.basicConfig(
        level=os.environ.get("GROUP_TEST_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s",
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    # a watchdog: a consumer the harness forgot still goes away
    watchdog = threading.Timer(args.max_seconds, lambda: os._exit(3))
    watchdog.daemon = True
    watchdog.start()
    _emit("started", pid=os.getpid(), client=args.client)
    kind = {"confluent": _Confluent, "kafka-python": _KafkaPython, "aiokafka": _AioKafka}
    client = kind[args.client](args)
    held = False
    try:
        while not stopping.is_set():
            hold = args.hold_file is not None and os.path.exists(args.hold_file)
            if hold != held:
                client.hold(hold)
                held = hold
                _emit("held" if hold else "unheld")
            records = client.poll()
            if not records:
                continue
            _emit("records", records=records)
            # per partition, the offset after the last record read
            offsets: dict[int, int] = {}
            for partition, offset, _ in records:
                offsets[partition] = max(offsets.get(partition, 0), offset + 1)
            try:
                client.commit(offsets)
                _emit("committed", offsets=offsets)
            except Exception as error:  # a rebalance, an eviction: reported, not fatal
                _emit("commit_failed", offsets=offsets, error=repr(error))
    finally:
        client.close()
    _emit("closed")
    return 0


# -- the harness: consumer processes -------------------------------------------------------------


class Read(NamedTuple):
    """One record a consumer printed."""

    partition: int
    offset: int
    value: str


class _ConsumerProcess:
    """A consumer subprocess writing its events to ``name.out`` (and ``name.err``) in
    ``workdir``; subclasses say how to run it and how to read its output."""

    def __init__(self, workdir: Path, name: str, max_seconds: float):
        self.workdir = Path(workdir)
        self.name = name
        self.max_seconds = max_seconds
        self.out_path = self.workdir / f"{name}.out"
        self.log_path = self.workdir / f"{name}.err"
        self.process: subprocess.Popen | None = None
        self.paused = False

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> _ConsumerProcess:
        with open(self.out_path, "ab") as out, open(self.log_path, "ab") as err:
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=err,
                cwd=self.workdir,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # its own process group: ``kill`` gets every process
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """stderr and the last events (for failure messages and ``wait_for``)."""
        err = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        out = self.out_path.read_text(errors="replace") if self.out_path.exists() else ""
        return f"{err[-2000:]}\n[stdout]\n{out[-1500:]}"

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (SIGCONT first if paused) and wait: the consumer commits, leaves the group
        and exits. Returns the exit status; still running after ``timeout``: killed, and the
        test fails."""
        if not self.running:
            return self.process.returncode if self.process else 0
        if self.paused:
            self.resume()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL to its process group (kcat's too, not just ``timeout``)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the consumer (every thread of it) stops, heartbeats included."""
        from integration_helpers import process_state

        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True
        deadline = time.monotonic() + 10
        while process_state(self.pid) not in ("T", "t", None):
            assert time.monotonic() < deadline, f"{self.name} did not stop"
            time.sleep(0.02)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    # what it printed

    def reads(self) -> list[Read]:
        raise NotImplementedError

    def assignment(self) -> frozenset[int] | None:
        """The partitions it holds now: its last assignment, ``frozenset()`` once revoked,
        ``None`` before the first."""
        raise NotImplementedError


class GroupConsumer(_ConsumerProcess):
    """``python group_helpers.py --client CLIENT ...`` (see the module)."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        *,
        client: str,
        bootstrap: str,
        group: str,
        topic: str,
        session_timeout_ms: int = 6000,
        hold_file: Path | None = None,
        max_seconds: float = 150.0,
        instance_id: str | None = None,
    ):
        super().__init__(workdir, name, max_seconds)
        if client not in CLIENTS:
            raise ValueError(f"client {client!r}: one of {CLIENTS}")
        if instance_id is not None and client != "confluent":
            raise ValueError("static membership (instance_id) is wired for confluent only")
        self.client = client
        self.arguments = [
            "--client", client, "--bootstrap", bootstrap, "--group", group, "--topic", topic,
            "--client-id", name, "--session-timeout-ms", str(session_timeout_ms),
            "--max-seconds", str(max_seconds),
        ]  # fmt: skip
        if hold_file is not None:
            self.arguments += ["--hold-file", str(hold_file)]
        if instance_id is not None:
            self.arguments += ["--instance-id", instance_id]
        self._parsed: list[dict] = []
        self._position = 0

    def command(self) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), *self.arguments]

    def events(self, kind: str | None = None) -> list[dict]:
        """The events printed so far (complete lines only), of ``kind`` if given."""
        if self.out_path.exists():
            with open(self.out_path, "rb") as out:
                out.seek(self._position)
                data = out.read()
            complete = data.rpartition(b"\n")[0]
            if complete:
                self._position += len(complete) + 1
                self._parsed += [json.loads(line) for line in complete.split(b"\n")]
        return [e for e in self._parsed if kind is None or e["event"] == kind]

    def reads(self) -> list[Read]:
        return [Read(*r) for e in self.events("records") for r in e["records"]]

    def assignment(self) -> frozenset[int] | None:
        changes = [e for e in self.events() if e["event"] in ("assigned", "revoked")]
        if not changes:
            return None
        last = changes[-1]
        return frozenset(last["partitions"]) if last["event"] == "assigned" else frozenset()


#: kcat's rebalance lines on stderr: ``% Group G rebalanced (memberid M): assigned: T [0], ...``
_KCAT_REBALANCE = re.compile(r"rebalanced \(memberid \S+\): (assigned|revoked): (.*)$", re.M)


class KcatConsumer(_ConsumerProcess):
    """``kcat -G GROUP TOPIC`` (balanced consumer, auto-commit every 100 ms and on close),
    printing ``partition offset value`` lines; run under ``timeout``, which passes SIGTERM on
    (not used with pause: SIGSTOP would stop ``timeout``, not kcat)."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        *,
        kcat: str,
        bootstrap: str,
        group: str,
        topic: str,
        session_timeout_ms: int = 6000,
        max_seconds: float = 150.0,
    ):
        super().__init__(workdir, name, max_seconds)
        self.arguments = [
            kcat, "-b", bootstrap, "-G", group, topic, "-u", "-f", r"%p %o %s\n",
            "-X", "client.id=" + name,
            "-X", "auto.offset.reset=earliest",
            "-X", f"session.timeout.ms={session_timeout_ms}",
            "-X", f"heartbeat.interval.ms={HEARTBEAT_MS}",
            "-X", "enable.auto.commit=true",
            "-X", "auto.commit.interval.ms=100",
            "-X", "fetch.wait.max.ms=100",
        ]  # fmt: skip

    def command(self) -> list[str]:
        return ["timeout", "-k", "5", str(int(self.max_seconds)), *self.arguments]

    def reads(self) -> list[Read]:
        if not self.out_path.exists():
            return []
        complete = self.out_path.read_text().rpartition("\n")[0]
        reads = []
        for line in complete.splitlines():
            partition, offset, value = line.split(" ", 2)
            reads.append(Read(int(partition), int(offset), value))
        return reads

    def assignment(self) -> frozenset[int] | None:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        changes = _KCAT_REBALANCE.findall(text)
        if not changes:
            return None
        kind, partitions = changes[-1]
        if kind == "revoked":
            return frozenset()
        return frozenset(int(p) for p in re.findall(r"\[(\d+)\]", partitions))


# -- the harness: producing, asking the coordinator ---------------------------------------------


def produce(
    bootstrap: str, topic: str, tag: str, per_partition: int, partitions: int = 6
) -> dict[str, tuple[int, int]]:
    """Send ``per_partition`` values ``TAG-P-I`` to each partition P (confluent-kafka,
    idempotent, acks=all); return ``{value: (partition, offset)}`` from the delivery reports.
    Fails unless every value was acknowledged."""
    from confluent_kafka import Producer

    placed: dict[str, tuple[int, int]] = {}
    errors: list[str] = []

    def delivered(error, message):
        if error is not None:
            errors.append(f"{message.value()!r}: {error}")
        else:
            placed[message.value().decode()] = (message.partition(), message.offset())

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60_000,
            "retry.backoff.ms": 100,
            "topic.metadata.refresh.interval.ms": 2000,
        }
    )
    for index in range(per_partition):
        for partition in range(partitions):
            value = f"{tag}-{partition}-{index:04d}"
            producer.produce(
                topic, value=value.encode(), partition=partition, on_delivery=delivered
            )
        producer.poll(0)
    left = producer.flush(90)
    assert left == 0 and not errors, f"{left} values not delivered; errors {errors[:5]}"
    assert len(placed) == per_partition * partitions
    return placed


def _raw_request(port: int, api_key: int, version: int, body: dict, timeout: float = 10.0):
    from integration_helpers import RawClient

    with RawClient(port, timeout=timeout, client_id="group-test") as client:
        return client.request(api_key, version, body)


def coordinator(port: int, group: str) -> tuple[int, int]:
    """FindCoordinator v2 for ``group`` asked of the broker on ``port``: ``(error code,
    node id)``."""
    from tmq.protocol.apis import ApiKey

    answer = _raw_request(port, ApiKey.FIND_COORDINATOR, 2, {"key": group, "key_type": 0})
    return answer.error_code, answer.node_id


class Described(NamedTuple):
    """A DescribeGroups answer: error, state, and per member id its client id and the
    partitions of ``topic`` its (decoded) assignment holds."""

    error_code: int
    state: str
    protocol: str
    members: dict[str, tuple[str, frozenset[int]]]


def describe_group(port: int, group: str, topic: str) -> Described:
    """DescribeGroups v4 for ``group`` at the broker on ``port``."""
    from tmq.client.consumer_protocol import decode_assignment
    from tmq.protocol.apis import ApiKey

    answer = _raw_request(
        port, ApiKey.DESCRIBE_GROUPS, 4, {"groups": [group], "include_authorized_operations": False}
    )
    (entry,) = answer.groups
    members = {}
    for member in entry.members:
        assigned: frozenset[int] = frozenset()
        if member.member_assignment:
            decoded = decode_assignment(member.member_assignment)
            assigned = frozenset(p for t, p in decoded.partitions() if t == topic)
        members[member.member_id] = (member.client_id, assigned)
    return Described(entry.error_code, entry.group_state, entry.protocol_data, members)


def committed_offsets(
    port: int, group: str, topic: str, partitions: int = 6
) -> tuple[int, dict[int, int]]:
    """OffsetFetch v5 at the broker on ``port``: ``(error code, {partition: offset})``, -1 for
    nothing committed."""
    from tmq.protocol.apis import ApiKey

    answer = _raw_request(
        port,
        ApiKey.OFFSET_FETCH,
        5,
        {
            "group_id": group,
            "topics": [{"name": topic, "partition_indexes": list(range(partitions))}],
        },
    )
    offsets = {p.partition_index: p.committed_offset for t in answer.topics for p in t.partitions}
    return answer.error_code, offsets


def ends(placed: Mapping[str, tuple[int, int]], partitions: int = 6) -> dict[int, int]:
    """Each partition's end offset after the values in ``placed`` (what was produced)."""
    result = dict.fromkeys(range(partitions), 0)
    for partition, offset in placed.values():
        result[partition] = max(result[partition], offset + 1)
    return result


# -- the checks ---------------------------------------------------------------------------------


def split_ok(assignments: Iterable[frozenset[int] | None], partitions: int = 6) -> bool:
    """Whether the assignments are known, pairwise disjoint, and together hold every partition
    (each a share as even as the range assignor makes it)."""
    held = list(assignments)
    if any(a is None for a in held) or not held:
        return False
    if sum(len(a) for a in held) != partitions or frozenset().union(*held) != set(
        range(partitions)
    ):
        return False
    low = partitions // len(held)
    return all(low <= len(a) <= low + 1 for a in held)


def assert_split(assignments: Iterable[frozenset[int] | None], partitions: int = 6) -> None:
    held = list(assignments)
    assert split_ok(held, partitions), f"not a split of {partitions} partitions: {held}"


def check_reads(
    placed: Mapping[str, tuple[int, int]], reads: Iterable[Read], what: str = "reads"
) -> Counter:
    """Every read is a produced value at the partition and offset the producer was told, and
    every produced value was read (none lost). Returns how often each value was read
    (duplicates are the caller's to judge)."""
    counts: Counter = Counter()
    wrong = []
    for read in reads:
        if placed.get(read.value) != (read.partition, read.offset):
            wrong.append(read)
        counts[read.value] += 1
    assert not wrong, f"{what}: values not where they were produced: {wrong[:10]}"
    missing = sorted(set(placed) - set(counts))
    assert not missing, f"{what}: {len(missing)} produced values never read: {missing[:10]}"
    return counts


def read_all_of(consumers: Iterable[_ConsumerProcess], placed: Mapping[str, Any]) -> bool:
    """Whether the consumers together have read every value of ``placed``."""
    seen = {read.value for consumer in consumers for read in consumer.reads()}
    return set(placed) <= seen


def consumer_processes():
    """The body of a fixture: ``consumers(process)`` starts a consumer process and returns it;
    every one is killed at the end (register it in a test module:
    ``consumers = pytest.fixture(group_helpers.consumer_processes)``)."""
    started: list[_ConsumerProcess] = []

    def start(consumer: _ConsumerProcess) -> _ConsumerProcess:
        started.append(consumer.start())
        return consumer

    yield start
    for consumer in started:
        with contextlib.suppress(ProcessLookupError):
            if consumer.paused and consumer.running:
                consumer.resume()
        consumer.kill()


# -- waiting for the group ------------------------------------------------------------------------


def group_matches(port: int, group: str, topic: str, members) -> bool:
    """Whether the broker on ``port`` shows the group Stable with exactly ``members`` (by
    client id), each holding what it says it holds, and their assignments split the topic."""
    held = {m.name: m.assignment() for m in members}
    if not split_ok(held.values()):
        return False
    described = describe_group(port, group, topic)
    if described.error_code != 0 or described.state != "Stable":
        return False
    shown = dict(described.members.values())  # client id -> partitions
    return len(described.members) == len(members) and shown == held


def wait_for_group(port: int, group: str, topic: str, members, what: str, timeout=60.0) -> float:
    """Poll until ``group_matches``; return the seconds it took."""
    from pipeline_helpers import wait_for

    start = time.monotonic()
    wait_for(lambda: group_matches(port, group, topic, members), timeout, what, *members)
    return time.monotonic() - start


def wait_for_commits(port: int, group: str, topic: str, wanted: dict[int, int], *logs) -> None:
    """Poll until the group's committed offsets are ``wanted`` (nothing newer to commit)."""
    from pipeline_helpers import wait_for

    seen = []

    def done() -> bool:
        seen.append(committed_offsets(port, group, topic))
        return seen[-1] == (0, wanted)

    try:
        wait_for(done, 30, f"commits {wanted}", *logs)
    except AssertionError as error:
        raise AssertionError(f"{error}\nlast OffsetFetch: {seen[-1]}") from None


def tmq_json(cwd: Path, *arguments: str) -> dict:
    """``tmq ARGUMENTS --json`` (cwd outside the checkout), its output decoded."""
    from pipeline_helpers import run_tmq

    result = run_tmq(*arguments, "--json", cwd=cwd, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return json.loads(result.stdout)


if __name__ == "__main__":
    sys.exit(consumer_main())
