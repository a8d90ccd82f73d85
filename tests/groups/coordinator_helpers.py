"""Helpers of the group coordinator tests: a coordinator on a ``Clock`` with predictable member
ids, JoinGroup with test defaults, and reading a Deferred's result synchronously."""

from __future__ import annotations

import itertools

from twisted.internet.task import Clock

from tmq.groups.coordinator import GroupCoordinator
from tmq.protocol.errors import ErrorCode

SESSION_MS = 10_000
REBALANCE_MS = 30_000
RANGE = (("range", b"range-meta"),)
#: About a millisecond, as a dyadic fraction of a second: clock times stay exact sums.
TICK = 1 / 1024


def coordinator(delay_ms: int = 0, **options) -> tuple[GroupCoordinator, Clock]:
    """A coordinator on a fresh ``Clock``; member ids are ``<client id>-<n>``."""
    clock = Clock()
    counter = itertools.count(1)
    made = GroupCoordinator(
        clock,
        initial_rebalance_delay_ms=delay_ms,
        new_member_id=lambda client_id: f"{client_id}-{next(counter)}",
        **options,
    )
    return made, clock


def join(
    coordinator: GroupCoordinator,
    member_id: str = "",
    *,
    group: str = "g",
    client: str = "c",
    session_ms: int = SESSION_MS,
    rebalance_ms: int = REBALANCE_MS,
    protocol_type: str = "consumer",
    protocols=RANGE,
    require_known_member_id: bool = False,
    instance: str | None = None,
):
    """A JoinGroup with the test defaults; returns the Deferred."""
    return coordinator.join(
        group,
        member_id=member_id,
        group_instance_id=instance,
        client_id=client,
        client_host="/10.0.0.1",
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=rebalance_ms,
        protocol_type=protocol_type,
        protocols=protocols,
        require_known_member_id=require_known_member_id,
    )


def fired(deferred):
    """The result a Deferred has fired with (it must have)."""
    results = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def waiting(deferred) -> bool:
    return not deferred.called


def seconds(ms: int) -> float:
    return ms / 1000


def form(c, clock, n, *, group="g", static=False, **options):
    """A Stable group of ``n`` members (joined together, leader's assignment synced: each
    member gets its member id as bytes); returns the member ids, leader first, and the
    generation. ``static``: member i is the static member of instance ``i<i>``."""
    joins = [
        join(c, group=group, client=f"c{i}", instance=f"i{i}" if static else None, **options)
        for i in range(n)
    ]
    clock.advance(0)
    results = [fired(d) for d in joins]
    ids = [r.member_id for r in results]
    generation = results[0].generation_id
    syncs = [
        c.sync(
            group,
            generation_id=generation,
            member_id=member_id,
            assignments={m: m.encode() for m in ids} if i == 0 else {},
        )
        for i, member_id in enumerate(ids)
    ]
    assert [fired(d).error for d in syncs] == [ErrorCode.NONE] * n
    return ids, generation
