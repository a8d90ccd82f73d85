"""``GroupCoordinator`` by property: random JoinGroup / SyncGroup / Heartbeat / LeaveGroup /
OffsetCommit / time sequences from up to four consumers, checked against the invariants of the
classic protocol after every step."""

from __future__ import annotations

from coordinator_helpers import coordinator, join
from hypothesis import given, settings
from hypothesis import strategies as st

from tmq.groups.coordinator import GroupCoordinator, JoinResult, SyncResult
from tmq.groups.group import GroupState
from tmq.protocol.errors import ErrorCode

GROUP = "g"
CLIENTS = 4
PROTOCOLS = [
    (("range", b"r1"),),
    (("range", b"r2"), ("roundrobin", b"x")),
    (("roundrobin", b"y"),),
]

client = st.integers(0, CLIENTS - 1)
#: A consumer's next step as a client library would take it (most operations).
proceed = st.tuples(st.just("proceed"), client, st.booleans())
advance = st.tuples(st.just("advance"), st.sampled_from([0, 1, 500, 1_000, 2_999, 3_000, 10_000]))
#: Anything else a client (or a buggy one) may send.
chaos = st.one_of(
    st.tuples(
        st.just("join"),
        client,
        st.booleans(),  # forget the member id first
        st.booleans(),  # require_known_member_id (JoinGroup v4+)
        st.sampled_from(range(len(PROTOCOLS))),
        st.sampled_from(["consumer", "consumer", "consumer", "connect"]),
        st.sampled_from([6_000, 10_000]),  # session timeout
        st.sampled_from([-1, 8_000, 20_000]),  # rebalance timeout (-1: v0)
    ),
    st.tuples(st.just("sync"), client, st.booleans()),  # with an older generation
    st.tuples(st.just("heartbeat"), client),
    st.tuples(st.just("commit"), client, st.booleans()),  # a simple commit
    st.tuples(st.just("leave"), st.lists(st.one_of(client, st.just(None)), min_size=1, max_size=3)),
)
operation = st.integers(0, 9).flatmap(lambda k: proceed if k < 6 else advance if k < 8 else chaos)


class Consumer:
    """What one client knows: its member id, its latest generation, and its next step."""

    def __init__(self, index: int):
        self.name = f"c{index}"
        self.protocols = index % 2  # protocols 0 and 1 share "range"
        self.reset()

    parked = 0  # requests of this consumer not answered yet

    def reset(self):
        self.member_id = ""
        self.generation = -1
        self.members: tuple[str, ...] = ()  # the leader's view of its generation
        self.next = "join"

    def rejoin(self):
        self.generation, self.members, self.next = -1, (), "join"


class Model:
    """Drives the coordinator and checks every answer and every state it reaches."""

    def __init__(self, c: GroupCoordinator, clock):
        self.c = c
        self.clock = clock
        self.consumers = [Consumer(i) for i in range(CLIENTS)]
        self.deferreds = []
        self.fired: dict[int, int] = {}
        self.leaders: dict[int, str] = {}
        #: generation -> the members its leader assigned to (from its JoinGroup answer)
        self.views: dict[int, tuple[str, ...]] = {}
        self.last_generation = 0
        self.max_group_generation = 0

    # -- the group as the coordinator holds it (white box) ------------------------------------

    def group(self):
        return self.c._groups.get(GROUP)

    def check_state(self):
        group = self.group()
        timers = self.c._timers
        assert len(self.clock.getDelayedCalls()) == len(timers)
        for key in timers:
            assert key[1] == GROUP and group is not None
            if key[0] == "join":
                assert group.state is GroupState.PREPARING_REBALANCE
            elif key[0] == "sync":
                assert group.state in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE)
                assert group.pending_sync
            else:
                assert key[2] in group.members or key[2] in group.pending_members
        if group is None:
            return
        assert group.generation_id >= self.max_group_generation
        self.max_group_generation = group.generation_id
        if group.state is GroupState.EMPTY:
            assert not group.members
        elif group.state is not GroupState.PREPARING_REBALANCE:
            # (a rebalance from Empty whose members all left waits out its initial delay)
            assert group.members
        assert (group.leader_id is None) == (not group.members)
        assert group.leader_id is None or group.leader_id in group.members
        if group.state is GroupState.PREPARING_REBALANCE:
            assert ("join", GROUP) in timers  # the join phase always ends
        if group.state is GroupState.COMPLETING_REBALANCE:
            assert group.leader_id in group.pending_sync and ("sync", GROUP) in timers
        for member in group.members.values():
            if member.awaiting_join:
                assert group.state is GroupState.PREPARING_REBALANCE
            if member.awaiting_sync:
                assert group.state is GroupState.COMPLETING_REBALANCE
            if not member.awaiting_join and not member.awaiting_sync:
                # nobody waits on the coordinator: its session timer must run
                assert ("heartbeat", GROUP, member.member_id) in timers

    # -- answers ------------------------------------------------------------------------------

    def track(self, deferred, on_result, consumer, *args):
        self.deferreds.append(deferred)
        consumer.parked += 1

        def fired(result):
            self.fired[id(deferred)] = self.fired.get(id(deferred), 0) + 1
            consumer.parked -= 1
            on_result(result, consumer, *args)
            return result

        deferred.addCallback(fired)

    def joined(self, result: JoinResult, consumer: Consumer, asked_id: str):
        group = self.group()
        if result.error is ErrorCode.NONE:
            assert result.generation_id >= self.last_generation
            self.last_generation = result.generation_id
            assert group.generation_id == result.generation_id
            assert self.leaders.setdefault(result.generation_id, result.leader) == result.leader
            ids = [m.member_id for m in result.members]
            assert len(ids) == len(set(ids))
            assert bool(ids) == (result.member_id == result.leader)
            if ids:
                assert result.member_id in ids
            consumer.member_id = result.member_id
            consumer.generation = result.generation_id
            consumer.members = tuple(ids)
            consumer.next = "sync"
        elif result.error is ErrorCode.MEMBER_ID_REQUIRED:
            assert asked_id == "" and result.member_id
            consumer.rejoin()
            consumer.member_id = result.member_id
        elif result.error is ErrorCode.UNKNOWN_MEMBER_ID:
            consumer.reset()
        else:
            consumer.rejoin()
            assert result.error in (
                ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                ErrorCode.REBALANCE_IN_PROGRESS,
                ErrorCode.NOT_COORDINATOR,
            ), result

    def synced(self, result: SyncResult, consumer: Consumer, member_id: str, generation: int):
        if consumer.member_id == member_id and consumer.generation == generation:
            if result.error is ErrorCode.NONE:
                consumer.next = "heartbeat"
            elif result.error is ErrorCode.UNKNOWN_MEMBER_ID:
                consumer.reset()
            else:
                consumer.rejoin()
        if result.error is ErrorCode.NONE:
            group = self.group()
            assert group.state is GroupState.STABLE
            assert member_id in group.members and group.generation_id == generation
            leader_view = self.leader_view(generation)
            expected = assignment(generation, member_id) if member_id in leader_view else b""
            assert result.assignment == expected
        else:
            assert result.error in (
                ErrorCode.REBALANCE_IN_PROGRESS,
                ErrorCode.UNKNOWN_MEMBER_ID,
                ErrorCode.ILLEGAL_GENERATION,
                ErrorCode.NOT_COORDINATOR,
            ), result

    def leader_view(self, generation):
        return self.views.get(generation, ())

    # -- steps --------------------------------------------------------------------------------

    def step(self, op):
        kind = op[0]
        if kind == "join":
            _, i, forget, require, protocols, protocol_type, session, rebalance = op
            consumer = self.consumers[i]
            if forget:
                consumer.reset()
            asked = consumer.member_id
            d = join(
                self.c,
                asked,
                group=GROUP,
                client=consumer.name,
                session_ms=session,
                rebalance_ms=rebalance,
                protocol_type=protocol_type,
                protocols=PROTOCOLS[protocols],
                require_known_member_id=require,
            )
            self.track(d, self.joined, consumer, asked)
        elif kind == "sync":
            _, i, stale = op
            consumer = self.consumers[i]
            generation = consumer.generation - 1 if stale else consumer.generation
            assignments = {}
            if consumer.members and not stale:
                assignments = {m: assignment(generation, m) for m in consumer.members}
                self.views.setdefault(generation, consumer.members)
            d = self.c.sync(
                GROUP,
                generation_id=generation,
                member_id=consumer.member_id,
                assignments=assignments,
            )
            self.track(d, self.synced, consumer, consumer.member_id, generation)
        elif kind == "heartbeat":
            self.heartbeat(self.consumers[op[1]])
        elif kind == "proceed":
            _, i, require = op
            consumer = self.consumers[i]
            if consumer.parked:  # a client waits for its answer (and may heartbeat)
                if consumer.generation >= 0:
                    self.heartbeat(consumer)
            elif consumer.next == "join":
                self.step(
                    ("join", i, False, require, consumer.protocols, "consumer", 10_000, 20_000)
                )
            elif consumer.next == "sync":
                consumer.next = "heartbeat"  # the answer decides what follows
                self.step(("sync", i, False))
            else:
                self.heartbeat(consumer)
        elif kind == "commit":
            _, i, simple = op
            consumer = self.consumers[i]
            generation, member_id = (
                (-1, "") if simple else (consumer.generation, consumer.member_id)
            )
            error = self.c.check_commit(GROUP, generation_id=generation, member_id=member_id)
            group = self.group()
            if error is ErrorCode.NONE and generation >= 0:
                assert group.state in (GroupState.STABLE, GroupState.PREPARING_REBALANCE)
                assert member_id in group.members and generation == group.generation_id
            elif error is ErrorCode.NONE:
                assert group is None or group.state is GroupState.EMPTY
        elif kind == "leave":
            ids = [self.consumers[i].member_id if i is not None else "ghost" for i in op[1]]
            result = self.c.leave(GROUP, ids)
            assert result.error is ErrorCode.NONE
            assert [member_id for member_id, _ in result.members] == ids
        else:
            self.clock.advance(op[1] / 1000)
        self.check_state()

    def heartbeat(self, consumer: Consumer):
        error = self.c.heartbeat(
            GROUP, generation_id=consumer.generation, member_id=consumer.member_id
        )
        if error is ErrorCode.NONE:
            group = self.group()
            assert group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE)
            assert consumer.member_id in group.members
            assert consumer.generation == group.generation_id
        elif error is ErrorCode.UNKNOWN_MEMBER_ID:
            consumer.reset()
        else:
            consumer.rejoin()

    def drain(self):
        """Let time pass until no timer is left: every member's session ends."""
        for _ in range(10_000):
            calls = self.clock.getDelayedCalls()
            if not calls:
                return
            self.clock.advance(
                max(0.0, min(call.getTime() for call in calls) - self.clock.seconds())
            )
            self.check_state()
        raise AssertionError("timers never stop")

    def all_answered_once(self):
        assert all(self.fired.get(id(d)) == 1 for d in self.deferreds)


def assignment(generation: int, member_id: str) -> bytes:
    return f"{generation}:{member_id}".encode()


class PropertyTests:
    @settings(max_examples=200, deadline=None)
    @given(
        ops=st.lists(operation, min_size=30, max_size=150),
        delay=st.sampled_from([0, 3_000]),
        drain_first=st.booleans(),
    )
    def test_invariants(self, ops, delay, drain_first):
        """Generations only grow, each generation has one leader and only the leader sees the
        members, a successful heartbeat or commit comes from a member of the current generation
        of a Stable (or assigning) group, a successful sync gets the leader's assignment, every
        member not waiting for the coordinator has a session timer, every request is answered
        exactly once (after time passes or at close), and no timer outlives close()."""
        c, clock = coordinator(delay_ms=delay)
        model = Model(c, clock)
        for op in ops:
            model.step(op)
        if drain_first:
            model.drain()
            model.all_answered_once()
        c.close()
        model.all_answered_once()
        assert clock.getDelayedCalls() == [] and c._timers == {}
