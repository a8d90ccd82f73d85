"""ListOffsets with ``replica_id`` -2 (Kafka's DEBUGGING_REPLICA_ID) on the in-memory cluster:
any replica answers with its own log end offset, while consumers (-1) still get the leader's
high watermark and only from the leader.

The cluster is the three-broker ``MemoryCluster`` of ``test_cluster_in_memory`` (pytest puts
this directory on ``sys.path``, as for the other test modules that share helpers).
"""

from __future__ import annotations

from memory_cluster import T0, MemoryCluster, Node, outcome

from tmq.broker import data_apis
from tmq.protocol.errors import ErrorCode
from tmq.protocol.headers import RequestHeader
from tmq.protocol.records import Record, build_batch

LATEST, EARLIEST = -1, -2
CONSUMER, DEBUGGING = -1, -2
LATER_MS = T0 * 1000 + 60_000  # the timestamp of the records written above the HW


def list_offset(
    node: Node, replica_id: int, timestamp: int, topic: str = "t", epoch: int = -1
) -> dict:
    """The single partition entry of a ListOffsets v5 answered by ``node``."""
    request = {
        "replica_id": replica_id,
        "isolation_level": 0,
        "topics": [
            {
                "name": topic,
                "partitions": [
                    {"partition_index": 0, "current_leader_epoch": epoch, "timestamp": timestamp}
                ],
            }
        ],
    }
    header = RequestHeader(2, 5, 1, "test", {})
    return data_apis.list_offsets(node.broker, header, request)["topics"][0]["partitions"][0]


def produce_at(cluster: MemoryCluster, node: Node, timestamp_ms: int, count: int) -> dict:
    """Send ``count`` records stamped ``timestamp_ms`` to ``node`` with acks=1; the answer."""
    records = [Record(i, 0, None, b"v%d" % i) for i in range(count)]
    request = {
        "transactional_id": None,
        "acks": 1,
        "timeout_ms": 30_000,
        "topic_data": [
            {
                "name": "t",
                "partition_data": [
                    {"index": 0, "records": build_batch(records, base_timestamp=timestamp_ms)}
                ],
            }
        ],
    }
    return outcome(data_apis.produce(node.broker, RequestHeader(0, 7, 1, "test", {}), request))


def staggered(cluster: MemoryCluster) -> tuple[Node, Node, Node]:
    """Topic ``t`` (RF=3) whose three replicas end at different offsets: 2 records
    committed everywhere, then 1 that only the first follower got (the second is cut off),
    then 1 that only the leader has. Returns (leader, first follower, second follower):
    LEOs 4, 3, 2 and a high watermark of 2 (the cut-off follower is still in the ISR)."""
    cluster.create_topic("t")
    leader = cluster.leader("t")
    first, second = sorted(
        (n for n in cluster.nodes.values() if n is not leader), key=lambda n: n.broker_id
    )
    committed = cluster.produce(leader, "t", [b"a", b"b"])
    cluster.settle()
    assert outcome(committed)["error_code"] == ErrorCode.NONE
    assert produce_at(cluster, leader, LATER_MS, 1)["error_code"] == ErrorCode.NONE
    cluster.settle(cut=(second.broker_id,))
    assert produce_at(cluster, leader, LATER_MS, 1)["error_code"] == ErrorCode.NONE
    cluster.settle(cut=(first.broker_id, second.broker_id))
    partition = leader.broker.partitions["t", 0]
    assert (partition.log.log_end_offset, partition.high_watermark) == (4, 2)
    assert first.broker.followers["t", 0].log.log_end_offset == 3
    assert second.broker.followers["t", 0].log.log_end_offset == 2
    return leader, first, second


class DebuggingReplicaTests:
    def test_latest_is_each_replicas_log_end_offset(self, cluster):
        """replica_id -2, LATEST: the leader and both followers answer, each with its own log
        end offset (4, 3, 2), not the high watermark (2), and with the epoch it knows."""
        leader, first, second = staggered(cluster)
        for node, end in ((leader, 4), (first, 3), (second, 2)):
            entry = list_offset(node, DEBUGGING, LATEST)
            assert entry["error_code"] == ErrorCode.NONE
            assert (entry["offset"], entry["leader_epoch"]) == (end, 0)

    def test_earliest_and_timestamps_read_the_replicas_own_log(self, cluster):
        """replica_id -2: EARLIEST is the replica's log start; a timestamp finds records up to
        its log end offset, so records above the high watermark are found where the replica
        has them and not where it does not."""
        leader, first, second = staggered(cluster)
        for node in (leader, first, second):
            assert list_offset(node, DEBUGGING, EARLIEST)["offset"] == 0
        assert list_offset(leader, DEBUGGING, LATER_MS)["offset"] == 2
        assert list_offset(first, DEBUGGING, LATER_MS)["offset"] == 2
        missing = list_offset(second, DEBUGGING, LATER_MS)
        assert (missing["error_code"], missing.get("offset", -1)) == (ErrorCode.NONE, -1)

    def test_the_epoch_is_not_checked(self, cluster):
        """A debugging read carries no fencing: a current_leader_epoch the replicas do not
        know is not refused."""
        leader, first, _ = staggered(cluster)
        for node in (leader, first):
            entry = list_offset(node, DEBUGGING, LATEST, epoch=7)
            assert entry["error_code"] == ErrorCode.NONE

    def test_a_broker_without_a_replica_answers_not_leader_or_follower(self, cluster):
        """replica_id -2 about a partition this broker holds no replica of:
        NOT_LEADER_OR_FOLLOWER; about a topic that does not exist: UNKNOWN_TOPIC_OR_PARTITION."""
        cluster.create_topic("t", replication_factor=1)
        leader = cluster.leader("t")
        for node in cluster.nodes.values():
            if node is not leader:
                entry = list_offset(node, DEBUGGING, LATEST)
                assert entry["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER
        entry = list_offset(leader, DEBUGGING, LATEST, topic="nope")
        assert entry["error_code"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


class ConsumerListOffsetsTests:
    def test_a_follower_refuses_a_consumer(self, cluster):
        """replica_id -1 asked of a follower: NOT_LEADER_OR_FOLLOWER, whatever the timestamp."""
        _, first, second = staggered(cluster)
        for node in (first, second):
            for timestamp in (LATEST, EARLIEST, LATER_MS):
                entry = list_offset(node, CONSUMER, timestamp)
                assert entry["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER

    def test_latest_on_the_leader_stays_the_high_watermark(self, cluster):
        """replica_id -1 on the leader: LATEST is the high watermark (2, below the LEO 4); a
        timestamp only stamped above the high watermark finds nothing; epochs are fenced."""
        leader, _, _ = staggered(cluster)
        entry = list_offset(leader, CONSUMER, LATEST)
        assert (entry["error_code"], entry["offset"]) == (ErrorCode.NONE, 2)
        assert list_offset(leader, CONSUMER, LATER_MS).get("offset", -1) == -1
        fenced = list_offset(leader, CONSUMER, LATEST, epoch=7)
        assert fenced["error_code"] == ErrorCode.UNKNOWN_LEADER_EPOCH
