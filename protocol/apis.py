"""The Kafka APIs tmq speaks: keys, message declarations and the versions it advertises.

``API_BY_KEY`` maps each ``ApiKey`` to an ``Api``: its request and response declarations, the
version range advertised in ApiVersions and the first flexible version (which selects request
header v2 and response header v1 — except ApiVersions, whose response header is always v0,
KIP-511). The ranges and why each was chosen are in DESIGN §2 and kafka-notes §0. A broker
advertises only the APIs it has a handler for (``Dispatcher.served_apis``), so declaring an API
here advertises nothing by itself.
"""

from __future__ import annotations

import dataclasses
import enum

from .errors import ErrorCode
from .messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from .messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from .messages.delete_topics import DeleteTopicsRequest, DeleteTopicsResponse
from .messages.describe_groups import DescribeGroupsRequest, DescribeGroupsResponse
from .messages.fetch import FetchRequest, FetchResponse
from .messages.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse
from .messages.heartbeat import HeartbeatRequest, HeartbeatResponse
from .messages.init_producer_id import InitProducerIdRequest, InitProducerIdResponse
from .messages.join_group import JoinGroupRequest, JoinGroupResponse
from .messages.leave_group import LeaveGroupRequest, LeaveGroupResponse
from .messages.list_groups import ListGroupsRequest, ListGroupsResponse
from .messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from .messages.metadata import MetadataRequest, MetadataResponse
from .messages.offset_commit import OffsetCommitRequest, OffsetCommitResponse
from .messages.offset_fetch import OffsetFetchRequest, OffsetFetchResponse
from .messages.offset_for_leader_epoch import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
)
from .messages.produce import ProduceRequest, ProduceResponse
from .messages.replication import (
    ReplicaAck,
    ReplicaPush,
    ReplicaSubscribeRequest,
    ReplicaSubscribeResponse,
)
from .messages.sync_group import SyncGroupRequest, SyncGroupResponse
from .schema import Message

__all__ = [
    "API_BY_KEY",
    "API_BY_NAME",
    "INTERNAL_API_BY_KEY",
    "Api",
    "ApiKey",
    "InternalApi",
    "InternalApiKey",
    "api_versions_fallback",
    "request_header_version",
    "response_header_version",
]


class ApiKey(enum.IntEnum):
    """Kafka API keys tmq declares (a broker serves those it has a handler for)."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23


@dataclasses.dataclass(frozen=True)
class Api:
    """One API: its messages and the version range tmq advertises for it.

    :param min_version: advertised minimum (may be below what is served, see Produce).
    :param max_version: advertised maximum.
    :param flexible_from: first flexible version, or ``None`` if none is advertised.
    """

    key: ApiKey
    name: str
    request: Message
    response: Message
    min_version: int
    max_version: int
    flexible_from: int | None = None

    def is_flexible(self, version: int) -> bool:
        return self.flexible_from is not None and version >= self.flexible_from

    def supports(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


_APIS = (
    Api(ApiKey.PRODUCE, "Produce", ProduceRequest, ProduceResponse, 0, 8),
    Api(ApiKey.FETCH, "Fetch", FetchRequest, FetchResponse, 4, 11),
    Api(ApiKey.LIST_OFFSETS, "ListOffsets", ListOffsetsRequest, ListOffsetsResponse, 1, 5),
    Api(ApiKey.METADATA, "Metadata", MetadataRequest, MetadataResponse, 0, 8),
    Api(ApiKey.OFFSET_COMMIT, "OffsetCommit", OffsetCommitRequest, OffsetCommitResponse, 2, 7),
    Api(ApiKey.OFFSET_FETCH, "OffsetFetch", OffsetFetchRequest, OffsetFetchResponse, 1, 5),
    Api(
        ApiKey.FIND_COORDINATOR,
        "FindCoordinator",
        FindCoordinatorRequest,
        FindCoordinatorResponse,
        0,
        2,
    ),
    Api(ApiKey.JOIN_GROUP, "JoinGroup", JoinGroupRequest, JoinGroupResponse, 0, 5),
    Api(ApiKey.HEARTBEAT, "Heartbeat", HeartbeatRequest, HeartbeatResponse, 0, 3),
    Api(ApiKey.LEAVE_GROUP, "LeaveGroup", LeaveGroupRequest, LeaveGroupResponse, 0, 3),
    Api(ApiKey.SYNC_GROUP, "SyncGroup", SyncGroupRequest, SyncGroupResponse, 0, 3),
    Api(
        ApiKey.DESCRIBE_GROUPS,
        "DescribeGroups",
        DescribeGroupsRequest,
        DescribeGroupsResponse,
        0,
        4,
    ),
    Api(ApiKey.LIST_GROUPS, "ListGroups", ListGroupsRequest, ListGroupsResponse, 0, 2),
    Api(ApiKey.API_VERSIONS, "ApiVersions", ApiVersionsRequest, ApiVersionsResponse, 0, 3, 3),
    Api(ApiKey.CREATE_TOPICS, "CreateTopics", CreateTopicsRequest, CreateTopicsResponse, 0, 4),
    Api(ApiKey.DELETE_TOPICS, "DeleteTopics", DeleteTopicsRequest, DeleteTopicsResponse, 0, 3),
    Api(
        ApiKey.INIT_PRODUCER_ID,
        "InitProducerId",
        InitProducerIdRequest,
        InitProducerIdResponse,
        0,
        1,
    ),
    Api(
        ApiKey.OFFSET_FOR_LEADER_EPOCH,
        "OffsetForLeaderEpoch",
        OffsetForLeaderEpochRequest,
        OffsetForLeaderEpochResponse,
        0,
        3,
    ),
)

API_BY_KEY: dict[int, Api] = {api.key: api for api in _APIS}
API_BY_NAME: dict[str, Api] = {api.name: api for api in _APIS}


class InternalApiKey(enum.IntEnum):
    """Broker-to-broker APIs (keys >= 1000): never advertised, refused from clients."""

    REPLICA_SUBSCRIBE = 1000
    REPLICA_PUSH = 1001
    REPLICA_ACK = 1002


@dataclasses.dataclass(frozen=True)
class InternalApi:
    """One internal API (version 0 only): its message, and its answer's (``None``: one-way,
    as the replication stream's pushes and acks are)."""

    key: InternalApiKey
    name: str
    request: Message
    response: Message | None


INTERNAL_API_BY_KEY: dict[int, InternalApi] = {
    api.key: api
    for api in (
        InternalApi(
            InternalApiKey.REPLICA_SUBSCRIBE,
            "ReplicaSubscribe",
            ReplicaSubscribeRequest,
            ReplicaSubscribeResponse,
        ),
        InternalApi(InternalApiKey.REPLICA_PUSH, "ReplicaPush", ReplicaPush, None),
        InternalApi(InternalApiKey.REPLICA_ACK, "ReplicaAck", ReplicaAck, None),
    )
}


def request_header_version(api_key: int, api_version: int) -> int:
    """Request header version for a request: 2 for flexible versions, else 1.

    Unknown keys and versions above the table are read as header v1 except ApiVersions, whose
    newer versions are all flexible (the client_id stays a classic string either way, so the
    correlation id can always be answered).
    """
    api = API_BY_KEY.get(api_key)
    if api is None:
        return 1
    return 2 if api.is_flexible(api_version) else 1


def response_header_version(api_key: int, api_version: int) -> int:
    """Response header version: 1 for flexible versions, 0 otherwise and always for ApiVersions."""
    if api_key == ApiKey.API_VERSIONS:
        return 0
    api = API_BY_KEY.get(api_key)
    return 1 if api is not None and api.is_flexible(api_version) else 0


def api_versions_fallback() -> dict:
    """The v0 ApiVersions body answering a version above 3 (KIP-511).

    Error UNSUPPORTED_VERSION and only the ApiVersions entry, so the client retries with a
    version it can see is supported. Build it with ``ApiVersionsResponse`` at version 0.
    """
    api = API_BY_KEY[ApiKey.API_VERSIONS]
    return {
        "error_code": ErrorCode.UNSUPPORTED_VERSION,
        "api_keys": [
            {"api_key": api.key, "min_version": api.min_version, "max_version": api.max_version}
        ],
    }
