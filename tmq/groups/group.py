"""One consumer group under the classic protocol: its state, generation, members, leader and
selected protocol (after Kafka's ``ClassicGroup``, ``ClassicGroupMember`` and
``ClassicGroupState`` in ``group-coordinator/.../classic/``).

Pure bookkeeping, no timers and no Deferreds: a member's parked JoinGroup and SyncGroup are
opaque ``join_waiter`` / ``sync_waiter`` objects that ``GroupCoordinator`` sets and answers.
The rules kept here are the ones that need nothing but the group:

* **States** carry Kafka's names, as DescribeGroups and ListGroups spell them. Transitions:
  Empty -> PreparingRebalance (a member joins); PreparingRebalance -> CompletingRebalance (the
  join phase ends with members) or -> Empty (it ends with none); CompletingRebalance -> Stable
  (the leader's SyncGroup); CompletingRebalance or Stable -> PreparingRebalance (a member
  joins, leaves, changes its protocols or fails); any state -> Dead (the coordinator closes).
* **Leader.** The first member added to a leaderless group leads it. When the leader is
  removed the longest-standing remaining member (the first in join order) takes over; when a
  join phase completes, a leader that did not rejoin hands over to the first member that did.
* **Protocols.** Once the group is out of Empty, a joining member must name the group's protocol
  type and at least one protocol that *every* member supports. A new generation's protocol is
  chosen by vote: each member votes for its most preferred protocol among those all members
  support, and the most votes win (a tie goes to the protocol voted for by the earliest member).
* **Joined.** A member has joined the current round while it has a parked JoinGroup; the join
  phase may complete once every member has and no MEMBER_ID_REQUIRED member id is outstanding.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, NamedTuple

from tmq.protocol.errors import ErrorCode

__all__ = [
    "Group",
    "GroupDescription",
    "GroupListing",
    "GroupState",
    "JoinMember",
    "Member",
    "MemberDescription",
    "Protocols",
]

#: A member's protocols in its order of preference: (name, opaque metadata).
Protocols = tuple[tuple[str, bytes], ...]


class GroupState(enum.Enum):
    """A classic group's state; the value is Kafka's spelling."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


#: For each state, the states a group may enter it from (``ClassicGroupState``).
_VALID_PREVIOUS: dict[GroupState, frozenset[GroupState]] = {
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}
    ),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}


class JoinMember(NamedTuple):
    """One member as the leader's JoinGroup response lists it."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


class MemberDescription(NamedTuple):
    """One member in DescribeGroups: metadata and assignment only while the group is Stable."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


class GroupDescription(NamedTuple):
    """A DescribeGroups entry. ``protocol`` is set only while the group is Stable."""

    error: ErrorCode
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberDescription, ...]
    #: Not on the wire (DescribeGroups does not carry it): for logs and tools.
    generation_id: int


class GroupListing(NamedTuple):
    """A ListGroups entry."""

    group_id: str
    protocol_type: str
    state: str


class Member:
    """One member of a group.

    ``is_new`` is true from the member's first JoinGroup until its first join phase completes:
    until then no heartbeat can keep it (it has no generation to heartbeat with), and only the
    coordinator's new-member join timeout bounds its wait.
    """

    __slots__ = (
        "assignment",
        "client_host",
        "client_id",
        "group_instance_id",
        "is_new",
        "join_waiter",
        "member_id",
        "protocol_type",
        "protocols",
        "rebalance_timeout_ms",
        "session_timeout_ms",
        "sync_waiter",
    )

    def __init__(
        self,
        member_id: str,
        *,
        group_instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: Protocols,
    ):
        self.member_id = member_id
        self.group_instance_id = group_instance_id
        self.client_id = client_id
        self.client_host = client_host
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.protocol_type = protocol_type
        self.protocols = protocols
        self.assignment = b""
        self.is_new = True
        #: The parked JoinGroup / SyncGroup of this member (set and answered by the coordinator).
        self.join_waiter: Any = None
        self.sync_waiter: Any = None

    @property
    def protocol_names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.protocols)

    @property
    def awaiting_join(self) -> bool:
        return self.join_waiter is not None

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_waiter is not None

    @property
    def heartbeat_satisfied(self) -> bool:
        """Whether an expiring session timer spares this member: a member that is not new and
        has a JoinGroup or SyncGroup parked is waiting for the coordinator, not silent
        (``ClassicGroupMember.hasSatisfiedHeartbeat``)."""
        return not self.is_new and (self.awaiting_join or self.awaiting_sync)

    def matches(self, protocols: Protocols) -> bool:
        """Whether ``protocols`` (names, metadata and order) are the ones this member has."""
        return self.protocols == protocols

    def metadata(self, protocol_name: str) -> bytes:
        """This member's metadata for ``protocol_name``, which it must support."""
        for name, metadata in self.protocols:
            if name == protocol_name:
                return metadata
        raise ValueError(f"member {self.member_id} does not support protocol {protocol_name!r}")

    def vote(self, candidates: frozenset[str]) -> str:
        """The first protocol of this member's preference order among ``candidates``."""
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {sorted(candidates)}")


class Group:
    """The membership of one classic group.

    The caller keeps the invariants that need more than the group (timers, answers to parked
    requests); every method here keeps the protocol counts, the leader, and the pending sets
    consistent with ``members``.
    """

    def __init__(self, group_id: str):
        self.group_id = group_id
        self.state = GroupState.EMPTY
        self.previous_state: GroupState | None = None
        self.generation_id = 0
        #: Set by the first member to join an empty group; kept while the group is empty.
        self.protocol_type: str | None = None
        #: The protocol of the current generation; ``None`` while the group is empty.
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        #: Members in join order (a member that leaves and joins again goes to the end).
        self.members: dict[str, Member] = {}
        #: Member ids handed out with MEMBER_ID_REQUIRED and not yet used to join.
        self.pending_members: set[str] = set()
        #: Members of the current generation that have not sent their SyncGroup yet.
        self.pending_sync: set[str] = set()
        #: A member joined during an initial rebalance (from Empty): the delay is extended.
        self.new_member_added = False
        #: Static members (KIP-345): ``group_instance_id`` -> member id.
        self.static_members: dict[str, str] = {}
        self._protocol_counts: dict[str, int] = {}

    # -- state ------------------------------------------------------------------------------

    def transition_to(self, state: GroupState) -> None:
        if self.state not in _VALID_PREVIOUS[state]:
            raise RuntimeError(
                f"group {self.group_id}: no transition from {self.state.value} to {state.value}"
            )
        self.previous_state = self.state
        self.state = state

    @property
    def can_rebalance(self) -> bool:
        """Whether a rebalance may start now (it may not while one is preparing)."""
        return self.state in _VALID_PREVIOUS[GroupState.PREPARING_REBALANCE]

    # -- members ----------------------------------------------------------------------------

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id is not None and self.leader_id == member_id

    def add(self, member: Member) -> None:
        """Add ``member``, which must support one of the group's protocols (checked by the
        caller with ``supports_protocols``)."""
        if member.member_id in self.members:
            raise RuntimeError(f"group {self.group_id}: {member.member_id} is already a member")
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self._count(member.protocol_names, 1)
        self.pending_members.discard(member.member_id)
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id

    def remove(self, member_id: str) -> Member | None:
        """Remove a member or a pending member id; the removed member, if it was one. A
        removed leader hands over to the longest-standing remaining member."""
        member = self.members.pop(member_id, None)
        if member is not None:
            self._count(member.protocol_names, -1)
            if self.static_members.get(member.group_instance_id) == member_id:
                del self.static_members[member.group_instance_id]
        if self.is_leader(member_id):
            self.leader_id = next(iter(self.members), None)
        self.pending_members.discard(member_id)
        self.pending_sync.discard(member_id)
        return member

    def replace_static_member(self, old_id: str, new_id: str) -> Member:
        """The static member ``old_id`` goes on as ``new_id`` (its instance joined again with
        no member id, e.g. after a restart): the same place in the join order, the same
        assignment, leadership and pending SyncGroup (``ClassicGroup.replaceStaticMember``)."""
        member = self.members[old_id]
        self.members = {(new_id if k == old_id else k): m for k, m in self.members.items()}
        member.member_id = new_id
        self.static_members[member.group_instance_id] = new_id
        if self.leader_id == old_id:
            self.leader_id = new_id
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new_id)
        return member

    def validate_member(self, member_id: str, group_instance_id: str | None) -> ErrorCode | None:
        """``None`` if ``member_id`` may act for ``group_instance_id``: without an instance id
        it must be a member (else UNKNOWN_MEMBER_ID); with one, the instance must be a static
        member (else UNKNOWN_MEMBER_ID) that now goes by ``member_id`` (else
        FENCED_INSTANCE_ID: an older incarnation of the instance)."""
        if group_instance_id is None:
            return None if member_id in self.members else ErrorCode.UNKNOWN_MEMBER_ID
        current = self.static_members.get(group_instance_id)
        if current is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return None if current == member_id else ErrorCode.FENCED_INSTANCE_ID

    def update_member(
        self,
        member: Member,
        protocols: Protocols,
        *,
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
    ) -> None:
        """A member's JoinGroup replaces its protocols and timeouts."""
        self._count(member.protocol_names, -1)
        member.protocols = protocols
        self._count(member.protocol_names, 1)
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms

    def _count(self, names: Iterable[str], delta: int) -> None:
        for name in names:
            count = self._protocol_counts.get(name, 0) + delta
            if count:
                self._protocol_counts[name] = count
            else:
                del self._protocol_counts[name]

    # -- protocols --------------------------------------------------------------------------

    def supports_protocols(self, protocol_type: str, names: frozenset[str]) -> bool:
        """Whether a member with this protocol type and these protocols may join: any
        non-empty type and list while the group is empty, else the group's type and at least
        one protocol every member supports (``ClassicGroup.supportsProtocols``)."""
        if self.state is GroupState.EMPTY:
            return bool(protocol_type) and bool(names)
        size = len(self.members)
        return protocol_type == self.protocol_type and any(
            self._protocol_counts.get(name, 0) == size for name in names
        )

    def candidate_protocols(self) -> frozenset[str]:
        """The protocols every member supports."""
        size = len(self.members)
        return frozenset(name for name, count in self._protocol_counts.items() if count == size)

    def select_protocol(self) -> str:
        """The protocol of the next generation, by the members' votes (see the module)."""
        if not self.members:
            raise RuntimeError(f"group {self.group_id}: no protocol for an empty group")
        candidates = self.candidate_protocols()
        votes: dict[str, int] = {}
        for member in self.members.values():
            name = member.vote(candidates)
            votes[name] = votes.get(name, 0) + 1
        best = max(votes.values())
        return next(name for name, count in votes.items() if count == best)

    # -- the join phase ---------------------------------------------------------------------

    @property
    def rebalance_timeout_ms(self) -> int:
        """The longest rebalance timeout of the members (0 for no member)."""
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def has_all_members_joined(self) -> bool:
        return not self.pending_members and all(m.awaiting_join for m in self.members.values())

    def not_yet_rejoined(self) -> list[Member]:
        return [m for m in self.members.values() if not m.awaiting_join]

    def elect_joined_leader(self) -> bool:
        """Keep the leader if it rejoined, else make the first rejoined member the leader;
        false when no member rejoined (``ClassicGroup.maybeElectNewJoinedLeader``)."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].awaiting_join:
            return True
        for member in self.members.values():
            if member.awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    def init_next_generation(self) -> None:
        """Bump the generation: CompletingRebalance with the voted protocol, or Empty."""
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.transition_to(GroupState.COMPLETING_REBALANCE)
        else:
            self.protocol_name = None
            self.transition_to(GroupState.EMPTY)
        self.pending_sync.clear()

    def join_members(self) -> tuple[JoinMember, ...]:
        """The members with their metadata for the current protocol (the leader's view)."""
        if self.protocol_name is None:
            raise RuntimeError(f"group {self.group_id}: no protocol selected")
        return tuple(
            JoinMember(m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        )

    # -- DescribeGroups and ListGroups ------------------------------------------------------

    def describe(self) -> GroupDescription:
        """This group as DescribeGroups shows it: protocol, metadata and assignments only
        while it is Stable (Kafka's ``describeNoMetadata`` otherwise)."""
        stable = self.state is GroupState.STABLE and self.protocol_name is not None
        protocol = self.protocol_name if stable else ""
        members = tuple(
            MemberDescription(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.metadata(protocol) if stable else b"",
                m.assignment if stable else b"",
            )
            for m in self.members.values()
        )
        return GroupDescription(
            ErrorCode.NONE,
            self.group_id,
            self.state.value,
            self.protocol_type or "",
            protocol,
            members,
            self.generation_id,
        )

    def listing(self) -> GroupListing:
        """This group as ListGroups shows it."""
        return GroupListing(self.group_id, self.protocol_type or "", self.state.value)
