"""aiokafka 0.14 against a real broker process (asyncio.run inside the test)."""

from __future__ import annotations

import asyncio

import pytest
from integration_helpers import assert_no_traceback, dump_log

aiokafka = pytest.importorskip("aiokafka")
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

COUNT = 3000


async def produce(bootstrap: str, topic: str, **config) -> dict[bytes, tuple[int, int]]:
    """Send COUNT keyed records; return value -> (partition, offset) from the producer."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **config)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=b"gpu-%d" % (i % 7), value=b"%d" % i)
            for i in range(COUNT)
        ]
        results = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {b"%d" % i: (r.partition, r.offset) for i, r in enumerate(results)}


async def consume(bootstrap: str, topic: str, count: int) -> list:
    """Read ``count`` records from partition 0 from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        records = []
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_produce_and_consume(broker, idempotent):
    """AIOKafkaProducer's records (idempotent or not) come back from AIOKafkaConsumer
    (assign + seek_to_beginning) in order, at the offsets the producer was told, once each."""
    topic = f"aio-{'idempotent' if idempotent else 'plain'}"

    async def scenario():
        placed = await produce(broker.bootstrap, topic, enable_idempotence=idempotent)
        records = await consume(broker.bootstrap, topic, COUNT)
        return placed, records

    placed, records = asyncio.run(asyncio.wait_for(scenario(), timeout=90))
    assert [r.offset for r in records] == list(range(COUNT))
    assert [r.value for r in records] == [b"%d" % i for i in range(COUNT)]
    for record in records:
        assert placed[record.value] == (0, record.offset)
        assert record.key == b"gpu-%d" % (int(record.value) % 7)
    batches = dump_log(broker.data_dir / f"{topic}-0")
    if idempotent:
        assert all(b["producer_id"] >= 0 for b in batches)
    else:
        assert all(b["producer_id"] == -1 for b in batches)
    assert_no_traceback(broker.log())
