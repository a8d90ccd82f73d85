"""Consumer groups on three brokers and etcd (issue #8): the coordinator a group hashes to
(FindCoordinator, rendezvous hashing over the live brokers) dies, pauses and comes back.

The brokers run with ``group.initial.rebalance.delay.ms=0`` and a 3 s registration lease
(``broker.session.timeout.ms``), so a broker that stops answering loses its groups within
seconds. Committed offsets live in etcd and survive any broker.
"""

from __future__ import annotations

import pytest
from cluster_workload import AckingProducer, read_all
from group_helpers import (
    GroupConsumer,
    check_reads,
    committed_offsets,
    consumer_processes,
    coordinator,
    describe_group,
    ends,
    produce,
    read_all_of,
    tmq_json,
    wait_for_commits,
    wait_for_group,
)
from integration_helpers import RawClient, assert_no_traceback
from pipeline_helpers import wait_for

from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode

SETTINGS = (
    "group.initial.rebalance.delay.ms=0",
    "broker.session.timeout.ms=3000",
    "min.insync.replicas=2",
)
PARTITIONS = 6
PER_PARTITION = 50  # 300 values a round

consumers = pytest.fixture(consumer_processes)


def find_coordinator(cluster, group: str) -> int | None:
    """The coordinator every live broker names for ``group``; ``None`` while one fails, they
    disagree, or they name a broker that is not live."""
    named = set()
    for node in cluster.live():
        error, node_id = coordinator(node.port, group)
        named.add(node_id if error == ErrorCode.NONE else None)
    if len(named) != 1 or None in named:
        return None
    (found,) = named
    return found if found in cluster.brokers and cluster.broker(found).live else None


def wait_for_coordinator(cluster, group: str, wanted, what: str) -> int:
    """Poll until ``wanted(coordinator)`` holds for the one every live broker names."""
    found = []

    def named() -> bool:
        found.append(find_coordinator(cluster, group))
        return found[-1] is not None and wanted(found[-1])

    wait_for(named, 30, what, *cluster.brokers.values())
    return found[-1]


def test_coordinator_killed_and_restarted(cluster_factory, consumers, tmp_path):
    """Three brokers, a 6-partition topic with 3 replicas, two confluent-kafka members that
    have read and committed the first 300 values. SIGKILL to the group's coordinator: every
    live broker names another coordinator, which returns exactly the committed offsets; the
    members rejoin there (Stable, 3/3) and read everything an acks=all producer writes
    meanwhile (leaders move too). The old coordinator restarts: the group moves back
    (rendezvous hashing), the broker that had it answers NOT_COORDINATOR, the members rejoin
    and read 300 more. Closed, the group is Empty and ``tmq groups list`` shows it once, at
    its coordinator. At the end every record in the log (read back from the leaders) was read
    by the group at its offset, none skipped (duplicates only around the moves); every
    acknowledged value is in the log; the committed offsets are the end offsets."""
    cluster = cluster_factory(3, *SETTINGS)
    group, topic = "moving-group", "moving-six"
    cluster.create_topic(topic, partitions=PARTITIONS, replication_factor=3)
    for partition in range(PARTITIONS):
        cluster.wait_for_isr(topic, partition)
    old = wait_for_coordinator(cluster, group, lambda _: True, "a coordinator")
    port = cluster.broker(old).port
    first = produce(cluster.bootstrap(), topic, "a", PER_PARTITION)
    members = [
        consumers(
            GroupConsumer(
                tmp_path,
                f"ck-{i}",
                client="confluent",
                bootstrap=cluster.bootstrap(),
                group=group,
                topic=topic,
            )
        )
        for i in range(2)
    ]
    wait_for_group(port, group, topic, members, f"two members at broker {old}")
    wait_for(lambda: read_all_of(members, first), 30, "the first values read", *members)
    wait_for_commits(port, group, topic, ends(first), *members)

    cluster.broker(old).kill()
    new = wait_for_coordinator(cluster, group, lambda c: c != old, "a new coordinator")
    new_port = cluster.broker(new).port
    assert committed_offsets(new_port, group, topic) == (ErrorCode.NONE, ends(first))
    producer = AckingProducer(cluster, topic, PARTITIONS, producer="b", rate=200).start()
    wait_for_group(new_port, group, topic, members, f"the members rejoined at broker {new}")
    producer.wait_for_acks(300)
    attempts, acks = producer.stop()

    cluster.broker(old).restart()
    wait_for_coordinator(cluster, group, lambda c: c == old, "the group back at its coordinator")
    wait_for_group(port, group, topic, members, f"the members rejoined at broker {old}")
    assert describe_group(new_port, group, topic).error_code == ErrorCode.NOT_COORDINATOR
    third = produce(cluster.bootstrap(), topic, "c", PER_PARTITION)
    log = {read.value.decode(): (read.partition, read.offset) for read in read_all(cluster, topic)}
    assert set(first) | set(third) | {ack.value.decode() for ack in acks} <= set(log)
    wait_for(lambda: read_all_of(members, log), 30, "every value read", *members)
    wait_for_commits(port, group, topic, ends(log), *members)

    for consumer in members:
        assert consumer.stop() == 0, consumer.log()
    assert describe_group(port, group, topic).state == "Empty"
    # listed once, by its coordinator: the broker that had it meanwhile forgot it
    listed = tmq_json(tmp_path, "groups", "list", "--bootstrap", cluster.bootstrap())
    assert listed == {
        "groups": [
            {"group_id": group, "protocol_type": "consumer", "state": "Empty", "coordinator": old}
        ],
        "errors": {},
    }
    check_reads(log, [r for m in members for r in m.reads()])
    assert len(attempts) >= len(acks) >= 300
    for broker in cluster.brokers.values():
        assert_no_traceback(broker.log())


# -- a coordinator that lost its registration ---------------------------------------------------


def _join_alone(port: int, group: str) -> tuple[int, str]:
    """Join ``group`` at the broker on ``port`` as its only member (JoinGroup v3: no
    MEMBER_ID_REQUIRED; session timeout 30 s) and sync; return (generation, member id)."""
    with RawClient(port, client_id="stale-test") as client:
        joined = client.request(
            ApiKey.JOIN_GROUP,
            3,
            {
                "group_id": group,
                "session_timeout_ms": 30_000,
                "rebalance_timeout_ms": 30_000,
                "member_id": "",
                "protocol_type": "consumer",
                "protocols": [{"name": "range", "metadata": b""}],
            },
        )
        assert joined.error_code == ErrorCode.NONE, joined
        synced = client.request(
            ApiKey.SYNC_GROUP,
            2,
            {
                "group_id": group,
                "generation_id": joined.generation_id,
                "member_id": joined.member_id,
                "assignments": [{"member_id": joined.member_id, "assignment": b""}],
            },
        )
        assert synced.error_code == ErrorCode.NONE, synced
        return joined.generation_id, joined.member_id


def _commit(group: str, topic: str, generation: int, member: str, offset: int) -> dict:
    """An OffsetCommit v5 body: ``offset`` for partition 0."""
    return {
        "group_id": group,
        "generation_id": generation,
        "member_id": member,
        "topics": [
            {
                "name": topic,
                "partitions": [
                    {"partition_index": 0, "committed_offset": offset, "committed_metadata": ""}
                ],
            }
        ],
    }


def _commit_error(response) -> ErrorCode:
    return ErrorCode(response.topics[0].partitions[0].error_code)


def test_a_coordinator_back_from_a_lapsed_lease_refuses_its_stale_generation(cluster_factory):
    """BROKER BUG (fails today). Member M of generation 1 commits offset 10 at the group's
    coordinator K. K is SIGSTOPped; M's next commit (offset 5) waits in K's socket. K's 3 s
    lease lapses, the group moves to K2, where a new member joins (generation 1 at K2) and
    commits 20. K gets SIGCONT: it registers again and, by rendezvous hashing, coordinates the
    group again. Generation 1 of K is history: the group has moved away and back. Expected
    (Kafka: a coordinator that lost its __consumer_offsets partition fails such writes with
    NOT_COORDINATOR): the queued commit and a fresh one from M are refused, the committed
    offset stays 20, and K does not describe M as a member. Today K kept the group it had
    before the pause: it accepts both commits (the offset goes back to 5, then 7) and still
    shows M, Stable."""
    cluster = cluster_factory(3, *SETTINGS)
    group, topic = "lapsed-group", "lapsed"
    cluster.create_topic(topic, partitions=1, replication_factor=3)
    old = wait_for_coordinator(cluster, group, lambda _: True, "a coordinator")
    port = cluster.broker(old).port
    generation, member = _join_alone(port, group)
    _, answer = cluster.request(
        ApiKey.OFFSET_COMMIT, 5, _commit(group, topic, generation, member, 10), via=old
    )
    assert _commit_error(answer) == ErrorCode.NONE

    with RawClient(port, timeout=60, client_id="stale-test") as stale:
        cluster.broker(old).pause()
        queued = stale.send(ApiKey.OFFSET_COMMIT, 5, _commit(group, topic, generation, member, 5))
        new = wait_for_coordinator(cluster, group, lambda c: c != old, "the group moved")
        new_generation, new_member = _join_alone(cluster.broker(new).port, group)
        _, answer = cluster.request(
            ApiKey.OFFSET_COMMIT, 5, _commit(group, topic, new_generation, new_member, 20), via=new
        )
        assert _commit_error(answer) == ErrorCode.NONE
        assert committed_offsets(cluster.broker(new).port, group, topic, 1) == (
            ErrorCode.NONE,
            {0: 20},
        )
        cluster.broker(old).resume()
        queued_error = _commit_error(stale.read_response(ApiKey.OFFSET_COMMIT, 5, queued))

    back = wait_for_coordinator(cluster, group, lambda c: c == old, "the group back at K")
    after_queued = committed_offsets(cluster.broker(back).port, group, topic, 1)
    _, answer = cluster.request(
        ApiKey.OFFSET_COMMIT, 5, _commit(group, topic, generation, member, 7), via=old
    )
    observed = {
        "queued stale commit refused": queued_error != ErrorCode.NONE,
        "offset after it": after_queued,
        "fresh stale commit refused": _commit_error(answer) != ErrorCode.NONE,
        "offset after that": committed_offsets(port, group, topic, 1),
        "stale member still described": member in describe_group(port, group, topic).members,
    }
    assert observed == {
        "queued stale commit refused": True,
        "offset after it": (ErrorCode.NONE, {0: 20}),
        "fresh stale commit refused": True,
        "offset after that": (ErrorCode.NONE, {0: 20}),
        "stale member still described": False,
    }
