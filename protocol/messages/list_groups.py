"""ListGroups (API key 16), versions 0-2 (3+ is flexible and not declared).

Each broker lists the groups it coordinates, so a whole-cluster listing asks every broker.
The request has no fields in these versions (the states filter is v4). 1 adds
``throttle_time_ms``; 2 only changes when a throttled response is sent. The group state is
not listed before v4: DescribeGroups tells it.
"""

from __future__ import annotations

from ..schema import INT16, INT32, STRING, Array, Field, Message

__all__ = ["ListGroupsRequest", "ListGroupsResponse"]

ListGroupsRequest = Message("ListGroupsRequest", versions="0-2", fields=())

ListGroupsResponse = Message(
    "ListGroupsResponse",
    versions="0-2",
    fields=(
        Field("throttle_time_ms", INT32, versions="1+"),
        Field("error_code", INT16),
        Field("groups", Array(Field("group_id", STRING), Field("protocol_type", STRING))),
    ),
)
