"""The controller's decisions, as pure functions (DESIGN §5; kafka-notes §4.5).

No I/O and no clock: the controller service reads the store, calls these, and writes what they
return with compare-and-swap, fenced by its controller key. Tests drive them directly.

**Replica assignment** (``assign_replicas``), for CreateTopics: brokers are ordered so that
racks alternate (``rack_alternated``: the first broker of each rack in rack order, then the
second of each, ...; brokers without a rack form one rack of their own). Partition ``p``'s
first replica, its preferred leader, is broker ``(start + p) mod n`` of that order, so leaders
spread evenly; its other replicas are the next brokers in the order, skipping any whose rack
the partition already has while racks remain unused. With ``r`` racks and a replication
factor ``f``, each partition therefore spans ``min(r, f)`` racks.

**Leader election** (``elect``), when brokers come or go: for each partition,

* a live leader keeps leading; ISR members that are not live leave the ISR (the leader
  epoch stays: only a new leader moves it);
* otherwise the new leader is the first replica in assignment order that is live and in the
  ISR, the new ISR its live ISR members, the leader epoch + 1;
* with no such replica the partition goes offline (leader ``-1``, epoch + 1, ISR kept so a
  returning member can lead again) — unless the topic allows unclean election
  (``unclean.leader.election.enable=true``): then the first live replica leads with ISR
  ``[leader]``;
* an offline partition whose ISR member returns gets it as leader (epoch + 1);
* a live leader that registered again after its leadership was written (the state's
  ``version`` is below the leader's ``broker_epoch``: both come from the store's one revision
  counter) leads again under epoch + 1, with the ISR's dead members dropped
  (``refresh_restarted``, decided before ``elect``, whose ISR-only change would otherwise hide
  the restart by writing a newer version under the same epoch). One epoch is one history: a
  broker that restarted may have lost an unflushed tail, and must not append at offsets its
  followers hold under the same epoch.

The ISR is never emptied by a decision: the last member stays even when it is down, because
only a member of the last ISR may lead without losing acknowledged writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from .store import PartitionState, TopicSpec

__all__ = [
    "NO_LEADER",
    "UNCLEAN_ELECTION_CONFIG",
    "InvalidAssignment",
    "assign_replicas",
    "elect",
    "rack_alternated",
    "reconcile",
    "refresh_restarted",
]

NO_LEADER = -1

#: The topic config that allows a replica outside the ISR to lead (loses acknowledged writes).
UNCLEAN_ELECTION_CONFIG = "unclean.leader.election.enable"


class InvalidAssignment(ValueError):
    """Replicas cannot be assigned as asked (a replication factor above the live brokers)."""


def rack_alternated(racks: Mapping[int, str | None]) -> list[int]:
    """Broker ids ordered so that racks alternate: ``racks`` maps broker id -> rack (``None``
    for none); racks in sorted order, brokers in id order within each."""
    by_rack: dict[str, list[int]] = {}
    for broker in sorted(racks):
        by_rack.setdefault(racks[broker] or "", []).append(broker)
    columns = [by_rack[rack] for rack in sorted(by_rack)]
    ordered: list[int] = []
    for row in range(max((len(column) for column in columns), default=0)):
        ordered.extend(column[row] for column in columns if row < len(column))
    return ordered


def assign_replicas(
    partitions: int,
    replication_factor: int,
    racks: Mapping[int, str | None],
    start: int = 0,
) -> dict[int, tuple[int, ...]]:
    """Partition -> replica broker ids over the live brokers of ``racks`` (see the module).

    :raises InvalidAssignment: no partitions, a replication factor below 1, or above the
        number of brokers.
    """
    if partitions < 1:
        raise InvalidAssignment(f"a topic needs at least 1 partition, not {partitions}")
    if not 1 <= replication_factor <= len(racks):
        raise InvalidAssignment(
            f"replication factor {replication_factor} needs that many live brokers; "
            f"there are {len(racks)}"
        )
    ordered = rack_alternated(racks)
    count = len(ordered)
    all_racks = {racks[broker] or "" for broker in ordered}
    assignment = {}
    for partition in range(partitions):
        first = (start + partition) % count
        replicas = [ordered[first]]
        used_racks = {racks[ordered[first]] or ""}
        candidates = [ordered[(first + step) % count] for step in range(1, count)]
        while len(replicas) < replication_factor:
            spread = used_racks != all_racks
            pick = next(
                broker
                for broker in candidates
                if broker not in replicas
                and (not spread or (racks[broker] or "") not in used_racks)
            )
            replicas.append(pick)
            used_racks.add(racks[pick] or "")
        assignment[partition] = tuple(replicas)
    return assignment


def _unclean_allowed(spec: TopicSpec) -> bool:
    return spec.configs.get(UNCLEAN_ELECTION_CONFIG, "false").strip().lower() == "true"


def _decide(
    replicas: Sequence[int],
    state: PartitionState,
    live: frozenset[int],
    unclean: bool,
    controller_epoch: int,
) -> PartitionState | None:
    if state.leader != NO_LEADER and state.leader in live:
        in_sync = tuple(member for member in state.isr if member in live)
        if in_sync == state.isr or not in_sync:
            return None
        return replace(state, isr=in_sync, controller_epoch=controller_epoch)
    leader = next((r for r in replicas if r in live and r in state.isr), None)
    if leader is not None:
        isr = tuple(member for member in state.isr if member in live)
    elif unclean:
        leader = next((r for r in replicas if r in live), None)
        isr = (leader,) if leader is not None else state.isr
    else:
        isr = state.isr
    if leader is None:
        if state.leader == NO_LEADER:
            return None  # already offline; nothing new to say
        leader = NO_LEADER
    return PartitionState(leader, state.leader_epoch + 1, isr, controller_epoch)


def elect(
    spec: TopicSpec,
    states: Mapping[int, PartitionState],
    live: frozenset[int] | set[int],
    controller_epoch: int,
) -> dict[int, PartitionState]:
    """The partitions of ``spec`` whose state must change now that ``live`` are the live
    brokers, and their new states (see the module). States come back with version 0: the
    caller writes each one compare-and-swap against the version it read."""
    live = frozenset(live)
    unclean = _unclean_allowed(spec)
    changes = {}
    for partition, state in states.items():
        decided = _decide(spec.assignment[partition], state, live, unclean, controller_epoch)
        if decided is not None:
            changes[partition] = replace(decided, version=0)
    return changes


def refresh_restarted(
    states: Mapping[int, PartitionState],
    broker_epochs: Mapping[int, int],
    controller_epoch: int,
) -> dict[int, PartitionState]:
    """The partitions whose live leader registered after its leadership was written (see the
    module), each with epoch + 1, the same leader, the ISR's live members, version 0.
    ``broker_epochs`` maps the live brokers to their registrations' epochs."""
    changes = {}
    for partition, state in states.items():
        epoch = broker_epochs.get(state.leader)
        if epoch is not None and state.version < epoch:
            changes[partition] = replace(
                state,
                leader_epoch=state.leader_epoch + 1,
                isr=tuple(m for m in state.isr if m in broker_epochs or m == state.leader),
                controller_epoch=controller_epoch,
                version=0,
            )
    return changes


def reconcile(
    spec: TopicSpec,
    states: Mapping[int, PartitionState],
    broker_epochs: Mapping[int, int],
    controller_epoch: int,
) -> dict[int, PartitionState]:
    """Every change the controller writes for ``spec`` now that ``broker_epochs`` (id ->
    registration epoch) are the live brokers: ``refresh_restarted`` first, ``elect`` for the
    other partitions."""
    changes = refresh_restarted(states, broker_epochs, controller_epoch)
    unchanged = {p: s for p, s in states.items() if p not in changes}
    changes.update(elect(spec, unchanged, frozenset(broker_epochs), controller_epoch))
    return changes
