"""Three brokers in memory: one ``LocalMetadataStore`` shared as the cluster's metadata, each
broker's logs on its own ``MemoryFileSystem``, replication streams over ``iosim`` pumps, one
``Clock``. Deterministic: the tests decide when bytes move and when time passes.

A broker "dies" by losing its registration (the store tells the others, as etcd does when a
lease expires) and its connections.
"""

from __future__ import annotations

import pytest
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
from tmq.broker.replica_session import HW_PUSH_DELAY_S, ReplicaSession
from tmq.broker.server import BrokerFactory
from tmq.cluster.local_store import LocalMetadataStore
from tmq.protocol.errors import ErrorCode
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


@pytest.fixture
def cluster():
    made = MemoryCluster()
    yield made
    for node in made.nodes.values():
        fired(node.broker.stop())


class ReplicationTests:
    def test_a_replicated_topic_has_one_leader_and_two_followers(self, cluster):
        """Creating an RF=3 topic gives each broker its role: the first replica leads at epoch
        0 and the others follow it."""
        cluster.create_topic("t", partitions=3)
        for index in range(3):
            leader = cluster.leader("t", index)
            assert ("t", index) in leader.broker.partitions
            others = [n for n in cluster.nodes.values() if n is not leader]
            for node in others:
                follower = node.broker.followers["t", index]
                assert (follower.leader_id, follower.leader_epoch) == (leader.broker_id, 0)
                assert follower.following

    def test_acks_all_is_answered_once_every_replica_has_the_batch(self, cluster):
        """An acks=all produce waits for the followers' acks; then the high watermark covers
        it, the answer is NONE, the three logs are byte for byte the same, and the followers
        learn the high watermark shortly after."""
        cluster.create_topic("t")
        leader = cluster.leader("t")
        response = cluster.produce(leader, "t", [b"a", b"b"])
        assert isinstance(response, defer.Deferred) and not response.called
        cluster.settle()
        assert outcome(response)["error_code"] == ErrorCode.NONE
        assert leader.broker.partitions["t", 0].high_watermark == 2
        copies = {log_bytes(node, "t") for node in cluster.nodes.values()}
        assert len(copies) == 1 and copies != {b""}
        cluster.wait(HW_PUSH_DELAY_S * 2)  # the HW-only push waits for a data push a while
        for node in cluster.nodes.values():
            if node is not leader:
                assert node.broker.followers["t", 0].high_watermark == 2

    def test_consumers_see_nothing_above_the_high_watermark(self, cluster):
        """With the followers cut off, an acks=1 append is in the leader's log but not
        committed: ListOffsets latest and fetches stop at the high watermark."""
        cluster.create_topic("t")
        leader = cluster.leader("t")
        others = tuple(n.broker_id for n in cluster.nodes.values() if n is not leader)
        assert outcome(cluster.produce(leader, "t", [b"x"], acks=1))["error_code"] == 0
        cluster.settle(cut=others)
        partition = leader.broker.partitions["t", 0]
        assert (partition.log.log_end_offset, partition.high_watermark) == (1, 0)
        cluster.settle()
        assert partition.high_watermark == 1

    def test_too_few_in_sync_replicas_refuse_acks_all_but_not_acks_1(self, cluster):
        """min.insync.replicas=2 and two followers lost: the controller shrinks the ISR to
        the leader, acks=all gets NOT_ENOUGH_REPLICAS with nothing written, acks=1 works."""
        cluster.create_topic("t", **{"min.insync.replicas": "2"})
        leader = cluster.leader("t")
        for node in cluster.nodes.values():
            if node is not leader:
                node.kill()
        cluster.settle()
        partition = leader.broker.partitions["t", 0]
        assert partition.isr == (leader.broker_id,)
        refused = outcome(cluster.produce(leader, "t", [b"x"]))
        assert refused["error_code"] == ErrorCode.NOT_ENOUGH_REPLICAS
        assert partition.log.log_end_offset == 0
        assert outcome(cluster.produce(leader, "t", [b"y"], acks=1))["error_code"] == 0
        assert partition.high_watermark == 0  # min.insync holds the HW too (KAFKA-15583)

    def test_an_acks_all_wait_ends_with_request_timed_out(self, cluster):
        """A follower that never acknowledges: the produce answers REQUEST_TIMED_OUT after
        its timeout (the batch stays written)."""
        cluster.create_topic("t")
        leader = cluster.leader("t")
        others = tuple(n.broker_id for n in cluster.nodes.values() if n is not leader)
        response = cluster.produce(leader, "t", [b"x"], timeout_ms=1000)
        cluster.wait(1.5, cut=others)
        assert outcome(response)["error_code"] == ErrorCode.REQUEST_TIMED_OUT
        assert leader.broker.partitions["t", 0].log.log_end_offset == 1


class FailoverTests:
    def test_the_controller_elects_an_in_sync_follower_with_the_next_epoch(self, cluster):
        """The leader dies: the first live ISR member leads at epoch 1, keeps every
        acknowledged record, accepts acks=all with the survivor, and the survivor follows."""
        cluster.create_topic("t")
        old = cluster.leader("t")
        assert _settled(cluster, old)
        old.kill()
        cluster.settle()
        new = cluster.leader("t")
        assert new is not old
        partition = new.broker.partitions["t", 0]
        assert partition.leader_epoch == 1
        assert partition.high_watermark == 1
        response = cluster.produce(new, "t", [b"b"])
        cluster.settle()
        assert outcome(response)["error_code"] == ErrorCode.NONE
        survivor = next(n for n in cluster.nodes.values() if n.alive and n is not new)
        assert survivor.broker.followers["t", 0].leader_id == new.broker_id
        assert log_bytes(survivor, "t") == log_bytes(new, "t")

    def test_a_produce_to_a_deposed_leader_is_refused(self, cluster, monkeypatch):
        """The leader's registration ends and it cannot register again (cut off from the
        store): it stops leading, another replica leads at epoch 1, and the old leader's
        broker answers NOT_LEADER_OR_FOLLOWER."""
        cluster.create_topic("t")
        old = cluster.leader("t")
        monkeypatch.setattr(old.broker, "_register", defer.Deferred)
        fired(old.broker.registration.close())
        cluster.settle()
        assert ("t", 0) not in old.broker.partitions
        new = cluster.leader("t")
        assert new is not old and new.broker.partitions["t", 0].leader_epoch == 1
        refused = outcome(cluster.produce(old, "t", [b"x"]))
        assert refused["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER

    def test_a_leader_past_its_lease_deadline_serves_nothing(self, cluster):
        """The lease deadline passed (a paused process that resumed): before anyone has been
        told, appends and fetches of the partition are refused."""
        cluster.create_topic("t")
        leader = cluster.leader("t")
        leader.broker.registration.deadline.deadline = cluster.clock.seconds() - 1
        refused = outcome(cluster.produce(leader, "t", [b"x"], acks=1))
        assert refused["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER
        partition = leader.broker.partitions["t", 0]
        assert partition.log.log_end_offset == 0
        assert partition.check_epoch(-1) == ErrorCode.NOT_LEADER_OR_FOLLOWER

    def test_a_lagging_follower_leaves_the_isr_and_rejoins_after_catching_up(self, cluster):
        """A follower cut off beyond replica.lag.time.max.ms leaves the ISR (a fenced write
        by the leader); acks=all goes on with two; reconnected, it catches up and rejoins."""
        cluster.create_topic("t")
        leader = cluster.leader("t")
        slow = next(n for n in cluster.nodes.values() if n is not leader)
        partition = leader.broker.partitions["t", 0]
        response = cluster.produce(leader, "t", [b"a"])
        cluster.wait(LAG_MS / 1000 + 3, cut=(slow.broker_id,))
        assert slow.broker_id not in partition.isr
        assert slow.broker_id not in fired(cluster.store.partition_states("t"))[0].isr
        assert outcome(response)["error_code"] == ErrorCode.NONE
        cluster.settle()
        cluster.wait(RETRY_S * 2)
        assert slow.broker_id in partition.isr
        assert log_bytes(slow, "t") == log_bytes(leader, "t")


class DivergenceTests:
    def test_a_returning_leader_truncates_its_uncommitted_tail_and_converges(self, cluster):
        """KIP-101: the leader appends a record its followers never get (acks=1) and dies; a
        follower leads at epoch 1 and takes new writes at the same offset; the old leader
        comes back as a follower, truncates its tail by the epochs, and its log becomes the
        new leader's byte for byte."""
        cluster.create_topic("t")
        old = cluster.leader("t")
        others = tuple(n.broker_id for n in cluster.nodes.values() if n is not old)
        assert _settled(cluster, old)
        assert outcome(cluster.produce(old, "t", [b"lost"], acks=1))["error_code"] == 0
        cluster.settle(cut=others)
        old.kill()
        cluster.settle()
        new = cluster.leader("t")
        response = cluster.produce(new, "t", [b"kept"])
        cluster.settle()
        assert outcome(response)["error_code"] == ErrorCode.NONE
        old.restart()
        cluster.wait(RETRY_S * 3)
        follower = old.broker.followers["t", 0]
        assert follower.following and follower.leader_epoch == 1
        assert log_bytes(old, "t") == log_bytes(new, "t")
        assert b"lost" not in log_bytes(old, "t") and b"kept" in log_bytes(old, "t")
        assert old.broker_id in new.broker.partitions["t", 0].isr

    def test_a_restarted_leader_with_no_rival_leads_again_under_a_new_epoch(self):
        """One broker, RF=1: after a restart the controller refreshes its leadership, so the
        broker never appends under the epoch of its previous life."""
        single = MemoryCluster(size=1)
        try:
            single.create_topic("t", replication_factor=1)
            node = single.nodes[1]
            assert _settled(single, node)
            node.kill()
            node.restart()
            single.settle()
            partition = node.broker.partitions["t", 0]
            assert partition.leader_epoch == 1
            assert partition.log.epochs.entries[-1] == (1, 1)
        finally:
            for node in single.nodes.values():
                fired(node.broker.stop())


def _settled(cluster: MemoryCluster, node: Node) -> bool:
    response = cluster.produce(node, "t", [b"a"])
    cluster.settle()
    return outcome(response)["error_code"] == ErrorCode.NONE
