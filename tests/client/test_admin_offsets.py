"""``Admin.describe_offsets`` against the fake cluster: the leader's high watermark and each
replica's log end offset, through ListOffsets as a consumer (-1) and as a debugging tool (-2).

The fake brokers answer ListOffsets here as Kafka does for those two replica ids: a consumer
only from the leader, with the high watermark; the debugging id from any replica, with its own
log end offset (each broker's ``_list_offsets`` is replaced by ``ReplicaOffsets.answer``).
"""

from __future__ import annotations

from fake_kafka import FakeKafka, FakeNetwork
from twisted.trial.unittest import SynchronousTestCase

from tmq.client.admin import Admin, PartitionOffsets
from tmq.client.cluster import Cluster
from tmq.client.errors import BrokerResponseError
from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode


class ReplicaOffsets:
    """What each fake broker's replicas hold: ``ends[broker][(topic, index)]`` its log end
    offset, ``high_watermarks[(topic, index)]`` the leader's high watermark. A broker asked
    about a partition missing from its table answers NOT_LEADER_OR_FOLLOWER."""

    def __init__(self, kafka: FakeKafka):
        self.kafka = kafka
        self.ends: dict[int, dict[tuple[str, int], int]] = {b: {} for b in kafka.brokers}
        self.high_watermarks: dict[tuple[str, int], int] = {}
        for broker in kafka.brokers.values():
            broker._list_offsets = self._answerer(broker.node_id)

    def _answerer(self, node_id: int):
        def answer(body, version):
            topics = []
            for topic in body.topics:
                partitions = []
                for wanted in topic.partitions:
                    key = (topic.name, wanted.partition_index)
                    entry = {"partition_index": wanted.partition_index, "error_code": 0}
                    partition = self.kafka.partitions.get(key)
                    if partition is None:
                        entry["error_code"] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    elif body.replica_id == -2 and key in self.ends[node_id]:
                        entry["offset"] = self.ends[node_id][key]
                    elif (
                        body.replica_id == -1
                        and partition.leader == node_id
                        and key in self.high_watermarks
                    ):
                        entry["offset"] = self.high_watermarks[key]
                    else:
                        entry["error_code"] = ErrorCode.NOT_LEADER_OR_FOLLOWER
                    partitions.append(entry)
                topics.append({"name": topic.name, "partitions": partitions})
            return {"topics": topics}

        return answer


class DescribeOffsetsTests(SynchronousTestCase):
    """Topic ``gpu``: partition 0 led by broker 1, partition 1 by broker 2, each replicated
    on brokers 1, 2 and 3 at epoch 4."""

    def setUp(self):
        self.kafka = FakeKafka(broker_ids=(1, 2, 3))
        self.kafka.create_topic("gpu", partitions=2, leaders=[1, 2])
        for index in (0, 1):
            partition = self.kafka.partitions["gpu", index]
            partition.replicas = [partition.leader, *(b for b in (1, 2, 3) if b != index + 1)]
            partition.leader_epoch = 4
        self.offsets = ReplicaOffsets(self.kafka)
        self.offsets.high_watermarks.update({("gpu", 0): 7, ("gpu", 1): 20})
        self.offsets.ends[1].update({("gpu", 0): 9, ("gpu", 1): 20})
        self.offsets.ends[2].update({("gpu", 0): 8, ("gpu", 1): 21})
        self.offsets.ends[3].update({("gpu", 0): 7, ("gpu", 1): 20})
        self.network = FakeNetwork(self.kafka)
        self.cluster = Cluster(
            self.kafka.clock,
            "broker-1:9092",
            connect=self.network.connect,
            request_timeout_ms=1000,
        )
        self.admin = Admin(self.cluster)

    def describe(self, names=None, seconds: float = 1):
        described = self.admin.describe_offsets(names)
        self.network.elapse(seconds)
        return self.successResultOf(described)

    def list_offsets_requests(self, node_id: int) -> list:
        return self.kafka.brokers[node_id].requests_of(ApiKey.LIST_OFFSETS)

    def test_high_watermark_of_the_leader_and_log_end_offset_of_each_replica(self):
        """Each partition comes with its metadata, the leader's high watermark and every
        replica's log end offset, keyed by broker id in replica order."""
        described = self.describe(["gpu"])
        self.assertEqual(sorted(described), ["gpu"])
        first, second = described["gpu"][0], described["gpu"][1]
        self.assertIsInstance(first, PartitionOffsets)
        self.assertEqual((first.info.leader, first.info.leader_epoch), (1, 4))
        self.assertEqual(first.high_watermark, 7)
        self.assertEqual(first.log_end_offsets, {1: 9, 2: 8, 3: 7})
        self.assertEqual(list(first.log_end_offsets), list(first.info.replicas))
        self.assertEqual(second.high_watermark, 20)
        self.assertEqual(second.log_end_offsets, {2: 21, 1: 20, 3: 20})

    def test_one_request_per_broker_and_kind(self):
        """A leader gets one consumer ListOffsets (LATEST, fenced by the metadata's epoch) for
        the partitions it leads, and every replica broker one debugging ListOffsets (LATEST,
        replica_id -2, unfenced) for all its partitions."""
        self.describe()
        for node_id, led in ((1, [0]), (2, [1]), (3, [])):
            requests = self.list_offsets_requests(node_id)
            consumer = [r for r in requests if r.replica_id == -1]
            replica = [r for r in requests if r.replica_id == -2]
            self.assertEqual(len(consumer), 1 if led else 0)
            self.assertEqual(len(replica), 1)
            for request in consumer:
                (topic,) = request.topics
                asked = [
                    (p.partition_index, p.current_leader_epoch, p.timestamp)
                    for p in topic.partitions
                ]
                self.assertEqual(asked, [(index, 4, -1) for index in led])
            (topic,) = replica[0].topics
            asked = [
                (p.partition_index, p.current_leader_epoch, p.timestamp) for p in topic.partitions
            ]
            self.assertEqual(asked, [(0, -1, -1), (1, -1, -1)])

    def test_an_unreachable_broker_is_unknown(self):
        """A broker that refuses connections: its log end offsets are ``None``, and so is the
        high watermark of the partition it leads; the rest is still described."""
        self.kafka.brokers[2].up = False
        described = self.describe(["gpu"])
        self.assertEqual(described["gpu"][0].high_watermark, 7)
        self.assertEqual(described["gpu"][0].log_end_offsets, {1: 9, 2: None, 3: 7})
        self.assertIsNone(described["gpu"][1].high_watermark)
        self.assertEqual(described["gpu"][1].log_end_offsets, {2: None, 1: 20, 3: 20})

    def test_a_silent_broker_is_unknown_after_the_request_timeout(self):
        """A broker that never answers ListOffsets: once the request times out its values are
        ``None``; the others' answers are kept."""
        self.kafka.brokers[3].mute(ApiKey.LIST_OFFSETS)
        described = self.admin.describe_offsets(["gpu"])
        self.network.elapse(0.5)
        self.assertNoResult(described)
        self.network.elapse(1)
        described = self.successResultOf(described)
        self.assertEqual(described["gpu"][0].log_end_offsets, {1: 9, 2: 8, 3: None})
        self.assertEqual(described["gpu"][0].high_watermark, 7)

    def test_an_error_answer_is_unknown(self):
        """A replica that does not have the partition, and a leader that no longer leads,
        answer errors: those values are ``None``."""
        del self.offsets.ends[3]["gpu", 0]
        del self.offsets.high_watermarks["gpu", 1]  # broker 2 stopped leading since Metadata
        described = self.describe(["gpu"])
        self.assertEqual(described["gpu"][0].log_end_offsets, {1: 9, 2: 8, 3: None})
        self.assertEqual(described["gpu"][0].high_watermark, 7)
        self.assertIsNone(described["gpu"][1].high_watermark)
        self.assertEqual(described["gpu"][1].log_end_offsets, {2: 21, 1: 20, 3: 20})

    def test_a_partition_without_a_leader_has_no_high_watermark(self):
        """Leader -1 (offline): no consumer ListOffsets is sent for it and its high watermark
        is ``None``; its replicas still report their log end offsets."""
        self.kafka.partitions["gpu", 0].leader = -1
        described = self.describe(["gpu"])
        self.assertIsNone(described["gpu"][0].high_watermark)
        self.assertEqual(described["gpu"][0].log_end_offsets, {1: 9, 2: 8, 3: 7})
        consumer = [r for r in self.list_offsets_requests(1) if r.replica_id == -1]
        self.assertEqual(consumer, [])

    def test_an_unknown_topic_fails_as_describe_topics_does(self):
        """A named topic that does not exist: UNKNOWN_TOPIC_OR_PARTITION, nothing asked."""
        described = self.admin.describe_offsets(["nope"])
        self.network.elapse(1)
        failure = self.failureResultOf(described, BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        self.assertEqual(self.list_offsets_requests(1), [])
