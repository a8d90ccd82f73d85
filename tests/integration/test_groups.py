"""Consumer groups with real clients against a real broker process (issue #8): kcat -G
(librdkafka 2.0.2), confluent-kafka, kafka-python 3.x and aiokafka 0.14 group consumers, and
``tmq groups list|describe`` against a live group.

Every consumer runs in its own process (``group_helpers``), so that one can be stopped with
SIGSTOP and miss its heartbeats. The broker runs with ``group.initial.rebalance.delay.ms=0``
and ``group.min.session.timeout.ms=3000``; the consumers heartbeat every 500 ms.

What every test checks about the records: each value read is at the partition and offset the
producer was told, and every produced value is read (none lost). Consumers commit after each
batch they print (at-least-once), so a value may be read twice only where a partition changed
owner (a rebalance, an eviction); a consumer that starts alone from the group's committed
offsets must read each new value exactly once and nothing older. (Three brokers, the
coordinator failing: ``test_groups_cluster.py``.)
"""

from __future__ import annotations

import time

import pytest
from group_helpers import (
    CLIENTS,
    GroupConsumer,
    KcatConsumer,
    assert_split,
    check_reads,
    committed_offsets,
    consumer_processes,
    describe_group,
    ends,
    produce,
    read_all_of,
    tmq_json,
    wait_for_commits,
    wait_for_group,
)
from integration_helpers import assert_no_traceback, require_binary
from pipeline_helpers import run_tmq, wait_for

from tmq.protocol.errors import ErrorCode

#: Groups form at once; a session timeout of 3 s is allowed (the eviction tests use it).
SETTINGS = ("group.initial.rebalance.delay.ms=0", "group.min.session.timeout.ms=3000")
PARTITIONS = 6
PER_PARTITION = 50  # 300 values a round


@pytest.fixture
def group_broker(broker_factory):
    return broker_factory(*SETTINGS)


consumers = pytest.fixture(consumer_processes)


def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)], request_timeout=15
    )
    futures[name].result(timeout=30)


def assert_resumed(fresh, placed: dict, committed: dict[int, int]) -> None:
    """A consumer that joined alone after everyone left read exactly ``placed`` (the values
    produced since), once each, starting at the committed offsets."""
    reads = fresh.reads()
    older = [r for r in reads if r.value not in placed]
    assert not older, f"{fresh.name} read values older than the committed offsets: {older[:5]}"
    counts = check_reads(placed, reads, fresh.name)
    assert max(counts.values()) == 1, f"duplicates: {[v for v, n in counts.items() if n > 1]}"
    first = {p: min(r.offset for r in reads if r.partition == p) for p in range(PARTITIONS)}
    assert first == committed


# -- kcat -G ------------------------------------------------------------------------------------


def test_kcat_balanced_consumers(group_broker, consumers, tmp_path):
    """Two ``kcat -G`` (librdkafka 2.0.2) members of a group on a 6-partition topic hold 3
    disjoint partitions each (as kcat's rebalance lines and DescribeGroups both say) and read
    all 300 values. SIGTERM to one: it leaves, the other gets all 6 partitions and reads the
    next 300. SIGTERM to that one: the group is Empty, its committed offsets are the end
    offsets. A new kcat of the group reads exactly the 300 values produced after that, once
    each, from the committed offsets."""
    binary = require_binary("kcat", "kcat")
    bootstrap, port = group_broker.bootstrap, group_broker.port
    group, topic = "kcat-group", "kcat-six"
    create_topic(bootstrap, topic)

    def kcat(name: str) -> KcatConsumer:
        return consumers(
            KcatConsumer(tmp_path, name, kcat=binary, bootstrap=bootstrap, group=group, topic=topic)
        )

    first = produce(bootstrap, topic, "a", PER_PARTITION)
    one, two = kcat("kcat-1"), kcat("kcat-2")
    wait_for_group(port, group, topic, [one, two], "two kcat members splitting 6 partitions")
    assert len(one.assignment()) == len(two.assignment()) == 3
    wait_for(lambda: read_all_of([one, two], first), 30, "the first values read", one, two)

    assert one.stop() == 0
    wait_for_group(port, group, topic, [two], "kcat-2 alone holding all 6 partitions")
    assert two.assignment() == frozenset(range(PARTITIONS))
    second = produce(bootstrap, topic, "b", PER_PARTITION)
    wait_for(lambda: read_all_of([two], second), 30, "the second values read", two)

    assert two.stop() == 0
    described = describe_group(port, group, topic)
    assert (described.state, described.members) == ("Empty", {})
    end = ends(first | second)
    # kcat commits its last offsets when it closes (auto commit)
    assert committed_offsets(port, group, topic) == (ErrorCode.NONE, end)
    # duplicates only where a partition changed owner: the two rebalances
    check_reads(first | second, one.reads() + two.reads())

    third = produce(bootstrap, topic, "c", PER_PARTITION)
    three = kcat("kcat-3")
    wait_for(lambda: read_all_of([three], third), 30, "the third values read", three)
    assert three.assignment() == frozenset(range(PARTITIONS))
    assert three.stop() == 0
    assert_resumed(three, third, end)
    assert committed_offsets(port, group, topic) == (ErrorCode.NONE, ends(first | second | third))
    assert_no_traceback(group_broker.log())


# -- confluent-kafka, kafka-python, aiokafka: split, eviction, resume ---------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_group_split_eviction_and_resume(group_broker, consumers, tmp_path, client):
    """Three group consumers of CLIENT (session timeout 3 s) split a 6-partition topic 2/2/2
    (each one's own view equal to DescribeGroups'), read the first 300 values and commit them.
    One is SIGSTOPped: 2 to 15 s later (no sooner than its session timeout minus a heartbeat
    interval) it is evicted, the two others split all 6 partitions 3/3 and read the next 300
    values, the stopped member's share included. SIGCONT: it rejoins, the three split 2/2/2
    again and read the next 300. All stop (LeaveGroup): the group is Empty and its committed
    offsets are the end offsets. A new consumer reads exactly the 300 values produced after,
    once each, from the committed offsets. Duplicates only around the rebalances."""
    bootstrap, port = group_broker.bootstrap, group_broker.port
    group, topic = f"group-{client}", f"six-{client}"
    create_topic(bootstrap, topic)

    def member(name: str) -> GroupConsumer:
        return consumers(
            GroupConsumer(
                tmp_path, name, client=client, bootstrap=bootstrap, group=group, topic=topic,
                session_timeout_ms=3000,
            )
        )  # fmt: skip

    first = produce(bootstrap, topic, "a", PER_PARTITION)
    members = [member(f"{client}-{i}") for i in range(3)]
    wait_for_group(port, group, topic, members, "three members splitting 2/2/2")
    wait_for(lambda: read_all_of(members, first), 30, "the first values read", *members)
    wait_for_commits(port, group, topic, ends(first), *members)

    victim, survivors = members[2], members[:2]
    victim.pause()
    paused_at = time.monotonic()
    second = produce(bootstrap, topic, "b", PER_PARTITION)
    wait_for_group(port, group, topic, survivors, "the survivors splitting 3/3 (eviction)")
    evicted_after = time.monotonic() - paused_at
    # its last heartbeat was at most 0.5 s before SIGSTOP; the rebalance itself is quick
    assert 2.0 <= evicted_after <= 15.0, f"evicted {evicted_after:.1f} s after SIGSTOP"
    wait_for(lambda: read_all_of(survivors, second), 30, "the second values read", *survivors)

    victim.resume()
    wait_for_group(port, group, topic, members, "the resumed member back in, 2/2/2")
    third = produce(bootstrap, topic, "c", PER_PARTITION)
    wait_for(lambda: read_all_of(members, third), 30, "the third values read", *members)

    for consumer in members:
        assert consumer.stop() == 0, consumer.log()
    described = describe_group(port, group, topic)
    assert (described.state, described.members) == ("Empty", {})
    end = ends(first | second | third)
    assert committed_offsets(port, group, topic) == (ErrorCode.NONE, end)
    check_reads(first | second | third, [r for m in members for r in m.reads()])

    fourth = produce(bootstrap, topic, "d", PER_PARTITION)
    fresh = member(f"{client}-fresh")
    wait_for(lambda: read_all_of([fresh], fourth), 30, "the fourth values read", fresh)
    assert fresh.assignment() == frozenset(range(PARTITIONS))
    assert fresh.stop() == 0
    assert_resumed(fresh, fourth, end)
    assert_no_traceback(group_broker.log())


def test_a_restarted_static_member_takes_its_place_without_a_rebalance(
    group_broker, consumers, tmp_path
):
    """Two confluent-kafka static members (group.instance.id, session timeout 10 s) split a
    6-partition topic 3/3. One is killed (SIGKILL) and started again with the same instance
    id before its session runs out: it gets the partitions it held, under a new member id,
    and the other member sees no rebalance (no revocation, no new assignment); both read
    the next values."""
    bootstrap, port = group_broker.bootstrap, group_broker.port
    group, topic = "static-group", "static-six"
    create_topic(bootstrap, topic)

    def member(name: str, instance: str) -> GroupConsumer:
        return consumers(
            GroupConsumer(
                tmp_path, name, client="confluent", bootstrap=bootstrap, group=group,
                topic=topic, session_timeout_ms=10_000, instance_id=instance,
            )
        )  # fmt: skip

    first = produce(bootstrap, topic, "a", PER_PARTITION)
    stays, restarts = member("static-a", "instance-a"), member("static-b", "instance-b")
    wait_for_group(port, group, topic, [stays, restarts], "two static members splitting 3/3")
    wait_for(lambda: read_all_of([stays, restarts], first), 30, "the first values", stays, restarts)
    held = restarts.assignment()
    before = describe_group(port, group, topic).members
    changes = len([e for e in stays.events() if e["event"] in ("assigned", "revoked")])

    restarts.kill()
    again = member("static-b-again", "instance-b")
    wait_for(lambda: again.assignment() == held, 20, "the same partitions again", again)
    after = describe_group(port, group, topic)
    assert after.state == "Stable"
    assert {client for client, _ in after.members.values()} == {"static-a", "static-b-again"}
    assert not set(after.members) & {m for m, (c, _) in before.items() if c == "static-b"}
    second = produce(bootstrap, topic, "b", PER_PARTITION)
    wait_for(lambda: read_all_of([stays, again], second), 30, "the second values", stays, again)
    assert len([e for e in stays.events() if e["event"] in ("assigned", "revoked")]) == changes
    for consumer in (stays, again):
        assert consumer.stop() == 0, consumer.log()
    assert_no_traceback(group_broker.log())


# -- tmq groups list | describe -----------------------------------------------------------------


def test_tmq_groups_list_and_describe_a_live_group(group_broker, consumers, tmp_path):
    """Two kafka-python members of a group hold 3 partitions each and have committed the 60
    values produced; fetching paused, 60 more are produced. ``tmq groups list`` shows the
    group (type consumer, state Stable, coordinator 0); ``tmq groups describe --json`` shows
    it Stable with protocol range, both members with the partitions they say they hold, and
    per partition the committed offset, the end offset, a lag of 10 and the owning member.
    Fetching again, the lag drops to 0. After the consumers close: Empty, no members, lag 0."""
    bootstrap, port = group_broker.bootstrap, group_broker.port
    group, topic = "described", "described-six"
    create_topic(bootstrap, topic)
    hold = tmp_path / "hold"
    first = produce(bootstrap, topic, "a", 10)
    members = [
        consumers(
            GroupConsumer(
                tmp_path,
                f"kp-{i}",
                client="kafka-python",
                bootstrap=bootstrap,
                group=group,
                topic=topic,
                hold_file=hold,
            )
        )
        for i in range(2)
    ]
    wait_for_group(port, group, topic, members, "two kafka-python members splitting 3/3")
    wait_for(lambda: read_all_of(members, first), 30, "the first values read", *members)
    wait_for_commits(port, group, topic, ends(first), *members)

    hold.touch()
    wait_for(lambda: all(m.events("held") for m in members), 30, "fetching paused", *members)
    second = produce(bootstrap, topic, "b", 10)
    listed = tmq_json(tmp_path, "groups", "list", "--bootstrap", bootstrap)
    assert listed == {
        "groups": [
            {"group_id": group, "protocol_type": "consumer", "state": "Stable", "coordinator": 0}
        ],
        "errors": {},
    }
    described = tmq_json(tmp_path, "groups", "describe", group, "--bootstrap", bootstrap)
    assert (described["state"], described["protocol_type"], described["protocol"]) == (
        "Stable",
        "consumer",
        "range",
    )
    assert described["coordinator"] == 0
    holders = {}
    for entry in described["members"]:
        (assigned,) = entry["assignment"]["partitions"]
        assert assigned["topic"] == topic
        holders[entry["client_id"]] = (entry["member_id"], frozenset(assigned["partitions"]))
        assert entry["client_host"] == "/127.0.0.1"  # as Kafka shows the member's address
    assert {name: held for name, (_, held) in holders.items()} == {
        m.name: m.assignment() for m in members
    }
    assert_split(held for _, held in holders.values())
    owner = {p: member_id for member_id, held in holders.values() for p in held}
    before, after = ends(first), ends(first | second)
    assert described["offsets"] == [
        {
            "topic": topic,
            "partition": p,
            "committed": before[p],
            "metadata": "",
            "end_offset": after[p],
            "lag": 10,
            "member": owner[p],
        }
        for p in range(PARTITIONS)
    ]

    hold.unlink()
    wait_for(lambda: read_all_of(members, second), 30, "the second values read", *members)
    wait_for_commits(port, group, topic, after, *members)
    described = tmq_json(tmp_path, "groups", "describe", group, "--bootstrap", bootstrap)
    assert described["state"] == "Stable"
    assert [o["lag"] for o in described["offsets"]] == [0] * PARTITIONS

    for consumer in members:
        assert consumer.stop() == 0, consumer.log()
    check_reads(first | second, [r for m in members for r in m.reads()])
    listed = tmq_json(tmp_path, "groups", "list", "--bootstrap", bootstrap)
    assert [(g["group_id"], g["state"]) for g in listed["groups"]] == [(group, "Empty")]
    described = tmq_json(tmp_path, "groups", "describe", group, "--bootstrap", bootstrap)
    assert (described["state"], described["members"]) == ("Empty", [])
    assert [(o["committed"], o["lag"], o["member"]) for o in described["offsets"]] == [
        (after[p], 0, None) for p in range(PARTITIONS)
    ]
    text = run_tmq("groups", "list", "--bootstrap", bootstrap, cwd=tmp_path, timeout=60)
    assert text.stdout.decode() == f"group {group}: type consumer state Empty coordinator 0\n"
    assert_no_traceback(group_broker.log())
