"""Handlers of the consumer-group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
DescribeGroups, ListGroups.

Each takes the ``Broker``, the request header and the decoded request, and answers from the
broker's ``GroupCoordinator`` (``tmq.groups``). A group belongs to the broker
``Broker.coordinator_of`` names; a request for a group coordinated elsewhere is answered
NOT_COORDINATOR, and the client looks its coordinator up again (FindCoordinator).
"""

from __future__ import annotations

from tmq.protocol.errors import ErrorCode
from tmq.protocol.headers import RequestHeader

from .broker import Broker

__all__ = [
    "check_commit",
    "check_fetch",
    "describe_groups",
    "heartbeat",
    "join_group",
    "leave_group",
    "list_groups",
    "sync_group",
]

#: JoinGroup versions from which a member without an id must ask for one first (KIP-394).
_MEMBER_ID_REQUIRED_FROM = 4


def _elsewhere(broker: Broker, group_id: str) -> bool:
    """Whether another broker coordinates ``group_id``, or this one cannot now: past its lease
    deadline it may have been replaced (its groups were unloaded when the lease ended)."""
    if not broker.lease_valid():
        return True
    return bool(group_id) and broker.coordinator_of(group_id) != broker.config.broker_id


def join_group(broker: Broker, header: RequestHeader, request: dict, *, client_host: str = ""):
    """JoinGroup v0-5: answered when the group's join phase ends (or at once on error).

    :param client_host: the member's address, kept for DescribeGroups ("/127.0.0.1").
    """
    group_id = request["group_id"]
    if _elsewhere(broker, group_id):
        return {
            "error_code": ErrorCode.NOT_COORDINATOR,
            "member_id": request["member_id"],
            "members": [],
            "protocol_name": "",
            "leader": "",
        }
    instance = request["group_instance_id"]
    joined = broker.groups.join(
        group_id,
        member_id=request["member_id"],
        group_instance_id=instance,
        client_id=header.client_id or "",
        client_host=client_host,
        session_timeout_ms=request["session_timeout_ms"],
        rebalance_timeout_ms=request["rebalance_timeout_ms"] if header.api_version >= 1 else -1,
        protocol_type=request["protocol_type"],
        protocols=[(p["name"], p["metadata"]) for p in request["protocols"]],
        require_known_member_id=header.api_version >= _MEMBER_ID_REQUIRED_FROM and instance is None,
    )

    def answer(result) -> dict:
        return {
            "error_code": result.error,
            "generation_id": result.generation_id,
            "protocol_name": result.protocol_name,
            "leader": result.leader,
            "member_id": result.member_id,
            "members": [
                {
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "metadata": m.metadata,
                }
                for m in result.members
            ],
        }

    return joined.addCallback(answer)


def sync_group(broker: Broker, header: RequestHeader, request: dict):
    """SyncGroup v0-3: a member's assignment, once the leader has sent them all."""
    group_id = request["group_id"]
    if _elsewhere(broker, group_id):
        return {"error_code": ErrorCode.NOT_COORDINATOR, "assignment": b""}
    synced = broker.groups.sync(
        group_id,
        generation_id=request["generation_id"],
        member_id=request["member_id"],
        assignments={a["member_id"]: a["assignment"] for a in request["assignments"]},
        group_instance_id=request["group_instance_id"],
    )
    return synced.addCallback(
        lambda result: {"error_code": result.error, "assignment": result.assignment}
    )


def heartbeat(broker: Broker, header: RequestHeader, request: dict) -> dict:
    """Heartbeat v0-3."""
    group_id = request["group_id"]
    if _elsewhere(broker, group_id):
        return {"error_code": ErrorCode.NOT_COORDINATOR}
    error = broker.groups.heartbeat(
        group_id,
        generation_id=request["generation_id"],
        member_id=request["member_id"],
        group_instance_id=request["group_instance_id"],
    )
    return {"error_code": error}


def leave_group(broker: Broker, header: RequestHeader, request: dict) -> dict:
    """LeaveGroup v0-2 (one member) and v3 (a batch, answered per member)."""
    group_id = request["group_id"]
    v3 = header.api_version >= 3
    if v3:
        members = [(m["member_id"], m["group_instance_id"]) for m in request["members"]]
    else:
        members = [(request["member_id"], None)]
    if _elsewhere(broker, group_id):
        return {"error_code": ErrorCode.NOT_COORDINATOR, "members": []}
    result = broker.groups.leave(group_id, [m for m, _ in members], [i for _, i in members])
    if not v3:
        return {"error_code": result.single_error}
    answered = members if result.members else []  # none with a request-level error
    return {
        "error_code": result.error,
        "members": [
            {"member_id": member_id, "group_instance_id": instance, "error_code": error}
            for (member_id, instance), (_, error) in zip(answered, result.members, strict=True)
        ],
    }


def describe_groups(broker: Broker, header: RequestHeader, request: dict) -> dict:
    """DescribeGroups v0-4: state, protocol and members (metadata and assignment only while
    the group is Stable); a group coordinated elsewhere is NOT_COORDINATOR."""
    groups = []
    for group_id in request["groups"]:
        if _elsewhere(broker, group_id):
            groups.append(_described(group_id, ErrorCode.NOT_COORDINATOR))
            continue
        found = broker.groups.describe(group_id)
        entry = _described(group_id, found.error)
        entry.update(
            group_state=found.state,
            protocol_type=found.protocol_type,
            protocol_data=found.protocol,
            members=[
                {
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "member_metadata": m.metadata,
                    "member_assignment": m.assignment,
                }
                for m in found.members
            ],
        )
        groups.append(entry)
    return {"groups": groups}


def _described(group_id: str, error: ErrorCode) -> dict:
    return {
        "error_code": error,
        "group_id": group_id,
        "group_state": "",
        "protocol_type": "",
        "protocol_data": "",
        "members": [],
    }


def list_groups(broker: Broker, header: RequestHeader, request: dict) -> dict:
    """ListGroups v0-2: the groups this broker coordinates."""
    if broker.groups.closed or not broker.lease_valid():
        return {"error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE, "groups": []}
    return {
        "error_code": ErrorCode.NONE,
        "groups": [
            {"group_id": g.group_id, "protocol_type": g.protocol_type}
            for g in broker.groups.groups()
        ],
    }


def check_commit(broker: Broker, request: dict) -> ErrorCode:
    """Whether an OffsetCommit may store its offsets (else the answer for every partition):
    at the group's coordinator, from a member of the current generation, or a simple commit
    (generation -1, no member id) of a group without members."""
    group_id = request["group_id"]
    if _elsewhere(broker, group_id):
        return ErrorCode.NOT_COORDINATOR
    return broker.groups.check_commit(
        group_id,
        generation_id=request["generation_id"],
        member_id=request["member_id"],
        group_instance_id=request["group_instance_id"],
    )


def check_fetch(broker: Broker, group_id: str) -> ErrorCode:
    """Whether this broker answers an OffsetFetch for ``group_id`` (its coordinator)."""
    return ErrorCode.NOT_COORDINATOR if _elsewhere(broker, group_id) else ErrorCode.NONE
