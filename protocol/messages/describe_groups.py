"""DescribeGroups (API key 15), versions 0-4 (5+ is flexible and not declared).

The request names the groups; the coordinator answers for each one it coordinates. 1 adds
``throttle_time_ms``; 2 only changes when a throttled response is sent; 3 adds
``include_authorized_operations`` to the request and ``authorized_operations`` (a bit set,
INT32 min when not asked for) to each group; 4 adds each member's ``group_instance_id``.

A group the coordinator does not know is answered with error 0, state ``"Dead"`` and no
members (v6 would answer GROUP_ID_NOT_FOUND). ``group_state`` is one of ``"Empty"``,
``"PreparingRebalance"``, ``"CompletingRebalance"``, ``"Stable"`` and ``"Dead"``;
``protocol_data`` names the chosen protocol (e.g. ``"range"``). ``member_metadata`` and
``member_assignment`` are opaque to the broker (ConsumerProtocolSubscription and
ConsumerProtocolAssignment for protocol type ``"consumer"``) and filled only when the group
is Stable.
"""

from __future__ import annotations

from ..schema import BOOL, BYTES, INT16, INT32, STRING, Array, Field, Message
from .metadata import AUTHORIZED_OPERATIONS_OMITTED

__all__ = ["DescribeGroupsRequest", "DescribeGroupsResponse"]

DescribeGroupsRequest = Message(
    "DescribeGroupsRequest",
    versions="0-4",
    fields=(
        Field("groups", Array(STRING)),
        Field("include_authorized_operations", BOOL, versions="3+"),
    ),
)

DescribeGroupsResponse = Message(
    "DescribeGroupsResponse",
    versions="0-4",
    fields=(
        Field("throttle_time_ms", INT32, versions="1+"),
        Field(
            "groups",
            Array(
                Field("error_code", INT16),
                Field("group_id", STRING),
                Field("group_state", STRING),
                Field("protocol_type", STRING),
                Field("protocol_data", STRING),
                Field(
                    "members",
                    Array(
                        Field("member_id", STRING),
                        Field("group_instance_id", STRING, versions="4+", nullable="4+"),
                        Field("client_id", STRING),
                        Field("client_host", STRING),
                        Field("member_metadata", BYTES),
                        Field("member_assignment", BYTES),
                    ),
                ),
                Field(
                    "authorized_operations",
                    INT32,
                    versions="3+",
                    default=AUTHORIZED_OPERATIONS_OMITTED,
                ),
            ),
        ),
    ),
)
