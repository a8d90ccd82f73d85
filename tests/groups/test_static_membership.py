"""Static membership (KIP-345) in ``GroupCoordinator``: a restarted instance takes its
predecessor's place, the predecessor's member id is fenced, and requests naming an instance
are checked against it."""

from __future__ import annotations

from coordinator_helpers import (
    RANGE,
    SESSION_MS,
    TICK,
    coordinator,
    fired,
    form,
    join,
    seconds,
    waiting,
)

from tmq.groups.coordinator import JoinResult, LeaveResult, SyncResult
from tmq.protocol.errors import ErrorCode

NONE = ErrorCode.NONE
FENCED = ErrorCode.FENCED_INSTANCE_ID


class RestartedInstanceTests:
    def test_a_restarted_instance_takes_its_place_without_a_rebalance(self):
        """In a Stable group, an instance joining again with no member id gets a new member
        id and the current generation at once; with SyncGroup it gets its predecessor's
        assignment, and the group stays Stable (the other member is not disturbed)."""
        c, clock = coordinator()
        (leader, follower), generation = form(c, clock, 2, static=True)
        again = fired(join(c, client="c1", instance="i1"))
        assert again == JoinResult(NONE, generation, "range", leader, "c1-3", ())
        assert c.describe("g").state == "Stable"
        synced = c.sync("g", generation_id=generation, member_id="c1-3", assignments={})
        assert fired(synced) == SyncResult(NONE, follower.encode())
        assert c.heartbeat("g", generation_id=generation, member_id=leader) is NONE
        assert [m.member_id for m in c.describe("g").members] == [leader, "c1-3"]

    def test_a_restarted_leader_stays_the_leader(self):
        """The leader's instance joining again leads under its new member id; its answer
        lists no members (the group keeps its assignment)."""
        c, clock = coordinator()
        (leader, _), generation = form(c, clock, 2, static=True)
        again = fired(join(c, client="c0", instance="i0"))
        assert (again.error, again.leader, again.member_id, again.members) == (
            NONE,
            "c0-3",
            "c0-3",
            (),
        )
        assert c.describe("g").state == "Stable"
        synced = c.sync("g", generation_id=generation, member_id="c0-3", assignments={})
        assert fired(synced) == SyncResult(NONE, leader.encode())

    def test_the_predecessor_is_fenced(self):
        """After the restart, the old member id naming the instance gets FENCED_INSTANCE_ID
        from JoinGroup, SyncGroup, Heartbeat and the OffsetCommit check, and without the
        instance id it is an unknown member."""
        c, clock = coordinator()
        (_, old), generation = form(c, clock, 2, static=True)
        fired(join(c, client="c1", instance="i1"))
        assert fired(join(c, old, client="c1", instance="i1")).error is FENCED
        sync = c.sync("g", generation_id=generation, member_id=old, assignments={},
                      group_instance_id="i1")  # fmt: skip
        assert fired(sync).error is FENCED
        beat = c.heartbeat("g", generation_id=generation, member_id=old, group_instance_id="i1")
        assert beat is FENCED
        unknown = c.heartbeat("g", generation_id=generation, member_id=old)
        assert unknown is ErrorCode.UNKNOWN_MEMBER_ID
        commit = c.check_commit("g", generation_id=generation, member_id=old,
                                group_instance_id="i1")  # fmt: skip
        assert commit is FENCED
        fresh = c.check_commit(
            "g", generation_id=generation, member_id="c1-3", group_instance_id="i1"
        )
        assert fresh is NONE

    def test_parked_requests_of_the_predecessor_are_fenced(self):
        """While a rebalance prepares, the predecessor's parked JoinGroup is answered
        FENCED_INSTANCE_ID; the restarted instance's JoinGroup takes its place in the join
        phase, which ends with it in the next generation."""
        c, clock = coordinator()
        (leader, old), generation = form(c, clock, 2, static=True)
        newcomer = join(c, client="n")  # a new member: the group rebalances
        parked_old = join(c, old, client="c1", instance="i1")
        restarted = join(c, client="c1", instance="i1")
        assert fired(parked_old) == JoinResult(FENCED, member_id=old)
        assert waiting(restarted) and waiting(newcomer)
        leader_join = join(c, leader, client="c0", instance="i0")  # the last to rejoin
        results = [fired(d) for d in (leader_join, newcomer, restarted)]
        assert {r.generation_id for r in results} == {generation + 1}
        assert [m.member_id for m in results[0].members] == [leader, "c1-4", "n-3"]
        assert [m.group_instance_id for m in results[0].members] == ["i0", "i1", None]

    def test_a_changed_protocol_choice_rebalances(self):
        """A restarted instance whose preferences change the group's protocol makes the
        group rebalance (a new generation) instead of taking the old place in the old one."""
        c, clock = coordinator()
        both = (("range", b"r"), ("roundrobin", b"rr"))
        (leader,), generation = form(c, clock, 1, static=True, protocols=both)
        again = fired(join(c, client="c0", instance="i0", protocols=tuple(reversed(both))))
        assert (again.generation_id, again.protocol_name) == (generation + 1, "roundrobin")
        assert again.member_id not in (leader, "")


class StaticLeaveAndExpiryTests:
    def test_leave_by_instance_id(self):
        """LeaveGroup v3 removes a static member by its instance id with an empty member id
        or its own; another member id is FENCED_INSTANCE_ID and an unknown instance
        UNKNOWN_MEMBER_ID; the group rebalances without the leaver."""
        c, clock = coordinator()
        (leader, follower), _ = form(c, clock, 2, static=True)
        answered = c.leave("g", [leader, "", "x"], ["i1", "i1", "i9"])
        assert answered == LeaveResult(
            NONE, ((leader, FENCED), ("", NONE), ("x", ErrorCode.UNKNOWN_MEMBER_ID))
        )
        assert [m.member_id for m in c.describe("g").members] == [leader]
        assert c.describe("g").state == "PreparingRebalance"
        gone = c.leave("g", [follower], ["i1"])
        assert gone.members == ((follower, ErrorCode.UNKNOWN_MEMBER_ID),)

    def test_an_expired_static_member_frees_its_instance(self):
        """A static member whose session runs out is removed like any other; its instance
        joining again afterwards is a new member that makes the group rebalance."""
        c, clock = coordinator()
        (leader, old), generation = form(c, clock, 2, static=True)
        for _ in range(3):
            clock.advance(seconds(SESSION_MS) / 2)
            beat = c.heartbeat("g", generation_id=generation, member_id=leader)
            assert beat in (NONE, ErrorCode.REBALANCE_IN_PROGRESS)  # the leader stays
        assert old not in [m.member_id for m in c.describe("g").members]
        again = join(c, client="c1", instance="i1", protocols=RANGE)
        clock.advance(TICK)
        assert waiting(again)  # the group rebalances; the leader must rejoin
        fired(join(c, leader, client="c0", instance="i0"))
        assert fired(again).generation_id > generation
