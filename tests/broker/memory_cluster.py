"""Three brokers in memory, for the broker tests: one ``LocalMetadataStore`` shared as the
cluster's metadata, each broker's logs on its own ``MemoryFileSystem``, replication streams
over ``iosim`` pumps, one ``Clock``. Deterministic: the tests decide when bytes move and when
time passes.

A broker "dies" by stopping (its registration ends, so the store tells the others, as etcd
does when a lease expires) and losing its connections.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim

from tmq.broker import data_apis
from tmq.broker.broker import Broker
from tmq.broker.config import BrokerConfig
from tmq.broker.handlers import build_dispatcher
from tmq.broker.replica_fetcher import RETRY_S, ReplicaFetchers
from tmq.broker.replica_session import ReplicaSession
from tmq.broker.server import BrokerFactory
from tmq.cluster.local_store import LocalMetadataStore
from tmq.protocol.headers import RequestHeader
from tmq.protocol.records import Record, build_batch
from tmq.storage.config import FlushPolicy, LogConfig
from tmq.storage.log_manager import LogManager
from tmq.storage.memory_fs import MemoryFileSystem

T0 = 1_700_000_000
LAG_MS = 5_000


class Node:
    """One broker of the memory cluster."""

    def __init__(self, cluster: MemoryCluster, broker_id: int, **settings):
        self.cluster = cluster
        self.broker_id = broker_id
        self.port = 9000 + broker_id
        self.fs = MemoryFileSystem()
        self.settings = settings
        self._build()

    def _build(self) -> None:
        cluster, settings = self.cluster, self.settings
        config = BrokerConfig(
            broker_id=self.broker_id,
            advertised_host="127.0.0.1",
            advertised_port=self.port,
            data_dirs=("/data",),
            log=LogConfig(flush_policy=FlushPolicy.NEVER),
            replica_lag_time_max_ms=LAG_MS,
            **settings,
        )
        logs = LogManager(
            self.fs, ["/data"], lambda topic: self.broker.topic_log_config(topic), lambda: T0 * 1000
        )
        self.broker = Broker(
            config, cluster.clock, logs, cluster.store, monotonic=cluster.clock.seconds
        )
        self.broker.fetchers = ReplicaFetchers(self.broker, cluster.connect)
        self.factory = BrokerFactory(
            build_dispatcher(self.broker),
            max_frame_bytes=config.max_frame_bytes,
            max_in_flight=config.max_in_flight_requests,
            open_replication=lambda write, close: ReplicaSession(self.broker, write, close),
        )
        self.alive = True

    def start(self) -> None:
        fired(self.broker.start())
        fired(self.broker.join())

    def restart(self) -> None:
        """A new broker process on the same data (after ``kill``)."""
        self._build()
        self.alive = True
        self.start()

    def kill(self) -> None:
        """The broker stops: its registration ends and its connections drop."""
        self.alive = False
        fired(self.broker.stop())
        for pump in self.cluster.pumps_of(self):
            pump.clientIO.loseConnection()
            pump.serverIO.loseConnection()


def fired(deferred):
    results = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


class MemoryCluster:
    def __init__(self, size: int = 3, **settings):
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = LocalMetadataStore.open(MemoryFileSystem(), "/metadata")
        self.nodes = {i: Node(self, i, **settings) for i in range(1, size + 1)}
        self._pumps: list[tuple[iosim.IOPump, Node, Node]] = []
        for node in self.nodes.values():
            node.start()
        self.settle()

    def connect(self, host: str, port: int, client_factory) -> None:
        source = next(
            n for n in self.nodes.values() if n.broker.fetchers is client_factory.fetchers
        )
        target = next((n for n in self.nodes.values() if n.port == port), None)
        if target is None or not target.alive:
            reason = Failure(ConnectionRefusedError())
            self.clock.callLater(0, client_factory.clientConnectionFailed, None, reason)
            return
        server = target.factory.buildProtocol(None)
        client = client_factory.buildProtocol(None)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True),
            client,
            iosim.FakeTransport(client, isServer=False),
            clock=self.clock,
        )
        self._pumps.append((pump, source, target))

    def pumps_of(self, node: Node) -> list[iosim.IOPump]:
        return [pump for pump, a, b in self._pumps if node in (a, b)]

    def settle(self, *, cut: tuple[int, ...] = ()) -> None:
        """Move bytes and run due calls until nothing moves; connections touching a broker
        in ``cut`` carry nothing (a paused or partitioned broker)."""
        for _ in range(1000):
            self.clock.advance(0)
            moved = False
            for pump, a, b in list(self._pumps):
                if a.broker_id in cut or b.broker_id in cut:
                    continue
                moved = pump.pump(advanceClock=False) or moved
            if (not moved and not self.clock.getDelayedCalls()) or (
                not moved
                and all(
                    call.getTime() > self.clock.seconds() for call in self.clock.getDelayedCalls()
                )
            ):
                return
        raise AssertionError("the cluster did not settle")

    def wait(self, seconds: float, *, cut: tuple[int, ...] = ()) -> None:
        """Let ``seconds`` pass in small steps, settling after each."""
        steps = max(1, int(seconds / 0.1))
        for _ in range(steps):
            self.clock.advance(seconds / steps)
            self.settle(cut=cut)

    def controller(self) -> Node:
        return next(n for n in self.nodes.values() if n.alive and n.broker.controller.active)

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 3, **configs):
        node = self.controller()
        fired(node.broker.create_topic(name, partitions, replication_factor, configs))
        # a follower may subscribe before its leader heard it leads: it asks again shortly
        self.wait(RETRY_S * 2)

    def leader(self, topic: str, partition: int = 0) -> Node:
        state = self.controller().broker.states[topic, partition]
        return self.nodes[state.leader]

    def produce(self, node: Node, topic: str, values, *, acks=-1, partition=0, timeout_ms=30_000):
        """Send one batch to ``node``; returns (Deferred or response) before settling."""
        records = [Record(i, 0, None, v) for i, v in enumerate(values)]
        request = {
            "transactional_id": None,
            "acks": acks,
            "timeout_ms": timeout_ms,
            "topic_data": [
                {
                    "name": topic,
                    "partition_data": [
                        {"index": partition, "records": build_batch(records, base_timestamp=T0)}
                    ],
                }
            ],
        }
        return data_apis.produce(node.broker, RequestHeader(0, 7, 1, "test", {}), request)


def outcome(response) -> dict:
    """The single partition's answer of a produce response (settled)."""
    if isinstance(response, defer.Deferred):
        response = fired(response)
    return response["responses"][0]["partition_responses"][0]


def log_bytes(node: Node, topic: str, partition: int = 0) -> bytes:
    log = node.broker.logs.get_log(topic, partition)
    read = log.read(log.log_start_offset, 1 << 30) if log.log_end_offset else None
    return read.read() if read is not None else b""
