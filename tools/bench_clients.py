"""``tmq bench produce`` and ``tmq bench consume``: client throughput against one real broker.

Each benchmark starts its own broker process (``flush.policy=always``: every acknowledged
batch is on disk) on a free loopback port, with its data in a fresh directory, and runs every
client in a fresh process of its own, one after the other, ``--rounds`` times; the best round
counts. Values are msgpack maps shaped like DCGM samples, padded to ``--value-bytes``, keyed by
64 GPU UUIDs. Producers use ``acks=1``, no idempotence, no compression.

Every run is verified, not only timed: after a produce run the partitions' end offsets must sum
to the messages sent (each round writes a fresh topic), with no error reported to the sampled
delivery callbacks and nothing left undelivered; a consume run must read every message exactly
once, with contiguous offsets per partition.

Reported per client: messages/s and MB/s, the client's and the broker's CPU time per message
(from ``/proc``), and for producers the p50/p99 latency from ``produce`` to acknowledgement of
every 64th record (under full load, so it includes queueing). Next to them, baselines measured
in the same run: loopback TCP throughput between two threads, and raw ``write`` + ``fsync``
rates of 256 KiB chunks in the broker's data directory.

``tmq bench produce --replication-factor N`` (N > 1) runs against a cluster instead: one etcd
and N brokers (``tools/bench_cluster.py``), with ``--acks all`` or ``1``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import msgpack

from . import bench_log
from .errors import CommandError

__all__ = [
    "BenchBroker",
    "add_parsers",
    "in_fresh_process",
    "platform_info",
    "process_cpu_seconds",
    "run_client_bench",
    "run_on_reactor",
]

#: Floors set by issue #4 (messages per second, one broker, acks=1, flush.policy=always);
#: the cluster's are ``bench_cluster.CLUSTER_FLOORS``.
FLOORS = {
    ("produce", "bundled"): 150_000,
    ("produce", "confluent"): 300_000,
    ("consume", "bundled"): 200_000,
    ("consume", "confluent"): 300_000,
}
CLIENTS = ("bundled", "confluent")
_KEYS = [f"GPU-{i:08x}-86f3-7a43-b711-4771313afc50".encode() for i in range(64)]
_LATENCY_EVERY = 64
_MB = 1_000_000


def add_parsers(kinds) -> None:
    for kind, verb in (("produce", "produce to"), ("consume", "consume from")):
        parser = kinds.add_parser(
            kind,
            help=f"client throughput: {verb} one local broker",
            description=(
                f"Start a broker (flush.policy=always) and {verb} it with each client in a "
                "process of its own; report messages/s, MB/s, CPU per message of client and "
                "broker"
                + (", p50/p99 produce latency" if kind == "produce" else "")
                + ", next to loopback TCP and write+fsync baselines from the same run."
                + (
                    " With --replication-factor N > 1: etcd and N brokers instead, RF=N and "
                    "RF=1 topics of that cluster measured in the same run, the replicas "
                    "compared on disk."
                    if kind == "produce"
                    else ""
                )
            ),
        )
        parser.add_argument(
            "--client",
            choices=(*CLIENTS, "all"),
            default="all",
            help="which client to measure (default %(default)s)",
        )
        parser.add_argument(
            "--messages",
            type=int,
            default=1_000_000,
            help="messages per round (default %(default)s)",
        )
        parser.add_argument(
            "--value-bytes",
            type=int,
            default=200,
            help="size of every value, 170 to 400 (default %(default)s)",
        )
        parser.add_argument(
            "--partitions", type=int, default=4, help="partitions of the topic (default 4)"
        )
        parser.add_argument(
            "--rounds", type=int, default=3, help="rounds per client; the best counts (default 3)"
        )
        parser.add_argument(
            "--dir",
            default=None,
            help="parent of the broker's temporary data directory (default: system temp)",
        )
        parser.add_argument(
            "--keep",
            action="store_true",
            help="keep that directory (data, broker logs) instead of removing it at the end",
        )
        if kind == "produce":
            parser.add_argument(
                "--replication-factor",
                type=int,
                default=1,
                help="1: one broker (default); N > 1: etcd and N brokers, topics with N "
                "replicas and min.insync.replicas=min(2, N), measured next to RF=1 topics of "
                "the same cluster",
            )
            parser.add_argument(
                "--acks",
                choices=("1", "all"),
                default="1",
                help="the producers' acks (default %(default)s)",
            )
        parser.set_defaults(run=_run, bench_kind=kind, bench_parser=parser)


def _run(args: argparse.Namespace) -> int:
    if args.messages < 1 or args.rounds < 1 or args.partitions < 1:
        args.bench_parser.error("--messages, --rounds and --partitions must be >= 1")
    if not 170 <= args.value_bytes <= 400:
        args.bench_parser.error("--value-bytes must be between 170 and 400")
    clients = CLIENTS if args.client == "all" else (args.client,)
    replication_factor = getattr(args, "replication_factor", 1)  # produce only
    acks = getattr(args, "acks", "1")
    if replication_factor < 1:
        args.bench_parser.error("--replication-factor must be >= 1")
    common = {
        "messages": args.messages,
        "value_bytes": args.value_bytes,
        "partitions": args.partitions,
        "rounds": args.rounds,
        "parent": args.dir,
        "progress": sys.stderr,
        "keep": args.keep,
        "acks": acks,
    }
    if replication_factor > 1:
        from .bench_cluster import run_cluster_bench

        results = run_cluster_bench(clients, replication_factor=replication_factor, **common)
    else:
        results = run_client_bench(args.bench_kind, clients, **common)
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if results["verified"] else 1


# -- values --------------------------------------------------------------------------------


def sample_values(count: int, value_bytes: int) -> list[bytes]:
    """``count`` distinct msgpack maps shaped like DCGM samples, each exactly ``value_bytes``
    long (a binary ``pad`` field fills the rest: up to 255 bytes its header is 2 bytes)."""
    values = []
    for i in range(count):
        sample = {
            "time_us": 1_752_871_354_000_000 + i,
            "metric": "DCGM_FI_DEV_POWER_USAGE",
            "gpu_index": i % 8,
            "uuid": _KEYS[i % len(_KEYS)].decode(),
            "hostname": f"mtv5-dgx1-hgpu-{i % 31:03d}",
            "value": 150.0 + i % 100,
            "pad": b"",
        }
        short = value_bytes - len(msgpack.packb(sample))
        if not 0 <= short <= 255:
            raise ValueError(f"values of {value_bytes} bytes cannot hold a sample map")
        sample["pad"] = bytes(short)
        values.append(msgpack.packb(sample))
    return values


# -- the clients, each run in a fresh process ----------------------------------------------


def _percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "samples": 0}
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "samples": len(ordered)}


def _latency_sampler(latencies: list[float], errors: list[str]):
    """``timed(sent_at)`` makes a delivery callback (``(error, result)``, as both clients call
    it) that appends the time since ``sent_at`` to ``latencies``, or the error to ``errors``."""
    clock = time.perf_counter

    def timed(sent_at: float):
        def delivered(error, _result) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                latencies.append(clock() - sent_at)

        return delivered

    return timed


def run_on_reactor(coroutine_function, *args, **kwargs):
    """Run ``coroutine_function(reactor, *args, **kwargs)`` on a fresh process's reactor;
    return its result or raise its error."""
    from twisted.internet import defer, reactor

    outcome: dict = {}

    def start() -> None:
        running = defer.ensureDeferred(coroutine_function(reactor, *args, **kwargs))
        running.addCallbacks(
            lambda result: outcome.setdefault("result", result),
            lambda failure: outcome.setdefault("error", failure.getTraceback()),
        )
        running.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    if "error" in outcome:
        raise RuntimeError(outcome["error"])
    return outcome["result"]


async def _end_offsets(reactor, cluster, topic: str, partitions: int) -> list[int]:
    from twisted.internet.task import deferLater

    from tmq.client import Consumer

    consumer = Consumer(cluster, auto_offset_reset="latest")
    wanted = [(topic, p) for p in range(partitions)]
    consumer.assign(wanted)
    try:
        for _ in range(500):
            await consumer.poll(0)
            ends = [consumer.position(tp) for tp in wanted]
            if None not in ends:
                return ends
            await deferLater(reactor, 0.01, lambda: None)
        raise RuntimeError(f"end offsets of {topic} not found")
    finally:
        consumer.close()


async def _bundled_produce(
    reactor, bootstrap, topic, messages, value_bytes, partitions, *, acks="1", create=True
):
    """Produce ``messages`` records to ``topic`` (created here unless ``create`` is false: a
    cluster benchmark creates its topics beforehand, with their replicas in sync)."""
    from twisted.internet.task import deferLater

    from tmq.client import Admin, Cluster, NewTopic, Producer

    cluster = Cluster(reactor, bootstrap)
    if create:
        await Admin(cluster).create_topics([NewTopic(topic, partitions=partitions)])
    producer = Producer(
        cluster,
        acks=-1 if acks == "all" else int(acks),
        idempotent=False,
        linger_ms=5,
        batch_bytes=256 * 1024,
        max_buffered_bytes=64 << 20,
    )
    values = sample_values(256, value_bytes)
    latencies: list[float] = []
    errors: list[str] = []
    clock = time.perf_counter

    timed = _latency_sampler(latencies, errors)

    window = 4 << 20
    produce = producer.produce
    cpu_start, start = time.process_time(), clock()
    sent = 0
    while sent < messages:
        chunk = min(2048, messages - sent)
        for i in range(sent, sent + chunk):
            if i % _LATENCY_EVERY:
                produce(topic, values[i & 255], key=_KEYS[i & 63])
            else:
                produce(topic, values[i & 255], key=_KEYS[i & 63], on_delivery=timed(clock()))
        sent += chunk
        if producer.buffered_bytes > window:
            await producer.buffered_below(window * 3 // 4)
        else:
            await deferLater(reactor, 0, lambda: None)
    await producer.flush()
    elapsed, cpu = clock() - start, time.process_time() - cpu_start
    await producer.close()
    ends = await _end_offsets(reactor, cluster, topic, partitions)
    cluster.close()
    return {
        "seconds": elapsed,
        "client_cpu_seconds": cpu,
        "errors": errors[:5],
        "error_count": len(errors),
        "stored": sum(ends),
        "latency": _percentiles(latencies),
    }


def _confluent_produce(
    bootstrap, topic, messages, value_bytes, partitions, *, acks="1", create=True
):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    if create:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            future.result(30)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": -1 if acks == "all" else int(acks),
            "enable.idempotence": False,
            "compression.type": "none",
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    values = sample_values(256, value_bytes)
    latencies: list[float] = []
    errors: list[str] = []
    clock = time.perf_counter

    timed = _latency_sampler(latencies, errors)

    produce, poll = producer.produce, producer.poll
    cpu_start, start = time.process_time(), clock()
    for i in range(messages):
        callback = None if i % _LATENCY_EVERY else timed(clock())
        while True:
            try:
                produce(topic, values[i & 255], key=_KEYS[i & 63], on_delivery=callback)
                break
            except BufferError:
                poll(0.005)
        if i % 1024 == 0:
            poll(0)
    left = producer.flush(120)
    elapsed, cpu = clock() - start, time.process_time() - cpu_start
    if left:
        errors.append(f"{left} messages undelivered after flush")
    stored = 0
    from confluent_kafka import Consumer, TopicPartition

    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "tmq-bench-watermarks"})
    for partition in range(partitions):
        _, high = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        stored += high
    reader.close()
    return {
        "seconds": elapsed,
        "client_cpu_seconds": cpu,
        "errors": errors[:5],
        "error_count": len(errors),
        "stored": stored,
        "latency": _percentiles(latencies),
    }


class _ReadCheck:
    """Counts what a consumer read and checks that offsets are contiguous per partition."""

    def __init__(self, partitions: int):
        self.next = [0] * partitions
        self.count = 0
        self.bytes = 0
        self.gaps: list[str] = []

    def run(self, partition: int, first: int, last: int, count: int, size: int) -> None:
        """Record ``count`` records of ``partition`` from ``first`` to ``last``, in order."""
        if first != self.next[partition] or last - first + 1 != count:
            self.gaps.append(f"partition {partition}: expected {self.next[partition]}, got {first}")
        self.next[partition] = last + 1
        self.count += count
        self.bytes += size


async def _bundled_consume(reactor, bootstrap, topic, messages, value_bytes, partitions):
    from tmq.client import Cluster, Consumer

    cluster = Cluster(reactor, bootstrap)
    consumer = Consumer(cluster, max_records=10_000, max_partition_bytes=4 << 20)
    wanted = [(topic, p) for p in range(partitions)]
    consumer.assign(wanted)
    consumer.seek_to_beginning(*wanted)
    check = _ReadCheck(partitions)
    clock = time.perf_counter
    cpu_start, start = time.process_time(), clock()
    idle_since = clock()
    while check.count < messages:
        records = await consumer.poll(1000)
        if not records:
            if clock() - idle_since > 30:
                break
            continue
        idle_since = clock()
        # poll returns each partition's records as one run in offset order
        run_start = 0
        for i in range(1, len(records) + 1):
            if i == len(records) or records[i].partition != records[run_start].partition:
                run = records[run_start:i]
                check.run(
                    run[0].partition,
                    run[0].offset,
                    run[-1].offset,
                    len(run),
                    sum(len(r.value) for r in run),
                )
                run_start = i
    elapsed, cpu = clock() - start, time.process_time() - cpu_start
    consumer.close()
    cluster.close()
    return _consume_result(check, elapsed, cpu)


def _confluent_consume(bootstrap, topic, messages, value_bytes, partitions):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tmq-bench",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 4 << 20,
            # librdkafka's default (1000 ms) idles a partition once its local queue holds
            # queued.min.messages; a short backoff keeps fetches flowing.
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    check = _ReadCheck(partitions)
    clock = time.perf_counter
    cpu_start, start = time.process_time(), clock()
    idle_since = clock()
    while check.count < messages:
        batch = consumer.consume(10_000, 1.0)
        if not batch:
            if clock() - idle_since > 30:
                break
            continue
        idle_since = clock()
        for message in batch:
            if message.error() is not None:
                check.gaps.append(str(message.error()))
                continue
            offset = message.offset()
            check.run(message.partition(), offset, offset, 1, len(message.value()))
    elapsed, cpu = clock() - start, time.process_time() - cpu_start
    consumer.close()
    return _consume_result(check, elapsed, cpu)


def _consume_result(check: _ReadCheck, elapsed: float, cpu: float) -> dict:
    return {
        "seconds": elapsed,
        "client_cpu_seconds": cpu,
        "read": check.count,
        "errors": check.gaps[:5],
        "error_count": len(check.gaps),
        "bytes": check.bytes,
    }


def _client_run(kind: str, client: str, *args, **options) -> dict:
    """Entry point of a client process (``options``: the producers' ``acks`` and ``create``)."""
    if client == "bundled":
        body = _bundled_produce if kind == "produce" else _bundled_consume
        return run_on_reactor(body, *args, **options)
    body = _confluent_produce if kind == "produce" else _confluent_consume
    return body(*args, **options)


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds of a running process's live threads, to the nanosecond.

    Sums the first field of ``/proc/PID/task/*/schedstat`` (time on a CPU, in ns). The tick
    counts of ``/proc/PID/stat`` move in 10 ms steps, too coarse for a broker that serves a
    small run in a few milliseconds. Threads that already exited are not counted; the broker's
    threads live as long as it does.
    """
    total_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total_ns += int((task / "schedstat").read_text().split()[0])
        except FileNotFoundError:
            continue  # the thread exited between the listing and the read
    return total_ns / 1e9


def in_fresh_process(function, *args, **kwargs):
    """``function(*args, **kwargs)`` in a new (spawned) Python process; its result."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        return pool.submit(function, *args, **kwargs).result()


# -- the broker and the baselines ------------------------------------------------------------


class BenchBroker:
    """A ``tmq broker`` process on a free loopback port (``flush.policy=always``), its data in
    ``workdir/data``, its output in ``workdir/broker.log``.

    :param broker_id: its ``--id`` (default: the broker's own default).
    :param metadata: its ``--metadata`` (``etcd://HOST:PORT``; default: local, one broker).
    :param settings: more ``KEY=VALUE`` broker settings (``--set``).
    :param cluster_id: its ``--cluster-id``, given with ``metadata``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        broker_id: int | None = None,
        metadata: str | None = None,
        settings: tuple[str, ...] = (),
        cluster_id: str = "tmq-bench",
    ):
        self.workdir = workdir
        self.broker_id = broker_id
        workdir.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "broker.log"
        command = [
            sys.executable,
            "-m",
            "tmq.tools.cli",
            "broker",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
            "--set",
            "flush.policy=always",
        ]
        if broker_id is not None:
            command += ["--id", str(broker_id)]
        if metadata is not None:
            command += ["--metadata", metadata, "--cluster-id", cluster_id]
        for setting in settings:
            command += ["--set", setting]
        with open(self.log_path, "wb") as log:
            # cwd outside any source checkout: ./tmq there would shadow the installed package
            self.process = subprocess.Popen(
                command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CommandError(f"the broker exited at start: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise CommandError(f"the broker did not listen within 30 s: {self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _loopback_tcp(seconds: float = 1.0) -> dict:
    """Bytes/s one thread sends to another over a loopback TCP connection."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sender = socket.create_connection(listener.getsockname())
        receiver, _ = listener.accept()
    chunk = bytes(256 * 1024)
    received = [0]

    def drain() -> None:
        while data := receiver.recv(1 << 20):
            received[0] += len(data)

    reader = threading.Thread(target=drain)
    reader.start()
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        sender.sendall(chunk)
    sender.shutdown(socket.SHUT_WR)
    reader.join()
    elapsed = time.perf_counter() - start
    sender.close()
    receiver.close()
    return {"mb_per_s": round(received[0] / elapsed / _MB, 1), "seconds": round(elapsed, 3)}


def _baselines(directory: Path, value_bytes: int) -> dict:
    chunk = bytes(256 * 1024)
    fsync = bench_log._raw_write(str(directory / "raw.bin"), chunk, 1.0, fsync=True)
    tcp = _loopback_tcp()
    return {
        "loopback_tcp": {
            **tcp,
            "messages_per_s": round(tcp["mb_per_s"] * _MB / value_bytes),
        },
        "raw_write_fsync_256k": {
            "mb_per_s": fsync["mb_per_s"],
            "fsyncs_per_s": fsync["batches_per_s"],
            "messages_per_s": round(fsync["mb_per_s"] * _MB / value_bytes),
        },
    }


# -- the benchmark ----------------------------------------------------------------------------


def _available(client: str) -> None:
    if client == "confluent":
        try:
            import confluent_kafka  # noqa: F401
        except ImportError:
            raise CommandError(
                "the confluent client is not installed: pip install confluent-kafka "
                "(or run with --client bundled)"
            ) from None


def run_client_bench(
    kind: str,
    clients: tuple[str, ...],
    *,
    messages: int,
    value_bytes: int,
    partitions: int,
    rounds: int,
    parent: str | None = None,
    progress=None,
    acks: str = "1",
    keep: bool = False,
) -> dict:
    """Run the ``kind`` ("produce" or "consume") benchmark for ``clients`` against a broker
    of its own in a fresh directory under ``parent``; return the JSON-ready results.

    :param acks: the producers' acks, ``"1"`` or ``"all"``.
    :param keep: leave the directory in place (its path is said on ``progress``).
    """

    def say(text: str) -> None:
        if progress is not None:
            print(text, file=progress, flush=True)

    for client in clients:
        _available(client)
    workdir = Path(tempfile.mkdtemp(prefix=f"tmq-bench-{kind}-", dir=parent))
    broker = None
    try:
        say("measuring baselines: write+fsync, loopback TCP ...")
        baselines = _baselines(workdir, value_bytes)
        broker = BenchBroker(workdir)
        if kind == "consume":
            say(f"loading {messages} messages with the bundled producer ...")
            loaded = in_fresh_process(
                _client_run, "produce", "bundled", broker.bootstrap, "bench-consume",
                messages, value_bytes, partitions,
            )  # fmt: skip
            if loaded["error_count"] or loaded["stored"] != messages:
                raise CommandError(f"loading the topic failed: {loaded}")
        results = {}
        for client in clients:
            runs = []
            for round_number in range(1, rounds + 1):
                topic = f"bench-{client}-{round_number}" if kind == "produce" else "bench-consume"
                say(f"{kind} {client}: round {round_number}/{rounds} ...")
                cpu_before = broker.cpu_seconds()
                options = {"acks": acks} if kind == "produce" else {}
                run = in_fresh_process(
                    _client_run, kind, client, broker.bootstrap, topic,
                    messages, value_bytes, partitions, **options,
                )  # fmt: skip
                run["broker_cpu_seconds"] = broker.cpu_seconds() - cpu_before
                runs.append(run)
            results[client] = _summary(kind, client, runs, messages, value_bytes)
            say(f"{kind} {client}: {results[client]['messages_per_s']:,} msg/s")
    finally:
        if broker is not None:
            broker.stop()
        if keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": kind,
        **platform_info(),
        "config": {
            "messages": messages,
            "value_bytes": value_bytes,
            "key": "one of 64 GPU UUIDs (42 bytes)",
            "partitions": partitions,
            "rounds": rounds,
            "acks": "all" if kind == "produce" and acks == "all" else 1,
            "idempotence": False,
            "replication_factor": 1,
            "broker": "one process, flush.policy=always",
            "compression": "none",
        },
        "units": {
            "messages_per_s": "messages per second, best round",
            "cpu_us_per_message": "CPU microseconds (user + system) per message",
            "latency": "produce() to acknowledgement, every 64th record, under full load",
        },
        "baselines": baselines,
        "results": results,
        "verified": all(r["verified"] for r in results.values()),
        "meets_floors": all(r["meets_floor"] for r in results.values()),
    }


def platform_info() -> dict:
    """Python version and implementation, machine and CPU count, for the JSON results."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


_ONE_BROKER = object()


def _summary(
    kind: str,
    client: str,
    runs: list[dict],
    messages: int,
    value_bytes: int,
    *,
    floor: int | object | None = _ONE_BROKER,
) -> dict:
    """One client's figures from its rounds (the fastest counts), against ``floor`` (default:
    the one-broker floor in ``FLOORS``; ``None``: none, and ``meets_floor`` is ``None``)."""
    if floor is _ONE_BROKER:
        floor = FLOORS[(kind, client)]
    if kind == "produce":
        verified = all(r["error_count"] == 0 and r["stored"] == messages for r in runs)
    else:
        verified = all(r["error_count"] == 0 and r["read"] == messages for r in runs)
    best = min(runs, key=lambda r: r["seconds"])
    rate = messages / best["seconds"]
    summary = {
        "messages_per_s": round(rate),
        "mb_per_s": round(rate * value_bytes / _MB, 1),
        "rounds_messages_per_s": [round(messages / r["seconds"]) for r in runs],
        "client_cpu_us_per_message": round(best["client_cpu_seconds"] / messages * 1e6, 2),
        "broker_cpu_us_per_message": round(best["broker_cpu_seconds"] / messages * 1e6, 2),
        "verified": verified,
        "floor": floor,
        "meets_floor": None if floor is None else rate >= floor,
    }
    if kind == "produce":
        summary["latency"] = best["latency"]
    failures = [r for r in runs if r["error_count"]]
    if failures:
        summary["errors"] = failures[0]["errors"]
    return summary
