"""``tmq.groups.group``: a classic group's bookkeeping (states, leader, protocols) on its own."""

from __future__ import annotations

import pytest

from tmq.groups.group import Group, GroupState, JoinMember, Member


def member(member_id, protocols=(("range", b""),), protocol_type="consumer", rebalance_ms=1):
    return Member(
        member_id,
        group_instance_id=None,
        client_id="c",
        client_host="h",
        session_timeout_ms=10,
        rebalance_timeout_ms=rebalance_ms,
        protocol_type=protocol_type,
        protocols=tuple(protocols),
    )


class StateTests:
    def test_kafka_names(self):
        """States carry Kafka's spelling."""
        assert [s.value for s in GroupState] == [
            "Empty",
            "PreparingRebalance",
            "CompletingRebalance",
            "Stable",
            "Dead",
        ]

    @pytest.mark.parametrize(
        "path",
        [
            [GroupState.STABLE],
            [GroupState.COMPLETING_REBALANCE],
            [GroupState.PREPARING_REBALANCE, GroupState.STABLE],
            [GroupState.DEAD, GroupState.EMPTY],
        ],
    )
    def test_invalid_transitions_raise(self, path):
        """A transition Kafka does not allow is a bug: it raises."""
        group = Group("g")
        with pytest.raises(RuntimeError):
            for state in path:
                group.transition_to(state)

    def test_only_settled_groups_can_rebalance(self):
        """A rebalance may start from Empty, CompletingRebalance and Stable only."""
        group = Group("g")
        assert group.can_rebalance
        group.transition_to(GroupState.PREPARING_REBALANCE)
        assert not group.can_rebalance and group.previous_state is GroupState.EMPTY


class LeaderTests:
    def test_first_member_leads_and_the_next_oldest_takes_over(self):
        """The first member added leads; a removed leader hands over in join order."""
        group = Group("g")
        for member_id in ("a", "b", "c"):
            group.add(member(member_id))
        assert group.leader_id == "a"
        group.remove("b")
        group.remove("a")
        assert group.leader_id == "c"
        group.remove("c")
        assert group.leader_id is None

    def test_leader_that_did_not_rejoin_hands_over_to_a_joined_member(self):
        """At the end of a join phase a leader without a parked JoinGroup is replaced by the
        first member that has one; none joined: no leader can be elected."""
        group = Group("g")
        for member_id in ("a", "b", "c"):
            group.add(member(member_id))
        assert not group.elect_joined_leader()
        group.members["c"].join_waiter = object()
        assert group.elect_joined_leader() and group.leader_id == "c"
        group.members["a"].join_waiter = object()
        assert group.elect_joined_leader() and group.leader_id == "c"


class ProtocolTests:
    def test_empty_group_takes_any_protocol(self):
        """An empty group accepts any non-empty protocol type and list."""
        group = Group("g")
        assert group.supports_protocols("consumer", frozenset({"x"}))
        assert not group.supports_protocols("", frozenset({"x"}))
        assert not group.supports_protocols("consumer", frozenset())

    def test_joining_member_needs_a_common_protocol(self):
        """Out of Empty, a member needs the group's type and a protocol every member has."""
        group = Group("g")
        group.add(member("a", [("range", b""), ("rr", b"")]))
        group.add(member("b", [("rr", b"")]))
        group.transition_to(GroupState.PREPARING_REBALANCE)
        assert group.supports_protocols("consumer", frozenset({"rr", "sticky"}))
        assert not group.supports_protocols("consumer", frozenset({"range"}))
        assert not group.supports_protocols("connect", frozenset({"rr"}))

    def test_vote_and_tie(self):
        """The most voted common protocol wins; a tie goes to the earliest member's vote."""
        group = Group("g")
        group.add(member("a", [("rr", b""), ("range", b"")]))
        group.add(member("b", [("range", b""), ("rr", b"")]))
        assert group.select_protocol() == "rr"
        group.add(member("c", [("range", b""), ("rr", b"")]))
        assert group.select_protocol() == "range"

    def test_updates_keep_the_counts(self):
        """A member's new protocols replace its old ones in the group's counts."""
        group = Group("g")
        group.add(member("a", [("range", b"1")]))
        group.add(member("b", [("range", b"1")]))
        group.update_member(
            group.members["b"], (("rr", b"2"),), rebalance_timeout_ms=5, session_timeout_ms=7
        )
        assert group.candidate_protocols() == frozenset()
        group.update_member(
            group.members["a"], (("rr", b"3"),), rebalance_timeout_ms=1, session_timeout_ms=7
        )
        assert group.candidate_protocols() == frozenset({"rr"})
        assert group.rebalance_timeout_ms == 5

    def test_next_generation(self):
        """A join phase ending with members selects the protocol and lists the members with
        their metadata for it; ending without members leaves the group Empty."""
        group = Group("g")
        group.add(member("a", [("range", b"ma")]))
        group.transition_to(GroupState.PREPARING_REBALANCE)
        group.init_next_generation()
        assert (group.state, group.generation_id, group.protocol_name) == (
            GroupState.COMPLETING_REBALANCE,
            1,
            "range",
        )
        assert group.join_members() == (JoinMember("a", None, b"ma"),)
        group.remove("a")
        group.transition_to(GroupState.PREPARING_REBALANCE)
        group.init_next_generation()
        assert (group.state, group.generation_id, group.protocol_name) == (
            GroupState.EMPTY,
            2,
            None,
        )
        assert group.protocol_type == "consumer"
