"""The controller's pure decisions (``tmq.cluster.controller``): rack-aware replica
assignment and leader election from the live ISR, by example and by property."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.cluster.controller import (
    NO_LEADER,
    UNCLEAN_ELECTION_CONFIG,
    InvalidAssignment,
    assign_replicas,
    elect,
    rack_alternated,
    reconcile,
    refresh_restarted,
)
from tmq.cluster.store import PartitionState, TopicSpec


def spec(assignment, unclean=False):
    configs = {UNCLEAN_ELECTION_CONFIG: "true"} if unclean else {}
    first = next(iter(assignment.values()))
    return TopicSpec("t", len(assignment), len(first), assignment, configs)


def state(leader, epoch, isr, version=7):
    return PartitionState(leader, epoch, tuple(isr), controller_epoch=1, version=version)


class AssignmentTests:
    def test_racks_alternate(self):
        """Racks take turns, in rack order, brokers in id order within a rack; brokers with
        no rack count as one rack."""
        racks = {5: "c", 1: "a", 3: "b", 2: "a", 4: "c", 6: None}
        assert rack_alternated(racks) == [6, 1, 3, 4, 2, 5]

    def test_round_robin_without_racks(self):
        """Without racks, partition p starts at broker start + p and takes the next ones."""
        racks = dict.fromkeys((1, 2, 3))
        assert assign_replicas(4, 2, racks, start=1) == {
            0: (2, 3),
            1: (3, 1),
            2: (1, 2),
            3: (2, 3),
        }

    def test_replicas_spread_over_racks(self):
        """With two racks and a replication factor of 2, every partition has one replica
        in each rack, though brokers 1 and 2 share rack a."""
        racks = {1: "a", 2: "a", 3: "b", 4: "b"}
        for replicas in assign_replicas(8, 2, racks).values():
            assert {racks[b] for b in replicas} == {"a", "b"}

    def test_more_replicas_than_racks(self):
        """With fewer racks than replicas, every rack is used and the rest fill in."""
        racks = {1: "a", 2: "a", 3: "b"}
        for replicas in assign_replicas(6, 3, racks).values():
            assert sorted(replicas) == [1, 2, 3]

    @pytest.mark.parametrize(("partitions", "factor"), [(0, 1), (1, 0), (1, 4)])
    def test_impossible(self, partitions, factor):
        """No partitions, a factor below 1 or above the brokers is InvalidAssignment."""
        with pytest.raises(InvalidAssignment):
            assign_replicas(partitions, factor, dict.fromkeys((1, 2, 3)))

    @given(
        racks=st.dictionaries(
            st.integers(0, 50), st.sampled_from([None, "a", "b", "c"]), min_size=1, max_size=9
        ),
        partitions=st.integers(1, 40),
        data=st.data(),
    )
    def test_properties(self, racks, partitions, data):
        """Every partition gets distinct live brokers, as many racks as it can, and the
        leaders (first replicas) differ in count by at most one between brokers."""
        factor = data.draw(st.integers(1, len(racks)))
        start = data.draw(st.integers(0, 100))
        assignment = assign_replicas(partitions, factor, racks, start)
        assert sorted(assignment) == list(range(partitions))
        all_racks = {racks[b] or "" for b in racks}
        for replicas in assignment.values():
            assert len(set(replicas)) == factor and set(replicas) <= set(racks)
            assert len({racks[b] or "" for b in replicas}) == min(len(all_racks), factor)
        leaders = Counter(replicas[0] for replicas in assignment.values())
        counts = [leaders.get(broker, 0) for broker in racks]
        assert max(counts) - min(counts) <= 1


ASSIGNMENT = {0: (1, 2, 3)}


class ElectionTests:
    def test_live_leader_and_isr_change_nothing(self):
        """All live: no change."""
        assert elect(spec(ASSIGNMENT), {0: state(1, 4, [1, 2, 3])}, {1, 2, 3}, 2) == {}

    def test_dead_follower_leaves_the_isr(self):
        """A dead follower leaves the ISR at once; the leader and its epoch stay."""
        changes = elect(spec(ASSIGNMENT), {0: state(1, 4, [1, 2, 3])}, {1, 3}, 2)
        assert changes == {0: PartitionState(1, 4, (1, 3), 2)}

    def test_dead_leader_gives_way_to_first_live_isr_member(self):
        """The first replica in assignment order that is live and in the ISR leads, with
        epoch + 1, and the ISR keeps its live members."""
        changes = elect(spec({0: (1, 3, 2)}), {0: state(1, 4, [1, 2, 3])}, {2, 3}, 2)
        assert changes == {0: PartitionState(3, 5, (2, 3), 2)}

    def test_replica_outside_the_isr_does_not_lead(self):
        """A live replica that is not in the ISR cannot lead: the partition goes offline,
        keeping its ISR, with epoch + 1."""
        changes = elect(spec(ASSIGNMENT), {0: state(1, 4, [1])}, {2, 3}, 2)
        assert changes == {0: PartitionState(NO_LEADER, 5, (1,), 2)}

    def test_offline_stays_offline_quietly(self):
        """An offline partition with still no ISR member live needs no new write."""
        assert elect(spec(ASSIGNMENT), {0: state(NO_LEADER, 5, [1])}, {2, 3}, 2) == {}

    def test_returning_isr_member_leads(self):
        """When the last ISR member returns it leads, epoch + 1."""
        changes = elect(spec(ASSIGNMENT), {0: state(NO_LEADER, 5, [1])}, {1, 2}, 3)
        assert changes == {0: PartitionState(1, 6, (1,), 3)}

    def test_unclean_election_when_allowed(self):
        """With unclean.leader.election.enable=true the first live replica leads alone."""
        changes = elect(spec(ASSIGNMENT, unclean=True), {0: state(1, 4, [1])}, {3, 2}, 2)
        assert changes == {0: PartitionState(2, 5, (2,), 2)}

    def test_everything_down(self):
        """With no live broker at all the leader becomes -1 and the ISR stays."""
        changes = elect(spec(ASSIGNMENT), {0: state(2, 4, [2, 3])}, set(), 2)
        assert changes == {0: PartitionState(NO_LEADER, 5, (2, 3), 2)}

    @given(
        st.permutations([1, 2, 3, 4]),
        st.integers(1, 4),
        st.sets(st.integers(1, 4)),
        st.sets(st.integers(1, 4), min_size=1),
        st.booleans(),
        st.booleans(),
    )
    def test_properties(self, order, factor, live, isr, offline, unclean):
        """Whatever the state: a clean election picks a live ISR member or goes offline;
        the ISR is never empty and only loses members; the epoch grows exactly when the
        leader changes; and deciding again on the result changes nothing."""
        replicas = tuple(order[:factor])
        isr = tuple(sorted(isr & set(replicas))) or (replicas[0],)
        leader = NO_LEADER if offline else isr[0]
        before = state(leader, 10, isr)
        topic = spec({0: replicas}, unclean)
        after = elect(topic, {0: before}, live, 2).get(0)
        if after is None:
            after = before
        assert after.isr and set(after.isr) <= set(replicas)
        if after.leader != NO_LEADER:
            assert after.leader in live and after.leader in after.isr
            if not unclean:
                assert after.leader in before.isr
                assert set(after.isr) <= set(before.isr)
        assert (after.leader_epoch == before.leader_epoch + 1) == (after.leader != before.leader)
        assert elect(topic, {0: after}, live, 2) == {}


class RefreshTests:
    def test_a_leader_registered_after_its_grant_gets_the_next_epoch(self):
        """A state older than its leader's registration is refreshed: same leader, the ISR's
        live members, epoch + 1, the controller's epoch, version 0 for the compare-and-swap."""
        states = {0: state(1, 4, (1, 2, 3), version=10), 1: state(2, 0, (2, 1), version=10)}
        changes = refresh_restarted(states, {1: 12, 2: 3}, controller_epoch=20)
        assert changes == {0: PartitionState(1, 5, (1, 2), 20, 0)}

    def test_states_written_after_the_registration_and_offline_ones_stay(self):
        """A grant newer than the leader's registration, a leader that is not live, and an
        offline partition are left alone."""
        states = {
            0: state(1, 4, (1, 2), version=30),
            1: state(3, 2, (3,), version=5),
            2: state(-1, 6, (2,), version=5),
        }
        assert refresh_restarted(states, {1: 12, 2: 13}, controller_epoch=20) == {}

    def test_a_restart_is_not_hidden_by_an_isr_change(self):
        """The leader restarted while an ISR member died: one change, epoch + 1 and the
        dead member out; an ISR-only write under the old epoch would have let the restarted
        broker append under an epoch of its previous life."""
        topic = spec({0: (1, 2), 1: (2, 1)})
        states = {0: state(1, 3, (1, 2), version=10), 1: state(2, 0, (2, 1), version=10)}
        changes = reconcile(topic, states, {1: 15}, controller_epoch=16)
        assert changes[0] == PartitionState(1, 4, (1,), 16, 0)
        assert changes[1] == PartitionState(1, 1, (1,), 16, 0)
