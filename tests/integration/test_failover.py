"""The failure scenarios of issue #7 (kafka-notes §5.3) with real processes: one etcd, three
``tmq broker`` processes on 127.0.0.1, SIGKILL / SIGSTOP, a confluent-kafka producer with
acks=all recording every outcome, and the invariant checker (``invariants.check``: I1-I3,
I5, I6, I8, I9) over the acknowledgements, a full read and the replicas' logs on disk.

F6/F7/F9 also run as deterministic tests of the replication state machines
(``tests/replication/test_truncation_scenarios.py``, ``tests/broker/test_cluster_in_memory.py``);
F7 runs here too, where the timing can be arranged. F6's (a follower restarting between a
fetch and the next high watermark, then the leader dying at once) cannot be forced with
processes: a restarted follower is out of the ISR until it caught up, so it cannot lead.
"""

from __future__ import annotations

import os
import time

from cluster_workload import AckingProducer, final_check
from integration_helpers import RawClient
from invariants import check, format_violations
from pipeline_helpers import wait_for

from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode
from tmq.protocol.records import Record, build_batch

#: Cluster settings: acks=all needs 2 in-sync replicas; a follower 2 s behind leaves the ISR.
SETTINGS = (
    "min.insync.replicas=2",
    "replica.lag.time.max.ms=2000",
    "flush.policy=always",
)
NOT_LEADING = (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH)


def assert_clean(violations) -> None:
    assert not violations, format_violations(violations)


def started(cluster_factory, topic: str, *, partitions: int = 1, size: int = 3, settings=SETTINGS):
    cluster = cluster_factory(size, *settings)
    cluster.create_topic(topic, partitions=partitions, replication_factor=size)
    for partition in range(partitions):
        cluster.wait_for_isr(topic, partition)
    return cluster


def produce_body(topic: str, values: list[bytes], acks: int) -> dict:
    batch = build_batch(
        [Record(i, 0, None, value) for i, value in enumerate(values)],
        base_timestamp=int(time.time() * 1000),
    )
    return {
        "transactional_id": None,
        "acks": acks,
        "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    }


def fetch_body(topic: str, offset: int) -> dict:
    return {
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {
                        "partition": 0,
                        "current_leader_epoch": -1,
                        "fetch_offset": offset,
                        "partition_max_bytes": 1 << 20,
                    }
                ],
            }
        ],
        "rack_id": "",
    }


def produce_error(cluster, broker_id: int, topic: str, values: list[bytes], acks: int) -> int:
    """The error code of a one-batch Produce sent straight to ``broker_id``."""
    with RawClient(cluster.broker(broker_id).port, timeout=15) as client:
        response = client.request(ApiKey.PRODUCE, 7, produce_body(topic, values, acks))
    return response.responses[0].partition_responses[0].error_code


def test_f1_f2_the_leader_killed_five_times_loses_no_acknowledged_value(cluster_factory):
    """F1/F2: under acks=all, the partition leader is killed with SIGKILL and restarted, and
    each new leader killed again, five times: every leader epoch is new, and at the end no
    acknowledged value is lost, none is at two offsets, no offset has two values, each
    partition keeps the send order, and the replicas hold the same batches (CRCs) up to the
    high watermark."""
    cluster = started(cluster_factory, "f2", partitions=2)
    producer = AckingProducer(cluster, "f2", 2, rate=400).start()
    producer.wait_for_acks(100)
    epochs = [cluster.metadata("f2")[0].leader_epoch]
    for _ in range(5):
        old = cluster.wait_for_leader("f2", 0)
        cluster.broker(old).kill()
        new = cluster.wait_for_leader("f2", 0, not_in={old}, timeout=60)
        epochs.append(cluster.metadata("f2", via=new)[0].leader_epoch)
        producer.wait_for_acks(producer.acked + 100, timeout=60)
        cluster.broker(old).restart()
        cluster.wait_for_isr("f2", 0, timeout=60)
    attempts, acks = producer.stop()
    assert epochs == sorted(set(epochs)), f"leader epochs did not grow: {epochs}"
    assert len(acks) >= 600
    assert_clean(final_check(cluster, "f2", attempts, acks))


def test_f4_a_stopped_follower_leaves_the_isr_and_rejoins(cluster_factory):
    """F4: a follower stopped (SIGSTOP) beyond replica.lag.time.max.ms leaves the ISR, and
    acks=all goes on with the two others while it is still stopped; after SIGCONT it catches
    up and rejoins, and no invariant breaks."""
    cluster = started(cluster_factory, "f4")
    producer = AckingProducer(cluster, "f4", 1, rate=400).start()
    producer.wait_for_acks(100)
    leader = cluster.wait_for_leader("f4", 0)
    follower = next(b for b in cluster.brokers if b != leader)
    cluster.broker(follower).pause()
    wait_for(
        lambda: follower not in cluster.metadata("f4", via=leader)[0].isr,
        30,
        f"broker {follower} to leave the ISR",
        *cluster.brokers.values(),
    )
    producer.wait_for_acks(producer.acked + 100, timeout=30)
    assert cluster.broker(follower).paused
    cluster.broker(follower).resume()
    state = cluster.wait_for_isr("f4", 0, timeout=60)
    assert sorted(state.isr) == [1, 2, 3]
    attempts, acks = producer.stop()
    assert_clean(final_check(cluster, "f4", attempts, acks))


def test_f5_a_leader_paused_past_its_lease_is_fenced(cluster_factory):
    """F5: the leader is stopped (SIGSTOP) past its lease; another replica leads at a newer
    epoch. A Produce and a Fetch queued on the old leader's socket while it was stopped are
    answered, the instant it resumes, with NOT_LEADER_OR_FOLLOWER (or FENCED_LEADER_EPOCH);
    its registration is over; it comes back as a follower; no invariant breaks."""
    cluster = started(cluster_factory, "f5")
    producer = AckingProducer(cluster, "f5", 1, rate=400).start()
    producer.wait_for_acks(100)
    old = cluster.wait_for_leader("f5", 0)
    old_epoch = cluster.metadata("f5", via=old)[0].leader_epoch
    cluster.broker(old).pause()
    new = cluster.wait_for_leader("f5", 0, not_in={old}, timeout=60)
    assert cluster.metadata("f5", via=new)[0].leader_epoch > old_epoch
    producer.wait_for_acks(producer.acked + 100, timeout=60)
    with RawClient(cluster.broker(old).port, timeout=30) as client:
        produced = client.send(ApiKey.PRODUCE, 7, produce_body("f5", [b"zombie"], acks=1))
        fetched = client.send(ApiKey.FETCH, 11, fetch_body("f5", 0))
        cluster.broker(old).resume()
        produce = client.read_response(ApiKey.PRODUCE, 7, produced)
        fetch = client.read_response(ApiKey.FETCH, 11, fetched)
    assert produce.responses[0].partition_responses[0].error_code in NOT_LEADING
    assert fetch.responses[0].partitions[0].error_code in NOT_LEADING
    assert not fetch.responses[0].partitions[0].records
    wait_for(
        lambda: cluster.leader_of("f5", 0, via=old) == new,
        60,
        f"broker {old} to follow {new}",
        *cluster.brokers.values(),
    )
    assert "registration ended" in cluster.broker(old).log()
    cluster.wait_for_isr("f5", 0, timeout=60)
    attempts, acks = producer.stop()
    assert_clean(final_check(cluster, "f5", attempts, acks))  # I6: b"zombie" is nowhere


def test_f7_divergent_tails_after_a_double_crash_converge(cluster_factory):
    """F7 (KIP-101 scenario 2): two replicas, acks=1; both are killed, the leader's log loses
    its tail (a torn last batch), it restarts alone and leads under a new epoch, takes new
    writes at offsets the other replica still holds; the other replica restarts, truncates
    by the leader epochs and both logs end up the same batch for batch."""
    settings = ("min.insync.replicas=1", "flush.policy=always")
    cluster = started(cluster_factory, "f7", size=2, settings=settings)
    leader = cluster.wait_for_leader("f7", 0)
    follower = next(b for b in cluster.brokers if b != leader)
    for i in range(20):
        assert produce_error(cluster, leader, "f7", [b"first-%d" % i], acks=-1) == 0
    old_epoch = cluster.metadata("f7", via=leader)[0].leader_epoch
    cluster.broker(follower).kill()
    cluster.broker(leader).kill()
    directory = cluster.partition_dir(leader, "f7", 0)
    segment = max(directory.glob("*.log"))
    os.truncate(segment, segment.stat().st_size - 7)  # inside the last batch
    cluster.broker(leader).restart()
    wait_for(
        lambda: (
            cluster.metadata("f7", via=leader)[0].leader_epoch > old_epoch
            and cluster.leader_of("f7", 0, via=leader) == leader
        ),
        60,
        f"broker {leader} to lead under a new epoch",
        *cluster.brokers.values(),
    )
    for i in range(10):
        wait_for(
            lambda i=i: produce_error(cluster, leader, "f7", [b"second-%d" % i], acks=1) == 0,
            30,
            "an acks=1 write to the restarted leader",
        )
    cluster.broker(follower).restart()
    # The ISR may still name the follower from before the crash (its lease outlived the
    # leader's restart) until the leader shrinks it: a full ISR alone does not say the
    # follower caught up, a high watermark at the leader's end does.
    wait_for(
        lambda: cluster.high_watermarks("f7", [0])[0] == 29,
        60,
        "the high watermark at the leader's log end",
        *cluster.brokers.values(),
    )
    cluster.wait_for_isr("f7", 0, timeout=60)
    hws = cluster.high_watermarks("f7", [0])
    cluster.stop_brokers()
    logs = cluster.replica_logs("f7", [0])
    assert len(logs) == 2
    assert logs[0].batches == logs[1].batches
    assert logs[0].log_end_offset == hws[0] == 29  # 19 survivors and 10 new
    assert_clean([v for v in check([], [], [], logs, hws) if v.invariant in ("I3", "I9")])


def test_f8_torn_and_corrupt_follower_tails_are_cut_and_replicated_again(cluster_factory):
    """F8: one follower's log loses half of its last batch, another's last batch gets a
    flipped byte (bad CRC), each while killed; on restart each cuts the bad tail (logged),
    fetches the rest from the leader and rejoins the ISR; no invariant breaks."""
    cluster = started(cluster_factory, "f8")
    producer = AckingProducer(cluster, "f8", 1, rate=400).start()
    producer.wait_for_acks(200)
    leader = cluster.wait_for_leader("f8", 0)
    torn, corrupt = [b for b in cluster.brokers if b != leader]
    for broker_id, damage in ((torn, "torn"), (corrupt, "corrupt")):
        cluster.broker(broker_id).kill()
        segment = max(cluster.partition_dir(broker_id, "f8", 0).glob("*.log"))
        size = segment.stat().st_size
        if damage == "torn":
            os.truncate(segment, size - 20)
        else:
            with open(segment, "r+b") as data:
                data.seek(size - 5)
                byte = data.read(1)
                data.seek(size - 5)
                data.write(bytes([byte[0] ^ 0xFF]))
        cluster.broker(broker_id).restart()
        cluster.wait_for_isr("f8", 0, timeout=60)
        assert "recovered f8-0: cut" in cluster.broker(broker_id).log()
        producer.wait_for_acks(producer.acked + 100, timeout=60)
    attempts, acks = producer.stop()
    assert_clean(final_check(cluster, "f8", attempts, acks))


def test_f11_two_replicas_down_refuse_acks_all_but_not_acks_1(cluster_factory):
    """F11: with 2 of 3 replicas down, acks=all is refused with NOT_ENOUGH_REPLICAS and the
    high watermark stays; acks=1 is still appended (and not committed: min.insync holds the
    high watermark); when the replicas return, acks=all works and everything is committed."""
    cluster = started(cluster_factory, "f11")
    leader = cluster.wait_for_leader("f11", 0)
    for i in range(5):
        assert produce_error(cluster, leader, "f11", [b"before-%d" % i], acks=-1) == 0
    others = [b for b in cluster.brokers if b != leader]
    for broker_id in others:
        cluster.broker(broker_id).kill()
    wait_for(
        lambda: cluster.metadata("f11", via=leader)[0].isr == (leader,),
        60,
        "the ISR to shrink to the leader",
        *cluster.brokers.values(),
    )
    assert cluster.high_watermarks("f11", [0])[0] == 5
    refused = produce_error(cluster, leader, "f11", [b"refused"], acks=-1)
    assert refused == ErrorCode.NOT_ENOUGH_REPLICAS
    assert produce_error(cluster, leader, "f11", [b"acks-1"], acks=1) == ErrorCode.NONE
    assert cluster.high_watermarks("f11", [0])[0] == 5
    for broker_id in others:
        cluster.broker(broker_id).restart()
    cluster.wait_for_isr("f11", 0, timeout=60)
    assert produce_error(cluster, leader, "f11", [b"after"], acks=-1) == ErrorCode.NONE
    assert cluster.high_watermarks("f11", [0])[0] == 7


def test_f13_etcd_killed_and_restarted_during_produce(cluster_factory):
    """F13: etcd is killed and restarted while acks=all writes flow; afterwards leadership
    changes resume (the leader is killed and replaced), and no acknowledged value is lost."""
    cluster = started(cluster_factory, "f13")
    producer = AckingProducer(cluster, "f13", 1, rate=400).start()
    producer.wait_for_acks(100)
    cluster.kill_etcd()
    time.sleep(1)  # etcd stays down for a while, within the brokers' lease deadline
    cluster.restart_etcd()
    producer.wait_for_acks(producer.acked + 100, timeout=60)
    leader = cluster.wait_for_leader("f13", 0)
    cluster.broker(leader).kill()
    cluster.wait_for_leader("f13", 0, not_in={leader}, timeout=60)
    producer.wait_for_acks(producer.acked + 100, timeout=60)
    cluster.broker(leader).restart()
    attempts, acks = producer.stop()
    assert_clean(final_check(cluster, "f13", attempts, acks))


def test_f9_two_failovers_with_no_write_between_converge(cluster_factory):
    """F9 (KIP-279): leadership moves twice with nothing written in the middle epoch (its
    leader killed at once); the replicas that come back hold epochs the final leader never
    wrote under, truncate by the epochs and converge; no invariant breaks."""
    cluster = started(cluster_factory, "f9")
    producer = AckingProducer(cluster, "f9", 1, rate=400).start()
    producer.wait_for_acks(100)
    attempts, acks = producer.stop()  # nothing is written in the next epoch
    first = cluster.wait_for_leader("f9", 0)
    cluster.broker(first).kill()
    second = cluster.wait_for_leader("f9", 0, not_in={first}, timeout=60)
    cluster.broker(second).kill()
    third = cluster.wait_for_leader("f9", 0, not_in={first, second}, timeout=60)
    epoch = cluster.metadata("f9", via=third)[0].leader_epoch
    assert epoch >= 2
    cluster.broker(first).restart()
    cluster.broker(second).restart()
    producer = AckingProducer(cluster, "f9", 1, rate=400, producer="v").start()
    producer.wait_for_acks(100, timeout=60)
    more_attempts, more_acks = producer.stop()
    violations = final_check(cluster, "f9", attempts + more_attempts, acks + more_acks)
    assert_clean(violations)


def test_kafka_python_consumer_keeps_reading_through_a_failover(cluster_factory):
    """A kafka-python 3 consumer (assign, no group) reading while the leader is killed:
    it moves to the new leader, validates its position there (OffsetForLeaderEpoch) and
    reads every committed value exactly once, in offset order."""
    from kafka import KafkaConsumer, TopicPartition

    cluster = started(cluster_factory, "kp")
    producer = AckingProducer(cluster, "kp", 1, rate=None, max_sends=3000).start()
    producer.wait_for_acks(3000, timeout=120)
    _, acks = producer.stop()
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap(),
        enable_auto_commit=False,
        max_poll_records=100,
        request_timeout_ms=10_000,
        retry_backoff_ms=100,
    )
    try:
        consumer.assign([TopicPartition("kp", 0)])
        consumer.seek_to_beginning()
        offsets: list[int] = []
        values: list[bytes] = []

        def read(until: int) -> None:
            deadline = time.monotonic() + 120
            while len(offsets) < until:
                assert time.monotonic() < deadline, f"read {len(offsets)} of {until}"
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        offsets.append(record.offset)
                        values.append(record.value)

        read(500)
        leader = cluster.wait_for_leader("kp", 0)
        cluster.broker(leader).kill()
        cluster.wait_for_leader("kp", 0, not_in={leader}, timeout=60)
        read(len(acks))
    finally:
        consumer.close()
    assert offsets == list(range(len(acks)))
    assert sorted(values) == sorted(ack.value for ack in acks)


def test_replicas_spread_over_racks(cluster_factory):
    """Brokers started with --rack r1, r1, r2: every partition of an RF=2 topic has one
    replica in each rack, and leaders are spread over the brokers."""
    cluster = cluster_factory(3, *SETTINGS, racks={1: "r1", 2: "r1", 3: "r2"})
    cluster.create_topic("racks", partitions=6, replication_factor=2)
    racks = {1: "r1", 2: "r1", 3: "r2"}
    metadata = cluster.metadata("racks")
    for state in metadata.values():
        assert {racks[r] for r in state.replicas} == {"r1", "r2"}
    assert {state.leader for state in metadata.values()} == {1, 2, 3}
