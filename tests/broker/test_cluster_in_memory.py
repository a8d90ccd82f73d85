"""Three brokers in memory (``memory_cluster``): roles, acks=all, failover, the lease
deadline, the ISR, divergence."""

from __future__ import annotations

from memory_cluster import LAG_MS, MemoryCluster, Node, fired, log_bytes, outcome
from twisted.internet import defer

from tmq.broker.replica_fetcher import RETRY_S
from tmq.broker.replica_session import HW_PUSH_DELAY_S
from tmq.protocol.errors import ErrorCode


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

    def test_a_follower_behind_the_leaders_log_start_starts_over_there(self, cluster):
        """A follower comes back after retention deleted, on the leader, everything it holds:
        it empties its log, starts it at the leader's log start, copies the rest and
        rejoins the ISR."""
        cluster.create_topic("t", **{"segment.bytes": "400", "retention.bytes": "400"})
        leader = cluster.leader("t")
        away = next(n for n in cluster.nodes.values() if n is not leader)
        assert _settled(cluster, leader)
        away.kill()
        cluster.settle()
        for i in range(12):
            response = cluster.produce(leader, "t", [b"value-%02d" % i * 4])
            cluster.settle()
            assert outcome(response)["error_code"] == ErrorCode.NONE
        leader.broker.logs.apply_retention()
        start = leader.broker.partitions["t", 0].log_start_offset
        assert start > away.broker.logs.get_log("t", 0).log_end_offset
        away.restart()
        cluster.wait(RETRY_S * 3)
        log = away.broker.logs.get_log("t", 0)
        assert (log.log_start_offset, log.log_end_offset) == (start, 13)
        assert log_bytes(away, "t") == log_bytes(leader, "t")
        assert away.broker_id in leader.broker.partitions["t", 0].isr

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
