"""``tmq.groups.coordinator.GroupCoordinator``: the classic group protocol by example, on a
``Clock`` (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, the OffsetCommit check, the views of
DescribeGroups and ListGroups, shutdown)."""

from __future__ import annotations

import pytest
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
from twisted.internet import defer

from tmq.groups.coordinator import (
    GroupDescription,
    GroupListing,
    JoinMember,
    JoinResult,
    LeaveResult,
    MemberDescription,
    SyncResult,
)
from tmq.protocol.errors import ErrorCode

NONE = ErrorCode.NONE


def rejoin(c, member_id, **options):
    return join(c, member_id, client=member_id.rsplit("-", 1)[0], **options)


class HappyPathTests:
    @pytest.mark.parametrize("n", [1, 2, 3])
    def test_members_form_a_generation(self, n):
        """Consumers joining together get generation 1 with the first joiner as leader; only
        the leader's answer lists the members (with their metadata for the chosen protocol)."""
        c, clock = coordinator()
        joins = [join(c, client=f"c{i}") for i in range(n)]
        assert all(waiting(d) for d in joins)  # the join phase ends on the clock, even at 0 ms
        clock.advance(0)
        results = [fired(d) for d in joins]
        ids = [f"c{i}-{i + 1}" for i in range(n)]
        assert results[0] == JoinResult(
            NONE,
            generation_id=1,
            protocol_name="range",
            leader="c0-1",
            member_id="c0-1",
            members=tuple(JoinMember(m, None, b"range-meta") for m in ids),
        )
        for member_id, result in zip(ids[1:], results[1:], strict=True):
            assert result == JoinResult(NONE, 1, "range", "c0-1", member_id, ())
        assert c.describe("g").state == "CompletingRebalance"

    @pytest.mark.parametrize("n", [1, 2, 3])
    def test_followers_get_the_leaders_assignment(self, n):
        """Followers' SyncGroups wait for the leader's; it makes the group Stable and every
        member gets what the leader assigned it."""
        c, clock = coordinator()
        joins = [join(c, client=f"c{i}") for i in range(n)]
        clock.advance(0)
        ids = [fired(d).member_id for d in joins]
        followers = [c.sync("g", generation_id=1, member_id=m, assignments={}) for m in ids[1:]]
        assert all(waiting(d) for d in followers)
        leader = c.sync(
            "g",
            generation_id=1,
            member_id=ids[0],
            assignments={m: b"to " + m.encode() for m in ids},
        )
        assert fired(leader) == SyncResult(NONE, b"to " + ids[0].encode())
        for member_id, d in zip(ids[1:], followers, strict=True):
            assert fired(d) == SyncResult(NONE, b"to " + member_id.encode())
        assert c.describe("g").state == "Stable"
        for member_id in ids:
            assert c.heartbeat("g", generation_id=1, member_id=member_id) is NONE

    def test_sync_in_stable_returns_the_assignment(self):
        """A SyncGroup in a Stable group answers at once with the member's assignment."""
        c, clock = coordinator()
        ids, generation = form(c, clock, 2)
        again = c.sync("g", generation_id=generation, member_id=ids[1], assignments={})
        assert fired(again) == SyncResult(NONE, ids[1].encode())

    def test_member_left_out_gets_an_empty_assignment(self):
        """A member the leader's assignments do not name gets empty bytes."""
        c, clock = coordinator()
        a, b = join(c, client="a"), join(c, client="b")
        clock.advance(0)
        leader, follower = fired(a).member_id, fired(b).member_id
        waiting_follower = c.sync("g", generation_id=1, member_id=follower, assignments={})
        fired(c.sync("g", generation_id=1, member_id=leader, assignments={leader: b"x"}))
        assert fired(waiting_follower) == SyncResult(NONE, b"")

    def test_assignments_for_strangers_are_ignored(self):
        """Assignments for ids that are not members go nowhere."""
        c, clock = coordinator()
        d = join(c)
        clock.advance(0)
        leader = fired(d).member_id
        result = c.sync("g", generation_id=1, member_id=leader, assignments={"ghost": b"?"})
        assert fired(result) == SyncResult(NONE, b"")
        assert [m.member_id for m in c.describe("g").members] == [leader]

    def test_protocol_chosen_by_vote_among_common_ones(self):
        """Only a protocol every member supports can win; among those each member votes for
        its most preferred, and the most votes win."""
        c, clock = coordinator()
        first = join(c, client="a", protocols=(("range", b"ra"), ("rr", b"xa")))
        second = join(c, client="b", protocols=(("rr", b"xb"), ("range", b"rb")))
        third = join(c, client="c", protocols=(("rr", b"xc"), ("sticky", b"sc")))
        clock.advance(0)
        result = fired(first)
        assert result.protocol_name == "rr"  # range is not supported by c
        assert [m.metadata for m in result.members] == [b"xa", b"xb", b"xc"]
        fired(second), fired(third)

        c, clock = coordinator()
        first = join(c, client="a", protocols=(("range", b""), ("rr", b"")))
        join(c, client="b", protocols=(("range", b""), ("rr", b"")))
        join(c, client="c", protocols=(("rr", b""), ("range", b"")))
        clock.advance(0)
        assert fired(first).protocol_name == "range"  # two votes to one


class MemberIdRequiredTests:
    def test_round_trip(self):
        """With ``require_known_member_id`` (JoinGroup v4+) a consumer without a member id gets
        MEMBER_ID_REQUIRED and a member id; joining with it adds the member."""
        c, clock = coordinator()
        first = fired(join(c, client="app", require_known_member_id=True))
        assert first == JoinResult(ErrorCode.MEMBER_ID_REQUIRED, member_id="app-1")
        assert c.describe("g").state == "Empty" and c.describe("g").members == ()
        second = join(c, "app-1", client="app", require_known_member_id=True)
        clock.advance(0)
        assert fired(second) == JoinResult(
            NONE, 1, "range", "app-1", "app-1", (JoinMember("app-1", None, b"range-meta"),)
        )

    def test_unused_member_id_expires_after_the_session_timeout(self):
        """A member id handed out with MEMBER_ID_REQUIRED and not used within the session
        timeout is forgotten: joining with it later gets UNKNOWN_MEMBER_ID."""
        c, clock = coordinator()
        fired(join(c, client="app", require_known_member_id=True))
        clock.advance(seconds(SESSION_MS))
        assert clock.getDelayedCalls() == []
        assert fired(join(c, "app-1")) == JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id="app-1")

    def test_outstanding_member_id_holds_the_join_phase(self):
        """A rebalance waits for a member id handed out with MEMBER_ID_REQUIRED, until it is
        used (or expires)."""
        c, clock = coordinator()
        (leader,), _ = form(c, clock, 1)
        required = fired(join(c, client="new", require_known_member_id=True))
        again = rejoin(c, leader)  # the leader's JoinGroup starts a rebalance
        assert waiting(again)
        late = join(c, required.member_id, client="new")
        assert fired(again).generation_id == 2
        assert fired(late).member_id == required.member_id

    def test_outstanding_member_id_expiring_ends_the_join_phase(self):
        """If the handed-out member id expires instead, the join phase ends without it."""
        c, clock = coordinator()
        (leader,), _ = form(c, clock, 1)
        fired(join(c, client="new", require_known_member_id=True, session_ms=7_000))
        again = rejoin(c, leader)
        clock.advance(7 - TICK)
        assert waiting(again)
        clock.advance(TICK)
        result = fired(again)
        assert result.generation_id == 2 and [m.member_id for m in result.members] == [leader]

    def test_pending_member_id_can_leave(self):
        """A handed-out member id may leave; it cannot join afterwards."""
        c, clock = coordinator()
        fired(join(c, client="app", require_known_member_id=True))
        assert c.leave("g", ["app-1"]) == LeaveResult(NONE, (("app-1", NONE),))
        assert clock.getDelayedCalls() == []
        assert fired(join(c, "app-1")).error is ErrorCode.UNKNOWN_MEMBER_ID
        assert c.describe("g").state == "Empty"


class InitialDelayTests:
    def test_delay_batches_joins_into_one_generation(self):
        """A rebalance from Empty waits the initial delay, extended by the delay while new
        members keep arriving, so they all land in generation 1."""
        c, clock = coordinator(delay_ms=3_000)
        a = join(c, client="a")
        clock.advance(1.0)
        b = join(c, client="b")
        clock.advance(1.5)
        d = join(c, client="d")
        clock.advance(0.5)  # t = 3 s: members arrived, extend by 3 s
        assert waiting(a) and waiting(b) and waiting(d)
        clock.advance(3 - TICK)
        assert waiting(a)
        clock.advance(TICK)  # t = 6 s: nobody new since 3 s
        results = [fired(x) for x in (a, b, d)]
        assert {r.generation_id for r in results} == {1}
        assert len(results[0].members) == 3

    def test_delay_is_capped_by_the_rebalance_timeout(self):
        """The extensions stop at the rebalance timeout even if members keep coming."""
        c, clock = coordinator(delay_ms=3_000)
        a = join(c, client="a", rebalance_ms=5_000)
        clock.advance(1.0)
        join(c, client="b", rebalance_ms=5_000)
        clock.advance(2.0)  # t = 3 s: b arrived, extended by what is left: 2 s
        clock.advance(1.0)
        join(c, client="d", rebalance_ms=5_000)
        assert waiting(a)
        clock.advance(1.0)  # t = 5 s: out of time although d is new
        assert len(fired(a).members) == 3

    def test_one_member_waits_the_delay(self):
        """A lone first member waits exactly the initial delay."""
        c, clock = coordinator(delay_ms=3_000)
        a = join(c)
        clock.advance(3 - TICK)
        assert waiting(a)
        clock.advance(TICK)
        assert fired(a).generation_id == 1

    def test_no_delay_for_a_group_with_members(self):
        """A rebalance of a group with members ends as soon as every member has joined."""
        c, clock = coordinator(delay_ms=3_000)
        a = join(c, client="a")
        clock.advance(3.0)
        leader = fired(a).member_id
        fired(c.sync("g", generation_id=1, member_id=leader, assignments={}))
        b = join(c, client="b")
        again = rejoin(c, leader)
        assert fired(again).generation_id == 2 and fired(b).generation_id == 2


class RebalanceTests:
    def test_new_member_makes_the_others_rejoin(self):
        """A member joining a Stable group starts a rebalance: the others' heartbeats get
        REBALANCE_IN_PROGRESS until they rejoin; the leader that rejoins stays the leader."""
        c, clock = coordinator()
        (leader,), generation = form(c, clock, 1)
        newcomer = join(c, client="new")
        assert c.describe("g").state == "PreparingRebalance"
        for _ in range(3):
            clock.advance(3.0)
            assert c.heartbeat("g", generation_id=generation, member_id=leader) is (
                ErrorCode.REBALANCE_IN_PROGRESS
            )
        assert fired(c.sync("g", generation_id=1, member_id=leader, assignments={})) == (
            SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        )
        assert waiting(newcomer)
        again = rejoin(c, leader)
        result, new = fired(again), fired(newcomer)
        assert result.generation_id == new.generation_id == 2
        assert result.leader == new.leader == leader and len(result.members) == 2
        assert c.heartbeat("g", generation_id=1, member_id=leader) is ErrorCode.ILLEGAL_GENERATION
        assert c.heartbeat("g", generation_id=2, member_id=leader) is NONE  # CompletingRebalance

    def test_rebalance_timeout_removes_members_that_did_not_rejoin(self):
        """The join phase ends at the longest rebalance timeout of the members; members that
        did not rejoin by then are removed (heartbeating does not save them)."""
        c, clock = coordinator()
        (a, b), _ = form(c, clock, 2)
        newcomer = join(c, client="new", rebalance_ms=45_000)
        again = rejoin(c, a)
        for _ in range(14):  # b heartbeats for 42 s but never rejoins
            clock.advance(3.0)
            assert c.heartbeat("g", generation_id=1, member_id=b) is (
                ErrorCode.REBALANCE_IN_PROGRESS
            )
        clock.advance(3 - TICK)
        assert waiting(again)
        clock.advance(TICK)
        result = fired(again)
        assert result.generation_id == 2
        assert [m.member_id for m in result.members] == [a, fired(newcomer).member_id]
        assert c.heartbeat("g", generation_id=1, member_id=b) is ErrorCode.UNKNOWN_MEMBER_ID

    def test_session_timeout_evicts_a_silent_member(self):
        """A member that stops heartbeating is removed after its session timeout and the
        others rebalance without it."""
        c, clock = coordinator()
        (a, b), _ = form(c, clock, 2)
        for _ in range(3):
            clock.advance(3.0)
            assert c.heartbeat("g", generation_id=1, member_id=a) is NONE
        clock.advance(seconds(SESSION_MS) - 9.0 - TICK)
        assert c.describe("g").state == "Stable"
        clock.advance(TICK)  # b's session (restarted by its SyncGroup answer) ends
        assert c.describe("g").state == "PreparingRebalance"
        assert [m.member_id for m in c.describe("g").members] == [a]
        assert c.heartbeat("g", generation_id=1, member_id=a) is ErrorCode.REBALANCE_IN_PROGRESS
        result = fired(rejoin(c, a))  # all remaining members joined: no wait
        assert result.generation_id == 2 and [m.member_id for m in result.members] == [a]
        assert c.heartbeat("g", generation_id=1, member_id=b) is ErrorCode.UNKNOWN_MEMBER_ID

    def test_silent_leader_hands_over(self):
        """When the leader is removed, a member that rejoined leads the next generation."""
        c, clock = coordinator()
        (_, b, d), _ = form(c, clock, 3)
        new = join(c, client="new")
        again_b, again_d = rejoin(c, b), rejoin(c, d)
        clock.advance(seconds(SESSION_MS))  # a never heartbeats nor rejoins
        results = [fired(x) for x in (again_b, again_d, new)]
        assert {r.leader for r in results} == {b}
        assert len(results[0].members) == 3

    def test_joined_members_are_not_evicted_while_they_wait(self):
        """A member whose JoinGroup is parked is not removed for missing heartbeats; its session
        timer restarts when the join phase ends."""
        c, clock = coordinator()
        (a, b), _ = form(c, clock, 2)
        again = rejoin(c, a, rebalance_ms=25_000)  # the leader rejoins: a rebalance
        for _ in range(8):  # b keeps its session, a only waits
            clock.advance(3.0)
            c.heartbeat("g", generation_id=1, member_id=b)
        again_b = rejoin(c, b)
        assert fired(again).generation_id == fired(again_b).generation_id == 2
        clock.advance(seconds(SESSION_MS) - TICK)
        assert c.heartbeat("g", generation_id=2, member_id=a) is NONE

    def test_new_member_join_timeout(self):
        """A new member's parked JoinGroup lasts at most the new-member join timeout; it is
        then answered UNKNOWN_MEMBER_ID with no member id and the member is gone."""
        c, clock = coordinator(new_member_join_timeout_ms=5_000)
        (a,), _ = form(c, clock, 1)
        newcomer = join(c, client="new")
        for _ in range(2):
            clock.advance(2.5)
            c.heartbeat("g", generation_id=1, member_id=a)
        assert fired(newcomer) == JoinResult(ErrorCode.UNKNOWN_MEMBER_ID)
        result = fired(rejoin(c, a))
        assert result.generation_id == 2 and [m.member_id for m in result.members] == [a]

    def test_changed_protocols_start_a_rebalance(self):
        """A follower joining a Stable group with other metadata starts a rebalance; with the
        same metadata it just gets the current generation."""
        c, clock = coordinator()
        (a, b), _ = form(c, clock, 2)
        same = fired(rejoin(c, b))
        assert same == JoinResult(NONE, 1, "range", a, b, ())
        assert c.describe("g").state == "Stable"
        changed = rejoin(c, b, protocols=(("range", b"new topics"),))
        assert waiting(changed) and c.describe("g").state == "PreparingRebalance"
        again = rejoin(c, a)
        assert [m.metadata for m in fired(again).members] == [b"range-meta", b"new topics"]
        assert fired(changed).generation_id == 2

    def test_join_retry_while_completing_gets_the_same_generation(self):
        """A member repeating its JoinGroup with the same protocols while the group waits for
        the leader's assignment gets the same generation (the leader: with the members)."""
        c, clock = coordinator()
        a, b = join(c, client="a"), join(c, client="b")
        clock.advance(0)
        first_a, first_b = fired(a), fired(b)
        assert fired(rejoin(c, first_a.member_id)) == first_a
        assert fired(rejoin(c, first_b.member_id)) == first_b
        assert c.describe("g").state == "CompletingRebalance"

    def test_join_with_new_protocols_while_completing_cancels_the_syncs(self):
        """A JoinGroup with new metadata while the group waits for the leader's assignment
        starts a rebalance; parked SyncGroups get REBALANCE_IN_PROGRESS."""
        c, clock = coordinator()
        a, b = join(c, client="a"), join(c, client="b")
        clock.advance(0)
        leader, follower = fired(a).member_id, fired(b).member_id
        parked = c.sync("g", generation_id=1, member_id=follower, assignments={})
        changed = rejoin(c, leader, protocols=(("range", b"v2"),))
        assert fired(parked) == SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        again = rejoin(c, follower)
        assert fired(changed).generation_id == fired(again).generation_id == 2

    def test_newer_join_answers_the_parked_one(self):
        """A member's second JoinGroup while its first is parked answers the first with
        REBALANCE_IN_PROGRESS; the second gets the generation."""
        c, clock = coordinator()
        (a, b), _ = form(c, clock, 2)
        first = rejoin(c, a)
        second = rejoin(c, a)
        assert fired(first) == JoinResult(ErrorCode.REBALANCE_IN_PROGRESS, member_id=a)
        assert waiting(second)
        fired(rejoin(c, b))
        assert fired(second).generation_id == 2

    def test_v0_join_uses_the_session_timeout_as_rebalance_timeout(self):
        """A JoinGroup without a rebalance timeout (v0: -1) counts its session timeout as the
        rebalance timeout."""
        c, clock = coordinator()
        (a, b), _ = form(c, clock, 2, rebalance_ms=-1, session_ms=8_000)
        again = rejoin(c, a, rebalance_ms=-1, session_ms=8_000)
        for _ in range(2):
            clock.advance(3.0)
            c.heartbeat("g", generation_id=1, member_id=b)
        clock.advance(2 - TICK)
        assert waiting(again)
        clock.advance(TICK)  # 8 s: the join phase ends without b
        assert [m.member_id for m in fired(again).members] == [a]


class SyncTimeoutTests:
    def test_silent_leader_is_evicted_and_waiting_followers_rejoin(self):
        """A leader that neither syncs nor heartbeats is removed at its session timeout; the
        followers' parked SyncGroups get REBALANCE_IN_PROGRESS."""
        c, clock = coordinator()
        a, b = join(c, client="a"), join(c, client="b")
        clock.advance(0)
        fired(a)
        follower = fired(b).member_id
        parked = c.sync("g", generation_id=1, member_id=follower, assignments={})
        clock.advance(seconds(SESSION_MS) - TICK)
        assert waiting(parked)
        clock.advance(TICK)
        assert fired(parked) == SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        result = fired(rejoin(c, follower))
        assert result.generation_id == 2 and result.leader == follower

    def test_leader_that_heartbeats_but_never_syncs(self):
        """Members that have not sent SyncGroup within the rebalance timeout after the join
        phase are removed even if they heartbeat, and the group rebalances."""
        c, clock = coordinator()
        a, b = join(c, client="a"), join(c, client="b")
        clock.advance(0)
        leader, follower = fired(a).member_id, fired(b).member_id
        parked = c.sync("g", generation_id=1, member_id=follower, assignments={})
        for _ in range(9):
            clock.advance(3.0)
            assert c.heartbeat("g", generation_id=1, member_id=leader) is NONE
        clock.advance(3 - TICK)
        assert waiting(parked)
        clock.advance(TICK)
        assert fired(parked) == SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        assert c.heartbeat("g", generation_id=1, member_id=leader) is (ErrorCode.UNKNOWN_MEMBER_ID)

    def test_follower_that_never_syncs_in_a_stable_group(self):
        """After the leader's assignment made the group Stable, a follower that never sends
        SyncGroup is removed at the rebalance timeout and the group rebalances."""
        c, clock = coordinator()
        a, b = join(c, client="a"), join(c, client="b")
        clock.advance(0)
        leader, follower = fired(a).member_id, fired(b).member_id
        fired(c.sync("g", generation_id=1, member_id=leader, assignments={}))
        assert c.describe("g").state == "Stable"
        for _ in range(10):
            clock.advance(3.0)
            c.heartbeat("g", generation_id=1, member_id=leader)
            c.heartbeat("g", generation_id=1, member_id=follower)
        assert c.describe("g").state == "PreparingRebalance"
        assert [m.member_id for m in c.describe("g").members] == [leader]

    def test_all_synced_stops_the_sync_timer(self):
        """Once every member has synced no sync deadline remains: only session timers."""
        c, clock = coordinator()
        form(c, clock, 2)
        assert (
            sorted(call.getTime() for call in clock.getDelayedCalls()) == [seconds(SESSION_MS)] * 2
        )


class ErrorTests:
    def test_stale_generation(self):
        """SyncGroup and Heartbeat with an older generation get ILLEGAL_GENERATION."""
        c, clock = coordinator()
        (a,), _ = form(c, clock, 1)
        fired(rejoin(c, a))  # generation 2
        stale = c.sync("g", generation_id=1, member_id=a, assignments={})
        assert fired(stale) == SyncResult(ErrorCode.ILLEGAL_GENERATION)
        assert c.heartbeat("g", generation_id=1, member_id=a) is ErrorCode.ILLEGAL_GENERATION

    def test_unknown_member(self):
        """Requests from a member id the group does not know, or for a group that does not
        exist, get UNKNOWN_MEMBER_ID; the member id is checked before the generation."""
        c, clock = coordinator()
        form(c, clock, 1)
        assert fired(join(c, "ghost")) == JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id="ghost")
        assert fired(join(c, "ghost", group="nowhere")).error is ErrorCode.UNKNOWN_MEMBER_ID
        for group in ("g", "nowhere"):
            sync = c.sync(group, generation_id=7, member_id="ghost", assignments={})
            assert fired(sync) == SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
            assert c.heartbeat(group, generation_id=7, member_id="ghost") is (
                ErrorCode.UNKNOWN_MEMBER_ID
            )
        assert c.groups() == [GroupListing("g", "consumer", "Stable")]

    @pytest.mark.parametrize(
        ("protocol_type", "protocols"),
        [
            ("connect", RANGE),  # another protocol type
            ("consumer", (("roundrobin", b""),)),  # no protocol in common
        ],
    )
    def test_inconsistent_protocol(self, protocol_type, protocols):
        """A JoinGroup whose protocol type differs from the group's, or whose protocols include
        none that every member supports, gets INCONSISTENT_GROUP_PROTOCOL."""
        c, clock = coordinator()
        (a,), _ = form(c, clock, 1)
        other = join(c, protocol_type=protocol_type, protocols=protocols)
        assert fired(other) == JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        known = rejoin(c, a, protocol_type=protocol_type, protocols=protocols)
        assert fired(known) == JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id=a)
        assert c.describe("g").state == "Stable"

    @pytest.mark.parametrize(("protocol_type", "protocols"), [("", RANGE), ("consumer", ())])
    def test_first_member_needs_a_type_and_a_protocol(self, protocol_type, protocols):
        """Even an empty group refuses an empty protocol type or protocol list."""
        c, _ = coordinator()
        d = join(c, protocol_type=protocol_type, protocols=protocols)
        assert fired(d).error is ErrorCode.INCONSISTENT_GROUP_PROTOCOL

    @pytest.mark.parametrize(
        ("session_ms", "error"),
        [
            (5_999, ErrorCode.INVALID_SESSION_TIMEOUT),
            (6_000, NONE),
            (1_800_000, NONE),
            (1_800_001, ErrorCode.INVALID_SESSION_TIMEOUT),
        ],
    )
    def test_session_timeout_bounds(self, session_ms, error):
        """Session timeouts outside [group.min.session.timeout.ms, group.max...] (6 s and
        30 min by default) get INVALID_SESSION_TIMEOUT."""
        c, clock = coordinator()
        d = join(c, session_ms=session_ms)
        clock.advance(0)
        assert fired(d).error is error

    def test_configured_session_timeout_bounds(self):
        """The bounds are constructor parameters."""
        c, _ = coordinator(min_session_timeout_ms=100, max_session_timeout_ms=200)
        assert fired(join(c, session_ms=201)).error is ErrorCode.INVALID_SESSION_TIMEOUT
        assert fired(join(c, session_ms=99)).error is ErrorCode.INVALID_SESSION_TIMEOUT

    def test_empty_group_id(self):
        """Every group API refuses an empty group id with INVALID_GROUP_ID."""
        c, _ = coordinator()
        assert fired(join(c, group="")).error is ErrorCode.INVALID_GROUP_ID
        sync = c.sync("", generation_id=1, member_id="m", assignments={})
        assert fired(sync).error is ErrorCode.INVALID_GROUP_ID
        assert c.heartbeat("", generation_id=1, member_id="m") is ErrorCode.INVALID_GROUP_ID
        assert c.leave("", ["m"]) == LeaveResult(ErrorCode.INVALID_GROUP_ID)
        assert c.check_commit("", generation_id=-1, member_id="") is ErrorCode.INVALID_GROUP_ID
        assert c.groups() == []


class LeaveTests:
    def test_single_member_leaves(self):
        """LeaveGroup v0-2: the member is removed and the others rebalance without it."""
        c, clock = coordinator()
        (a, b), _ = form(c, clock, 2)
        result = c.leave("g", [b])
        assert result == LeaveResult(NONE, ((b, NONE),)) and result.single_error is NONE
        assert c.heartbeat("g", generation_id=1, member_id=a) is ErrorCode.REBALANCE_IN_PROGRESS
        again = fired(rejoin(c, a))
        assert again.generation_id == 2 and [m.member_id for m in again.members] == [a]

    def test_batch_with_an_unknown_member(self):
        """LeaveGroup v3: each member id gets its own error; v0-2 report the first error."""
        c, clock = coordinator()
        (a, b, d), _ = form(c, clock, 3)
        result = c.leave("g", [a, "ghost", d])
        assert result == LeaveResult(
            NONE, ((a, NONE), ("ghost", ErrorCode.UNKNOWN_MEMBER_ID), (d, NONE))
        )
        assert result.single_error is ErrorCode.UNKNOWN_MEMBER_ID
        assert [m.member_id for m in c.describe("g").members] == [b]
        assert fired(rejoin(c, b)).leader == b  # the leader left: b leads

    def test_unknown_group(self):
        """LeaveGroup for a group that does not exist answers UNKNOWN_MEMBER_ID per member."""
        c, _ = coordinator()
        result = c.leave("nowhere", ["m", "n"])
        unknown = ErrorCode.UNKNOWN_MEMBER_ID
        assert result == LeaveResult(NONE, (("m", unknown), ("n", unknown)))
        assert result.single_error is unknown
        assert c.groups() == []

    def test_last_member_leaves(self):
        """When the last member leaves the group is Empty, one generation later."""
        c, clock = coordinator()
        (a,), _ = form(c, clock, 1)
        assert c.leave("g", [a]).single_error is NONE
        description = c.describe("g")
        assert (description.state, description.generation_id) == ("Empty", 2)
        assert description.protocol_type == "consumer" and description.members == ()
        assert clock.getDelayedCalls() == []
        assert c.check_commit("g", generation_id=-1, member_id="") is NONE

    def test_parked_requests_of_a_leaving_member_are_answered(self):
        """A leaving member's parked JoinGroup or SyncGroup is answered UNKNOWN_MEMBER_ID."""
        c, clock = coordinator()
        (a, _), _ = form(c, clock, 2)
        parked = rejoin(c, a)
        c.leave("g", [a])
        assert fired(parked) == JoinResult(ErrorCode.UNKNOWN_MEMBER_ID)

        c, clock = coordinator()
        x, y = join(c, client="x"), join(c, client="y")
        clock.advance(0)
        leader, follower = fired(x).member_id, fired(y).member_id
        parked = c.sync("g", generation_id=1, member_id=follower, assignments={})
        c.leave("g", [follower])
        assert fired(parked) == SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        assert fired(rejoin(c, leader)).generation_id == 2

    def test_leave_during_initial_rebalance(self):
        """Leaving while a new group waits its initial delay does not end the delay early."""
        c, clock = coordinator(delay_ms=3_000)
        a, b = join(c, client="a"), join(c, client="b")
        assert c.leave("g", ["b-2"]).single_error is NONE
        assert fired(b) == JoinResult(ErrorCode.UNKNOWN_MEMBER_ID)
        clock.advance(3.0)  # b had joined meanwhile: the delay is extended
        assert waiting(a)
        clock.advance(3.0)
        assert [m.member_id for m in fired(a).members] == ["a-1"]


class CommitCheckTests:
    def test_unknown_group(self):
        """A group this coordinator does not know accepts simple commits (generation -1) and
        refuses generations with ILLEGAL_GENERATION."""
        c, _ = coordinator()
        assert c.check_commit("g", generation_id=-1, member_id="") is NONE
        assert c.check_commit("g", generation_id=3, member_id="m") is ErrorCode.ILLEGAL_GENERATION
        assert c.groups() == []

    def test_empty_group(self):
        """An Empty group accepts simple commits and refuses a member's."""
        c, clock = coordinator()
        (a,), _ = form(c, clock, 1)
        c.leave("g", [a])
        assert c.check_commit("g", generation_id=-1, member_id="") is NONE
        assert c.check_commit("g", generation_id=-1, member_id="x") is NONE
        assert c.check_commit("g", generation_id=2, member_id=a) is ErrorCode.UNKNOWN_MEMBER_ID

    def test_preparing_rebalance(self):
        """While a rebalance prepares, members of the current generation may still commit."""
        c, clock = coordinator()
        (a, b), _ = form(c, clock, 2)
        rejoin(c, a)
        assert c.describe("g").state == "PreparingRebalance"
        assert c.check_commit("g", generation_id=1, member_id=b) is NONE
        assert c.check_commit("g", generation_id=1, member_id=a) is NONE
        assert c.check_commit("g", generation_id=0, member_id=b) is ErrorCode.ILLEGAL_GENERATION
        assert c.check_commit("g", generation_id=-1, member_id="") is ErrorCode.UNKNOWN_MEMBER_ID

    def test_completing_rebalance(self):
        """While members wait for their assignments, commits get REBALANCE_IN_PROGRESS."""
        c, clock = coordinator()
        d = join(c)
        clock.advance(0)
        a = fired(d).member_id
        assert c.check_commit("g", generation_id=1, member_id=a) is (
            ErrorCode.REBALANCE_IN_PROGRESS
        )
        assert c.check_commit("g", generation_id=1, member_id="x") is ErrorCode.UNKNOWN_MEMBER_ID

    def test_stable(self):
        """A Stable group takes commits from members of the current generation only."""
        c, clock = coordinator()
        (a,), _ = form(c, clock, 1)
        assert c.check_commit("g", generation_id=1, member_id=a) is NONE
        assert c.check_commit("g", generation_id=0, member_id=a) is ErrorCode.ILLEGAL_GENERATION
        assert c.check_commit("g", generation_id=-1, member_id=a) is ErrorCode.ILLEGAL_GENERATION
        assert c.check_commit("g", generation_id=1, member_id="x") is ErrorCode.UNKNOWN_MEMBER_ID
        assert c.check_commit("g", generation_id=-1, member_id="") is ErrorCode.UNKNOWN_MEMBER_ID

    def test_closed(self):
        """After close every commit gets COORDINATOR_NOT_AVAILABLE."""
        c, clock = coordinator()
        (a,), _ = form(c, clock, 1)
        c.close()
        for generation, member in ((1, a), (-1, "")):
            assert c.check_commit("g", generation_id=generation, member_id=member) is (
                ErrorCode.COORDINATOR_NOT_AVAILABLE
            )

    def test_accepted_commit_keeps_the_session(self):
        """A member's accepted commit restarts its session timer, as a heartbeat does."""
        c, clock = coordinator()
        (a,), _ = form(c, clock, 1)
        for _ in range(5):
            clock.advance(6.0)
            assert c.check_commit("g", generation_id=1, member_id=a) is NONE
        assert c.describe("g").state == "Stable"


class DescribeTests:
    def test_unknown_group_is_dead(self):
        """An unknown group is described as Dead with no members."""
        c, _ = coordinator()
        assert c.describe("nope") == GroupDescription(NONE, "nope", "Dead", "", "", (), -1)

    def test_stable_group(self):
        """A Stable group shows its protocol and each member's metadata and assignment."""
        c, clock = coordinator()
        d = join(c, client="app", instance="host-1")
        clock.advance(0)
        a = fired(d).member_id
        fired(c.sync("g", generation_id=1, member_id=a, assignments={a: b"parts"}))
        assert c.describe("g") == GroupDescription(
            NONE,
            "g",
            "Stable",
            "consumer",
            "range",
            (MemberDescription(a, "host-1", "app", "/10.0.0.1", b"range-meta", b"parts"),),
            1,
        )

    def test_rebalancing_group_hides_protocol_and_bytes(self):
        """Outside Stable the protocol, metadata and assignments are left out."""
        c, clock = coordinator()
        (a, b), _ = form(c, clock, 2)
        rejoin(c, a)
        description = c.describe("g")
        assert (description.state, description.protocol) == ("PreparingRebalance", "")
        assert description.members == (
            MemberDescription(a, None, "c0", "/10.0.0.1", b"", b""),
            MemberDescription(b, None, "c1", "/10.0.0.1", b"", b""),
        )

    def test_list_groups(self):
        """ListGroups lists every group with its protocol type and state."""
        c, clock = coordinator()
        form(c, clock, 1, group="one")
        join(c, group="two")
        fired(join(c, group="three", require_known_member_id=True))
        assert c.groups() == [
            GroupListing("one", "consumer", "Stable"),
            GroupListing("two", "consumer", "PreparingRebalance"),
            GroupListing("three", "", "Empty"),
        ]


class CloseTests:
    def test_parked_requests_answered_and_timers_cancelled(self):
        """close() answers parked JoinGroups and SyncGroups with NOT_COORDINATOR and leaves no
        timer on the clock."""
        c, clock = coordinator(delay_ms=3_000)
        d1, d2 = join(c, group="syncing", client="a"), join(c, group="syncing", client="b")
        clock.advance(3.0)  # b joined in the initial delay: extended
        clock.advance(3.0)
        follower = fired(d2).member_id
        fired(d1)
        parked_sync = c.sync("syncing", generation_id=1, member_id=follower, assignments={})
        parked_join = join(c, group="joining")
        fired(join(c, group="pending", require_known_member_id=True))
        assert clock.getDelayedCalls()
        c.close()
        assert fired(parked_join) == JoinResult(ErrorCode.NOT_COORDINATOR, member_id="c-3")
        assert fired(parked_sync) == SyncResult(ErrorCode.NOT_COORDINATOR)
        assert clock.getDelayedCalls() == []
        assert c.closed

    def test_unload_drops_one_group_and_keeps_the_others(self):
        """unload(g) answers g's parked JoinGroup with NOT_COORDINATOR and cancels g's timers;
        another group keeps its members and timers, and a later JoinGroup for g starts it
        afresh at generation 1."""
        c, clock = coordinator()
        (kept,), _ = form(c, clock, 1, group="kept")
        (a,), _ = form(c, clock, 1, group="moved")
        parked = join(c, group="moved", client="late")
        c.unload("moved")
        assert fired(parked).error is ErrorCode.NOT_COORDINATOR
        assert len(clock.getDelayedCalls()) == 1  # the session timer of kept's member
        assert [g.group_id for g in c.groups()] == ["kept"]
        assert c.heartbeat("kept", generation_id=1, member_id=kept) is NONE
        assert c.heartbeat("moved", generation_id=1, member_id=a) is ErrorCode.UNKNOWN_MEMBER_ID
        form(c, clock, 1, group="moved")
        assert c.describe("moved").generation_id == 1
        c.unload("never-known")  # nothing to do

    def test_requests_after_close(self):
        """After close every request gets COORDINATOR_NOT_AVAILABLE; close is idempotent."""
        c, clock = coordinator()
        (a,), _ = form(c, clock, 1)
        c.close()
        c.close()
        unavailable = ErrorCode.COORDINATOR_NOT_AVAILABLE
        assert fired(join(c, a)) == JoinResult(unavailable, member_id=a)
        assert fired(c.sync("g", generation_id=1, member_id=a, assignments={})).error is (
            unavailable
        )
        assert c.heartbeat("g", generation_id=1, member_id=a) is unavailable
        assert c.leave("g", [a]) == LeaveResult(unavailable)
        assert c.describe("g").error is unavailable
        assert c.groups() == []
        assert clock.getDelayedCalls() == []


class AnswerTests:
    def test_callbacks_see_settled_state(self):
        """A callback of a JoinGroup answer may call the coordinator at once: the generation
        it was told about is already the group's."""
        c, clock = coordinator()
        syncs = {}

        def sync_now(result):
            syncs[result.member_id] = c.sync(
                "g",
                generation_id=result.generation_id,
                member_id=result.member_id,
                assignments={result.member_id: b"mine"} if result.members else {},
            )

        a, b = join(c, client="a"), join(c, client="b")
        a.addCallback(sync_now)
        b.addCallback(sync_now)
        clock.advance(0)
        assert {m: fired(d) for m, d in syncs.items()} == {
            "a-1": SyncResult(NONE, b"mine"),
            "b-2": SyncResult(NONE, b""),
        }

    def test_cancelled_join_is_not_answered_again(self):
        """Cancelling a parked JoinGroup's Deferred only drops the answer: the member still
        counts as joined and the others proceed."""
        c, clock = coordinator()
        (a, b), _ = form(c, clock, 2)
        parked = rejoin(c, a)
        parked.cancel()
        assert isinstance(fired(parked).value, defer.CancelledError)
        result = fired(rejoin(c, b))
        assert result.generation_id == 2 and result.leader == a

    def test_heartbeats_restart_the_session_timer(self):
        """Heartbeats within the session timeout keep a member for as long as they come."""
        c, clock = coordinator()
        (a,), _ = form(c, clock, 1)
        for _ in range(20):
            clock.advance(seconds(SESSION_MS) - TICK)
            assert c.heartbeat("g", generation_id=1, member_id=a) is NONE
        assert len(clock.getDelayedCalls()) == 1
