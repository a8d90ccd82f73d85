"""Broker restarts: SIGKILL or SIGTERM in the middle of an idempotent produce run, graceful
shutdown (in-flight requests answered, stuck clients), torn log tails, long topic names, and
what must survive each restart (acknowledged data, offsets, committed offsets, producer ids)."""

from __future__ import annotations

import contextlib
import signal
import struct
import threading
import time
from collections import defaultdict

import pytest
from integration_helpers import RawClient, assert_no_traceback, dump_log

from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode
from tmq.protocol.records import Record, build_batch

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

MARKER = ".tmq_cleanshutdown"


def restart(broker_factory, broker, sig: int):
    """Stop ``broker`` with ``sig`` and start a new process on its port and data directory;
    return (the new broker, the old one's exit status, the new one's log mark)."""
    status = broker.stop(sig)
    mark = broker.log_size()
    again = broker_factory(*broker.settings, data_dir=broker.data_dir, port=broker.port)
    return again, status, mark


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)], request_timeout=15)[name].result(30)


def read_everything(
    bootstrap: str, topic: str, partitions: int, count: int, timeout: float = 60.0
) -> list[tuple[int, int, bytes | None, bytes]]:
    """(partition, offset, key, value) of the first ``count`` records of every partition
    (from the beginning), then checks for a moment that there are no more."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "restart-readers", "enable.auto.commit": False}
    )
    records = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while len(records) < count:
            assert time.monotonic() < deadline, f"read {len(records)} of {count}"
            for message in consumer.consume(num_messages=5000, timeout=0.5):
                assert message.error() is None, message.error()
                records.append(
                    (message.partition(), message.offset(), message.key(), message.value())
                )
        extra = [m for m in consumer.consume(num_messages=100, timeout=1.0) if not m.error()]
        assert not extra, f"{len(extra)} records more than the {count} expected"
    finally:
        consumer.close()
    return records


def produce_values(bootstrap: str, topic: str, values, **config) -> list[tuple[int, int]]:
    """Produce ``values`` (acks=all) and return their (partition, offset)s, in order."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **config})
    placed: dict[bytes, tuple[int, int]] = {}
    errors = []

    def on_delivery(error, message):
        if error is not None:
            errors.append(error)
        else:
            placed[message.value()] = (message.partition(), message.offset())

    for value in values:
        producer.produce(topic, value=value, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors[:3]
    return [placed[v] for v in values]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_restarts_during_idempotent_produce_lose_and_duplicate_nothing(broker_factory, sig):
    """An idempotent (acks=all) confluent-kafka producer keeps sending keyed messages while the
    broker (flush.policy=always, 256 KiB segments) is stopped with SIGKILL or SIGTERM and
    restarted three times on the same port and data directory. After flush(): every message was
    acknowledged, every one is stored exactly once at the offset its delivery report gave,
    offsets are contiguous from 0 on each partition, each key's messages are in send order, and
    the stored batches of each producer session carry contiguous sequences (a retried batch was
    never appended twice)."""
    broker = broker_factory("segment.bytes=262144")  # several segments to recover per partition
    topic = "restarted"
    create_topic(broker.bootstrap, topic, 3)
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 250,
            "message.timeout.ms": 120_000,
        }
    )
    acked: dict[bytes, tuple[int, int]] = {}
    errors = []

    def on_delivery(error, message):
        if error is not None:
            errors.append((error, message.value()))
        else:
            assert message.value() not in acked, "a message acknowledged twice"
            acked[message.value()] = (message.partition(), message.offset())

    sent = 0
    in_flight_at_stop = []

    def send_for(seconds: float) -> None:
        nonlocal sent
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            for _ in range(100):
                try:
                    producer.produce(
                        topic,
                        key=b"gpu-%d" % (sent % 40),
                        value=b"%d" % sent,
                        on_delivery=on_delivery,
                    )
                except BufferError:
                    break
                sent += 1
            producer.poll(0.005)

    statuses = []
    for _ in range(3):
        acked_before = len(acked)
        send_for(0.8)
        deadline = time.monotonic() + 30
        while len(acked) <= acked_before:  # the broker takes writes before each stop
            assert time.monotonic() < deadline, "no acknowledgements since the last restart"
            send_for(0.1)
        in_flight_at_stop.append(sent - len(acked))
        broker, status, _ = restart(broker_factory, broker, sig)
        statuses.append(status)
    send_for(0.8)
    assert producer.flush(90) == 0
    assert not errors, errors[:5]
    assert len(acked) == sent
    assert any(in_flight_at_stop), "every stop found nothing in flight: nothing was tested"
    if sig == signal.SIGTERM:
        assert statuses == [0, 0, 0]

    records = read_everything(broker.bootstrap, topic, 3, sent)
    values = [value for _, _, _, value in records]
    assert len(set(values)) == len(values) == sent, "duplicates"
    offsets = defaultdict(list)
    last_of_key: dict[bytes, int] = {}
    for partition, offset, key, value in records:
        assert acked[value] == (partition, offset), f"{value!r} is not where it was acked"
        offsets[partition].append(offset)
        index = int(value)
        assert last_of_key.get(key, -1) < index, f"{key!r} out of order"
        last_of_key[key] = index
    for partition, found in offsets.items():
        assert found == list(range(len(found))), f"partition {partition} has gaps"

    for partition in range(3):
        assert len(list((broker.data_dir / f"{topic}-{partition}").glob("*.log"))) > 1
        next_sequence: dict[tuple[int, int], int] = {}
        for batch in dump_log(broker.data_dir / f"{topic}-{partition}"):
            session = (batch["producer_id"], batch["producer_epoch"])
            expected = next_sequence.get(session, batch["base_sequence"])
            assert batch["base_sequence"] == expected, f"sequence gap or repeat: {batch}"
            next_sequence[session] = batch["base_sequence"] + batch["count"]
    assert_no_traceback(broker.log())
    print(f"{sent} messages, in flight at each stop: {in_flight_at_stop}")


def test_sigkill_keeps_acknowledged_data_and_producer_ids(broker_factory):
    """After SIGKILL (no clean-shutdown marker) and a restart, every acknowledged record is
    there, new records continue at the next offset, a committed group offset is still
    committed, and a new idempotent producer gets a producer id never handed out before (the
    id block survives the restart)."""
    broker = broker_factory()
    topic = "killed"
    first = produce_values(
        broker.bootstrap, topic, [b"a%d" % i for i in range(1000)], **{"enable.idempotence": True}
    )
    assert first == [(0, i) for i in range(1000)]

    def group_member() -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "survivors",
                "enable.auto.commit": False,
            }
        )

    committer = group_member()
    committer.commit(offsets=[TopicPartition(topic, 0, 777)], asynchronous=False)
    committer.close()
    broker, _, mark = restart(broker_factory, broker, signal.SIGKILL)
    reader = group_member()
    try:
        (committed,) = reader.committed([TopicPartition(topic, 0)], timeout=15)
    finally:
        reader.close()
    assert committed.offset == 777
    assert not (broker.data_dir / MARKER).exists()
    second = produce_values(
        broker.bootstrap, topic, [b"b%d" % i for i in range(10)], **{"enable.idempotence": True}
    )
    assert second == [(0, 1000 + i) for i in range(10)]
    records = read_everything(broker.bootstrap, topic, 1, 1010)
    assert [v for *_, v in records] == [b"a%d" % i for i in range(1000)] + [
        b"b%d" % i for i in range(10)
    ]
    producers = {b["producer_id"] for b in dump_log(broker.data_dir / f"{topic}-0")}
    assert len(producers) == 2 and min(producers) >= 0
    assert_no_traceback(broker.log_since(mark))


def test_torn_tail_after_sigkill_is_cut_at_restart(broker_factory):
    """A SIGKILL that left half a batch at the end of the active segment: the restarted broker
    cuts exactly those bytes (and says so in its log), serves every acknowledged record, and
    appends the next record at the next offset."""
    broker = broker_factory()
    topic = "torn"
    produce_values(broker.bootstrap, topic, [b"%d" % i for i in range(500)], **{"linger.ms": 5})
    broker.stop(signal.SIGKILL)
    (segment,) = sorted((broker.data_dir / f"{topic}-0").glob("*.log"))
    stored = segment.read_bytes()
    with segment.open("ab") as tail:
        tail.write(stored[:100])  # the start of a batch, as an interrupted write leaves it
    mark = broker.log_size()
    broker = broker_factory(data_dir=broker.data_dir, port=broker.port)
    log = broker.log_since(mark)
    assert f"recovered {topic}-0: cut 100 bytes" in log, log
    assert produce_values(broker.bootstrap, topic, [b"after"]) == [(0, 500)]
    records = read_everything(broker.bootstrap, topic, 1, 501)
    assert [v for *_, v in records] == [b"%d" % i for i in range(500)] + [b"after"]
    assert segment.stat().st_size > len(stored)
    assert_no_traceback(log)


def test_sigterm_is_clean_and_the_restart_recovers_nothing(broker_factory):
    """SIGTERM: exit status 0, "stopped cleanly" in the log, the clean-shutdown marker
    written. The restart trusts the logs (no recovery reported), removes the marker, serves
    everything at once, and continues the offsets."""
    broker = broker_factory()
    topic = "graceful"
    create_topic(broker.bootstrap, topic, 2)
    placed = produce_values(broker.bootstrap, topic, [b"%d" % i for i in range(2000)])
    assert broker.stop(signal.SIGTERM) == 0
    assert "stopped cleanly" in broker.log()
    assert (broker.data_dir / MARKER).exists()
    mark = broker.log_size()
    started = time.monotonic()
    broker = broker_factory(data_dir=broker.data_dir, port=broker.port)
    log = broker.log_since(mark)
    assert "recovered" not in log, log
    assert not (broker.data_dir / MARKER).exists()
    records = read_everything(broker.bootstrap, topic, 2, 2000)
    assert sorted((p, o) for p, o, *_ in records) == sorted(placed)
    print(f"restarted and read back in {time.monotonic() - started:.2f}s")
    # the sticky partitioner may have put every value on one partition
    ends = {p: max((o for q, o in placed if q == p), default=-1) for p in (0, 1)}
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    found = {}
    for partition in (0, 1):
        producer.produce(
            topic,
            value=b"next",
            partition=partition,
            on_delivery=lambda e, m: found.setdefault(m.partition(), (e, m.offset())),
        )
    assert producer.flush(30) == 0
    assert found == {p: (None, end + 1) for p, end in ends.items()}
    assert broker.stop(signal.SIGTERM) == 0
    assert_no_traceback(broker.log())


def test_a_second_signal_during_shutdown_changes_nothing(broker_factory):
    """SIGTERM then SIGINT and SIGTERM again while the broker shuts down: it still exits 0
    after a clean stop, with no traceback or critical error in its log."""
    broker = broker_factory()
    create_topic(broker.bootstrap, "twice", 1)
    produce_values(broker.bootstrap, "twice", [b"%d" % i for i in range(200)])
    broker.process.send_signal(signal.SIGTERM)
    broker.process.send_signal(signal.SIGINT)
    broker.process.send_signal(signal.SIGTERM)
    assert broker.process.wait(30) == 0
    assert "stopped cleanly" in broker.log()
    assert_no_traceback(broker.log())


def test_sigterm_answers_every_produce_it_stored(broker_factory):
    """Graceful shutdown finishes in-flight requests (DESIGN §8): of 3,000 acks=all Produce
    requests pipelined on one connection, with SIGTERM arriving while the broker works through
    them, every one the broker stored was answered before the connection closed. (A stored
    but unanswered batch is retried by a non-idempotent producer: a duplicate.)"""
    broker = broker_factory()
    topic = "drained"
    with RawClient(broker.port) as client:
        created = client.request(
            ApiKey.CREATE_TOPICS,
            4,
            {
                "topics": [
                    {
                        "name": topic,
                        "num_partitions": 1,
                        "replication_factor": 1,
                        "assignments": [],
                        "configs": [],
                    }
                ],
                "timeout_ms": 10_000,
            },
        )
        assert created.topics[0].error_code == ErrorCode.NONE

    def produce_frame(client: RawClient, index: int) -> bytes:
        records = build_batch([Record(0, 0, None, b"%d" % index)], base_timestamp=1)
        return client.frame(
            ApiKey.PRODUCE,
            8,
            {
                "transactional_id": None,
                "acks": -1,
                "timeout_ms": 10_000,
                "topic_data": [
                    {"name": topic, "partition_data": [{"index": 0, "records": records}]}
                ],
            },
        )

    total = 3000
    client = RawClient(broker.port, timeout=30)
    frames = b"".join(produce_frame(client, i) for i in range(total))

    def send() -> None:
        with contextlib.suppress(OSError):  # the broker closes while we are still sending
            client.send_bytes(frames)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answered = 0
    try:
        for correlation_id in range(1, total + 1):
            response = client.read_response(ApiKey.PRODUCE, 8, correlation_id)
            (partition,) = response.responses[0].partition_responses
            assert partition.error_code == ErrorCode.NONE
            answered += 1
            if answered == 50:
                broker.process.send_signal(signal.SIGTERM)
    except (EOFError, ConnectionResetError):
        pass
    finally:
        client.close()
        sender.join(10)
    assert broker.process.wait(30) == 0
    broker = broker_factory(data_dir=broker.data_dir, port=broker.port)
    with RawClient(broker.port) as reader:
        listed = reader.request(
            ApiKey.LIST_OFFSETS,
            1,
            {
                "replica_id": -1,
                "topics": [
                    {"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}
                ],
            },
        )
    stored = listed.topics[0].partitions[0].offset
    assert 50 <= answered <= total and stored <= total
    assert stored == answered, (
        f"{stored} batches stored but only {answered} answered before the connection closed"
    )
    assert_no_traceback(broker.log())


def test_sigterm_with_stuck_clients_stops_promptly(broker_factory):
    """Clients that never finish a frame, long-poll a Fetch for 60s, or flood requests without
    reading answers do not hold a graceful shutdown: SIGTERM answers the long poll, exits with
    status 0 within 15s and writes the clean-shutdown marker."""
    broker = broker_factory()
    with RawClient(broker.port) as client:
        created = client.request(
            ApiKey.CREATE_TOPICS,
            4,
            {
                "topics": [
                    {
                        "name": "stuck",
                        "num_partitions": 1,
                        "replication_factor": 1,
                        "assignments": [],
                        "configs": [],
                    }
                ],
                "timeout_ms": 10_000,
            },
        )
        assert created.topics[0].error_code == ErrorCode.NONE
    half = RawClient(broker.port)
    half.send_bytes(struct.pack(">ihhi", 1000, ApiKey.METADATA, 1, 7))
    poller = RawClient(broker.port, timeout=30)
    long_poll = poller.send(
        ApiKey.FETCH,
        11,
        {
            "max_wait_ms": 60_000,
            "min_bytes": 1,
            "isolation_level": 0,
            "topics": [
                {
                    "topic": "stuck",
                    "partitions": [
                        {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 4096}
                    ],
                }
            ],
            "rack_id": "",
        },
    )
    flood = RawClient(broker.port)
    flood.sock.setblocking(False)
    burst = flood.frame(ApiKey.METADATA, 1, {"topics": None}) * 1000
    flooded = 0
    with contextlib.suppress(BlockingIOError):
        while flooded < 50_000_000:  # until the socket buffers are full
            flooded += flood.sock.send(burst)
    time.sleep(0.3)
    started = time.monotonic()
    broker.process.send_signal(signal.SIGTERM)
    try:
        answer = poller.read_response(ApiKey.FETCH, 11, long_poll)
        assert answer.responses[0].partitions[0].error_code == ErrorCode.NONE
        status = broker.process.wait(15)
    finally:
        for client in (half, poller, flood):
            client.close()
    assert status == 0
    assert time.monotonic() - started < 15
    assert (broker.data_dir / MARKER).exists()
    assert_no_traceback(broker.log())


def test_topic_with_the_longest_legal_name_is_deleted_and_the_broker_restarts(broker_factory):
    """A topic named with the longest legal name (249 characters) can be created, written,
    deleted (its partition directory removed, no traceback), re-created empty, and the broker
    restarts afterwards."""
    broker = broker_factory()
    name = "t" * 249
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create_topic(broker.bootstrap, name, 1)
    assert produce_values(broker.bootstrap, name, [b"x"]) == [(0, 0)]
    admin.delete_topics([name], operation_timeout=15)[name].result(timeout=30)
    deadline = time.monotonic() + 5
    while (broker.data_dir / f"{name}-0").exists():
        assert time.monotonic() < deadline, (
            f"the partition directory is still there:\n{broker.log()[-3000:]}"
        )
        time.sleep(0.1)
    assert broker.stop(signal.SIGTERM) == 0
    broker = broker_factory(data_dir=broker.data_dir, port=broker.port)
    create_topic(broker.bootstrap, name, 1)
    assert produce_values(broker.bootstrap, name, [b"y"]) == [(0, 0)]
    assert_no_traceback(broker.log())
