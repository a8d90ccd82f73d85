"""Admin's group calls against the fake cluster: ListGroups on every broker, DescribeGroups at
each group's coordinator, committed offsets (OffsetFetch) and end offsets (ListOffsets)."""

from __future__ import annotations

from fake_kafka import FakeKafka, FakeNetwork
from kafka.protocol.consumer import ConsumerProtocolAssignment as KpAssignment
from twisted.trial.unittest import SynchronousTestCase

from tmq.client.admin import (
    Admin,
    GroupDescription,
    GroupList,
    GroupListing,
    GroupMember,
    GroupOffset,
)
from tmq.client.cluster import Cluster
from tmq.client.consumer import TopicPartition
from tmq.client.consumer_protocol import ConsumerAssignment
from tmq.client.errors import BrokerResponseError, ConnectionFailedError, UnsupportedVersionError
from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode


def assignment_bytes(assigned: dict[str, list[int]], user_data: bytes | None = None) -> bytes:
    """A v1 ConsumerProtocolAssignment as kafka-python encodes it."""
    partitions = [
        KpAssignment.TopicPartition(version=1, topic=topic, partitions=indexes)
        for topic, indexes in assigned.items()
    ]
    blob = KpAssignment(version=1, assigned_partitions=partitions, user_data=user_data)
    return bytes(blob.encode())


SINK_1 = {
    "member_id": "sink-1-3f2a",
    "group_instance_id": "sink-host-a",
    "client_id": "consumer-sink-1",
    "client_host": "/10.0.3.7",
    "member_metadata": b"\x00\x01",
    "member_assignment": assignment_bytes({"gpu": [0]}, b"ud"),
}
SINK_2 = {
    "member_id": "sink-2-9b1c",
    "client_id": "consumer-sink-2",
    "client_host": "/10.0.3.8",
    "member_assignment": assignment_bytes({"gpu": [1], "alerts": [0]}),
}


class GroupsCase(SynchronousTestCase):
    """Brokers 1, 2 and 3 (coordinator by default: 1); an admin bootstrapped from broker 1."""

    api_timeout_ms = 5_000

    def setUp(self):
        self.kafka = FakeKafka(broker_ids=(1, 2, 3))
        self.network = FakeNetwork(self.kafka)
        self.cluster = Cluster(
            self.kafka.clock,
            "broker-1:9092",
            connect=self.network.connect,
            request_timeout_ms=1000,
        )
        self.admin = Admin(self.cluster, api_timeout_ms=self.api_timeout_ms)

    def resolve(self, d, seconds: float = 2):
        self.network.elapse(seconds)
        return self.successResultOf(d)

    def requests(self, node_id: int, api_key: int) -> list:
        return self.kafka.brokers[node_id].requests_of(api_key)


class ListGroupsTests(GroupsCase):
    """list_groups: every live broker lists the groups it coordinates."""

    def test_every_broker_lists_its_groups_with_their_states(self):
        """Groups of brokers 1 and 2 and a group with only committed offsets are merged by
        group id, each with its protocol type, state and coordinator; each broker gets one
        ListGroups, and one DescribeGroups when it listed groups."""
        self.kafka.add_group("sink", coordinator=2, members=[SINK_1])
        self.kafka.add_group("connect", coordinator=1, protocol_type="connect", state="Empty")
        self.kafka.committed[("script", "gpu", 0)] = 5
        listed = self.resolve(self.admin.list_groups())
        self.assertEqual(
            listed,
            GroupList(
                [
                    GroupListing("connect", "connect", "Empty", 1),
                    GroupListing("script", "", "Empty", 1),
                    GroupListing("sink", "consumer", "Stable", 2),
                ],
                {},
            ),
        )
        for node_id in (1, 2, 3):
            self.assertEqual(len(self.requests(node_id, ApiKey.LIST_GROUPS)), 1)
        (described,) = self.requests(1, ApiKey.DESCRIBE_GROUPS)
        self.assertEqual(described.groups, ["connect", "script"])
        self.assertEqual(self.requests(3, ApiKey.DESCRIBE_GROUPS), [])

    def test_no_groups(self):
        """A cluster without groups lists none and reports no error."""
        self.assertEqual(self.resolve(self.admin.list_groups()), GroupList([], {}))

    def test_an_unreachable_broker_is_reported(self):
        """A broker that refuses connections is in ``errors``; the others' groups are listed."""
        self.kafka.add_group("sink", coordinator=2)
        self.kafka.add_group("lost", coordinator=3)
        self.kafka.brokers[3].up = False
        listed = self.resolve(self.admin.list_groups())
        self.assertEqual([g.group_id for g in listed.groups], ["sink"])
        self.assertEqual(list(listed.errors), [3])
        self.assertIsInstance(listed.errors[3], ConnectionFailedError)

    def test_a_loading_coordinator_is_asked_again(self):
        """COORDINATOR_LOAD_IN_PROGRESS is retriable: the broker is asked again after a
        backoff and its groups are listed."""
        self.kafka.add_group("sink", coordinator=2)
        self.kafka.brokers[2].fail_next(ApiKey.LIST_GROUPS, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
        listed = self.resolve(self.admin.list_groups())
        self.assertEqual([g.group_id for g in listed.groups], ["sink"])
        self.assertEqual(listed.errors, {})
        self.assertEqual(len(self.requests(2, ApiKey.LIST_GROUPS)), 2)

    def test_a_refusing_broker_is_reported_without_retry(self):
        """A non-retriable error (CLUSTER_AUTHORIZATION_FAILED) is reported for that broker at
        once."""
        self.kafka.brokers[2].fail_next(ApiKey.LIST_GROUPS, ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
        listed = self.resolve(self.admin.list_groups())
        self.assertEqual(listed.errors[2].error_code, ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
        self.assertEqual(len(self.requests(2, ApiKey.LIST_GROUPS)), 1)

    def test_a_coordinator_that_keeps_loading_is_reported_after_the_timeout(self):
        """A broker that answers COORDINATOR_LOAD_IN_PROGRESS until ``api_timeout_ms`` is
        reported with that error."""
        self.kafka.brokers[2].fail_next(
            ApiKey.LIST_GROUPS, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, times=1000
        )
        listed = self.admin.list_groups()
        self.network.elapse(3)
        self.assertNoResult(listed)
        listed = self.resolve(listed, seconds=3)
        self.assertEqual(listed.errors[2].error_code, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)

    def test_state_is_unknown_without_describe_groups(self):
        """A broker that does not advertise DescribeGroups still lists its groups, with state
        None."""
        self.kafka.add_group("sink", coordinator=2)
        del self.kafka.brokers[2].api_versions[ApiKey.DESCRIBE_GROUPS]
        listed = self.resolve(self.admin.list_groups())
        self.assertEqual(listed.groups, [GroupListing("sink", "consumer", None, 2)])

    def test_state_is_unknown_when_describe_answers_an_error(self):
        """A group the coordinator describes with an error code has state None."""
        self.kafka.add_group("sink", coordinator=2)
        self.kafka.brokers[2].fail_next(
            ApiKey.DESCRIBE_GROUPS, ErrorCode.GROUP_AUTHORIZATION_FAILED
        )
        listed = self.resolve(self.admin.list_groups())
        self.assertEqual(listed.groups, [GroupListing("sink", "consumer", None, 2)])

    def test_a_group_listed_twice_appears_once(self):
        """A group two brokers list (its coordinator moving) appears once, as the lower broker
        id listed it."""
        self.kafka.add_group("sink", coordinator=1)
        also = self.kafka.brokers[3]

        def list_groups(body, version):
            return {"groups": [{"group_id": "sink", "protocol_type": "consumer"}]}

        also._list_groups = list_groups
        listed = self.resolve(self.admin.list_groups())
        self.assertEqual(listed.groups, [GroupListing("sink", "consumer", "Stable", 1)])

    def test_fails_when_no_broker_answers_metadata(self):
        """Without any broker to ask for Metadata the call fails with the connection error."""
        for broker in self.kafka.brokers.values():
            broker.up = False
        listed = self.admin.list_groups()
        self.network.elapse(1)
        self.failureResultOf(listed, ConnectionFailedError)


class DescribeGroupsTests(GroupsCase):
    """describe_groups: DescribeGroups at each group's coordinator."""

    def test_each_group_is_described_by_its_coordinator(self):
        """Each group is asked of the broker FindCoordinator names; its state, protocol and
        members come back, with consumer assignments decoded."""
        self.kafka.add_group("sink", coordinator=2, members=[SINK_1, SINK_2])
        self.kafka.add_group("billing", coordinator=3, state="Empty", protocol="")
        described = self.resolve(self.admin.describe_groups(["sink", "billing"]))
        self.assertEqual(list(described), ["sink", "billing"])
        sink = described["sink"]
        self.assertIsInstance(sink, GroupDescription)
        self.assertEqual(
            (sink.group_id, sink.state, sink.protocol_type, sink.protocol, sink.coordinator),
            ("sink", "Stable", "consumer", "range", 2),
        )
        self.assertEqual(
            sink.members[0],
            GroupMember(
                member_id="sink-1-3f2a",
                group_instance_id="sink-host-a",
                client_id="consumer-sink-1",
                client_host="/10.0.3.7",
                raw_assignment=SINK_1["member_assignment"],
                assignment=ConsumerAssignment(1, (("gpu", (0,)),), b"ud"),
            ),
        )
        self.assertEqual(sink.members[1].group_instance_id, None)
        self.assertEqual(sink.members[1].assignment.partitions(), [("gpu", 1), ("alerts", 0)])
        self.assertEqual(described["billing"].members, [])
        self.assertEqual(described["billing"].coordinator, 3)
        (request,) = self.requests(2, ApiKey.DESCRIBE_GROUPS)
        self.assertEqual((request.groups, request.include_authorized_operations), (["sink"], False))
        self.assertEqual(self.requests(1, ApiKey.DESCRIBE_GROUPS), [])

    def test_other_protocol_types_are_not_decoded(self):
        """A group whose protocol type is not "consumer" keeps its assignments raw only."""
        member = {"member_id": "w1", "member_assignment": b"\x00\x01worker"}
        self.kafka.add_group("connect", protocol_type="connect", members=[member])
        (member,) = self.resolve(self.admin.describe_group("connect")).members
        self.assertEqual(member.raw_assignment, b"\x00\x01worker")
        self.assertIsNone(member.assignment)
        self.assertIsNone(member.assignment_error)

    def test_an_assignment_that_does_not_decode_is_kept_raw(self):
        """A consumer member's assignment that is not a ConsumerProtocolAssignment is kept
        raw, with the reason, and does not fail the call."""
        bad = b"\x00\x00\x00\x00\x00\x05ab"
        self.kafka.add_group("sink", members=[{"member_id": "m", "member_assignment": bad}])
        (member,) = self.resolve(self.admin.describe_group("sink")).members
        self.assertEqual(member.raw_assignment, bad)
        self.assertIsNone(member.assignment)
        self.assertIn("malformed assignment v0", member.assignment_error)

    def test_an_empty_assignment_is_no_assignment(self):
        """A member of a rebalancing group has no assignment bytes: nothing decoded, no error."""
        self.kafka.add_group("sink", state="PreparingRebalance", members=[{"member_id": "m"}])
        described = self.resolve(self.admin.describe_group("sink"))
        self.assertEqual(described.state, "PreparingRebalance")
        (member,) = described.members
        self.assertEqual(
            (member.raw_assignment, member.assignment, member.assignment_error), (b"", None, None)
        )

    def test_an_unknown_group_is_dead(self):
        """A group the coordinator does not know is described as Kafka does before v6: state
        Dead, no members."""
        described = self.resolve(self.admin.describe_group("nobody"))
        self.assertEqual((described.state, described.members), ("Dead", []))

    def test_a_moved_coordinator_is_looked_up_again(self):
        """After the group moves, the cached coordinator answers NOT_COORDINATOR: the
        coordinator is looked up again and the new one describes the group."""
        group = self.kafka.add_group("sink", coordinator=1)
        self.assertEqual(self.resolve(self.admin.describe_group("sink")).coordinator, 1)
        group.coordinator = 2
        described = self.resolve(self.admin.describe_group("sink"))
        self.assertEqual(described.coordinator, 2)
        self.assertEqual(len(self.requests(1, ApiKey.FIND_COORDINATOR)), 2)
        self.assertEqual(len(self.requests(1, ApiKey.DESCRIBE_GROUPS)), 2)

    def test_a_loading_coordinator_is_asked_again(self):
        """COORDINATOR_LOAD_IN_PROGRESS is retried at the same coordinator, not looked up
        again."""
        self.kafka.add_group("sink", coordinator=2)
        self.kafka.brokers[2].fail_next(
            ApiKey.DESCRIBE_GROUPS, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        )
        self.assertEqual(self.resolve(self.admin.describe_group("sink")).state, "Stable")
        self.assertEqual(len(self.requests(2, ApiKey.DESCRIBE_GROUPS)), 2)
        self.assertEqual(len(self.requests(1, ApiKey.FIND_COORDINATOR)), 1)

    def test_each_group_has_its_own_outcome(self):
        """A group answered with an error maps to that error; the other is still described."""
        self.kafka.add_group("sink", coordinator=2)
        self.kafka.add_group("secret", coordinator=3)
        self.kafka.brokers[3].fail_next(
            ApiKey.DESCRIBE_GROUPS, ErrorCode.GROUP_AUTHORIZATION_FAILED
        )
        described = self.resolve(self.admin.describe_groups(["sink", "secret", "sink"]))
        self.assertEqual(list(described), ["sink", "secret"])
        self.assertEqual(described["sink"].state, "Stable")
        self.assertIsInstance(described["secret"], BrokerResponseError)
        self.assertEqual(described["secret"].error_code, ErrorCode.GROUP_AUTHORIZATION_FAILED)
        self.assertEqual(len(self.requests(2, ApiKey.DESCRIBE_GROUPS)), 1)

    def test_describe_group_fails_with_the_error(self):
        """The single-group call fails with the group's error."""
        self.kafka.add_group("secret")
        self.kafka.brokers[1].fail_next(
            ApiKey.DESCRIBE_GROUPS, ErrorCode.GROUP_AUTHORIZATION_FAILED
        )
        described = self.admin.describe_group("secret")
        self.network.elapse(1)
        failure = self.failureResultOf(described, BrokerResponseError)
        self.assertEqual(failure.value.error_code, ErrorCode.GROUP_AUTHORIZATION_FAILED)
        self.assertIn("DescribeGroups 'secret'", str(failure.value))

    def test_no_coordinator_until_the_timeout(self):
        """FindCoordinator answering COORDINATOR_NOT_AVAILABLE is retried until
        ``api_timeout_ms``, then that error is the group's outcome."""
        self.kafka.brokers[1].fail_next(
            ApiKey.FIND_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE, times=1000
        )
        described = self.admin.describe_groups(["sink"])
        self.network.elapse(3)
        self.assertNoResult(described)
        outcome = self.resolve(described, seconds=3)["sink"]
        self.assertEqual(outcome.error_code, ErrorCode.COORDINATOR_NOT_AVAILABLE)


class GroupOffsetsTests(GroupsCase):
    """group_offsets: committed offsets from the coordinator, end offsets from the leaders.

    Topic ``gpu`` has partition 0 led by broker 1 (ends at 120) and partition 1 by broker 2
    (ends at 40); group ``sink`` is coordinated by broker 3."""

    def setUp(self):
        super().setUp()
        self.kafka.create_topic("gpu", partitions=2, leaders=[1, 2])
        self.kafka.partitions["gpu", 0].log_end_offset = 120
        self.kafka.partitions["gpu", 1].log_end_offset = 40
        self.kafka.add_group("sink", coordinator=3)

    def offsets(self, group: str = "sink", include=()):
        return self.resolve(self.admin.group_offsets(group, include))

    def test_committed_offsets_with_end_offsets_and_lag(self):
        """Every committed partition comes with its leader's end offset and the lag; the
        coordinator is asked for all partitions (null topics) and each leader once."""
        self.kafka.committed[("sink", "gpu", 0)] = 100
        self.kafka.committed[("sink", "gpu", 1)] = 40
        self.kafka.committed[("other", "gpu", 1)] = 1
        offsets = self.offsets()
        self.assertEqual(
            offsets,
            {
                TopicPartition("gpu", 0): GroupOffset("gpu", 0, 100, "", 120),
                TopicPartition("gpu", 1): GroupOffset("gpu", 1, 40, "", 40),
            },
        )
        self.assertEqual([o.lag for o in offsets.values()], [20, 0])
        (fetch,) = self.requests(3, ApiKey.OFFSET_FETCH)
        self.assertEqual((fetch.group_id, fetch.topics), ("sink", None))
        for node_id, index in ((1, 0), (2, 1)):
            (request,) = self.requests(node_id, ApiKey.LIST_OFFSETS)
            self.assertEqual(request.replica_id, -1)
            (topic,) = request.topics
            self.assertEqual(
                [(p.partition_index, p.timestamp) for p in topic.partitions], [(index, -1)]
            )

    def test_included_partitions_without_a_commit(self):
        """A partition asked for with ``include`` but never committed has committed None,
        its end offset, and no lag."""
        self.kafka.committed[("sink", "gpu", 0)] = 100
        offsets = self.offsets(include=[("gpu", 1), ("gpu", 0)])
        self.assertEqual(list(offsets), [("gpu", 0), ("gpu", 1)])
        self.assertEqual(offsets["gpu", 1], GroupOffset("gpu", 1, None, None, 40))
        self.assertIsNone(offsets["gpu", 1].lag)
        self.assertEqual(offsets["gpu", 0].committed, 100)

    def test_only_the_groups_partitions_are_asked_for_end_offsets(self):
        """End offsets are asked only for the partitions reported: partition 1's leader is not
        asked when only partition 0 was committed."""
        self.kafka.committed[("sink", "gpu", 0)] = 100
        self.assertEqual(list(self.offsets()), [("gpu", 0)])
        self.assertEqual(len(self.requests(1, ApiKey.LIST_OFFSETS)), 1)
        self.assertEqual(self.requests(2, ApiKey.LIST_OFFSETS), [])

    def test_a_group_without_offsets(self):
        """A group with no commits has no offsets; nothing else is asked."""
        self.assertEqual(self.offsets(), {})
        self.assertEqual(self.requests(1, ApiKey.LIST_OFFSETS), [])

    def test_a_deleted_topic_has_no_end_offset(self):
        """Offsets committed for a topic that no longer exists have no end offset and no lag."""
        self.kafka.committed[("sink", "gone", 0)] = 7
        offsets = self.offsets()
        self.assertEqual(offsets, {TopicPartition("gone", 0): GroupOffset("gone", 0, 7, "", None)})

    def test_an_unreachable_leader_leaves_its_end_offsets_unknown(self):
        """A leader that cannot be reached leaves its partitions' end offsets None; the other
        leader's are known."""
        self.kafka.committed[("sink", "gpu", 0)] = 100
        self.kafka.committed[("sink", "gpu", 1)] = 30
        self.kafka.brokers[2].up = False
        offsets = self.offsets()
        self.assertEqual(offsets["gpu", 0].end_offset, 120)
        self.assertIsNone(offsets["gpu", 1].end_offset)

    def test_a_moved_coordinator_is_looked_up_again(self):
        """The cached coordinator answering NOT_COORDINATOR (the group moved) is looked up
        again, and the new one answers."""
        self.kafka.committed[("sink", "gpu", 0)] = 100
        self.offsets()
        self.kafka.groups["sink"].coordinator = 2
        self.assertEqual(self.offsets()["gpu", 0].committed, 100)
        self.assertEqual(len(self.requests(3, ApiKey.OFFSET_FETCH)), 2)
        self.assertEqual(len(self.requests(2, ApiKey.OFFSET_FETCH)), 1)

    def test_offset_fetch_v1_cannot_list_a_group(self):
        """A coordinator with OffsetFetch v1 only cannot be asked for all of a group's
        partitions: UnsupportedVersionError."""
        self.kafka.brokers[3].api_versions[ApiKey.OFFSET_FETCH] = (1, 1)
        offsets = self.admin.group_offsets("sink")
        self.network.elapse(1)
        self.failureResultOf(offsets, UnsupportedVersionError)

    def test_lag_is_negative_below_a_truncated_log(self):
        """A committed offset beyond the end of a truncated log gives a negative lag."""
        self.assertEqual(GroupOffset("gpu", 0, 50, None, 45).lag, -5)
        self.assertIsNone(GroupOffset("gpu", 0, 50, None, None).lag)
