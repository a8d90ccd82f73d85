"""What the group coordinator answers (``tmq.groups.coordinator``): one result type per request
that waits for the group, encoded by the broker's request handlers."""

from __future__ import annotations

from typing import NamedTuple

from tmq.protocol.errors import ErrorCode

from .group import JoinMember

__all__ = ["NO_GENERATION", "UNKNOWN_MEMBER_ID", "JoinResult", "LeaveResult", "SyncResult"]

#: The member id of a consumer that has none yet, and the generation of one outside a group.
UNKNOWN_MEMBER_ID = ""
NO_GENERATION = -1


class JoinResult(NamedTuple):
    """A JoinGroup answer. ``members`` is non-empty for the leader only. On an error the
    generation is -1, and ``member_id`` is the request's (MEMBER_ID_REQUIRED: the id to join
    with; a member removed while its JoinGroup was parked: empty)."""

    error: ErrorCode
    generation_id: int = NO_GENERATION
    protocol_name: str = ""
    leader: str = ""
    member_id: str = UNKNOWN_MEMBER_ID
    members: tuple[JoinMember, ...] = ()


class SyncResult(NamedTuple):
    """A SyncGroup answer: the member's assignment (opaque bytes from the leader)."""

    error: ErrorCode
    assignment: bytes = b""


class LeaveResult(NamedTuple):
    """A LeaveGroup answer: a request-level error, and one error per member id asked about
    (empty when the request-level error is set), in request order."""

    error: ErrorCode
    members: tuple[tuple[str, ErrorCode], ...] = ()

    @property
    def single_error(self) -> ErrorCode:
        """The one error code of a LeaveGroup v0-2 response: the request-level error, else
        the first member error (``LeaveGroupResponse`` in Kafka's clients)."""
        if self.error is not ErrorCode.NONE:
            return self.error
        return next((e for _, e in self.members if e is not ErrorCode.NONE), ErrorCode.NONE)
