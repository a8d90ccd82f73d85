"""kafka-python 3.x with its defaults (idempotence on) against a real broker process."""

from __future__ import annotations

import time

import pytest
from integration_helpers import assert_no_traceback, dump_log

kafka = pytest.importorskip("kafka")
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.errors import TopicAlreadyExistsError  # noqa: E402


def admin_for(broker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15_000)


def read_all(consumer: KafkaConsumer, count: int, timeout: float = 60.0) -> list:
    """Poll until ``count`` records arrived (failing after ``timeout``)."""
    records = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        assert time.monotonic() < deadline, f"read {len(records)} of {count}"
        for batch in consumer.poll(timeout_ms=500, max_records=count - len(records)).values():
            records.extend(batch)
    assert len(records) == count
    return records


def test_default_producer_is_idempotent_and_consumer_reads_back(broker):
    """A KafkaProducer with its defaults (idempotent, acks=all) sends 3,000 keyed records to a
    2-partition topic; a KafkaConsumer assigned both partitions and seeked to the beginning
    reads them all back exactly where the producer's futures said, in order; the stored
    batches carry the producer id the broker handed out (InitProducerId)."""
    topic = "kp-samples"
    admin = admin_for(broker)
    try:
        admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    try:
        assert producer.config["enable_idempotence"] is True
        futures = [
            producer.send(topic, key=b"gpu-%d" % (i % 10), value=b"%d" % i) for i in range(3000)
        ]
        producer.flush(timeout=60)
        placed = {}
        for index, future in enumerate(futures):
            metadata = future.get(timeout=30)
            placed[b"%d" % index] = (metadata.partition, metadata.offset)
    finally:
        producer.close(timeout=10)
    assert {partition for partition, _ in placed.values()} == {0, 1}

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        records = read_all(consumer, 3000)
    finally:
        consumer.close()
    by_partition: dict[int, list[int]] = {0: [], 1: []}
    last_of_key: dict[bytes, int] = {}
    for record in records:
        assert placed[record.value] == (record.partition, record.offset)
        by_partition[record.partition].append(record.offset)
        index = int(record.value)
        assert last_of_key.get(record.key, -1) < index, "a key's records out of order"
        last_of_key[record.key] = index
    for offsets in by_partition.values():
        assert sorted(offsets) == list(range(len(offsets)))
    for partition in (0, 1):
        batches = dump_log(broker.data_dir / f"{topic}-{partition}")
        assert all(b["producer_id"] >= 0 and b["base_sequence"] >= 0 for b in batches)
    assert_no_traceback(broker.log())


def test_group_commit_and_resume(broker):
    """A consumer with a group_id and assigned partitions commits its position (OffsetCommit
    with no generation); committed() and the admin's group offsets (OffsetFetch) return it,
    and a new consumer of the group starts there."""
    topic = "kp-commits"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        for index in range(40):
            producer.send(topic, value=b"%d" % index, partition=0)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    partition = TopicPartition(topic, 0)

    first = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id="kp-group", enable_auto_commit=False
    )
    try:
        first.assign([partition])
        first.seek_to_beginning()
        records = read_all(first, 25)
        assert [r.offset for r in records] == list(range(25))
        first.commit()
        assert first.committed(partition) == 25
    finally:
        first.close()

    admin = admin_for(broker)
    try:
        groups = admin.list_group_offsets({"kp-group": None})
    finally:
        admin.close()
    offsets = {tp: meta.offset for tp, meta in groups["kp-group"].items()}
    assert offsets == {partition: 25}, offsets

    second = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id="kp-group",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        second.assign([partition])
        rest = read_all(second, 15)
        assert [r.offset for r in rest] == list(range(25, 40))
        assert [r.value for r in rest] == [b"%d" % i for i in range(25, 40)]
    finally:
        second.close()
    assert_no_traceback(broker.log())


def test_admin_creates_and_deletes_topics(broker):
    """KafkaAdminClient creates topics (CreateTopics to the controller), sees them with their
    partition counts, gets TopicAlreadyExistsError for a second creation, and deletes them."""
    admin = admin_for(broker)
    try:
        admin.create_topics(
            {
                "kp-admin-a": {"num_partitions": 3, "replication_factor": 1},
                "kp-admin-b": {"num_partitions": 1, "replication_factor": 1},
            }
        )
        assert {"kp-admin-a", "kp-admin-b"} <= set(admin.list_topics())
        described = {t["name"]: t for t in admin.describe_topics(["kp-admin-a", "kp-admin-b"])}
        assert len(described["kp-admin-a"]["partitions"]) == 3
        assert len(described["kp-admin-b"]["partitions"]) == 1
        assert all(p["leader_id"] == 0 for p in described["kp-admin-a"]["partitions"]), described
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({"kp-admin-a": {"num_partitions": 3, "replication_factor": 1}})
        admin.delete_topics(["kp-admin-a", "kp-admin-b"])
        deadline = time.monotonic() + 15
        while {"kp-admin-a", "kp-admin-b"} & set(admin.list_topics()):
            assert time.monotonic() < deadline, "deleted topics are still listed"
            time.sleep(0.1)
    finally:
        admin.close()
    assert not (broker.data_dir / "kp-admin-a-0").exists()
    assert_no_traceback(broker.log())
