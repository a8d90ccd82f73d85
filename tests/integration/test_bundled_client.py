"""The bundled client (tmq.client, through its blocking wrappers) against a real broker."""

from __future__ import annotations

import time

from confluent_kafka import Producer as ConfluentProducer

from tmq.client.sync import SyncAdmin, SyncConsumer, SyncProducer
from tmq.protocol.compression import Codec

KEYS = [f"GPU-{i:08x}-aaaa-bbbb-cccc-{i:012x}".encode() for i in range(300)]


def test_round_trip_and_partitioner_parity_with_librdkafka(broker):
    """The bundled client creates a 3-partition topic, produces 6,000 keyed records (lz4,
    idempotent) and reads them back in per-partition order; every key lands on the partition
    librdkafka's murmur2_random partitioner picks for it."""
    with SyncAdmin(broker.bootstrap) as admin:
        admin.create_topic("bundled", 3)
        admin.create_topic("reference", 3)
    sent = []
    with SyncProducer(broker.bootstrap, compression=Codec.LZ4) as producer:
        futures = []
        for i in range(6000):
            key = KEYS[i % len(KEYS)]
            value = b"%d" % i
            futures.append((key, value, producer.send("bundled", value, key=key)))
        producer.flush()
        for key, value, future in futures:
            metadata = future.result(timeout=30)
            sent.append((metadata.partition, metadata.offset, key, value))
    tmq_partition = {key: partition for partition, _, key, _ in sent}

    reference = ConfluentProducer(
        {"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"}
    )
    librdkafka_partition = {}
    for key in KEYS:
        reference.produce(
            "reference",
            value=b"",
            key=key,
            on_delivery=lambda error, message: librdkafka_partition.setdefault(
                message.key(), message.partition()
            ),
        )
    assert reference.flush(30) == 0
    assert tmq_partition == librdkafka_partition

    received = []
    with SyncConsumer(broker.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([("bundled", p) for p in range(3)])
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            received += [
                (r.partition, r.offset, r.key, r.value) for r in consumer.poll(timeout_ms=500)
            ]
    assert sorted(received) == sorted(sent)
    for partition in range(3):
        offsets = [offset for p, offset, _, _ in received if p == partition]
        assert offsets == sorted(offsets) == list(range(len(offsets)))
