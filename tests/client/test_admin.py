"""Admin against the fake cluster: topics created and deleted on the controller, described."""

from __future__ import annotations

from fake_kafka import FakeKafka, FakeNetwork
from twisted.trial.unittest import SynchronousTestCase

from tmq.client.admin import Admin, ClusterInfo, NewTopic
from tmq.client.cluster import Cluster
from tmq.client.errors import BrokerResponseError
from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode


class AdminTests(SynchronousTestCase):
    """Topic administration; broker 2 is the controller."""

    def setUp(self):
        self.kafka = FakeKafka(broker_ids=(1, 2, 3))
        self.kafka.controller_id = 2
        self.network = FakeNetwork(self.kafka)
        self.cluster = Cluster(self.kafka.clock, "broker-1:9092", connect=self.network.connect)
        self.admin = Admin(self.cluster)

    def resolve(self, d):
        self.network.elapse(1)
        return self.successResultOf(d)

    def test_create_topics_on_the_controller(self):
        """CreateTopics goes to the controller with partitions, replication and configs."""
        created = self.admin.create_topics(
            [NewTopic("gpu", 6, 3, {"retention.ms": "86400000"}), NewTopic("log")]
        )
        self.assertEqual(self.resolve(created), {"gpu": None, "log": None})
        self.assertEqual(len(self.kafka.topics()["gpu"]), 6)
        self.assertEqual(self.kafka.topic_configs["gpu"], {"retention.ms": "86400000"})
        (request,) = self.kafka.brokers[2].requests_of(ApiKey.CREATE_TOPICS)
        self.assertEqual(
            [(t.name, t.num_partitions, t.replication_factor) for t in request.topics],
            [("gpu", 6, 3), ("log", 1, 1)],
        )
        self.assertEqual(self.kafka.brokers[1].requests_of(ApiKey.CREATE_TOPICS), [])

    def test_each_topic_has_its_own_outcome(self):
        """A refused topic reports its error; the others are created."""
        self.kafka.create_topic("exists")
        created = self.admin.create_topics(
            [NewTopic("exists"), NewTopic("new"), NewTopic("wide", 1, 9)]
        )
        outcomes = self.resolve(created)
        self.assertIsNone(outcomes["new"])
        self.assertEqual(outcomes["exists"].error_code, ErrorCode.TOPIC_ALREADY_EXISTS)
        self.assertEqual(outcomes["wide"].error_code, ErrorCode.INVALID_REPLICATION_FACTOR)

    def test_create_topic_fails_with_the_error(self):
        """The single-topic call fails with the topic's error."""
        self.kafka.create_topic("exists")
        created = self.admin.create_topic("exists")
        self.network.elapse(1)
        failure = self.failureResultOf(created, BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.TOPIC_ALREADY_EXISTS)

    def test_validate_only_creates_nothing(self):
        """``validate_only`` checks the request without creating the topic."""
        created = self.admin.create_topics([NewTopic("dry")], validate_only=True)
        self.assertEqual(self.resolve(created), {"dry": None})
        self.assertNotIn("dry", self.kafka.topics())

    def test_moved_controller_is_followed(self):
        """NOT_CONTROLLER: metadata is read again and the topic created on the new controller."""
        self.kafka.controller_id = 3
        self.kafka.stale_controller_ids = [2]
        self.resolve(self.admin.create_topic("moved"))
        self.assertIn("moved", self.kafka.topics())
        self.assertEqual(len(self.kafka.brokers[2].requests_of(ApiKey.CREATE_TOPICS)), 1)
        self.assertEqual(len(self.kafka.brokers[3].requests_of(ApiKey.CREATE_TOPICS)), 1)

    def test_delete_topics(self):
        """DeleteTopics removes existing topics and reports unknown ones."""
        self.kafka.create_topic("gone")
        deleted = self.admin.delete_topics(["gone", "never"])
        outcomes = self.resolve(deleted)
        self.assertIsNone(outcomes["gone"])
        self.assertEqual(outcomes["never"].error_code, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        self.assertNotIn("gone", self.kafka.topics())

    def test_describe_and_list_topics(self):
        """Topics are described with partitions and leaders; unknown names are an error."""
        self.kafka.create_topic("gpu", partitions=3)
        self.kafka.create_topic("log")
        described = self.resolve(self.admin.describe_topics(["gpu"]))
        self.assertEqual(described["gpu"].partition_count, 3)
        self.assertEqual(described["gpu"].partitions[1].leader, 2)
        self.assertEqual(self.resolve(self.admin.list_topics()), ["gpu", "log"])
        missing = self.admin.describe_topics(["nope"])
        self.network.elapse(1)
        self.failureResultOf(missing, BrokerResponseError)

    def test_describe_cluster(self):
        """Cluster id, controller and brokers come from Metadata."""
        info = self.resolve(self.admin.describe_cluster())
        self.assertIsInstance(info, ClusterInfo)
        self.assertEqual((info.cluster_id, info.controller_id), ("fake-cluster", 2))
        self.assertEqual([b.node_id for b in info.brokers], [1, 2, 3])
