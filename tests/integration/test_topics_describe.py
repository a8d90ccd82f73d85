"""``tmq topics describe`` against real brokers: leader, epoch, replicas, ISR, the high watermark
and every replica's log end offset, as text and as JSON; on one broker with local metadata and
on three brokers sharing an etcd (the conftest's ``cluster_factory``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from pipeline_helpers import wait_for

RECORDS = 120


def tmq(*args: str, cwd, data: bytes | None = None) -> subprocess.CompletedProcess:
    """``tmq args...`` in a child process run in ``cwd`` (outside the checkout, whose tmq/
    would shadow the installed package)."""
    return subprocess.run(
        [sys.executable, "-m", "tmq.tools.cli", *args],
        input=data,
        capture_output=True,
        timeout=90,
        cwd=cwd,
        check=False,
    )


def produce(topic: str, count: int, bootstrap: str, cwd) -> None:
    """``count`` records to ``topic`` through ``tmq produce`` (acks=all)."""
    lines = b"".join(b"record %d\n" % i for i in range(count))
    produced = tmq("produce", topic, "--bootstrap", bootstrap, cwd=cwd, data=lines)
    assert produced.returncode == 0, produced.stderr.decode()


def describe(bootstrap: str, cwd, *args: str) -> str:
    """What ``tmq topics describe ARGS`` prints; it must exit 0."""
    described = tmq("topics", "describe", *args, "--bootstrap", bootstrap, cwd=cwd)
    assert described.returncode == 0, described.stderr.decode()
    return described.stdout.decode()


def test_one_broker_shows_hw_and_leo(broker, tmp_path):
    """One broker (id 0, local metadata): after N acked records the partition shows leader 0,
    ISR [0], and hw == leo == N, in the text and in the JSON; the empty partition shows 0;
    an unknown topic exits 1 with one line."""
    boot = broker.bootstrap
    created = tmq("topics", "create", "d", "--partitions", "2", "--bootstrap", boot, cwd=tmp_path)
    assert created.returncode == 0, created.stderr.decode()
    lines = b"".join(b"record %d\n" % i for i in range(RECORDS))
    produced = tmq("produce", "d", "--key", "k", "--bootstrap", boot, cwd=tmp_path, data=lines)
    assert produced.returncode == 0, produced.stderr.decode()

    document = json.loads(describe(boot, tmp_path, "d", "--json"))
    (topic,) = document["topics"]
    assert topic["name"] == "d"
    partitions = {p["partition"]: p for p in topic["partitions"]}
    assert sorted(partitions) == [0, 1]
    counts = sorted(p["high_watermark"] for p in partitions.values())
    assert counts == [0, RECORDS]  # one key: every record in one partition
    for p in partitions.values():
        assert (p["leader"], p["leader_epoch"], p["replicas"], p["isr"]) == (0, 0, [0], [0])
        assert p["log_end_offsets"] == {"0": p["high_watermark"]}

    text = describe(boot, tmp_path, "d")
    assert text.splitlines()[0] == "topic d: 2 partitions"
    for index, p in partitions.items():
        hw = p["high_watermark"]
        line = f"  partition {index}: leader 0 epoch 0 replicas [0] isr [0] hw {hw} leo {{0: {hw}}}"
        assert line in text.splitlines()

    missing = tmq("topics", "describe", "nope", "--bootstrap", boot, cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.count(b"\n") == 1 and b"UNKNOWN_TOPIC_OR_PARTITION" in missing.stderr


def test_three_brokers_show_three_log_end_offsets(cluster_factory, tmp_path):
    """RF=3 on three brokers sharing an etcd: after N records acked by all, the partition shows
    the full ISR, hw N and three log end offsets N. A follower killed then reads as unknown
    (? in the text, null in the JSON) while the others keep their values."""
    cluster = cluster_factory(3)
    cluster.create_topic("r3", partitions=1, replication_factor=3)
    cluster.wait_for_isr("r3", 0)
    produce("r3", RECORDS, cluster.bootstrap(), tmp_path)

    document = json.loads(describe(cluster.bootstrap(), tmp_path, "r3", "--json"))
    (p,) = document["topics"][0]["partitions"]
    assert sorted(p["replicas"]) == [1, 2, 3] and sorted(p["isr"]) == [1, 2, 3]
    assert p["leader"] in (1, 2, 3)
    assert p["high_watermark"] == RECORDS
    assert p["log_end_offsets"] == {str(r): RECORDS for r in p["replicas"]}
    text = describe(cluster.bootstrap(), tmp_path, "r3")
    ends = ", ".join(f"{r}: {RECORDS}" for r in p["replicas"])
    assert f"hw {RECORDS} leo {{{ends}}}" in text

    leader = p["leader"]
    follower = next(r for r in p["replicas"] if r != leader)
    cluster.broker(follower).kill()
    survivors = cluster.bootstrap()
    seen = {}

    def follower_unknown() -> bool:
        found = json.loads(describe(survivors, tmp_path, "r3", "--json"))
        seen.update(found["topics"][0]["partitions"][0])
        return seen["leader"] == leader and seen["log_end_offsets"][str(follower)] is None

    wait_for(
        follower_unknown,
        30,
        f"broker {follower}'s LEO to read as unknown",
        *cluster.brokers.values(),
    )
    assert seen["high_watermark"] == RECORDS
    assert {r: e for r, e in seen["log_end_offsets"].items() if r != str(follower)} == {
        str(r): RECORDS for r in p["replicas"] if r != follower
    }
    text = describe(survivors, tmp_path, "r3")
    assert re.search(rf"leader {leader} .* hw {RECORDS} leo \{{.*{follower}: \?", text), text
