"""``tmq bench produce --replication-factor N``: the produce benchmark against a cluster.

One throwaway etcd and N ``tmq broker`` processes (``flush.policy=always``, metadata in that
etcd) on free loopback ports, all in one fresh directory, removed at the end. Every round of
every client produces to two fresh topics of that cluster, one after the other: one with N
replicas and ``min.insync.replicas=min(2, N)``, one with a single replica
(``min.insync.replicas=1``). Same brokers, same client, same acks and load, leaders spread
over the same brokers by the same round-robin assignment: what differs is the replication, so
``replication_cost`` = RF=1 rate / RF=N rate (best rounds) measures just that. The order of
the two alternates from round to round. Each topic is created, and its ISR seen complete, right
before its run (not earlier: a replicated partition left idle for longer than
``replica.lag.time.max.ms`` may shrink its ISR once writes start).

Verified beyond the single-broker benchmark: after a client's rounds every topic is read back
from the partition leaders in a fresh process. Per partition, the offsets must run from 0 to
the high watermark without a gap; the high watermarks must sum to the messages sent; each of
the 64 keys must be read exactly as often as it was sent, from one partition only. Then each
replicated partition's segment files (``*.log``: names, sizes, CRC-32) must be the same on
all of its replicas (``replicas_identical``; waited for up to 30 s, as with acks=1 followers
may trail the acknowledgement).

Broker CPU is summed over the broker processes (etcd not counted). The brokers' logs are
read after the run: warnings, errors, tracebacks and ISR shrinks are reported under
``broker_logs``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

from .bench_clients import (
    _KEYS,
    BenchBroker,
    _available,
    _baselines,
    _client_run,
    _end_offsets,
    _ReadCheck,
    _summary,
    in_fresh_process,
    platform_info,
    run_on_reactor,
)
from .errors import CommandError
from .etcd import INSTALL_HINT, EtcdError, ThrowawayEtcd

__all__ = ["CLUSTER_FLOORS", "BenchCluster", "compare_replicas", "in_sync", "run_cluster_bench"]

#: Floors of the cluster benchmark (messages per second), by (benchmark, client, replication
#: factor, acks); 3 brokers on one machine, flush.policy=always, min.insync.replicas=2.
CLUSTER_FLOORS = {("produce", "bundled", 3, "all"): 100_000}

#: Log lines worth reporting: Twisted's ``[namespace#level]`` above info, and tracebacks.
_PROBLEM = re.compile(r"#(?:warn|error|critical)\]|Traceback|Unhandled")
#: What a leader logs (at info) when it drops followers from the ISR.
_ISR_SHRINK = "shrinking the ISR"
_REPLICA_WAIT_S = 30.0


class BenchCluster:
    """A throwaway etcd (``workdir/etcd``) and brokers ``1..size`` (``BenchBroker`` in
    ``workdir/broker-<id>``), each with the extra ``settings``."""

    def __init__(self, workdir: Path, size: int, settings: tuple[str, ...] = ()):
        self.workdir = workdir
        self.brokers: list[BenchBroker] = []
        try:
            self.etcd = ThrowawayEtcd(workdir / "etcd")
        except EtcdError as error:
            raise CommandError(str(error)) from None
        try:
            self.etcd.start()
            metadata = f"etcd://{self.etcd.endpoint}"
            for broker_id in range(1, size + 1):
                broker = BenchBroker(
                    workdir / f"broker-{broker_id}",
                    broker_id=broker_id,
                    metadata=metadata,
                    settings=settings,
                )
                self.brokers.append(broker)
        except EtcdError as error:
            self.stop()
            raise CommandError(str(error)) from None
        except BaseException:
            self.stop()
            raise

    @property
    def bootstrap(self) -> str:
        return ",".join(broker.bootstrap for broker in self.brokers)

    def cpu_seconds(self) -> float:
        """CPU seconds of all broker processes together."""
        return sum(broker.cpu_seconds() for broker in self.brokers)

    def replica_dirs(self, topic: str, partition: int) -> dict[int, Path]:
        """The brokers that hold a replica of ``topic``-``partition`` on disk: its directory."""
        from tmq.storage.names import partition_dir_name

        name = partition_dir_name(topic, partition)
        return {
            broker.broker_id: broker.data_dir / name
            for broker in self.brokers
            if (broker.data_dir / name).is_dir()
        }

    def stop(self) -> None:
        """Stop every broker (SIGTERM to all at once: one by one, each stop would move
        leaderships onto the brokers left), then etcd."""
        try:
            for broker in self.brokers:
                if broker.process.poll() is None:
                    broker.process.terminate()
            for broker in self.brokers:
                try:
                    broker.process.wait(30)
                except subprocess.TimeoutExpired:
                    broker.process.kill()
                    broker.process.wait()
        finally:
            self.etcd.stop()

    def log_problems(self) -> dict:
        """Per broker: how many lines its log has; its warnings, errors and tracebacks, and
        its ISR shrinks (how many of each, and the first few)."""
        report = {}
        for broker in self.brokers:
            try:
                lines = broker.log_path.read_text(errors="replace").splitlines()
            except OSError as error:
                report[f"broker-{broker.broker_id}"] = {"unreadable": str(error)}
                continue
            problems = [line[:400] for line in lines if _PROBLEM.search(line)]
            shrinks = [line[:400] for line in lines if _ISR_SHRINK in line]
            report[f"broker-{broker.broker_id}"] = {
                "lines": len(lines),
                "problems": len(problems),
                "first_problems": problems[:5],
                "isr_shrinks": len(shrinks),
                "first_isr_shrinks": shrinks[:5],
            }
        return report


# -- in fresh processes: topics and the read-back ------------------------------------------------


async def _create_topics(
    reactor, bootstrap: str, brokers: int, topics: dict, partitions: int, timeout: float = 60.0
) -> None:
    """Wait until ``brokers`` brokers are registered; create ``topics`` (``{name:
    (replication factor, configs)}``) with ``partitions`` partitions each; wait until every
    partition has a leader and all its replicas in the ISR."""
    from twisted.internet.task import deferLater

    from tmq.client import Admin, Cluster, NewTopic
    from tmq.client.errors import KafkaError

    cluster = Cluster(reactor, bootstrap)
    admin = Admin(cluster)
    deadline = reactor.seconds() + timeout

    async def pause(what: str) -> None:
        if reactor.seconds() > deadline:
            raise RuntimeError(f"{what} within {timeout} s")
        await deferLater(reactor, 0.1, lambda: None)

    try:
        while len((await admin.describe_cluster()).brokers) < brokers:
            await pause(f"{brokers} brokers did not register")
        wanted = [
            NewTopic(name, partitions, factor, configs)
            for name, (factor, configs) in topics.items()
        ]
        outcomes = await admin.create_topics(wanted)
        refused = {name: str(error) for name, error in outcomes.items() if error is not None}
        if refused:
            raise RuntimeError(f"CreateTopics refused: {refused}")
        while True:
            try:
                described = await admin.describe_topics(list(topics))
            except KafkaError:
                described = {}
            if all(in_sync(described.get(name), partitions, topics[name][0]) for name in topics):
                return
            await pause("the topics' partitions did not get a leader and a full ISR")
    finally:
        cluster.close()


def in_sync(topic, partitions: int, factor: int) -> bool:
    """Whether ``topic`` (a ``describe_topics`` entry, or ``None``) has ``partitions``
    partitions, each with a leader and ``factor`` replicas, all in its ISR."""
    if topic is None or topic.error_code or topic.partition_count != partitions:
        return False
    return all(
        p.leader >= 0 and len(p.replicas) == factor and set(p.isr) == set(p.replicas)
        for p in topic.partitions.values()
    )


def _expected_key_counts(messages: int) -> Counter:
    """How often each key was sent: message ``i`` has key ``_KEYS[i % 64]``."""
    whole, rest = divmod(messages, len(_KEYS))
    counts = Counter({key: whole + (k < rest) for k, key in enumerate(_KEYS)})
    return +counts  # without the keys never sent


async def _read_back(reactor, bootstrap: str, topics: list[str], partitions: int, messages: int):
    """Read every topic from its partitions' leaders; return ``{topic: {"high_watermarks",
    "read", "problems"}}`` (no problems: each message stored exactly once)."""
    from tmq.client import Cluster, Consumer

    cluster = Cluster(reactor, bootstrap)
    expected = _expected_key_counts(messages)
    report = {}
    try:
        for topic in topics:
            ends = await _end_offsets(reactor, cluster, topic, partitions)
            check, keys, homes = await _read_topic(cluster, Consumer, topic, partitions, ends)
            problems = list(check.gaps[:5])
            if sum(ends) != messages:
                problems.append(f"high watermarks {ends} sum to {sum(ends)}, not {messages}")
            short = [f"{p}: {check.next[p]} < {ends[p]}" for p in range(partitions)
                     if check.next[p] != ends[p]]  # fmt: skip
            if short:
                problems.append(f"read up to, per partition, less than the high watermark {short}")
            if keys != expected:
                every = set(expected) | set(keys)
                wrong = [(repr(k), keys[k], expected[k]) for k in every if keys[k] != expected[k]]
                problems.append(f"keys read differ from those sent (key, read, sent): {wrong[:3]}")
            split = [repr(key) for key, home in homes.items() if len(home) > 1]
            if split:
                problems.append(f"keys in more than one partition: {split[:3]}")
            report[topic] = {"high_watermarks": ends, "read": check.count, "problems": problems}
    finally:
        cluster.close()
    return report


async def _read_topic(cluster, consumer_class, topic: str, partitions: int, ends: list[int]):
    clock = time.monotonic
    consumer = consumer_class(cluster, max_records=10_000, max_partition_bytes=4 << 20)
    wanted = [(topic, p) for p in range(partitions)]
    consumer.assign(wanted)
    consumer.seek_to_beginning(*wanted)
    check = _ReadCheck(partitions)
    keys: Counter = Counter()
    homes: dict[bytes, set[int]] = {}
    total = sum(ends)
    idle_since = clock()
    try:
        while check.count < total:
            records = await consumer.poll(1000)
            if not records:
                if clock() - idle_since > 30:
                    break
                continue
            idle_since = clock()
            for record in records:
                check.run(record.partition, record.offset, record.offset, 1, len(record.value))
                keys[record.key] += 1
                homes.setdefault(record.key, set()).add(record.partition)
    finally:
        consumer.close()
    return check, keys, homes


# -- on disk: the replicas ----------------------------------------------------------------------


def _segments(directory: Path) -> list[tuple[str, int, int]]:
    """``(name, size, CRC-32)`` of each ``*.log`` segment file in ``directory``, by name."""
    found = []
    for path in sorted(directory.glob("*.log")):
        crc = 0
        size = 0
        with open(path, "rb") as segment:
            while chunk := segment.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
        found.append((path.name, size, crc))
    return found


def compare_replicas(
    cluster: BenchCluster,
    topics: list[str],
    partitions: int,
    factor: int,
    wait: float = _REPLICA_WAIT_S,
) -> dict:
    """Compare the segment files of every replica of every partition of ``topics``; retry
    for up to ``wait`` seconds while they differ (followers still catching up)."""
    deadline = time.monotonic() + wait
    while True:
        mismatches = []
        checked = log_bytes = 0
        for topic in topics:
            for partition in range(partitions):
                dirs = cluster.replica_dirs(topic, partition)
                if len(dirs) != factor:
                    mismatches.append(
                        f"{topic}-{partition}: on brokers {sorted(dirs)}, not {factor} replicas"
                    )
                    continue
                segments = {broker_id: _segments(path) for broker_id, path in dirs.items()}
                first = next(iter(segments.values()))
                checked += 1
                log_bytes += sum(size for _, size, _ in first)
                if any(found != first for found in segments.values()):
                    sizes = {b: sum(size for _, size, _ in s) for b, s in segments.items()}
                    same = len(set(sizes.values())) == 1
                    mismatches.append(
                        f"{topic}-{partition}: log bytes by broker {sizes}"
                        + (" (equal sizes, different CRC-32)" if same else "")
                    )
        if not mismatches or time.monotonic() > deadline:
            return {
                "identical": not mismatches,
                "partitions": checked,
                "log_bytes_per_replica": log_bytes,
                "mismatches": mismatches[:10],
            }
        time.sleep(0.5)


# -- the benchmark ------------------------------------------------------------------------------


def run_cluster_bench(
    clients: tuple[str, ...],
    *,
    replication_factor: int,
    acks: str,
    messages: int,
    value_bytes: int,
    partitions: int,
    rounds: int,
    parent: str | None = None,
    progress=None,
    keep: bool = False,
) -> dict:
    """Run the produce benchmark for ``clients`` against etcd and ``replication_factor``
    brokers of its own, in a fresh directory under ``parent`` (removed at the end unless
    ``keep``), RF=N and RF=1 topics alternating; return the JSON-ready results."""

    def say(text: str) -> None:
        if progress is not None:
            print(text, file=progress, flush=True)

    for client in clients:
        _available(client)
    if shutil.which("etcd") is None:
        raise CommandError(f"etcd is not installed (not on PATH): {INSTALL_HINT}")
    factor = replication_factor
    min_insync = min(2, factor)
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="tmq-bench-cluster-", dir=parent))
    cluster = None
    logs: dict = {}
    try:
        say("measuring baselines: write+fsync, loopback TCP ...")
        baselines = _baselines(workdir, value_bytes)
        say(f"starting etcd and {factor} brokers ...")
        cluster = BenchCluster(workdir, factor, (f"min.insync.replicas={min_insync}",))
        results, reference, checks = {}, {}, []
        for client in clients:
            names = {rf: [f"bench-{client}-rf{rf}-{r}" for r in range(1, rounds + 1)]
                     for rf in (factor, 1)}  # fmt: skip
            insync = {factor: min_insync, 1: 1}
            runs: dict[int, list[dict]] = {factor: [], 1: []}
            for round_number in range(1, rounds + 1):
                order = (factor, 1) if round_number % 2 else (1, factor)
                for rf in order:
                    topic = names[rf][round_number - 1]
                    say(f"produce {client} RF={rf} acks={acks}: round {round_number}/{rounds} ...")
                    # Created right before its run: a replicated partition left idle longer
                    # than replica.lag.time.max.ms may shrink its ISR once writes start.
                    spec = {topic: (rf, {"min.insync.replicas": str(insync[rf])})}
                    in_fresh_process(
                        run_on_reactor, _create_topics, cluster.bootstrap, factor, spec, partitions
                    )
                    cpu_before = cluster.cpu_seconds()
                    run = in_fresh_process(
                        _client_run, "produce", client, cluster.bootstrap, topic,
                        messages, value_bytes, partitions, acks=acks, create=False,
                    )  # fmt: skip
                    run["broker_cpu_seconds"] = cluster.cpu_seconds() - cpu_before
                    runs[rf].append(run)
            topics = [*names[factor], *names[1]]
            say(f"{client}: reading {len(topics)} topics back from the leaders ...")
            read = in_fresh_process(
                run_on_reactor, _read_back, cluster.bootstrap, topics, partitions, messages
            )
            for rf, topic_runs in runs.items():
                for topic, run in zip(names[rf], topic_runs, strict=True):
                    problems = read[topic]["problems"]
                    run["errors"] = run["errors"] + [f"{topic}: {p}" for p in problems]
                    run["error_count"] += len(problems)
            say(f"{client}: comparing the replicas' segment files ...")
            checks.append(compare_replicas(cluster, names[factor], partitions, factor))
            floor = CLUSTER_FLOORS.get(("produce", client, factor, acks))
            results[client] = _summary(
                "produce", client, runs[factor], messages, value_bytes, floor=floor
            )
            reference[client] = _summary(
                "produce", client, runs[1], messages, value_bytes, floor=None
            )
            say(
                f"produce {client}: RF={factor} {results[client]['messages_per_s']:,} msg/s, "
                f"RF=1 {reference[client]['messages_per_s']:,} msg/s"
            )
    except BaseException:
        if cluster is not None:
            cluster.stop()
            say(f"the brokers' logs: {cluster.log_problems()}")
        raise
    finally:
        if cluster is not None:
            cluster.stop()
            logs = cluster.log_problems()
        if keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    identical = all(check["identical"] for check in checks)
    verified = all(r["verified"] for r in (*results.values(), *reference.values()))
    return {
        "benchmark": "produce",
        **platform_info(),
        "config": {
            "messages": messages,
            "value_bytes": value_bytes,
            "key": "one of 64 GPU UUIDs (42 bytes)",
            "partitions": partitions,
            "rounds": rounds,
            "acks": "all" if acks == "all" else 1,
            "idempotence": False,
            "replication_factor": factor,
            "min_insync_replicas": min_insync,
            "broker": f"{factor} processes on this machine, flush.policy=always, "
            "metadata in one etcd",
            "rf1_reference": "the same cluster, same rounds: topics with one replica "
            "(min.insync.replicas=1), produced right before or after the replicated ones",
            "compression": "none",
        },
        "units": {
            "messages_per_s": "messages per second, best round",
            "cpu_us_per_message": "CPU microseconds (user + system) per message; broker: "
            "all broker processes together",
            "latency": "produce() to acknowledgement, every 64th record, under full load",
            "replication_cost": "RF=1 messages/s divided by RF=N messages/s",
        },
        "load_average": {
            "before": [round(load, 2) for load in load_before],
            "after": [round(load, 2) for load in os.getloadavg()],
            "note": "1, 5 and 15 minute load averages of the machine: others' work competes "
            "with the clients and brokers for its CPUs",
        },
        "baselines": baselines,
        "results": results,
        "replication": {
            "replication_factor": factor,
            "acks": "all" if acks == "all" else 1,
            "min_insync_replicas": min_insync,
            "results": {
                client: {
                    "messages_per_s": results[client]["messages_per_s"],
                    "rf1_messages_per_s": reference[client]["messages_per_s"],
                    "replication_cost": round(
                        reference[client]["messages_per_s"] / results[client]["messages_per_s"],
                        2,
                    ),
                    "rf1": reference[client],
                }
                for client in results
            },
            "replicas_identical": identical,
            "replica_check": {
                "partitions": sum(check["partitions"] for check in checks),
                "log_bytes_per_replica": sum(check["log_bytes_per_replica"] for check in checks),
                "compared": "names, sizes and CRC-32 of each replica's *.log segment files",
                "mismatches": [m for check in checks for m in check["mismatches"]][:10],
            },
        },
        "broker_logs": logs,
        "verified": verified and identical,
        "meets_floors": all(r["meets_floor"] is not False for r in results.values()),
    }
