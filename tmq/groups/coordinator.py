"""The group coordinator: every classic consumer group of this broker, driven through JoinGroup
v0-5, SyncGroup v0-3, Heartbeat v0-3 and LeaveGroup v0-3, with session and rebalance timeouts
on an injected clock; plus the generation check of OffsetCommit and the views DescribeGroups and
ListGroups answer from (kafka-notes §2.9, §2.12).

Sans-IO: the broker's request handlers call one method per request and encode the result. The
rules are Kafka's classic-group rules (``GroupMetadataManager`` in the ``group-coordinator``
module, which replaced ``GroupCoordinator.scala``). What each request gets, state by state:

* **Empty** (no members): a new member's JoinGroup starts a rebalance; SyncGroup, Heartbeat
  and a member's OffsetCommit get UNKNOWN_MEMBER_ID.
* **PreparingRebalance**: JoinGroups are parked until the join phase ends; SyncGroup and
  Heartbeat get REBALANCE_IN_PROGRESS; members' OffsetCommits are accepted.
* **CompletingRebalance**: a member's JoinGroup with unchanged protocols gets the current
  generation again (a retry whose answer was lost), any other JoinGroup starts a rebalance;
  SyncGroups are parked until the leader's; Heartbeat gets NONE (Kafka before 2.7 answered
  REBALANCE_IN_PROGRESS); OffsetCommit gets REBALANCE_IN_PROGRESS.
* **Stable**: a follower's JoinGroup with unchanged protocols gets the current generation; the
  leader's, one with changed protocols, or a new member's starts a rebalance; SyncGroup gets
  the member's assignment; Heartbeat and OffsetCommit get NONE.

Every request of a member checks, in this order: the member id is known (UNKNOWN_MEMBER_ID),
then the generation is the group's (ILLEGAL_GENERATION); only then the state decides.

**Join phase.** A rebalance waits until every member has sent a JoinGroup (and every member id
handed out with MEMBER_ID_REQUIRED has been used or expired), or until the rebalance timeout —
the longest ``rebalance_timeout_ms`` of the members — has passed; members that did not rejoin
are then removed. A rebalance that starts from Empty waits ``initial_rebalance_delay_ms``
instead (``group.initial.rebalance.delay.ms``), extended by that delay again whenever a new
member joined meanwhile, up to the rebalance timeout, so consumers starting together form one
generation. The join phase ends with ``generation + 1``: the leader's JoinGroup response lists
every member with its metadata, the followers' responses list none.

**Sync phase.** Every member sends SyncGroup; the leader's carries the assignments. Followers'
SyncGroups wait for it; the leader's makes the group Stable and answers every waiting member
with its assignment (empty for a member the leader left out). Members that have not sent
SyncGroup within the rebalance timeout are removed and the group rebalances.

**Failure.** Each member has a session timer, restarted by its heartbeats (and its successful
OffsetCommits in Stable and PreparingRebalance), by the end of a join phase and by its SyncGroup
answer. A member whose timer runs out is removed and the group rebalances, unless it is waiting
for the coordinator at that moment (a parked JoinGroup or SyncGroup of a member that is not
new). A new member's first JoinGroup is bounded by ``new_member_join_timeout_ms`` instead.
A member id handed out with MEMBER_ID_REQUIRED expires after the session timeout of the
JoinGroup that asked for it.

**Answers.** Each method returns (or fires) its answer once. A member's newer JoinGroup or
SyncGroup answers an older one of the same member still parked with REBALANCE_IN_PROGRESS
(Kafka never answers it; a Java consumer retries on this code). Deferreds fire after the
coordinator's state has settled, never in the middle of a transition, so a callback may call
the coordinator again. Cancelling a returned Deferred only drops that answer: the member keeps
its place, as it does in Kafka while the client's request is parked.

**Static membership** (``group_instance_id``, KIP-345). A member that joins with an instance
id is the group's member for that instance. When the instance joins again with no member id
(a restarted consumer), it takes its predecessor's place under a new member id: the old member
id is fenced (its parked requests, and any later request naming the instance with it, get
FENCED_INSTANCE_ID), and a Stable group whose protocol stays the same does not rebalance (the
member gets the current generation and, with SyncGroup, its predecessor's assignment); in any
other state the group rebalances as for a rejoin. Requests that carry the instance id are
checked against it (Kafka's ``validateMember``), and LeaveGroup v3 removes a member by its
instance id alone. Members still expire by their session timeouts.

Groups that only commit offsets (generation -1) never reach this coordinator's group table:
``groups()`` and ``describe()`` know the groups that sent a JoinGroup since the coordinator
started. Not thread-safe; call on the reactor thread.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from tmq.protocol.errors import ErrorCode

from .answers import NO_GENERATION, UNKNOWN_MEMBER_ID, JoinResult, LeaveResult, SyncResult
from .group import (
    Group,
    GroupDescription,
    GroupListing,
    GroupState,
    JoinMember,
    Member,
    MemberDescription,
    Protocols,
)

__all__ = [
    "DEFAULT_INITIAL_REBALANCE_DELAY_MS",
    "DEFAULT_MAX_SESSION_TIMEOUT_MS",
    "DEFAULT_MIN_SESSION_TIMEOUT_MS",
    "DEFAULT_NEW_MEMBER_JOIN_TIMEOUT_MS",
    "GroupCoordinator",
    "GroupDescription",
    "GroupListing",
    "JoinMember",
    "JoinResult",
    "LeaveResult",
    "MemberDescription",
    "SyncResult",
]

_log = Logger()

#: Kafka's broker defaults: ``group.initial.rebalance.delay.ms``,
#: ``group.min.session.timeout.ms``, ``group.max.session.timeout.ms``, and the bound on a new
#: member's first JoinGroup (``classicGroupNewMemberJoinTimeoutMs``).
DEFAULT_INITIAL_REBALANCE_DELAY_MS = 3_000
DEFAULT_MIN_SESSION_TIMEOUT_MS = 6_000
DEFAULT_MAX_SESSION_TIMEOUT_MS = 1_800_000
DEFAULT_NEW_MEMBER_JOIN_TIMEOUT_MS = 300_000


class _JoinRequest(NamedTuple):
    group_id: str
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    require_known_member_id: bool


def _random_member_id(client_id: str) -> str:
    return f"{client_id}-{uuid.uuid4()}"


class GroupCoordinator:
    """Classic consumer groups (see the module for the rules).

    :param clock: provides ``callLater``; every timer of the coordinator runs on it, and each is
        cancelled as soon as nothing waits for it any more.
    :param initial_rebalance_delay_ms: ``group.initial.rebalance.delay.ms``.
    :param min_session_timeout_ms: ``group.min.session.timeout.ms``; a JoinGroup with a shorter
        session timeout gets INVALID_SESSION_TIMEOUT.
    :param max_session_timeout_ms: ``group.max.session.timeout.ms``; likewise for longer ones.
    :param new_member_join_timeout_ms: how long a new member's first JoinGroup may stay parked.
    :param new_member_id: makes a member id from the client id; the ids must never repeat
        (default: ``<client_id>-<uuid4>``, as Kafka).
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        initial_rebalance_delay_ms: int = DEFAULT_INITIAL_REBALANCE_DELAY_MS,
        min_session_timeout_ms: int = DEFAULT_MIN_SESSION_TIMEOUT_MS,
        max_session_timeout_ms: int = DEFAULT_MAX_SESSION_TIMEOUT_MS,
        new_member_join_timeout_ms: int = DEFAULT_NEW_MEMBER_JOIN_TIMEOUT_MS,
        new_member_id: Callable[[str], str] = _random_member_id,
    ):
        if initial_rebalance_delay_ms < 0 or new_member_join_timeout_ms < 0:
            raise ValueError("delays and timeouts must not be negative")
        if not 0 <= min_session_timeout_ms <= max_session_timeout_ms:
            raise ValueError("need 0 <= min_session_timeout_ms <= max_session_timeout_ms")
        self._clock = clock
        self._initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self._min_session_timeout_ms = min_session_timeout_ms
        self._max_session_timeout_ms = max_session_timeout_ms
        self._new_member_join_timeout_ms = new_member_join_timeout_ms
        self._new_member_id = new_member_id
        self._groups: dict[str, Group] = {}
        #: Armed timers by key: ("join", group), ("sync", group), ("heartbeat", group, member).
        self._timers: dict[tuple[str, ...], IDelayedCall] = {}
        #: Answers decided but not delivered yet (fired once the state has settled).
        self._outbox: deque[tuple[defer.Deferred, Any]] = deque()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called: every request gets COORDINATOR_NOT_AVAILABLE."""
        return self._closed

    # -- JoinGroup ----------------------------------------------------------------------------

    def join(
        self,
        group_id: str,
        *,
        member_id: str,
        group_instance_id: str | None = None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        require_known_member_id: bool,
    ) -> defer.Deferred[JoinResult]:
        """A JoinGroup request; fires with its ``JoinResult`` now or when the join phase ends.

        :param member_id: empty for a consumer without a member id.
        :param rebalance_timeout_ms: negative for JoinGroup v0, which has none: the session
            timeout stands in (as in Kafka).
        :param require_known_member_id: answer a consumer without a member id with
            MEMBER_ID_REQUIRED and a new member id to join with; Kafka does for JoinGroup v4+
            without a ``group_instance_id``.
        """
        waiter: defer.Deferred[JoinResult] = defer.Deferred()
        try:
            error = None
            low, high = self._min_session_timeout_ms, self._max_session_timeout_ms
            if self._closed:
                error = ErrorCode.COORDINATOR_NOT_AVAILABLE
            elif not group_id:
                error = ErrorCode.INVALID_GROUP_ID
            elif not low <= session_timeout_ms <= high:
                error = ErrorCode.INVALID_SESSION_TIMEOUT
            if error is not None:
                self._answer(waiter, JoinResult(error, member_id=member_id))
                return waiter
            request = _JoinRequest(
                group_id,
                member_id,
                group_instance_id,
                client_id,
                client_host,
                session_timeout_ms,
                rebalance_timeout_ms if rebalance_timeout_ms >= 0 else session_timeout_ms,
                protocol_type,
                tuple((name, bytes(metadata)) for name, metadata in protocols),
                require_known_member_id,
            )
            group = self._groups.get(group_id)
            if (
                member_id == UNKNOWN_MEMBER_ID
                and group is not None
                and group_instance_id in group.static_members
            ):
                self._join_static_member_again(group, request, waiter)
            elif member_id == UNKNOWN_MEMBER_ID:
                if group is None:
                    group = self._groups[group_id] = Group(group_id)
                self._join_new_member(group, request, waiter)
            elif group is None:
                self._answer(waiter, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=member_id))
            else:
                self._join_known_member(group, request, waiter)
            return waiter
        finally:
            self._flush()

    def _join_new_member(self, group: Group, request: _JoinRequest, waiter) -> None:
        names = frozenset(name for name, _ in request.protocols)
        if not group.supports_protocols(request.protocol_type, names):
            self._answer(waiter, JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return
        member_id = self._new_member_id(request.client_id)
        if request.require_known_member_id:
            group.pending_members.add(member_id)
            self._schedule(
                ("heartbeat", group.group_id, member_id),
                request.session_timeout_ms,
                self._session_expired,
                group.group_id,
                member_id,
            )
            self._answer(waiter, JoinResult(ErrorCode.MEMBER_ID_REQUIRED, member_id=member_id))
        else:
            self._add_member_and_rebalance(group, member_id, request, waiter)

    def _join_known_member(self, group: Group, request: _JoinRequest, waiter) -> None:
        member_id = request.member_id
        names = frozenset(name for name, _ in request.protocols)
        if not group.supports_protocols(request.protocol_type, names):
            self._answer(
                waiter, JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id=member_id)
            )
            return
        if member_id in group.pending_members:
            self._add_member_and_rebalance(group, member_id, request, waiter)
            return
        member = group.members.get(member_id)
        instance = request.group_instance_id
        if instance is not None and group.static_members.get(instance) != member_id:
            self._answer(waiter, JoinResult(ErrorCode.FENCED_INSTANCE_ID, member_id=member_id))
        elif member is None:
            self._answer(waiter, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=member_id))
        elif group.state is GroupState.PREPARING_REBALANCE:
            self._update_member_and_rebalance(group, member, request, waiter)
        elif group.state is GroupState.COMPLETING_REBALANCE:
            if member.matches(request.protocols):
                # a retry of a JoinGroup whose answer was lost: the generation again
                self._answer(waiter, self._join_result(group, member))
            else:
                self._update_member_and_rebalance(group, member, request, waiter)
        elif group.state is GroupState.STABLE:
            # the leader rejoins to make the group reassign (e.g. new partitions)
            if group.is_leader(member_id) or not member.matches(request.protocols):
                self._update_member_and_rebalance(group, member, request, waiter)
            else:
                self._answer(waiter, self._join_result(group, member, leader_view=False))
        else:  # pragma: no cover - an empty group has no members
            self._answer(waiter, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=member_id))

    def _join_static_member_again(self, group: Group, request: _JoinRequest, waiter) -> None:
        names = frozenset(name for name, _ in request.protocols)
        if not group.supports_protocols(request.protocol_type, names):
            self._answer(waiter, JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return
        instance = request.group_instance_id
        old_id = group.static_members[instance]
        new_id = self._new_member_id(request.client_id)
        member = group.members[old_id]
        self._cancel(("heartbeat", group.group_id, old_id))
        self._answer_parked(member, ErrorCode.FENCED_INSTANCE_ID, member_id=old_id)
        group.replace_static_member(old_id, new_id)
        member.client_id, member.client_host = request.client_id, request.client_host
        group.update_member(
            member,
            request.protocols,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            session_timeout_ms=request.session_timeout_ms,
        )
        self._schedule_session(group, member)
        _log.info(
            "group {group}: static member {instance} joined again as {new} (was {old})",
            group=group.group_id,
            instance=instance,
            new=new_id,
            old=old_id,
        )
        if group.state is GroupState.STABLE and group.select_protocol() == group.protocol_name:
            # the restarted instance takes its predecessor's place: no rebalance
            self._answer(waiter, self._join_result(group, member, leader_view=False))
        else:
            member.join_waiter = waiter
            self._maybe_rebalance(group, f"static member {instance} joined again")

    def _add_member_and_rebalance(
        self, group: Group, member_id: str, request: _JoinRequest, waiter
    ) -> None:
        member = Member(
            member_id,
            group_instance_id=request.group_instance_id,
            client_id=request.client_id,
            client_host=request.client_host,
            session_timeout_ms=request.session_timeout_ms,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            protocol_type=request.protocol_type,
            protocols=request.protocols,
        )
        if (
            group.state is GroupState.PREPARING_REBALANCE
            and group.previous_state is GroupState.EMPTY
        ):
            group.new_member_added = True
        group.add(member)
        member.join_waiter = waiter
        # a new member cannot heartbeat yet: only the new-member timeout bounds its wait
        self._schedule_session(group, member, self._new_member_join_timeout_ms)
        self._maybe_rebalance(group, f"member {member_id} joined")

    def _update_member_and_rebalance(
        self, group: Group, member: Member, request: _JoinRequest, waiter
    ) -> None:
        group.update_member(
            member,
            request.protocols,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            session_timeout_ms=request.session_timeout_ms,
        )
        superseded, member.join_waiter = member.join_waiter, waiter
        if superseded is not None:
            self._answer(
                superseded,
                JoinResult(ErrorCode.REBALANCE_IN_PROGRESS, member_id=member.member_id),
            )
        self._maybe_rebalance(group, f"member {member.member_id} rejoined")

    def _join_result(self, group: Group, member: Member, *, leader_view: bool = True):
        leader = group.is_leader(member.member_id)
        return JoinResult(
            ErrorCode.NONE,
            generation_id=group.generation_id,
            protocol_name=group.protocol_name or "",
            leader=group.leader_id or "",
            member_id=member.member_id,
            members=group.join_members() if leader and leader_view else (),
        )

    # -- rebalancing --------------------------------------------------------------------------

    def _maybe_rebalance(self, group: Group, reason: str) -> None:
        """Start a rebalance, or, with one preparing, end its join phase if it may end."""
        if group.can_rebalance:
            self._prepare_rebalance(group, reason)
        else:
            self._maybe_complete_join(group)

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.state is GroupState.COMPLETING_REBALANCE:
            # members waiting for the leader's assignment must rejoin instead
            for member in group.members.values():
                member.assignment = b""
            self._propagate_assignment(group, ErrorCode.REBALANCE_IN_PROGRESS)
        self._clear_pending_sync(group)
        initial = group.state is GroupState.EMPTY
        group.transition_to(GroupState.PREPARING_REBALANCE)
        _log.info(
            "group {group}: rebalancing from generation {generation} ({reason})",
            group=group.group_id,
            generation=group.generation_id,
            reason=reason,
        )
        if initial:
            # (Kafka does not reset it: a flag left from an earlier one would extend this one)
            group.new_member_added = False
            delay = self._initial_rebalance_delay_ms
            remaining = max(group.rebalance_timeout_ms - delay, 0)
            self._schedule(
                ("join", group.group_id),
                delay,
                self._initial_delay_elapsed,
                group.group_id,
                delay,
                remaining,
            )
        elif group.has_all_members_joined():
            self._complete_join(group)
        else:
            self._schedule(
                ("join", group.group_id),
                group.rebalance_timeout_ms,
                self._rebalance_timed_out,
                group.group_id,
            )

    def _maybe_complete_join(self, group: Group) -> None:
        """End the join phase if everyone joined, unless it is an initial rebalance (whose
        delay timer ends it)."""
        if (
            group.state is GroupState.PREPARING_REBALANCE
            and group.previous_state is not GroupState.EMPTY
            and group.has_all_members_joined()
        ):
            self._complete_join(group)

    def _initial_delay_elapsed(self, group_id: str, delay_ms: int, remaining_ms: int) -> None:
        group = self._groups[group_id]
        if group.new_member_added and remaining_ms > 0:
            group.new_member_added = False
            next_delay = min(self._initial_rebalance_delay_ms, remaining_ms)
            self._schedule(
                ("join", group_id),
                next_delay,
                self._initial_delay_elapsed,
                group_id,
                next_delay,
                max(remaining_ms - delay_ms, 0),
            )
        else:
            self._complete_join(group)

    def _rebalance_timed_out(self, group_id: str) -> None:
        self._complete_join(self._groups[group_id])

    def _complete_join(self, group: Group) -> None:
        """End the join phase: drop the members that did not rejoin, then start the next
        generation and answer every parked JoinGroup."""
        self._cancel(("join", group.group_id))
        for member in group.not_yet_rejoined():
            self._remove_member(group, member)
        group.elect_joined_leader()  # every remaining member rejoined
        group.init_next_generation()
        if group.state is GroupState.EMPTY:
            _log.info(
                "group {group}: empty at generation {generation}",
                group=group.group_id,
                generation=group.generation_id,
            )
            return
        _log.info(
            "group {group}: generation {generation} with {count} members, leader {leader}, "
            "protocol {protocol}",
            group=group.group_id,
            generation=group.generation_id,
            count=len(group.members),
            leader=group.leader_id,
            protocol=group.protocol_name,
        )
        for member in group.members.values():
            self._answer_join(member, self._join_result(group, member))
            self._schedule_session(group, member)
            member.is_new = False
            group.pending_sync.add(member.member_id)
        self._schedule(
            ("sync", group.group_id),
            group.rebalance_timeout_ms,
            self._sync_timed_out,
            group.group_id,
            group.generation_id,
        )

    # -- SyncGroup ----------------------------------------------------------------------------

    def sync(
        self,
        group_id: str,
        *,
        generation_id: int,
        member_id: str,
        assignments: Mapping[str, bytes],
        group_instance_id: str | None = None,
    ) -> defer.Deferred[SyncResult]:
        """A SyncGroup request; fires with the member's assignment once the leader has sent
        the assignments (``assignments``: member id -> assignment; the leader's only)."""
        waiter: defer.Deferred[SyncResult] = defer.Deferred()
        try:
            error = self._check_member(group_id, member_id, generation_id, group_instance_id)
            group = self._groups.get(group_id)
            if error is not None:
                self._answer(waiter, SyncResult(error))
            elif group.state is GroupState.PREPARING_REBALANCE:
                self._answer(waiter, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
            elif group.state is GroupState.COMPLETING_REBALANCE:
                member = group.members[member_id]
                superseded, member.sync_waiter = member.sync_waiter, waiter
                if superseded is not None:
                    self._answer(superseded, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
                self._synced(group, member_id)
                if group.is_leader(member_id):
                    for member in group.members.values():
                        member.assignment = bytes(assignments.get(member.member_id, b""))
                    self._propagate_assignment(group, ErrorCode.NONE)
                    group.transition_to(GroupState.STABLE)
            else:  # Stable
                self._synced(group, member_id)
                self._answer(
                    waiter, SyncResult(ErrorCode.NONE, group.members[member_id].assignment)
                )
            return waiter
        finally:
            self._flush()

    def _synced(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            self._cancel(("sync", group.group_id))

    def _clear_pending_sync(self, group: Group) -> None:
        group.pending_sync.clear()
        self._cancel(("sync", group.group_id))

    def _propagate_assignment(self, group: Group, error: ErrorCode) -> None:
        """Answer every parked SyncGroup with the member's assignment and ``error``."""
        for member in group.members.values():
            waiter, member.sync_waiter = member.sync_waiter, None
            if waiter is not None:
                self._answer(waiter, SyncResult(error, member.assignment))
                self._schedule_session(group, member)

    def _sync_timed_out(self, group_id: str, generation_id: int) -> None:
        group = self._groups[group_id]
        if generation_id != group.generation_id or not group.pending_sync:
            return  # pragma: no cover - the timer is cancelled in both cases
        silent = [m for m in group.members.values() if m.member_id in group.pending_sync]
        for member in silent:
            self._remove_member(group, member)
        self._prepare_rebalance(
            group, f"no SyncGroup from {', '.join(m.member_id for m in silent)}"
        )

    # -- Heartbeat ----------------------------------------------------------------------------

    def heartbeat(
        self,
        group_id: str,
        *,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None = None,
    ) -> ErrorCode:
        """A Heartbeat request: restarts the member's session timer. REBALANCE_IN_PROGRESS
        while the group prepares a rebalance (the member must rejoin)."""
        error = self._check_member(group_id, member_id, generation_id, group_instance_id)
        if error is not None:
            return error
        group = self._groups[group_id]
        self._schedule_session(group, group.members[member_id])
        if group.state is GroupState.PREPARING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    # -- LeaveGroup ---------------------------------------------------------------------------

    def leave(
        self,
        group_id: str,
        member_ids: Sequence[str],
        group_instance_ids: Sequence[str | None] | None = None,
    ) -> LeaveResult:
        """A LeaveGroup request for ``member_ids`` (one for v0-2; v3 pairs each with a
        ``group_instance_ids`` entry): each member id the group does not know (or every one,
        if the group does not exist) gets UNKNOWN_MEMBER_ID. A static member leaves by its
        instance id, with its member id or an empty one (another member id:
        FENCED_INSTANCE_ID); the answers are in request order."""
        instances = group_instance_ids or [None] * len(member_ids)
        try:
            if self._closed:
                return LeaveResult(ErrorCode.COORDINATOR_NOT_AVAILABLE)
            if not group_id:
                return LeaveResult(ErrorCode.INVALID_GROUP_ID)
            group = self._groups.get(group_id)
            if group is None:
                return LeaveResult(
                    ErrorCode.NONE, tuple((m, ErrorCode.UNKNOWN_MEMBER_ID) for m in member_ids)
                )
            answers = []
            left = False
            for member_id, instance in zip(member_ids, instances, strict=True):
                leaving = member_id
                if instance is not None:
                    leaving = group.static_members.get(instance)
                    if leaving is None:
                        answers.append((member_id, ErrorCode.UNKNOWN_MEMBER_ID))
                        continue
                    if member_id not in (UNKNOWN_MEMBER_ID, leaving):
                        answers.append((member_id, ErrorCode.FENCED_INSTANCE_ID))
                        continue
                member = group.members.get(leaving)
                if leaving in group.pending_members:
                    group.remove(leaving)
                    self._cancel(("heartbeat", group_id, leaving))
                elif member is None:
                    answers.append((member_id, ErrorCode.UNKNOWN_MEMBER_ID))
                    continue
                else:
                    self._remove_member(group, member)
                answers.append((member_id, ErrorCode.NONE))
                left = True
            # (from Empty only a pending member id can have left: nothing to rebalance)
            if left and group.state is not GroupState.EMPTY:
                self._maybe_rebalance(group, "LeaveGroup")
            return LeaveResult(ErrorCode.NONE, tuple(answers))
        finally:
            self._flush()

    # -- OffsetCommit -------------------------------------------------------------------------

    def check_commit(
        self,
        group_id: str,
        *,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None = None,
    ) -> ErrorCode:
        """Whether an OffsetCommit with this generation and member id may store offsets.

        A commit with generation -1 and no member id (a consumer that assigns partitions
        itself, or an admin tool) is allowed while the group has no members, and so is any
        commit with a negative generation to a group this coordinator does not know. Any other
        commit must come from a member of the current generation: UNKNOWN_MEMBER_ID,
        ILLEGAL_GENERATION (also a generation >= 0 for an unknown group), and
        REBALANCE_IN_PROGRESS while the members wait for their assignments. A member's
        accepted commit restarts its session timer, as a heartbeat does.
        """
        if self._closed:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.NONE if generation_id < 0 else ErrorCode.ILLEGAL_GENERATION
        if generation_id < 0 and group.state is GroupState.EMPTY:
            return ErrorCode.NONE
        if generation_id < 0 and member_id == UNKNOWN_MEMBER_ID:
            return ErrorCode.UNKNOWN_MEMBER_ID  # only members may commit to a live group
        error = group.validate_member(member_id, group_instance_id)
        if error is not None:
            return error
        member = group.members[member_id]
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if group.state is GroupState.COMPLETING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        self._schedule_session(group, member)
        return ErrorCode.NONE

    # -- DescribeGroups and ListGroups --------------------------------------------------------

    def describe(self, group_id: str) -> GroupDescription:
        """A DescribeGroups entry for ``group_id``; a group this coordinator does not know is
        "Dead" with no members (what DescribeGroups v0-5 answer)."""
        if self._closed:
            return GroupDescription(
                ErrorCode.COORDINATOR_NOT_AVAILABLE, group_id, "", "", "", (), NO_GENERATION
            )
        group = self._groups.get(group_id)
        if group is None:
            return GroupDescription(
                ErrorCode.NONE, group_id, GroupState.DEAD.value, "", "", (), NO_GENERATION
            )
        return group.describe()

    def groups(self) -> list[GroupListing]:
        """ListGroups: every known group, in the order they were created (none once closed)."""
        return [group.listing() for group in self._groups.values()]

    # -- shutdown -----------------------------------------------------------------------------

    def unload(self, group_id: str) -> None:
        """Stop coordinating ``group_id`` (its coordinator moved to another broker): its
        parked JoinGroup and SyncGroup requests are answered NOT_COORDINATOR, so the clients
        look the coordinator up again, and its timers are cancelled. Its committed offsets
        live in the metadata store and stay."""
        group = self._groups.pop(group_id, None)
        if group is None:
            return
        try:
            self._drop(group)
        finally:
            self._flush()

    def _drop(self, group: Group) -> None:
        group.transition_to(GroupState.DEAD)
        for member in group.members.values():
            self._answer_join(
                member, JoinResult(ErrorCode.NOT_COORDINATOR, member_id=member.member_id)
            )
            waiter, member.sync_waiter = member.sync_waiter, None
            if waiter is not None:
                self._answer(waiter, SyncResult(ErrorCode.NOT_COORDINATOR))
        for key in [k for k in self._timers if k[1] == group.group_id]:
            self._cancel(key)

    def close(self) -> None:
        """Stop coordinating every group (shutdown): as ``unload`` for each; later requests
        get COORDINATOR_NOT_AVAILABLE. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for group in self._groups.values():
                self._drop(group)
            self._groups.clear()
        finally:
            self._flush()

    # -- members and sessions -----------------------------------------------------------------

    def _check_member(
        self, group_id: str, member_id: str, generation_id: int, group_instance_id: str | None
    ) -> ErrorCode | None:
        """The error of a member's SyncGroup or Heartbeat before its group's state counts:
        ``None`` for a member of the current generation of a group with members."""
        if self._closed:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        error = group.validate_member(member_id, group_instance_id)
        if error is not None:
            return error
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        return None

    def _schedule_session(
        self, group: Group, member: Member, timeout_ms: int | None = None
    ) -> None:
        """(Re)start ``member``'s session timer: its session timeout, or ``timeout_ms``."""
        self._schedule(
            ("heartbeat", group.group_id, member.member_id),
            member.session_timeout_ms if timeout_ms is None else timeout_ms,
            self._session_expired,
            group.group_id,
            member.member_id,
        )

    def _session_expired(self, group_id: str, member_id: str) -> None:
        group = self._groups[group_id]
        if member_id in group.pending_members:
            # a MEMBER_ID_REQUIRED id never used
            group.remove(member_id)
            if group.state is GroupState.PREPARING_REBALANCE and group.has_all_members_joined():
                self._complete_join(group)
            return
        member = group.members.get(member_id)
        if member is None or member.heartbeat_satisfied:
            return  # its parked request restarts the timer when answered
        _log.info(
            "group {group}: member {member} failed (no heartbeat in {timeout} ms)",
            group=group_id,
            member=member_id,
            timeout=(
                self._new_member_join_timeout_ms if member.is_new else member.session_timeout_ms
            ),
        )
        self._remove_member(group, member)
        if group.state is GroupState.PREPARING_REBALANCE:
            if group.has_all_members_joined():
                self._complete_join(group)
        else:
            self._maybe_rebalance(group, f"member {member_id} failed")

    def _remove_member(self, group: Group, member: Member) -> None:
        """Remove ``member``: its session timer stops and its parked requests are answered
        UNKNOWN_MEMBER_ID (a JoinGroup with an empty member id, so a live consumer joins
        afresh)."""
        group.remove(member.member_id)
        self._cancel(("heartbeat", group.group_id, member.member_id))
        self._answer_parked(member, ErrorCode.UNKNOWN_MEMBER_ID)

    def _answer_parked(self, member: Member, error: ErrorCode, member_id: str = "") -> None:
        """Answer ``member``'s parked JoinGroup (with ``member_id``) and SyncGroup with
        ``error``."""
        self._answer_join(member, JoinResult(error, member_id=member_id))
        waiter, member.sync_waiter = member.sync_waiter, None
        if waiter is not None:
            self._answer(waiter, SyncResult(error))

    def _answer_join(self, member: Member, result: JoinResult) -> None:
        waiter, member.join_waiter = member.join_waiter, None
        if waiter is not None:
            self._answer(waiter, result)

    # -- timers and answers -------------------------------------------------------------------

    def _schedule(self, key: tuple[str, ...], delay_ms: int, fn, *args) -> None:
        """Arm the timer ``key``, replacing the one armed under that key."""
        self._cancel(key)
        self._timers[key] = self._clock.callLater(delay_ms / 1000, self._fire, key, fn, args)

    def _cancel(self, key: tuple[str, ...]) -> None:
        call = self._timers.pop(key, None)
        if call is not None:
            call.cancel()

    def _fire(self, key: tuple[str, ...], fn, args) -> None:
        del self._timers[key]
        try:
            fn(*args)
        finally:
            self._flush()

    def _answer(self, waiter: defer.Deferred, result) -> None:
        self._outbox.append((waiter, result))

    def _flush(self) -> None:
        """Fire the decided answers; a callback that calls the coordinator again sees settled
        state (and its own answers are fired by the same loop). A Deferred its caller
        cancelled swallows the answer (the Deferreds have no canceller); one answered twice
        would raise ``AlreadyCalledError``."""
        while self._outbox:
            waiter, result = self._outbox.popleft()
            waiter.callback(result)
