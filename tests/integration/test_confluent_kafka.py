"""confluent-kafka (librdkafka 2.16) against a real broker process: admin, idempotent keyed
produce, ordered consume, committed offsets."""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict

import pytest
from integration_helpers import assert_no_traceback, dump_log

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import (  # noqa: E402 - after the importorskip
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

MESSAGES = 50_000
KEYS = 300


def gpu_uuids(count: int, seed: int = 4) -> list[bytes]:
    """``count`` distinct DCGM-style GPU UUIDs (``GPU-xxxxxxxx-...``), reproducible."""
    rng = random.Random(seed)
    return [f"GPU-{uuid.UUID(int=rng.getrandbits(128))}".encode() for _ in range(count)]


def create_topic(bootstrap: str, name: str, partitions: int, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)],
        request_timeout=15,
    )
    futures[name].result(timeout=30)


def produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: bytes | None = None,
    on_delivery=None,
    partition: int | None = None,
) -> None:
    """``producer.produce``, waiting (bounded) for room when the local queue is full."""
    kwargs = {"key": key, "value": value, "on_delivery": on_delivery}
    if partition is not None:
        kwargs["partition"] = partition
    deadline = time.monotonic() + 60
    while True:
        try:
            producer.produce(topic, **kwargs)
            return
        except BufferError:
            assert time.monotonic() < deadline, "the producer queue stayed full for 60s"
            producer.poll(0.05)


def consume_exactly(consumer: Consumer, count: int, timeout: float = 60.0) -> list:
    """Consume ``count`` messages (failing on any error or after ``timeout``), then check that
    nothing more arrives for a moment."""
    messages = []
    deadline = time.monotonic() + timeout
    while len(messages) < count:
        assert time.monotonic() < deadline, f"consumed {len(messages)} of {count}"
        for message in consumer.consume(num_messages=5000, timeout=0.5):
            assert message.error() is None, message.error()
            messages.append(message)
    extra = [m for m in consumer.consume(num_messages=100, timeout=0.5) if m.error() is None]
    assert not extra, f"{len(extra)} messages beyond the {count} expected"
    assert len(messages) == count
    return messages


def test_idempotent_keyed_produce_then_ordered_consume(broker):
    """50,000 keyed messages (300 GPU UUID keys) sent by an idempotent, acks=all,
    murmur2_random producer to a 3-partition topic made by AdminClient all come back exactly
    once: every delivery report's (partition, offset) holds its message, offsets are 0..n-1 on
    each partition, every key lives on one partition, each key's messages arrive in send order,
    and the stored batches carry the producer's id with sequences that match their offsets."""
    topic = "gpu-samples"
    create_topic(broker.bootstrap, topic, 3)
    keys = gpu_uuids(KEYS)
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 10,
        }
    )
    delivered: dict[bytes, tuple[int, int]] = {}
    errors = []

    def on_delivery(error, message):
        if error is not None:
            errors.append(error)
        else:
            delivered[message.value()] = (message.partition(), message.offset())

    started = time.monotonic()
    for index in range(MESSAGES):
        key = keys[index % KEYS]
        produce(producer, topic, b"%s|%d" % (key, index), key=key, on_delivery=on_delivery)
        if index % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    produce_seconds = time.monotonic() - started
    assert not errors, errors[:5]
    assert len(delivered) == MESSAGES

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "ordered-readers",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
        messages = consume_exactly(consumer, MESSAGES)
    finally:
        consumer.close()

    offsets_by_partition = defaultdict(list)
    indexes_by_key = defaultdict(list)
    partitions_of_key = defaultdict(set)
    for message in messages:
        partition, offset, value = message.partition(), message.offset(), message.value()
        assert delivered[value] == (partition, offset), value
        key, _, index = value.rpartition(b"|")
        assert message.key() == key
        offsets_by_partition[partition].append(offset)
        indexes_by_key[key].append(int(index))
        partitions_of_key[key].add(partition)
    assert sorted(offsets_by_partition) == [0, 1, 2]
    for partition, offsets in offsets_by_partition.items():
        assert offsets == list(range(len(offsets))), f"partition {partition} offsets"
    assert len(indexes_by_key) == KEYS
    for key, indexes in indexes_by_key.items():
        assert len(partitions_of_key[key]) == 1, key
        assert indexes == sorted(indexes), f"{key!r} out of send order"
        assert len(indexes) == len(set(indexes))

    producer_ids = set()
    for partition in range(3):
        batches = dump_log(broker.data_dir / f"{topic}-{partition}")
        assert batches and all(b["crc_ok"] for b in batches)
        for batch in batches:
            producer_ids.add(batch["producer_id"])
            # one idempotent producer from offset 0: a batch's first sequence is its offset
            assert batch["base_sequence"] == batch["base_offset"], batch
    assert len(producer_ids) == 1 and producer_ids.pop() >= 0
    assert_no_traceback(broker.log())
    print(f"produced {MESSAGES} in {produce_seconds:.2f}s")


def test_commit_and_committed_round_trip(broker):
    """Offsets committed by an assign()ed consumer (OffsetCommit) come back from committed()
    (OffsetFetch) for it and for a new member of the same group, with their metadata; a
    consumer assigned without offsets resumes at them; another group has none."""
    topic = "commits"
    create_topic(broker.bootstrap, topic, 3)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for partition in range(3):
        for index in range(10):
            produce(producer, topic, b"p%d-%d" % (partition, index), partition=partition)
    assert producer.flush(30) == 0

    def consumer(group: str) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )

    wanted = {0: 3, 1: 7, 2: 10}
    first = consumer("committers")
    try:
        first.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
        consume_exactly(first, 30)
        committed = first.commit(
            offsets=[TopicPartition(topic, p, o, metadata=f"m{p}") for p, o in wanted.items()],
            asynchronous=False,
        )
        assert all(tp.error is None for tp in committed)
        got = first.committed([TopicPartition(topic, p) for p in range(3)], timeout=15)
        assert {tp.partition: tp.offset for tp in got} == wanted
        assert {tp.partition: tp.metadata for tp in got} == {p: f"m{p}" for p in range(3)}
    finally:
        first.close()

    second = consumer("committers")
    try:
        got = second.committed([TopicPartition(topic, p) for p in range(3)], timeout=15)
        assert {tp.partition: tp.offset for tp in got} == wanted
        second.assign([TopicPartition(topic, p) for p in range(3)])  # from the committed ones
        resumed = consume_exactly(second, sum(10 - o for o in wanted.values()))
        first_offsets = {}
        for message in resumed:
            first_offsets.setdefault(message.partition(), message.offset())
        assert first_offsets == {0: 3, 1: 7}
        # a message-based commit stores the offset after the message
        second.commit(message=resumed[-1], asynchronous=False)
        last = resumed[-1]
        (after,) = second.committed([TopicPartition(topic, last.partition())], timeout=15)
        assert after.offset == last.offset() + 1
    finally:
        second.close()

    other = consumer("another-group")
    try:
        got = other.committed([TopicPartition(topic, p) for p in range(3)], timeout=15)
        assert {tp.offset for tp in got} == {OFFSET_INVALID}
    finally:
        other.close()
    assert_no_traceback(broker.log())


def test_list_topics_and_admin_errors(broker):
    """list_topics shows this broker (id 0 at its address) and each created topic with its
    partitions led by broker 0; creating an existing topic or one with replication factor 3
    fails with the Kafka error; a deleted topic leaves the listing."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics(
        [NewTopic("listed-a", 3, 1), NewTopic("listed-b", 1, 1)], request_timeout=15
    )
    for future in futures.values():
        future.result(timeout=30)

    listing = admin.list_topics(timeout=15)
    assert {b.id: (b.host, b.port) for b in listing.brokers.values()} == {
        0: ("127.0.0.1", broker.port)
    }
    assert listing.controller_id == 0
    assert listing.cluster_id == "tmq"
    assert {"listed-a", "listed-b"} <= set(listing.topics)
    for name, count in (("listed-a", 3), ("listed-b", 1)):
        topic = listing.topics[name]
        assert topic.error is None
        assert sorted(topic.partitions) == list(range(count))
        for partition in topic.partitions.values():
            assert (partition.leader, partition.replicas, partition.isrs) == (0, [0], [0])

    again = admin.create_topics([NewTopic("listed-a", 3, 1)], request_timeout=15)
    with pytest.raises(KafkaException) as exists:
        again["listed-a"].result(timeout=30)
    assert exists.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    replicated = admin.create_topics([NewTopic("listed-c", 1, 3)], request_timeout=15)
    with pytest.raises(KafkaException) as factor:
        replicated["listed-c"].result(timeout=30)
    assert factor.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR

    admin.delete_topics(["listed-b"], operation_timeout=15)["listed-b"].result(timeout=30)
    deadline = time.monotonic() + 15
    while "listed-b" in admin.list_topics(timeout=15).topics:
        assert time.monotonic() < deadline, "listed-b is still listed"
        time.sleep(0.1)
    assert "listed-a" in admin.list_topics(timeout=15).topics
    assert not (broker.data_dir / "listed-b-0").exists()
    assert_no_traceback(broker.log())
