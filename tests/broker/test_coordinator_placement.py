"""Which broker coordinates a group (FindCoordinator), and offset commits through any broker,
on the in-memory cluster (``memory_cluster``)."""

from __future__ import annotations

from memory_cluster import fired

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


class OffsetCommitTests:
    def test_a_broker_that_does_not_lead_the_partition_stores_the_commit(self, cluster):
        """A simple commit (generation -1) of a partition led elsewhere is stored, and any
        broker reads it back."""
        cluster.create_topic("t")
        follower = next(n for n in cluster.nodes.values() if ("t", 0) not in n.broker.partitions)
        request = {
            "group_id": "g",
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
                            "committed_offset": 42,
                            "committed_leader_epoch": 0,
                            "committed_metadata": None,
                        }
                    ],
                }
            ],
        }
        answer = fired(
            admin_apis.offset_commit(follower.broker, RequestHeader(8, 7, 1, "t", {}), request)
        )
        assert answer["topics"][0]["partitions"][0]["error_code"] == ErrorCode.NONE
        stored = fired(cluster.store.fetch_offsets("g", [("t", 0)]))
        assert stored[("t", 0)].offset == 42
