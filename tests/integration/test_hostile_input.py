"""Hostile and malformed input on raw sockets against one real broker process.

Each case gets the Kafka error code, or the connection closed, never a hang; afterwards the
broker still serves (a fresh connection and a real client) and its log shows no traceback.
The broker runs with ``auto.create.topics.enable=false`` and a 1 MiB
``socket.request.max.bytes``.
"""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import struct
import subprocess
import time

import pytest
from integration_helpers import BrokerProcess, RawClient, assert_no_traceback, require_binary

from tmq.protocol.apis import API_BY_KEY, ApiKey
from tmq.protocol.errors import ErrorCode
from tmq.protocol.headers import encode_request_header
from tmq.protocol.records import Record, build_batch, decode_batch

MAX_REQUEST = 1 << 20
TOPIC = "hostile"


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """One broker for the whole module (auto-creation off, 1 MiB request bound) with the
    1-partition topic ``hostile``."""
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    data_dir.mkdir()
    broker = BrokerProcess(
        data_dir, "auto.create.topics.enable=false", f"socket.request.max.bytes={MAX_REQUEST}"
    ).start()
    try:
        with RawClient(broker.port) as client:
            created = client.request(
                ApiKey.CREATE_TOPICS,
                4,
                {
                    "topics": [
                        {
                            "name": TOPIC,
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
        yield broker
    finally:
        broker.stop(signal.SIGKILL)


def batch(value: bytes = b"v", count: int = 1, **fields) -> bytes:
    records = [Record(i, 0, b"k", value) for i in range(count)]
    return build_batch(records, base_timestamp=int(time.time() * 1000), **fields)


def produce_body(
    records, *, topic: str = TOPIC, acks: int = -1, transactional_id: str | None = None
) -> dict:
    return {
        "transactional_id": transactional_id,
        "acks": acks,
        "timeout_ms": 10_000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
    }


def produce(client: RawClient, records, version: int = 8, **kwargs):
    """The partition response to a one-partition Produce."""
    response = client.request(ApiKey.PRODUCE, version, produce_body(records, **kwargs))
    (topic,) = response.responses
    (partition,) = topic.partition_responses
    return partition


def latest_offset(client: RawClient, topic: str = TOPIC) -> int:
    response = client.request(
        ApiKey.LIST_OFFSETS,
        1,
        {
            "replica_id": -1,
            "topics": [{"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}],
        },
    )
    return response.topics[0].partitions[0].offset


def assert_serves(broker: BrokerProcess) -> None:
    """A fresh connection gets ApiVersions, a Produce and a Fetch of what it produced."""
    with RawClient(broker.port) as client:
        versions = client.request(
            ApiKey.API_VERSIONS,
            3,
            {
                "client_software_name": "tmq-tests",
                "client_software_version": "1",
            },
        )
        assert versions.error_code == ErrorCode.NONE
        stored = produce(client, batch(b"still-serving"))
        assert stored.error_code == ErrorCode.NONE
        fetched = client.request(
            ApiKey.FETCH,
            11,
            {
                "max_wait_ms": 0,
                "min_bytes": 0,
                "isolation_level": 0,
                "topics": [
                    {
                        "topic": TOPIC,
                        "partitions": [
                            {
                                "partition": 0,
                                "fetch_offset": stored.base_offset,
                                "partition_max_bytes": 1 << 20,
                            }
                        ],
                    }
                ],
                "rack_id": "",
            },
        )
        records = fetched.responses[0].partitions[0].records
        header, decoded = decode_batch(records)
        assert header.base_offset == stored.base_offset
        assert decoded[0].value == b"still-serving"


def _header(api_key: int, api_version: int, client_id: bytes = b"raw") -> bytes:
    return struct.pack(">hhih", api_key, api_version, 1, len(client_id)) + client_id


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _metadata_v1(body: bytes) -> bytes:
    return _frame(_header(ApiKey.METADATA, 1) + body)


CLOSING_INPUTS = {
    "length prefix 2 GiB": struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 64,
    "length prefix one above socket.request.max.bytes": struct.pack(">i", MAX_REQUEST + 1),
    "negative length prefix": struct.pack(">i", -5) + b"\x00" * 8,
    "garbage bytes": random.Random(11).randbytes(4096),
    "frame shorter than a request header": _frame(b"abc"),
    "client_id longer than the frame": _frame(struct.pack(">hhih", 3, 1, 1, 500) + b"x"),
    "unknown api key 99": _frame(_header(99, 0)),
    "api key 11 (JoinGroup) not served": _frame(_header(ApiKey.JOIN_GROUP, 0) + b"\x00\x01g"),
    "internal api key 1000 on a client connection": _frame(_header(1000, 0) + b"\x00" * 8),
    "Fetch v3 (below the served range)": _frame(_header(ApiKey.FETCH, 3) + b"\x00" * 32),
    "Metadata v9 (above the advertised range)": _frame(_header(ApiKey.METADATA, 9) + b"\x00"),
    "Produce v9 (above the advertised range)": _frame(_header(ApiKey.PRODUCE, 9) + b"\x00"),
    "truncated Metadata body": _metadata_v1(struct.pack(">ih", 1, 10) + b"abc"),
    "trailing bytes after a Metadata body": _metadata_v1(struct.pack(">i", 0) + b"extra"),
    "array count 2**31-1": _metadata_v1(struct.pack(">ih", 0x7FFFFFFF, 1) + b"a"),
    "negative array count": _metadata_v1(struct.pack(">i", -7)),
    "malformed tagged fields in a flexible header": _frame(
        _header(ApiKey.API_VERSIONS, 3) + b"\x05\x01"
    ),
    "truncated Produce body": _frame(
        _header(ApiKey.PRODUCE, 8) + struct.pack(">hhii", -1, -1, 10_000, 1) + b"\x00\x07hos"
    ),
}


@pytest.mark.parametrize("payload", CLOSING_INPUTS.values(), ids=CLOSING_INPUTS.keys())
def test_bad_frames_close_the_connection(target, payload):
    """Bytes that are not a servable request (a length prefix out of bounds, garbage, a
    request header or body that does not decode, an API or version not served) close the
    connection without an answer; the broker keeps serving."""
    mark = target.log_size()
    with RawClient(target.port, timeout=10) as client:
        # the broker may close while we are still sending: that is the expected outcome too
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            client.send_bytes(payload)
        assert client.closed_by_broker(), "the broker neither answered nor closed in 10s"
    assert_serves(target)
    log = target.log_since(mark)
    assert "closing connection from" in log
    assert_no_traceback(log)


def test_half_frames_then_disconnects_are_forgotten(target):
    """Clients that send part of a frame (length prefix, then a few bytes) and disconnect,
    many at once, leave nothing behind: the broker serves the next client."""
    clients = [RawClient(target.port) for _ in range(50)]
    for client in clients:
        client.send_bytes(struct.pack(">i", 1000) + _header(ApiKey.METADATA, 1))
    for client in clients:
        client.close()
    assert_serves(target)
    assert_no_traceback(target.log())


def test_a_request_sent_one_byte_at_a_time_is_answered(target):
    """A request dribbled one byte per send is reassembled and answered."""
    with RawClient(target.port) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frame = client.frame(ApiKey.METADATA, 1, {"topics": [{"name": TOPIC}]})
        for index in range(len(frame)):
            client.send_bytes(frame[index : index + 1])
        response = client.read_response(ApiKey.METADATA, 1, client.correlation_id)
    assert [t.name for t in response.topics] == [TOPIC]
    assert response.topics[0].error_code == ErrorCode.NONE


def test_pipelined_requests_are_answered_in_order(target):
    """Requests written back to back, a long-polling Fetch first, are answered in request
    order with their correlation ids."""
    with RawClient(target.port) as client:
        end = latest_offset(client)
        fetch = client.frame(
            ApiKey.FETCH,
            11,
            {
                "max_wait_ms": 300,
                "min_bytes": 1,
                "isolation_level": 0,
                "topics": [
                    {
                        "topic": TOPIC,
                        "partitions": [
                            {"partition": 0, "fetch_offset": end, "partition_max_bytes": 1 << 20}
                        ],
                    }
                ],
                "rack_id": "",
            },
        )
        frames = [fetch]
        for _ in range(30):
            frames.append(client.frame(ApiKey.API_VERSIONS, 0, {}))
        first_id = client.correlation_id - 30
        client.send_bytes(b"".join(frames))
        fetched = client.read_response(ApiKey.FETCH, 11, first_id)
        assert fetched.responses[0].partitions[0].error_code == ErrorCode.NONE
        for offset in range(1, 31):
            answer = client.read_response(ApiKey.API_VERSIONS, 0, first_id + offset)
            assert answer.error_code == ErrorCode.NONE


def test_api_versions_above_the_highest_gets_the_v0_fallback(target):
    """ApiVersions v7 is answered (KIP-511) with a v0 body: UNSUPPORTED_VERSION and only the
    ApiVersions range, so the client can retry with a version it can see."""
    with RawClient(target.port) as client:
        correlation_id = client.send(ApiKey.API_VERSIONS, 7, b"\x00\x00\x00")
        response = client.read_response(ApiKey.API_VERSIONS, 0, correlation_id)
        assert response.error_code == ErrorCode.UNSUPPORTED_VERSION
        assert [(k.api_key, k.min_version, k.max_version) for k in response.api_keys] == [
            (ApiKey.API_VERSIONS, 0, 3)
        ]
        again = client.request(ApiKey.API_VERSIONS, 3, {})
        assert again.error_code == ErrorCode.NONE


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_with_the_legacy_message_format_is_unsupported(target, version):
    """Produce v0-v2 (advertised for old clients' feature checks, not served) are answered
    UNSUPPORTED_VERSION on each partition, nothing is stored, and the connection stays
    usable."""
    with RawClient(target.port) as client:
        before = latest_offset(client)
        legacy = b"\x00" * 8 + struct.pack(">i", 14) + b"\x00" * 14  # a v0 message set
        answer = produce(client, legacy, version=version)
        assert answer.error_code == ErrorCode.UNSUPPORTED_VERSION
        assert latest_offset(client) == before


def test_produce_with_a_wrong_crc_is_corrupt_message(target):
    """A batch whose CRC does not match is refused with CORRUPT_MESSAGE and not stored."""
    damaged = bytearray(batch(b"crc"))
    damaged[-1] ^= 0xFF
    with RawClient(target.port) as client:
        before = latest_offset(client)
        assert produce(client, bytes(damaged)).error_code == ErrorCode.CORRUPT_MESSAGE
        assert latest_offset(client) == before


def test_produce_to_an_unknown_topic_without_auto_creation(target):
    """With auto.create.topics.enable=false, records for an unknown topic are refused with
    UNKNOWN_TOPIC_OR_PARTITION and the topic is not created."""
    with RawClient(target.port) as client:
        answer = produce(client, batch(), topic="never-created")
        assert answer.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        metadata = client.request(
            ApiKey.METADATA,
            8,
            {
                "topics": [{"name": "never-created"}],
                "allow_auto_topic_creation": True,
            },
        )
        assert metadata.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert not (target.data_dir / "never-created-0").exists()


def _with_magic(raw: bytes, magic: int) -> bytes:
    changed = bytearray(raw)
    changed[16] = magic
    return bytes(changed)


def _with_codec(raw: bytes, codec: int) -> bytes:
    changed = bytearray(raw)
    attributes = struct.unpack_from(">h", changed, 21)[0]
    struct.pack_into(">h", changed, 21, (attributes & ~7) | codec)
    return bytes(changed)


BAD_BATCHES = {
    "empty records": (b"", {ErrorCode.CORRUPT_MESSAGE}),
    "null records": (None, {ErrorCode.INVALID_RECORD}),
    "truncated batch": (
        batch(b"x" * 100)[:-20],
        {ErrorCode.CORRUPT_MESSAGE, ErrorCode.INVALID_RECORD},
    ),
    "two batches in one partition": (batch() + batch(), {ErrorCode.INVALID_RECORD}),
    "magic 1": (_with_magic(batch(), 1), {ErrorCode.CORRUPT_MESSAGE, ErrorCode.INVALID_RECORD}),
    "unknown codec 7": (
        _with_codec(batch(), 7),
        {ErrorCode.CORRUPT_MESSAGE, ErrorCode.INVALID_RECORD},
    ),
    "producer id without a sequence": (
        batch(producer_id=1, producer_epoch=0, base_sequence=-1),
        {ErrorCode.INVALID_RECORD},
    ),
    "garbage header": (random.Random(5).randbytes(200), {ErrorCode.CORRUPT_MESSAGE}),
}


@pytest.mark.parametrize("case", BAD_BATCHES.values(), ids=BAD_BATCHES.keys())
def test_bad_batches_get_a_record_error(target, case):
    """A Produce whose records are not one valid RecordBatch v2 gets a record error on its
    partition, nothing is stored, and the connection stays usable."""
    records, allowed = case
    with RawClient(target.port) as client:
        before = latest_offset(client)
        answer = produce(client, records)
        assert answer.error_code in allowed, ErrorCode(answer.error_code).name
        assert latest_offset(client) == before


def test_produce_request_level_errors(target):
    """acks=2 gets INVALID_REQUIRED_ACKS; a transactional id gets
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED (no transactions); neither stores anything; an acks=0
    Produce that fails closes the connection (the client's cue to refresh metadata)."""
    with RawClient(target.port) as client:
        before = latest_offset(client)
        assert produce(client, batch(), acks=2).error_code == ErrorCode.INVALID_REQUIRED_ACKS
        refused = produce(client, batch(), transactional_id="tx")
        assert refused.error_code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        assert latest_offset(client) == before
    with RawClient(target.port) as client:
        damaged = bytearray(batch())
        damaged[-1] ^= 1
        client.send(ApiKey.PRODUCE, 8, produce_body(bytes(damaged), acks=0))
        assert client.closed_by_broker()


def test_idempotent_sequence_checks_on_the_wire(target):
    """With a producer id from InitProducerId: a retried batch (same sequences) is answered
    with its original offset and stored once; a sequence gap gets OUT_OF_ORDER_SEQUENCE_NUMBER;
    an epoch below the producer's gets INVALID_PRODUCER_EPOCH."""
    with RawClient(target.port) as client:
        given = client.request(
            ApiKey.INIT_PRODUCER_ID,
            1,
            {
                "transactional_id": None,
                "transaction_timeout_ms": 60_000,
            },
        )
        assert given.error_code == ErrorCode.NONE
        producer = {"producer_id": given.producer_id, "producer_epoch": given.producer_epoch}
        first = batch(count=3, base_sequence=0, **producer)
        stored = produce(client, first)
        assert stored.error_code == ErrorCode.NONE
        retried = produce(client, first)
        assert (retried.error_code, retried.base_offset) == (ErrorCode.NONE, stored.base_offset)
        assert latest_offset(client) == stored.base_offset + 3
        gap = produce(client, batch(base_sequence=7, **producer))
        assert gap.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        bumped = {**producer, "producer_epoch": producer["producer_epoch"] + 1}
        assert produce(client, batch(base_sequence=0, **bumped)).error_code == ErrorCode.NONE
        stale = produce(client, batch(base_sequence=3, **producer))
        assert stale.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
        assert latest_offset(client) == stored.base_offset + 4


def _fuzz_samples() -> list[tuple[int, int, dict]]:
    fetch = {
        "max_wait_ms": 10,
        "min_bytes": 1,
        "isolation_level": 0,
        "topics": [
            {
                "topic": TOPIC,
                "partitions": [{"partition": 0, "fetch_offset": 0, "partition_max_bytes": 4096}],
            }
        ],
        "rack_id": "",
    }
    offsets = {"topics": [{"name": TOPIC, "partitions": [{"partition_index": 0, "timestamp": -2}]}]}
    commit = {
        "group_id": "fuzz",
        "member_id": "",
        "topics": [
            {
                "name": TOPIC,
                "partitions": [
                    {"partition_index": 0, "committed_offset": 1, "committed_metadata": ""}
                ],
            }
        ],
    }
    samples = [(ApiKey.PRODUCE, v, produce_body(batch(b"fuzz"))) for v in range(3, 9)]
    samples += [(ApiKey.FETCH, v, fetch) for v in range(4, 12)]
    samples += [(ApiKey.LIST_OFFSETS, v, offsets) for v in range(1, 6)]
    samples += [(ApiKey.METADATA, v, {"topics": [{"name": TOPIC}]}) for v in range(0, 9)]
    samples += [(ApiKey.OFFSET_COMMIT, v, commit) for v in range(2, 8)]
    samples += [
        (
            ApiKey.OFFSET_FETCH,
            v,
            {"group_id": "fuzz", "topics": [{"name": TOPIC, "partition_indexes": [0]}]},
        )
        for v in range(1, 6)
    ]
    samples += [(ApiKey.FIND_COORDINATOR, v, {"key": "fuzz"}) for v in range(0, 3)]
    samples += [(ApiKey.API_VERSIONS, v, {}) for v in range(0, 4)]
    samples += [
        (
            ApiKey.CREATE_TOPICS,
            v,
            {
                "topics": [
                    {
                        "name": "fuzzed",
                        "num_partitions": 1,
                        "replication_factor": 1,
                        "assignments": [],
                        "configs": [],
                    }
                ],
                "validate_only": True,
            },
        )
        for v in range(1, 5)
    ]
    samples += [(ApiKey.DELETE_TOPICS, v, {"topic_names": ["no-such-topic"]}) for v in range(4)]
    samples += [(ApiKey.INIT_PRODUCER_ID, v, {"transaction_timeout_ms": 1000}) for v in (0, 1)]
    samples += [
        (
            ApiKey.OFFSET_FOR_LEADER_EPOCH,
            v,
            {"topics": [{"topic": TOPIC, "partitions": [{"partition": 0, "leader_epoch": 0}]}]},
        )
        for v in range(0, 4)
    ]
    return samples


def _mutate(rng: random.Random, body: bytes) -> bytes:
    body = bytearray(body)
    choice = rng.randrange(5)
    if choice == 0 and body:
        for _ in range(rng.randint(1, 4)):
            body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
    elif choice == 1 and body:
        del body[rng.randrange(len(body)) :]
    elif choice == 2:
        at = rng.randrange(len(body) + 1)
        body[at:at] = rng.randbytes(rng.randint(1, 8))
    elif choice == 3 and body:
        body[rng.randrange(len(body))] = rng.choice([0x00, 0x7F, 0x80, 0xFF])
    elif len(body) >= 4:
        at = rng.randrange(len(body) - 3)
        body[at : at + 4] = struct.pack(">i", rng.choice([-1, -2, 0x7FFFFFFF, 0x10000, -(2**31)]))
    return bytes(body)


def test_mutated_requests_get_an_answer_or_a_close(target):
    """1,500 seeded mutations (bit flips, cuts, insertions, extreme lengths) of valid requests
    of every served API and version: each is answered with a frame carrying its correlation id
    or the connection is closed (a mutated Fetch may long-poll instead); nothing crashes the
    broker or logs a traceback."""
    rng = random.Random(20261128)
    samples = [
        (api_key, version, API_BY_KEY[api_key].request.build(body, version))
        for api_key, version, body in _fuzz_samples()
    ]
    mark = target.log_size()
    outcomes = {"answered": 0, "closed": 0, "long poll": 0}
    client = RawClient(target.port, timeout=3)
    try:
        for correlation_id in range(1500):
            api_key, version, body = rng.choice(samples)
            header = encode_request_header(api_key, version, correlation_id, "fuzz")
            try:
                client.send_bytes(_frame(header + _mutate(rng, body)))
                frame = client.read_frame()
                assert struct.unpack_from(">i", frame)[0] == correlation_id
                outcomes["answered"] += 1
                continue
            except (EOFError, ConnectionResetError, BrokenPipeError):
                outcomes["closed"] += 1
            except TimeoutError:
                assert api_key == ApiKey.FETCH, f"no answer to a mutated {api_key.name}"
                outcomes["long poll"] += 1
            client.close()
            client = RawClient(target.port, timeout=3)
    finally:
        client.close()
    print(outcomes)
    assert outcomes["answered"] > 100 and outcomes["closed"] > 100, outcomes
    assert_serves(target)
    assert_no_traceback(target.log_since(mark))


def test_still_serves_a_real_client_after_everything(target, tmp_path):
    """After the hostile cases above, kcat produces and consumes through the same broker,
    the broker log holds no traceback, and SIGTERM still stops it with status 0."""
    kcat = require_binary("kcat", "kcat")
    lines = b"".join(b"after-hostile %d\n" % i for i in range(100))
    produced = subprocess.run(
        [kcat, "-b", target.bootstrap, "-P", "-t", TOPIC],
        input=lines,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        [kcat, "-b", target.bootstrap, "-C", "-t", TOPIC, "-o", "-100", "-e", "-q", "-f", "%s\\n"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout == lines
    assert_no_traceback(target.log())
    assert target.stop(signal.SIGTERM) == 0
