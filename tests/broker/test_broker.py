"""The broker's request handlers, driven in memory: no sockets, no global reactor.

A ``Broker`` over a ``LogManager`` and a ``LocalMetadataStore``, both on a
``MemoryFileSystem``, with a ``Clock`` that also queues ``callFromThread`` calls (the flusher
thread's way back to the reactor).
"""

from __future__ import annotations

import threading

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from tmq.broker import admin_apis, data_apis
from tmq.broker.broker import Broker
from tmq.broker.config import BrokerConfig
from tmq.broker.dispatch import RequestRefused
from tmq.broker.handlers import build_dispatcher
from tmq.cluster.local_store import LocalMetadataStore
from tmq.protocol.errors import ErrorCode
from tmq.protocol.headers import RequestHeader
from tmq.protocol.records import Record, build_batch, decode_batch
from tmq.storage.config import FlushPolicy, LogConfig
from tmq.storage.log_manager import LogManager
from tmq.storage.memory_fs import MemoryFileSystem

T0 = 1_700_000_000


class ThreadedClock(Clock):
    """A Clock whose ``callFromThread`` queues the call for ``drain``."""

    def __init__(self):
        super().__init__()
        self.advance(T0)
        self._calls = []
        self._arrived = threading.Event()

    def callFromThread(self, function, *args):
        self._calls.append((function, args))
        self._arrived.set()

    def drain(self, timeout: float = 10.0) -> None:
        """Wait for a call from another thread, then run every queued call."""
        assert self._arrived.wait(timeout), "no call from the flusher thread"
        self._arrived.clear()
        calls, self._calls = self._calls, []
        for function, args in calls:
            function(*args)


def header(version: int) -> RequestHeader:
    return RequestHeader(0, version, 1, "test", {})


def fired(deferred):
    """The result of a Deferred that must have fired (a plain value passes through)."""
    if not isinstance(deferred, defer.Deferred):
        return deferred
    results = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


@pytest.fixture
def make_broker():
    brokers = []

    def make(flush_policy=FlushPolicy.NEVER, **settings):
        fs = MemoryFileSystem()
        clock = ThreadedClock()
        config = BrokerConfig(
            data_dirs=("/data",), log=LogConfig(flush_policy=flush_policy), **settings
        )
        store = LocalMetadataStore.open(fs, "/data/__tmq_metadata")
        logs = LogManager(
            fs, ["/data"], lambda topic: broker.topic_log_config(topic), lambda: T0 * 1000
        )
        broker = Broker(config, clock, logs, store)
        fired(broker.start())
        fired(broker.join())
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


def batch(values, **options) -> bytes:
    records = [Record(i, 0, None, value) for i, value in enumerate(values)]
    return build_batch(records, base_timestamp=T0 * 1000, **options)


def produce_request(topic, partition, records, acks=1):
    return {
        "transactional_id": None,
        "acks": acks,
        "timeout_ms": 1000,
        "topic_data": [
            {"name": topic, "partition_data": [{"index": partition, "records": records}]}
        ],
    }


def fetch_request(topic, partition, offset, *, max_wait_ms=0, min_bytes=1, epoch=-1):
    return {
        "replica_id": -1,
        "max_wait_ms": max_wait_ms,
        "min_bytes": min_bytes,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {
                        "partition": partition,
                        "current_leader_epoch": epoch,
                        "fetch_offset": offset,
                        "partition_max_bytes": 1 << 20,
                    }
                ],
            }
        ],
    }


def fetched_values(response) -> list[bytes]:
    data = response["responses"][0]["partitions"][0].get("records") or b""
    values, position = [], 0
    while position < len(data):
        batch_header, records = decode_batch(data, position)
        values += [r.value for r in records]
        position += batch_header.size
    return values


def partition_result(response):
    return response["responses"][0]["partition_responses"][0]


class TopicTests:
    """Topics through CreateTopics, Metadata and DeleteTopics."""

    def test_create_then_metadata(self, make_broker):
        """A created topic is listed with this broker leading every partition."""
        broker = make_broker()
        request = {
            "topics": [
                {
                    "name": "gpu",
                    "num_partitions": 3,
                    "replication_factor": 1,
                    "assignments": [],
                    "configs": [{"name": "segment.bytes", "value": "1048576"}],
                }
            ],
            "timeout_ms": 1000,
            "validate_only": False,
        }
        created = fired(admin_apis.create_topics(broker, header(4), request))
        assert created["topics"][0]["error_code"] == ErrorCode.NONE
        assert broker.topic_log_config("gpu").segment_bytes == 1048576
        response = admin_apis.metadata(
            broker, header(8), {"topics": None, "allow_auto_topic_creation": False}
        )
        (topic,) = response["topics"]
        assert [p["leader_id"] for p in topic["partitions"]] == [0, 0, 0]

    @pytest.mark.parametrize(
        ("name", "partitions", "factor", "configs", "code"),
        [
            ("bad name", 1, 1, [], ErrorCode.INVALID_TOPIC_EXCEPTION),
            ("t", 0, 1, [], ErrorCode.INVALID_PARTITIONS),
            ("t", 1, 3, [], ErrorCode.INVALID_REPLICATION_FACTOR),
            ("t", 1, 1, [{"name": "flush.policy", "value": "maybe"}], ErrorCode.INVALID_CONFIG),
        ],
    )
    def test_invalid_topics_get_their_error(
        self, make_broker, name, partitions, factor, configs, code
    ):
        """Each invalid request gets the Kafka error code for what is wrong."""
        broker = make_broker()
        request = {
            "topics": [
                {
                    "name": name,
                    "num_partitions": partitions,
                    "replication_factor": factor,
                    "assignments": [],
                    "configs": configs,
                }
            ],
            "timeout_ms": 1000,
            "validate_only": False,
        }
        response = admin_apis.create_topics(broker, header(4), request)
        assert response["topics"][0]["error_code"] == code

    def test_existing_topic(self, make_broker):
        """Creating a topic twice answers TOPIC_ALREADY_EXISTS."""
        broker = make_broker()
        fired(broker.create_topic("t", 1, 1, {}))
        request = {
            "topics": [
                {
                    "name": "t",
                    "num_partitions": 1,
                    "replication_factor": 1,
                    "assignments": [],
                    "configs": [],
                }
            ],
            "timeout_ms": 1,
            "validate_only": False,
        }
        response = admin_apis.create_topics(broker, header(4), request)
        assert response["topics"][0]["error_code"] == ErrorCode.TOPIC_ALREADY_EXISTS

    def test_delete(self, make_broker):
        """A deleted topic and its log are gone."""
        broker = make_broker()
        fired(broker.create_topic("t", 2, 1, {}))
        response = fired(admin_apis.delete_topics(broker, header(3), {"topic_names": ["t", "x"]}))
        assert [r["error_code"] for r in response["responses"]] == [
            ErrorCode.NONE,
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ]
        assert "t" not in broker.topics and not broker.partitions

    def test_metadata_auto_creates(self, make_broker):
        """An unknown topic asked for with auto-creation allowed is created."""
        broker = make_broker()
        first = admin_apis.metadata(
            broker, header(8), {"topics": [{"name": "new"}], "allow_auto_topic_creation": True}
        )
        assert first["topics"][0]["error_code"] in (ErrorCode.NONE, ErrorCode.LEADER_NOT_AVAILABLE)
        assert "new" in broker.topics

    def test_metadata_without_auto_create(self, make_broker):
        """With auto.create.topics.enable=false an unknown topic is UNKNOWN_TOPIC_OR_PARTITION."""
        broker = make_broker(auto_create_topics=False)
        response = admin_apis.metadata(
            broker, header(8), {"topics": [{"name": "new"}], "allow_auto_topic_creation": True}
        )
        assert response["topics"][0]["error_code"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


class ProduceFetchTests:
    """The data path."""

    def test_produce_then_fetch(self, make_broker):
        """Produced values are fetched back from the offset asked for."""
        broker = make_broker()
        fired(broker.create_topic("t", 1, 1, {}))
        result = partition_result(
            data_apis.produce(broker, header(8), produce_request("t", 0, batch([b"a", b"b"])))
        )
        assert (result["error_code"], result["base_offset"]) == (ErrorCode.NONE, 0)
        data_apis.produce(broker, header(8), produce_request("t", 0, batch([b"c"])))
        response = data_apis.fetch(broker, header(11), fetch_request("t", 0, 0))
        assert fetched_values(response) == [b"a", b"b", b"c"]
        assert response["responses"][0]["partitions"][0]["high_watermark"] == 3

    def test_produce_waits_for_fsync_under_flush_policy_always(self, make_broker):
        """With flush.policy=always the response waits until the flusher made the batch
        durable."""
        broker = make_broker(flush_policy=FlushPolicy.ALWAYS)
        fired(broker.create_topic("t", 1, 1, {}))
        response = data_apis.produce(broker, header(8), produce_request("t", 0, batch([b"a"])))
        broker.clock.drain()
        assert partition_result(fired(response))["error_code"] == ErrorCode.NONE
        assert broker.partitions["t", 0].log.durable_offset == 1

    def test_acks_zero_sends_nothing_and_refuses_on_error(self, make_broker):
        """acks=0: no response; a failed append closes the connection."""
        broker = make_broker(auto_create_topics=False)
        fired(broker.create_topic("t", 1, 1, {}))
        assert (
            data_apis.produce(broker, header(8), produce_request("t", 0, batch([b"a"]), acks=0))
            is None
        )
        with pytest.raises(RequestRefused):
            data_apis.produce(broker, header(8), produce_request("nope", 0, batch([b"a"]), acks=0))

    def test_bad_crc_is_corrupt_message(self, make_broker):
        """A batch failing its CRC is answered CORRUPT_MESSAGE and not stored."""
        broker = make_broker()
        fired(broker.create_topic("t", 1, 1, {}))
        damaged = bytearray(batch([b"a"]))
        damaged[-1] ^= 0xFF
        result = partition_result(
            data_apis.produce(broker, header(8), produce_request("t", 0, bytes(damaged)))
        )
        assert result["error_code"] == ErrorCode.CORRUPT_MESSAGE
        assert broker.partitions["t", 0].log.log_end_offset == 0

    def test_produce_v2_is_unsupported(self, make_broker):
        """Produce v0-2 are advertised (for old librdkafka) but answered UNSUPPORTED_VERSION."""
        broker = make_broker()
        result = partition_result(
            data_apis.produce(broker, header(2), produce_request("t", 0, b"x"))
        )
        assert result["error_code"] == ErrorCode.UNSUPPORTED_VERSION

    def test_idempotent_retry_is_deduplicated(self, make_broker):
        """A retried idempotent batch is answered with its original offset, stored once."""
        broker = make_broker()
        fired(broker.create_topic("t", 1, 1, {}))
        first = batch([b"a"], producer_id=7, producer_epoch=0, base_sequence=0)
        second = batch([b"b"], producer_id=7, producer_epoch=0, base_sequence=1)
        for data in (first, second, second):
            result = partition_result(
                data_apis.produce(broker, header(8), produce_request("t", 0, data))
            )
        assert (result["error_code"], result["base_offset"]) == (ErrorCode.NONE, 1)
        gap = batch([b"c"], producer_id=7, producer_epoch=0, base_sequence=5)
        result = partition_result(
            data_apis.produce(broker, header(8), produce_request("t", 0, gap))
        )
        assert result["error_code"] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert broker.partitions["t", 0].log.log_end_offset == 2

    def test_fetch_long_poll_wakes_on_produce(self, make_broker):
        """A fetch with nothing to read waits; an append answers it before the timeout."""
        broker = make_broker()
        fired(broker.create_topic("t", 1, 1, {}))
        waiting = data_apis.fetch(broker, header(11), fetch_request("t", 0, 0, max_wait_ms=500))
        results = []
        waiting.addCallback(results.append)
        assert results == []
        data_apis.produce(broker, header(8), produce_request("t", 0, batch([b"late"])))
        assert fetched_values(results[0]) == [b"late"]

    def test_fetch_long_poll_times_out_empty(self, make_broker):
        """With no data the fetch is answered empty after max_wait_ms."""
        broker = make_broker()
        fired(broker.create_topic("t", 1, 1, {}))
        waiting = data_apis.fetch(broker, header(11), fetch_request("t", 0, 0, max_wait_ms=500))
        results = []
        waiting.addCallback(results.append)
        broker.clock.advance(0.499)
        assert results == []
        broker.clock.advance(0.002)
        assert fetched_values(results[0]) == []

    def test_fetch_out_of_range_and_epochs(self, make_broker):
        """Past the log end: OFFSET_OUT_OF_RANGE; a stale or future leader epoch is fenced."""
        broker = make_broker()
        fired(broker.create_topic("t", 1, 1, {}))
        codes = [
            data_apis.fetch(broker, header(11), request)["responses"][0]["partitions"][0][
                "error_code"
            ]
            for request in (
                fetch_request("t", 0, 5),
                fetch_request("t", 0, 0, epoch=3),
                fetch_request("t", 0, 0, epoch=0),
            )
        ]
        assert codes == [
            ErrorCode.OFFSET_OUT_OF_RANGE,
            ErrorCode.UNKNOWN_LEADER_EPOCH,
            ErrorCode.NONE,
        ]


class OffsetTests:
    """ListOffsets, OffsetForLeaderEpoch, committed offsets, producer ids."""

    def test_list_offsets(self, make_broker):
        """Earliest, latest and by timestamp."""
        broker = make_broker()
        fired(broker.create_topic("t", 1, 1, {}))
        for _ in range(3):
            data_apis.produce(broker, header(8), produce_request("t", 0, batch([b"x", b"y"])))

        def offset_for(timestamp):
            request = {
                "replica_id": -1,
                "isolation_level": 0,
                "topics": [
                    {
                        "name": "t",
                        "partitions": [
                            {
                                "partition_index": 0,
                                "current_leader_epoch": -1,
                                "timestamp": timestamp,
                            }
                        ],
                    }
                ],
            }
            return data_apis.list_offsets(broker, header(5), request)["topics"][0]["partitions"][0]

        assert offset_for(-2)["offset"] == 0
        assert offset_for(-1)["offset"] == 6
        assert offset_for(T0 * 1000)["offset"] == 0

    def test_offset_for_leader_epoch(self, make_broker):
        """The end offset of the current epoch is the log end offset."""
        broker = make_broker()
        fired(broker.create_topic("t", 1, 1, {}))
        data_apis.produce(broker, header(8), produce_request("t", 0, batch([b"x"])))
        request = {
            "replica_id": -1,
            "topics": [
                {
                    "topic": "t",
                    "partitions": [{"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0}],
                }
            ],
        }
        entry = data_apis.offset_for_leader_epoch(broker, header(3), request)["topics"][0][
            "partitions"
        ][0]
        assert (entry["leader_epoch"], entry["end_offset"]) == (0, 1)

    def test_commit_and_fetch_offsets(self, make_broker):
        """Simple commits are stored and read back; others are refused."""
        broker = make_broker()
        fired(broker.create_topic("t", 2, 1, {}))
        commit = {
            "group_id": "sink",
            "generation_id": -1,
            "member_id": "",
            "group_instance_id": None,
            "retention_time_ms": -1,
            "topics": [
                {
                    "name": "t",
                    "partitions": [
                        {
                            "partition_index": 1,
                            "committed_offset": 42,
                            "committed_leader_epoch": 0,
                            "committed_metadata": "m",
                        }
                    ],
                }
            ],
        }
        response = fired(admin_apis.offset_commit(broker, header(7), commit))
        assert response["topics"][0]["partitions"][0]["error_code"] == ErrorCode.NONE
        fetched = fired(
            admin_apis.offset_fetch(broker, header(5), {"group_id": "sink", "topics": None})
        )
        (partition,) = fetched["topics"][0]["partitions"]
        assert (partition["partition_index"], partition["committed_offset"]) == (1, 42)
        rejected = fired(
            admin_apis.offset_commit(broker, header(7), {**commit, "generation_id": 3})
        )
        assert rejected["topics"][0]["partitions"][0]["error_code"] == ErrorCode.ILLEGAL_GENERATION

    def test_producer_ids_are_unique(self, make_broker):
        """InitProducerId hands out distinct ids."""
        broker = make_broker()
        ids = {
            fired(
                admin_apis.init_producer_id(
                    broker, header(1), {"transactional_id": None, "transaction_timeout_ms": 1}
                )
            )["producer_id"]
            for _ in range(5)
        }
        assert len(ids) == 5


class DispatcherTests:
    """The served APIs are exactly the advertised ones."""

    def test_api_versions_lists_the_served_apis(self, make_broker):
        """ApiVersions advertises every API with a handler and its DESIGN §2 range."""
        broker = make_broker()
        dispatcher = build_dispatcher(broker)
        response = admin_apis.api_versions(dispatcher, header(3), {})
        advertised = {
            k["api_key"]: (k["min_version"], k["max_version"]) for k in response["api_keys"]
        }
        assert advertised[0] == (0, 8)
        assert advertised[1] == (4, 11)
        assert set(advertised) == set(dispatcher.handlers)
