"""``tmq bench failover``: how long a partition takes to accept acks=all writes again after
its leader is killed.

A throwaway etcd and three brokers (``flush.policy=always``, ``min.insync.replicas=2``, the
lease TTL ``--session-timeout-ms``), one topic with one partition and three replicas. A
probe producer (the bundled client, acks=all, idempotent, no linger) sends one record at a
time. Each round kills the partition's leader with SIGKILL and times, on the monotonic
clock, from the kill to the acknowledgement of the first record sent after it: the new
leader has been elected, the client has found it, and two replicas have the record. The
killed broker is then restarted (on its data) and the round waits until the ISR holds all
three again.

The baseline, from the same run: the probe's acks=all latency with every broker up (p50
and p99 of ``--warmup`` records). The target is 2 x the lease TTL: a dead broker's lease
ends one TTL after its last keepalive, then the controller elects and the client follows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .bench_clients import BenchBroker, platform_info
from .bench_cluster import BenchCluster
from .errors import CommandError

__all__ = ["add_parser", "run_failover_bench"]

_TOPIC = "failover"
_SETTLE_S = 60.0


def add_parser(kinds) -> None:
    parser = kinds.add_parser(
        "failover",
        help="leader failover time: kill -9 to the next acks=all acknowledgement",
        description=__doc__.split("\n\n")[1].replace("``", ""),
    )
    parser.add_argument("--rounds", type=int, default=5, help="leaders killed (default 5)")
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=6000,
        help="the brokers' lease TTL, broker.session.timeout.ms (default %(default)s)",
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="probe records for the baseline (default 200)"
    )
    parser.add_argument("--dir", default=None, help="parent of the temporary directory")
    parser.set_defaults(run=_run, bench_parser=parser)


def _run(args: argparse.Namespace) -> int:
    if args.rounds < 1 or args.warmup < 1:
        args.bench_parser.error("--rounds and --warmup must be at least 1")
    if args.session_timeout_ms < 2000:
        args.bench_parser.error("--session-timeout-ms must be at least 2000")
    results = run_failover_bench(
        args.rounds, args.session_timeout_ms, args.warmup, args.dir, sys.stderr
    )
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _wait(condition, what: str, timeout: float = _SETTLE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise CommandError(f"{what} within {timeout:.0f} s")


def _partition(admin):
    from tmq.client.errors import KafkaError

    try:
        return admin.describe_topics([_TOPIC])[_TOPIC].partitions[0]
    except KafkaError:  # a broker is down or leadership is moving: ask again
        return None


def run_failover_bench(
    rounds: int, session_timeout_ms: int, warmup: int, parent: str | None, progress
) -> dict:
    """Run the benchmark (see the module) and return its JSON-ready results."""
    from tmq.client.sync import SyncAdmin, SyncProducer

    def say(text: str) -> None:
        print(text, file=progress, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="tmq-bench-failover-", dir=parent))
    settings = (
        "min.insync.replicas=2",
        "replica.lag.time.max.ms=10000",
        f"broker.session.timeout.ms={session_timeout_ms}",
    )
    cluster = None
    try:
        say("starting etcd and 3 brokers ...")
        cluster = BenchCluster(workdir, 3, settings)
        admin = SyncAdmin(cluster.bootstrap)
        _wait(lambda: len(admin.describe_cluster().brokers) == 3, "3 brokers did not register")
        admin.create_topic(_TOPIC, 1, 3)
        _wait(lambda: (p := _partition(admin)) and len(p.isr) == 3, "the ISR did not fill")
        producer = SyncProducer(cluster.bootstrap, acks=-1, linger_ms=0)
        latencies = []
        for _ in range(warmup):
            started = time.monotonic()
            producer.send_and_wait(_TOPIC, b"warmup", partition=0)
            latencies.append(time.monotonic() - started)
        latencies.sort()
        failovers = []
        for round_number in range(1, rounds + 1):
            leader = _partition(admin).leader
            victim = next(b for b in cluster.brokers if b.broker_id == leader)
            killed = time.monotonic()
            victim.process.kill()
            producer.send_and_wait(_TOPIC, b"after-kill-%d" % round_number, partition=0)
            failovers.append(time.monotonic() - killed)
            new = _partition(admin)
            say(
                f"round {round_number}/{rounds}: leader {leader} killed, leader "
                f"{new.leader if new else '?'} took acks=all after {failovers[-1]:.2f} s"
            )
            victim.process.wait()
            restarted = BenchBroker(
                victim.workdir,
                broker_id=victim.broker_id,
                metadata=f"etcd://{cluster.etcd.endpoint}",
                settings=settings,
            )
            cluster.brokers[cluster.brokers.index(victim)] = restarted
            _wait(lambda: (p := _partition(admin)) and len(p.isr) == 3, "the ISR did not refill")
        producer.close()
        admin.close()
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    target = 2 * session_timeout_ms / 1000
    return {
        "benchmark": "failover",
        **platform_info(),
        "config": {
            "brokers": 3,
            "replication_factor": 3,
            "min_insync_replicas": 2,
            "session_timeout_ms": session_timeout_ms,
            "flush_policy": "always",
            "probe": "bundled producer, acks=all, idempotent, one record at a time",
        },
        "units": {"seconds": "SIGKILL of the leader to the next acks=all acknowledgement"},
        "baseline": {
            "acks_all_latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "acks_all_latency_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        },
        "rounds_seconds": [round(s, 3) for s in failovers],
        "median_seconds": round(statistics.median(failovers), 3),
        "max_seconds": round(max(failovers), 3),
        "target_seconds": target,
        "meets_target": max(failovers) <= target,
    }
