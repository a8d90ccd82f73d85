"""An in-memory Kafka cluster speaking the wire protocol, and the network that reaches it.

The client's unit tests run against this fake, never against tmq's broker, so the client is held
to the Kafka protocol rather than to tmq's internals:

* ``FakeBrokerProtocol`` reads frames with ``FrameDecoder`` and ``read_request_header``, decodes
  every request with its ``tmq.protocol`` declaration (a client bug surfaces as a
  ``ProtocolError`` or a failed assertion in the test), and answers with a response built from
  the declaration, in request order, with the response header the version calls for.
* ``FakeBroker`` answers as Kafka does for the subset tested: ApiVersions (with the KIP-511 v0
  fallback for versions it does not know), Metadata, Produce (acks=0 sends no response;
  idempotent sequence checks with dedup of the last 5 batches), Fetch (whole batches from the one
  holding the offset, the first one complete even if over the limit, then bytes up to the limit,
  so a partial trailing batch is possible; long-polls up to ``max_wait_ms``), ListOffsets,
  InitProducerId, FindCoordinator, OffsetCommit, OffsetFetch (null topics: every partition the
  group committed), CreateTopics, DeleteTopics, ListGroups and DescribeGroups (of the groups
  set up with ``FakeKafka.add_group`` and of those with only committed offsets; no membership
  protocol runs). Tests script errors with ``fail_next`` and silence with ``mute``.
* ``FakeNetwork`` is the ``Connector`` the client is given: it pairs each client protocol with a
  ``FakeBrokerProtocol`` through ``twisted.test.iosim`` (used only here) and pumps the bytes.
"""

from __future__ import annotations

import collections
import dataclasses

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test import iosim

from tmq.protocol.apis import API_BY_KEY, ApiKey, api_versions_fallback
from tmq.protocol.errors import ErrorCode
from tmq.protocol.framing import FrameDecoder, encode_frame
from tmq.protocol.headers import encode_response_header, read_request_header
from tmq.protocol.records import (
    batch_crc_ok,
    decode_batch,
    iter_batches,
    read_batch_header,
    set_base_offset,
)

DEFAULT_API_VERSIONS = {api.key: (api.min_version, api.max_version) for api in API_BY_KEY.values()}


@dataclasses.dataclass
class _ProducerBatch:
    first_sequence: int
    last_sequence: int
    base_offset: int


@dataclasses.dataclass
class FakePartition:
    """One partition's log, as contiguous RecordBatch bytes (the way a segment holds them)."""

    topic: str
    index: int
    leader: int
    replicas: list[int]
    leader_epoch: int = 0
    log: bytearray = dataclasses.field(default_factory=bytearray)
    batches: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    log_start_offset: int = 0
    log_end_offset: int = 0
    producers: dict[int, collections.deque] = dataclasses.field(default_factory=dict)

    def append(self, batch: bytes) -> tuple[ErrorCode, int]:
        """Append one client batch; Kafka's validation and idempotence checks."""
        header = read_batch_header(batch)
        if header.size != len(batch) or not batch_crc_ok(batch, 0, header):
            return ErrorCode.CORRUPT_MESSAGE, -1
        if header.producer_id >= 0:
            if header.base_sequence < 0:
                return ErrorCode.INVALID_RECORD, -1
            recent = self.producers.setdefault(header.producer_id, collections.deque(maxlen=5))
            for entry in recent:
                if (entry.first_sequence, entry.last_sequence) == (
                    header.base_sequence,
                    header.last_sequence,
                ):
                    return ErrorCode.NONE, entry.base_offset  # duplicate: the original offset
            expected = (recent[-1].last_sequence + 1) % 2**31 if recent else 0
            if header.base_sequence != expected:
                return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, -1
        base_offset = self.log_end_offset
        stored = bytearray(batch)
        set_base_offset(stored, 0, base_offset)
        self.batches.append((base_offset, len(self.log), len(stored)))
        self.log += stored
        self.log_end_offset = base_offset + header.last_offset_delta + 1
        if header.producer_id >= 0:
            self.producers[header.producer_id].append(
                _ProducerBatch(header.base_sequence, header.last_sequence, base_offset)
            )
        return ErrorCode.NONE, base_offset

    def read(self, offset: int, max_bytes: int) -> bytes:
        """Bytes from the batch holding ``offset``: at least that batch, then up to
        ``max_bytes`` (which may cut the last batch short, as a file read does)."""
        for base, position, size in self.batches:
            last = base + read_batch_header(self.log, position).last_offset_delta
            if last >= offset:
                end = position + max(size, max_bytes)
                return bytes(self.log[position:end])
        return b""

    def records(self) -> list[tuple[int, bytes | None, bytes | None]]:
        """Every record in the log as ``(offset, key, value)``, for assertions."""
        out = []
        for position, header in iter_batches(self.log):
            _, records = decode_batch(self.log, position)
            for record in records:
                out.append((header.base_offset + record.offset_delta, record.key, record.value))
        return out


@dataclasses.dataclass
class FakeGroup:
    """A group as its coordinator describes it.

    :ivar members: DescribeGroups member entries (``member_id``, ``client_id``,
        ``member_assignment``, ...; missing fields take their defaults).
    """

    group_id: str
    coordinator: int
    state: str = "Stable"
    protocol_type: str = "consumer"
    protocol: str = "range"
    members: list[dict] = dataclasses.field(default_factory=list)


class FakeKafka:
    """The cluster state shared by the fake brokers.

    A group's coordinator is the one ``add_group`` gave it, else ``coordinator_id``.
    """

    def __init__(self, broker_ids=(1,), clock: Clock | None = None):
        self.clock = clock if clock is not None else Clock()
        self.brokers = {node_id: FakeBroker(self, node_id) for node_id in broker_ids}
        self.controller_id = broker_ids[0]
        self.stale_controller_ids: list[int] = []  # named by the next Metadata answers instead
        self.coordinator_id = broker_ids[0]
        self.cluster_id = "fake-cluster"
        self.partitions: dict[tuple[str, int], FakePartition] = {}
        self.topic_configs: dict[str, dict[str, str | None]] = {}
        self.committed: dict[tuple[str, str, int], int] = {}
        self.groups: dict[str, FakeGroup] = {}
        self.next_producer_id = 4000
        self.delayed_fetches: list = []

    def create_topic(self, name: str, partitions: int = 1, leaders=None) -> None:
        ids = sorted(self.brokers)
        for index in range(partitions):
            leader = leaders[index] if leaders else ids[index % len(ids)]
            self.partitions[(name, index)] = FakePartition(name, index, leader, [leader])

    def add_group(self, group_id: str, coordinator: int | None = None, **fields) -> FakeGroup:
        """Set up a group (``FakeGroup`` fields) at ``coordinator`` (default
        ``coordinator_id``)."""
        if coordinator is None:
            coordinator = self.coordinator_id
        group = self.groups[group_id] = FakeGroup(group_id, coordinator, **fields)
        return group

    def coordinator_of(self, group_id: str) -> int:
        """The node id of ``group_id``'s coordinator."""
        group = self.groups.get(group_id)
        return group.coordinator if group is not None else self.coordinator_id

    def topics(self) -> dict[str, list[FakePartition]]:
        out: dict[str, list[FakePartition]] = {}
        for (topic, _), partition in sorted(self.partitions.items()):
            out.setdefault(topic, []).append(partition)
        return out

    def move_leader(self, topic: str, index: int, leader: int) -> None:
        partition = self.partitions[(topic, index)]
        partition.leader = leader
        partition.leader_epoch += 1

    def broker_at(self, host: str, port: int) -> FakeBroker | None:
        for broker in self.brokers.values():
            if (broker.host, broker.port) == (host, port):
                return broker
        return None

    def wake_fetches(self) -> None:
        for fetch in list(self.delayed_fetches):
            fetch()


class FakeBroker:
    """One broker of a ``FakeKafka``.

    :ivar api_versions: the advertised ``{api_key: (min, max)}``.
    :ivar api_versions_max: the highest ApiVersions version it parses; above it, the KIP-511
        v0 error body.
    :ivar requests: every decoded request, ``(api_key, version, body)``.
    """

    def __init__(self, kafka: FakeKafka, node_id: int):
        self.kafka = kafka
        self.node_id = node_id
        self.host = f"broker-{node_id}"
        self.port = 9092
        self.up = True
        self.api_versions = dict(DEFAULT_API_VERSIONS)
        self.api_versions_max = 3
        self.requests: list[tuple[int, int, dict]] = []
        self.protocols: list[FakeBrokerProtocol] = []
        self.muted: set[int] = set()
        self._scripted: dict[int, collections.deque] = collections.defaultdict(collections.deque)
        self._swallowed: collections.Counter = collections.Counter()

    def fail_next(self, api_key: int, code: ErrorCode, times: int = 1) -> None:
        """Answer the next ``times`` partitions (or requests) of ``api_key`` with ``code``."""
        self._scripted[api_key].extend([code] * times)

    def mute(self, api_key: int) -> None:
        """Never answer ``api_key`` requests (they stay unanswered, blocking later ones)."""
        self.muted.add(api_key)

    def swallow_next(self, api_key: int, times: int = 1) -> None:
        """Handle the next ``times`` requests of ``api_key`` but lose their responses (the
        write happened; the client never hears of it)."""
        self._swallowed[api_key] += times

    def drop_connections(self) -> None:
        """Close every connection to this broker from the broker's side."""
        for protocol in self.protocols:
            protocol.transport.loseConnection()

    def requests_of(self, api_key: int) -> list[dict]:
        return [body for key, _, body in self.requests if key == api_key]

    def _scripted_error(self, api_key: int) -> ErrorCode:
        queue = self._scripted[api_key]
        return queue.popleft() if queue else ErrorCode.NONE

    # -- handlers: each returns the response body, None for no response, or a Deferred ---------

    def handle(self, api_key: int, version: int, body) -> dict | Deferred | None:
        low, high = self.api_versions[api_key]
        assert low <= version <= high, f"client sent {ApiKey(api_key).name} v{version}"
        self.requests.append((api_key, version, body))
        if api_key in self.muted:
            return Deferred()
        handler = getattr(self, f"_{ApiKey(api_key).name.lower()}")
        answer = handler(body, version)
        if self._swallowed[api_key]:
            self._swallowed[api_key] -= 1
            return Deferred()
        return answer

    def _api_versions(self, body, version):
        return {
            "api_keys": [
                {"api_key": key, "min_version": low, "max_version": high}
                for key, (low, high) in sorted(self.api_versions.items())
            ]
        }

    def _metadata(self, body, version):
        kafka = self.kafka
        topics = kafka.topics()
        if body.topics is None or (version == 0 and not body.topics):
            wanted = sorted(topics)
        else:
            wanted = [t.name for t in body.topics]
        answered = []
        for name in wanted:
            if name not in topics:
                answered.append({"name": name, "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION})
                continue
            partitions = [
                {
                    "error_code": 0,
                    "partition_index": p.index,
                    "leader_id": p.leader,
                    "leader_epoch": p.leader_epoch,
                    "replica_nodes": p.replicas,
                    "isr_nodes": p.replicas,
                }
                for p in topics[name]
            ]
            answered.append({"name": name, "error_code": 0, "partitions": partitions})
        return {
            "brokers": [
                {"node_id": b.node_id, "host": b.host, "port": b.port, "rack": None}
                for b in kafka.brokers.values()
            ],
            "cluster_id": kafka.cluster_id,
            "controller_id": (
                kafka.stale_controller_ids.pop(0)
                if kafka.stale_controller_ids
                else kafka.controller_id
            ),
            "topics": answered,
        }

    def _partition(self, topic: str, index: int) -> tuple[ErrorCode, FakePartition | None]:
        partition = self.kafka.partitions.get((topic, index))
        if partition is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None
        if partition.leader != self.node_id:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER, None
        return ErrorCode.NONE, partition

    def _produce(self, body, version):
        responses = []
        for topic in body.topic_data:
            partitions = []
            for data in topic.partition_data:
                code, partition = self._partition(topic.name, data.index)
                base_offset = -1
                if code == ErrorCode.NONE:
                    code = self._scripted_error(ApiKey.PRODUCE)
                if code == ErrorCode.NONE:
                    code, base_offset = partition.append(data.records)
                partitions.append(
                    {
                        "index": data.index,
                        "error_code": code,
                        "base_offset": base_offset,
                        "log_start_offset": partition.log_start_offset if partition else -1,
                    }
                )
            responses.append({"name": topic.name, "partition_responses": partitions})
        self.kafka.wake_fetches()
        if body.acks == 0:
            return None
        return {"responses": responses}

    def _fetch(self, body, version):
        answer = Deferred()

        def attempt(final: bool) -> None:
            responses, size = self._fetch_now(body)
            if (
                final
                or size >= body.min_bytes
                or any(p["error_code"] for t in responses for p in t["partitions"])
            ):
                self.kafka.delayed_fetches[:] = [
                    f for f in self.kafka.delayed_fetches if f is not wake
                ]
                if timer.active():
                    timer.cancel()
                answer.callback({"responses": responses})

        def wake() -> None:
            attempt(final=False)

        timer = self.kafka.clock.callLater(body.max_wait_ms / 1000, attempt, True)
        self.kafka.delayed_fetches.append(wake)
        attempt(final=body.max_wait_ms == 0)
        return answer

    def _fetch_now(self, body):
        responses = []
        size = 0
        for topic in body.topics:
            partitions = []
            for request in topic.partitions:
                code, partition = self._partition(topic.topic, request.partition)
                if code == ErrorCode.NONE:
                    code = self._scripted_error(ApiKey.FETCH)
                entry = {"partition_index": request.partition, "error_code": code}
                if partition is not None and code == ErrorCode.NONE:
                    offset = request.fetch_offset
                    if not partition.log_start_offset <= offset <= partition.log_end_offset:
                        entry["error_code"] = ErrorCode.OFFSET_OUT_OF_RANGE
                    else:
                        records = partition.read(offset, request.partition_max_bytes)
                        size += len(records)
                        entry["records"] = records
                    entry["high_watermark"] = partition.log_end_offset
                    entry["last_stable_offset"] = partition.log_end_offset
                    entry["log_start_offset"] = partition.log_start_offset
                    entry["aborted_transactions"] = []
                else:
                    entry["high_watermark"] = -1
                partitions.append(entry)
            responses.append({"topic": topic.topic, "partitions": partitions})
        return responses, size

    def _list_offsets(self, body, version):
        topics = []
        for topic in body.topics:
            partitions = []
            for request in topic.partitions:
                code, partition = self._partition(topic.name, request.partition_index)
                entry = {"partition_index": request.partition_index, "error_code": code}
                if partition is not None:
                    if request.timestamp == -2:
                        entry["offset"] = partition.log_start_offset
                    else:
                        entry["offset"] = partition.log_end_offset
                    entry["leader_epoch"] = partition.leader_epoch
                partitions.append(entry)
            topics.append({"name": topic.name, "partitions": partitions})
        return {"topics": topics}

    def _init_producer_id(self, body, version):
        code = self._scripted_error(ApiKey.INIT_PRODUCER_ID)
        if code != ErrorCode.NONE:
            return {"error_code": code}
        producer_id = self.kafka.next_producer_id
        self.kafka.next_producer_id += 1
        return {"error_code": 0, "producer_id": producer_id, "producer_epoch": 0}

    def _find_coordinator(self, body, version):
        code = self._scripted_error(ApiKey.FIND_COORDINATOR)
        coordinator = self.kafka.brokers[self.kafka.coordinator_of(body.key)]
        return {
            "error_code": code,
            "node_id": coordinator.node_id,
            "host": coordinator.host,
            "port": coordinator.port,
        }

    def _offset_commit(self, body, version):
        coordinating = self.node_id == self.kafka.coordinator_of(body.group_id)
        topics = []
        for topic in body.topics:
            partitions = []
            for p in topic.partitions:
                code = self._scripted_error(ApiKey.OFFSET_COMMIT)
                if code == ErrorCode.NONE and not coordinating:
                    code = ErrorCode.NOT_COORDINATOR
                if code == ErrorCode.NONE:
                    key = (body.group_id, topic.name, p.partition_index)
                    self.kafka.committed[key] = p.committed_offset
                partitions.append({"partition_index": p.partition_index, "error_code": code})
            topics.append({"name": topic.name, "partitions": partitions})
        return {"topics": topics}

    def _offset_fetch(self, body, version):
        if self.node_id != self.kafka.coordinator_of(body.group_id):
            return {"topics": [], "error_code": ErrorCode.NOT_COORDINATOR}
        if body.topics is None:  # v2+: every partition the group committed
            asked: dict[str, list[int]] = {}
            for group, topic, index in sorted(self.kafka.committed):
                if group == body.group_id:
                    asked.setdefault(topic, []).append(index)
        else:
            asked = {topic.name: topic.partition_indexes for topic in body.topics}
        topics = []
        for name, indexes in asked.items():
            partitions = [
                {
                    "partition_index": index,
                    "committed_offset": self.kafka.committed.get((body.group_id, name, index), -1),
                    "metadata": "",
                }
                for index in indexes
            ]
            topics.append({"name": name, "partitions": partitions})
        return {"topics": topics}

    def _list_groups(self, body, version):
        code = self._scripted_error(ApiKey.LIST_GROUPS)
        if code != ErrorCode.NONE:
            return {"error_code": code, "groups": []}
        kafka = self.kafka
        known = set(kafka.groups) | {group_id for group_id, _, _ in kafka.committed}
        listed = [
            {
                "group_id": group_id,
                "protocol_type": kafka.groups[group_id].protocol_type
                if group_id in kafka.groups
                else "",  # a group that only commits offsets
            }
            for group_id in sorted(known)
            if kafka.coordinator_of(group_id) == self.node_id
        ]
        return {"error_code": ErrorCode.NONE, "groups": listed}

    def _describe_groups(self, body, version):
        kafka = self.kafka
        described = []
        for group_id in body.groups:
            code = self._scripted_error(ApiKey.DESCRIBE_GROUPS)
            if code == ErrorCode.NONE and kafka.coordinator_of(group_id) != self.node_id:
                code = ErrorCode.NOT_COORDINATOR
            entry = {"group_id": group_id, "error_code": code}
            group = kafka.groups.get(group_id)
            if code != ErrorCode.NONE:
                pass
            elif group is not None:
                entry.update(
                    group_state=group.state,
                    protocol_type=group.protocol_type,
                    protocol_data=group.protocol,
                    members=group.members,
                )
            elif any(key[0] == group_id for key in kafka.committed):
                entry["group_state"] = "Empty"  # offsets but no members
            else:
                entry["group_state"] = "Dead"  # Kafka's answer for an unknown group before v6
            described.append(entry)
        return {"groups": described}

    def _create_topics(self, body, version):
        kafka = self.kafka
        answered = []
        for topic in body.topics:
            if self.node_id != kafka.controller_id:
                code = ErrorCode.NOT_CONTROLLER
            elif topic.name in kafka.topics():
                code = ErrorCode.TOPIC_ALREADY_EXISTS
            elif topic.num_partitions < 1:
                code = ErrorCode.INVALID_PARTITIONS
            elif not 0 < topic.replication_factor <= len(kafka.brokers):
                code = ErrorCode.INVALID_REPLICATION_FACTOR
            else:
                code = ErrorCode.NONE
                if not body.validate_only:
                    kafka.create_topic(topic.name, topic.num_partitions)
                    kafka.topic_configs[topic.name] = {c.name: c.value for c in topic.configs}
            message = None if code == ErrorCode.NONE else code.name
            answered.append({"name": topic.name, "error_code": code, "error_message": message})
        return {"topics": answered}

    def _delete_topics(self, body, version):
        kafka = self.kafka
        answered = []
        for name in body.topic_names:
            if self.node_id != kafka.controller_id:
                code = ErrorCode.NOT_CONTROLLER
            elif name not in kafka.topics():
                code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                code = ErrorCode.NONE
                for key in [k for k in kafka.partitions if k[0] == name]:
                    del kafka.partitions[key]
            answered.append({"name": name, "error_code": code})
        return {"responses": answered}


class FakeBrokerProtocol(Protocol):
    """The server side of one connection: decode, handle, answer in request order."""

    def __init__(self, broker: FakeBroker):
        self.broker = broker
        self.decoder = FrameDecoder()
        self.slots: collections.deque[list] = collections.deque()

    def connectionMade(self) -> None:
        self.broker.protocols.append(self)

    def connectionLost(self, reason=None) -> None:
        self.broker.protocols.remove(self)

    def dataReceived(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            header, offset = read_request_header(frame)
            api_key, version = header.api_key, header.api_version
            if api_key == ApiKey.API_VERSIONS and version > self.broker.api_versions_max:
                slot = [api_key, 0, header.correlation_id, api_versions_fallback()]
                self.slots.append(slot)
                continue
            body = API_BY_KEY[api_key].request.parse(frame[offset:], version)
            answer = self.broker.handle(api_key, version, body)
            if answer is None:
                continue
            slot = [api_key, version, header.correlation_id, None]
            self.slots.append(slot)
            if isinstance(answer, Deferred):
                answer.addCallback(self._fill, slot)
            else:
                slot[3] = answer
        self._write_ready()

    def _fill(self, response: dict, slot: list) -> None:
        slot[3] = response
        self._write_ready()

    def _write_ready(self) -> None:
        while self.slots and self.slots[0][3] is not None:
            api_key, version, correlation_id, response = self.slots.popleft()
            header = encode_response_header(api_key, version, correlation_id)
            body = API_BY_KEY[api_key].response.build(response, version)
            self.transport.writeSequence(encode_frame(header, body))


class FakeNetwork:
    """Connects client protocols to the brokers of a ``FakeKafka`` in memory.

    ``connect`` is the client's ``Connector``. Nothing moves until ``flush`` (or ``advance``,
    which also moves the clock) pumps the bytes; a broker with ``up = False`` refuses.
    """

    def __init__(self, kafka: FakeKafka):
        self.kafka = kafka
        self.clock = kafka.clock
        self.pumps: list[iosim.IOPump] = []
        self.connects: list[tuple[str, int]] = []

    def connect(self, host: str, port: int, protocol: Protocol) -> Deferred:
        self.connects.append((host, port))
        broker = self.kafka.broker_at(host, port)
        if broker is None or not broker.up:
            return fail(ConnectionRefusedError(host, port))
        server = FakeBrokerProtocol(broker)
        server_transport = iosim.FakeTransport(server, isServer=True)
        client_transport = iosim.FakeTransport(protocol, isServer=False)
        pump = iosim.connect(
            server, server_transport, protocol, client_transport, greet=False, clock=self.clock
        )
        self.pumps.append(pump)
        return succeed(protocol)

    def flush(self) -> None:
        """Deliver bytes both ways, and run due calls, until nothing moves."""
        moved = True
        while moved:
            moved = False
            for pump in list(self.pumps):
                if pump.flush():
                    moved = True
            self.pumps = [p for p in self.pumps if not p.clientIO.disconnected]

    def advance(self, seconds: float) -> None:
        """Flush, move the clock by ``seconds``, flush again."""
        self.flush()
        self.clock.advance(seconds)
        self.flush()

    def elapse(self, seconds: float, step: float = 0.01) -> None:
        """Let ``seconds`` pass in ``step``s, so chains of timers and answers play out."""
        for _ in range(round(seconds / step)):
            self.advance(step)


def bootstrap_of(kafka: FakeKafka) -> str:
    """The ``--bootstrap`` string naming every broker of ``kafka``."""
    return ",".join(f"{b.host}:{b.port}" for b in kafka.brokers.values())
