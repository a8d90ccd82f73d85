"""Which broker coordinates a group (FindCoordinator), and offset commits through any broker,
on the in-memory cluster (``memory_cluster``)."""

from __future__ import annotations

from memory_cluster import MemoryCluster, fired
from twisted.internet import defer

from tmq.broker import admin_apis
from tmq.protocol.errors import ErrorCode
from tmq.protocol.headers import RequestHeader

GROUPS = [f"group-{i}" for i in range(200)]


def find(node, group: str) -> dict:
    request = {"key": group, "key_type": 0}
    return admin_apis.find_coordinator(node.broker, RequestHeader(10, 2, 1, "t", {}), request)


class CoordinatorPlacementTests:
    def test_every_broker_names_the_same_live_coordinator(self, cluster):
        """Each group has one coordinator, the same whichever broker is asked, with its
        advertised address; the groups spread over all three brokers."""
        chosen = {}
        for group in GROUPS:
            answers = {
                (a["error_code"], a["node_id"], a["host"], a["port"])
                for a in (find(node, group) for node in cluster.nodes.values())
            }
            assert len(answers) == 1
            ((error, node_id, host, port),) = answers
            assert error == ErrorCode.NONE
            assert (host, port) == ("127.0.0.1", cluster.nodes[node_id].port)
            chosen[group] = node_id
        assert set(chosen.values()) == {1, 2, 3}

    def test_only_the_groups_of_a_lost_broker_move(self, cluster):
        """When broker 2 stops, its groups move to the live brokers and every other group
        keeps its coordinator."""
        before = {g: find(cluster.nodes[1], g)["node_id"] for g in GROUPS}
        cluster.nodes[2].kill()
        cluster.settle()
        after = {g: find(cluster.nodes[1], g)["node_id"] for g in GROUPS}
        for group in GROUPS:
            if before[group] == 2:
                assert after[group] in (1, 3)
            else:
                assert after[group] == before[group]


def commit_request(group: str, offset: int) -> dict:
    return {
        "group_id": group,
        "generation_id": -1,
        "member_id": "",
        "group_instance_id": None,
        "retention_time_ms": -1,
        "topics": [
            {
                "name": "t",
                "partitions": [
                    {
                        "partition_index": 0,
                        "committed_offset": offset,
                        "committed_leader_epoch": 0,
                        "committed_metadata": None,
                    }
                ],
            }
        ],
    }


def commit(node, group: str, offset: int) -> int:
    header = RequestHeader(8, 7, 1, "t", {})
    answer = admin_apis.offset_commit(node.broker, header, commit_request(group, offset))
    if isinstance(answer, defer.Deferred):
        answer = fired(answer)
    return answer["topics"][0]["partitions"][0]["error_code"]


class OffsetCommitTests:
    def test_the_coordinator_stores_a_commit_of_a_partition_led_elsewhere(self, cluster):
        """A simple commit (generation -1) at the group's coordinator is stored even when that
        broker does not lead the partition; the store has it."""
        cluster.create_topic("t")
        leader = cluster.leader("t")
        group = next(g for g in GROUPS if find(leader, g)["node_id"] != leader.broker_id)
        coordinator = cluster.nodes[find(leader, group)["node_id"]]
        assert commit(coordinator, group, 42) == ErrorCode.NONE
        assert fired(cluster.store.fetch_offsets(group, [("t", 0)]))[("t", 0)].offset == 42

    def test_other_brokers_answer_not_coordinator(self, cluster):
        """A commit sent to a broker that does not coordinate the group stores nothing and
        is answered NOT_COORDINATOR, so the client looks the coordinator up again."""
        cluster.create_topic("t")
        group = GROUPS[0]
        owner = find(cluster.nodes[1], group)["node_id"]
        other = next(n for i, n in cluster.nodes.items() if i != owner)
        assert commit(other, group, 7) == ErrorCode.NOT_COORDINATOR
        assert fired(cluster.store.fetch_offsets(group, [("t", 0)])) == {}


class OffsetRetentionTests:
    def test_an_empty_groups_offsets_expire_after_the_retention(self):
        """A group that joined, committed and left is forgotten, offsets and all, once the
        retention checks have seen it empty for offsets.retention.minutes; a group that
        still has a (heartbeating) member keeps its offsets."""
        cluster = MemoryCluster(offsets_retention_minutes=1)
        try:
            self.check_retention(cluster)
        finally:
            for node in cluster.nodes.values():
                fired(node.broker.stop())

    @staticmethod
    def check_retention(cluster):
        cluster.create_topic("t")
        coordinator = cluster.nodes[find(cluster.nodes[1], GROUPS[0])["node_id"]]
        groups = coordinator.broker.groups
        me = coordinator.broker_id
        gone, kept = [g for g in GROUPS if find(cluster.nodes[1], g)["node_id"] == me][:2]
        members = {}
        for group in (gone, kept):
            joined = groups.join(
                group, member_id="", client_id="c", client_host="", session_timeout_ms=30_000,
                rebalance_timeout_ms=30_000, protocol_type="consumer",
                protocols=[("range", b"")], require_known_member_id=False,
            )  # fmt: skip
            cluster.wait(3.5)  # the initial rebalance delay
            members[group] = fired(joined).member_id
            fired(groups.sync(group, generation_id=1, member_id=members[group], assignments={}))
            assert commit_as(coordinator, group, members[group], 1, 11) == ErrorCode.NONE
        groups.leave(gone, [members[gone]])
        coordinator.broker.expire_group_offsets()  # seen empty now
        for _ in range(5):
            cluster.clock.advance(10)
            assert groups.heartbeat(kept, generation_id=1, member_id=members[kept]) == 0
            coordinator.broker.expire_group_offsets()
        cluster.settle()
        assert fired(cluster.store.fetch_offsets(gone, None)) != {}  # 50 s: not yet
        cluster.clock.advance(10)
        coordinator.broker.expire_group_offsets()
        cluster.settle()
        assert fired(cluster.store.fetch_offsets(gone, None)) == {}
        assert [g.group_id for g in groups.groups()] == [kept]
        assert fired(cluster.store.fetch_offsets(kept, None))[("t", 0)].offset == 11

    def test_offsets_of_a_group_without_members_expire_by_commit_time(self):
        """Offsets committed without joining (generation -1) expire offsets.retention.minutes
        after their commit, once two checks in a row found the group without members; a
        group that committed again meanwhile keeps its offsets, and so does one that another
        broker coordinates (this broker's checks leave it alone)."""
        cluster = MemoryCluster(offsets_retention_minutes=1)
        try:
            cluster.create_topic("t")
            node = cluster.nodes[1]
            mine = [g for g in GROUPS if find(node, g)["node_id"] == 1][:2]
            elsewhere = next(g for g in GROUPS if find(node, g)["node_id"] != 1)
            other = cluster.nodes[find(node, elsewhere)["node_id"]]
            for group in mine:
                assert commit(node, group, 5) == ErrorCode.NONE
            assert commit(other, elsewhere, 5) == ErrorCode.NONE
            cluster.clock.advance(61)
            assert commit(node, mine[1], 6) == ErrorCode.NONE  # committed again
            node.broker.expire_group_offsets()  # past the retention, but the first sighting
            cluster.settle()
            assert fired(cluster.store.fetch_offsets(mine[0], None)) != {}
            cluster.clock.advance(10)
            node.broker.expire_group_offsets()
            cluster.settle()
            assert fired(cluster.store.fetch_offsets(mine[0], None)) == {}
            assert fired(cluster.store.fetch_offsets(mine[1], None))[("t", 0)].offset == 6
            assert fired(cluster.store.fetch_offsets(elsewhere, None))[("t", 0)].offset == 5
            assert fired(cluster.store.offset_groups()) == sorted([mine[1], elsewhere])
        finally:
            for member in cluster.nodes.values():
                fired(member.broker.stop())


def commit_as(node, group: str, member_id: str, generation: int, offset: int) -> int:
    request = commit_request(group, offset)
    request.update(generation_id=generation, member_id=member_id)
    answer = admin_apis.offset_commit(node.broker, RequestHeader(8, 7, 1, "t", {}), request)
    if isinstance(answer, defer.Deferred):
        answer = fired(answer)
    return answer["topics"][0]["partitions"][0]["error_code"]


class LapsedCoordinatorTests:
    def test_a_coordinator_past_its_lease_refuses_and_forgets_its_groups(self, cluster):
        """Past its lease deadline a coordinator answers NOT_COORDINATOR to commits and group
        requests (another broker may have taken its groups over); when the registration
        ends it forgets its groups, so their stale generations are never accepted again."""
        cluster.create_topic("t")
        node = cluster.nodes[find(cluster.nodes[1], GROUPS[0])["node_id"]]
        group = next(g for g in GROUPS if find(cluster.nodes[1], g)["node_id"] == node.broker_id)
        joined = node.broker.groups.join(
            group, member_id="", client_id="c", client_host="", session_timeout_ms=30_000,
            rebalance_timeout_ms=30_000, protocol_type="consumer",
            protocols=[("range", b"")], require_known_member_id=False,
        )  # fmt: skip
        cluster.wait(3.5)
        member = fired(joined).member_id
        fired(node.broker.groups.sync(group, generation_id=1, member_id=member, assignments={}))
        assert commit_as(node, group, member, 1, 10) == ErrorCode.NONE
        node.broker.registration.deadline.deadline = cluster.clock.seconds() - 1
        assert commit_as(node, group, member, 1, 5) == ErrorCode.NOT_COORDINATOR
        assert find(node, group)["error_code"] == ErrorCode.NONE  # the lookup still answers
        fired(node.broker.registration.close())
        cluster.settle()
        assert node.broker.groups.groups() == []
        assert commit_as(node, group, member, 1, 5) in (
            ErrorCode.NOT_COORDINATOR,
            ErrorCode.ILLEGAL_GENERATION,
            ErrorCode.UNKNOWN_MEMBER_ID,
        )
        assert fired(cluster.store.fetch_offsets(group, None))[("t", 0)].offset == 10
