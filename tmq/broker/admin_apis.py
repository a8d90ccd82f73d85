"""Handlers of the cluster and offset APIs: ApiVersions, Metadata, CreateTopics, DeleteTopics,
InitProducerId, FindCoordinator, OffsetCommit, OffsetFetch (the group APIs: ``group_apis``).

Each takes the ``Broker``, the request header and the decoded request, and returns the
response dict or a Deferred of it.
"""

from __future__ import annotations

from twisted.internet import defer

from tmq.cluster.store import (
    BrokerInfo,
    CommittedOffset,
    Fenced,
    TopicExists,
    UnknownTopic,
)
from tmq.protocol.errors import ErrorCode
from tmq.protocol.headers import RequestHeader

from .broker import Broker, TopicError
from .dispatch import Dispatcher
from .group_apis import check_commit, check_fetch

__all__ = [
    "api_versions",
    "create_topics",
    "delete_topics",
    "find_coordinator",
    "init_producer_id",
    "metadata",
    "offset_commit",
    "offset_fetch",
]


def api_versions(dispatcher: Dispatcher, header: RequestHeader, request: dict) -> dict:
    """The APIs served, each with the version range advertised (DESIGN §2)."""
    return {
        "error_code": ErrorCode.NONE,
        "api_keys": [
            {"api_key": api.key, "min_version": api.min_version, "max_version": api.max_version}
            for api in dispatcher.served_apis()
        ],
    }


def metadata(broker: Broker, header: RequestHeader, request: dict) -> dict:
    """The live brokers, the controller and the topics asked for, from this broker's view of
    the store: each partition's leader (-1 and LEADER_NOT_AVAILABLE while offline), leader
    epoch, replicas, ISR and the replicas whose broker is down.

    v0: an empty list means all topics; v1+: null means all. Unknown topics are created when
    auto-creation is on and this broker is the controller (answered LEADER_NOT_AVAILABLE
    until they exist).
    """
    version = header.api_version
    asked = request["topics"]
    if asked is None or (version == 0 and not asked):
        names = sorted(broker.topics)
    else:
        names = [topic["name"] for topic in asked]
    allow_create = request["allow_auto_topic_creation"]
    live = _live_brokers(broker)
    topics = []
    for name in names:
        spec = broker.topics.get(name)
        if spec is None:
            error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            if allow_create and broker.maybe_auto_create(name):
                error = ErrorCode.LEADER_NOT_AVAILABLE
            topics.append({"error_code": error, "name": name, "partitions": []})
            continue
        partitions = []
        for index in range(spec.partitions):
            replicas = list(spec.assignment[index])
            state = broker.states.get((name, index))
            leader = state.leader if state is not None else -1
            partitions.append(
                {
                    "error_code": ErrorCode.NONE if leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE,
                    "partition_index": index,
                    "leader_id": leader,
                    "leader_epoch": state.leader_epoch if state is not None else -1,
                    "replica_nodes": replicas,
                    "isr_nodes": list(state.isr) if state is not None else [],
                    "offline_replicas": [r for r in replicas if r not in live],
                }
            )
        topics.append({"error_code": ErrorCode.NONE, "name": name, "partitions": partitions})
    return {
        "brokers": [
            {"node_id": info.broker_id, "host": info.host, "port": info.port, "rack": info.rack}
            for info in live.values()
        ],
        "cluster_id": broker.config.cluster_id,
        "controller_id": broker.controller_id,
        "topics": topics,
    }


def _live_brokers(broker: Broker) -> dict[int, BrokerInfo]:
    """The live brokers by id, this one included even before its registration is seen."""
    config = broker.config
    live = dict(broker.live)
    live.setdefault(
        config.broker_id,
        BrokerInfo(config.broker_id, config.advertised_host, broker.advertised_port, config.rack),
    )
    return dict(sorted(live.items()))


def create_topics(broker: Broker, header: RequestHeader, request: dict):
    """Create each topic (v4: -1 means the broker default); validate_only checks only."""
    results = []
    creations = []
    for topic in request["topics"]:
        name = topic["name"]
        partitions = topic["num_partitions"]
        factor = topic["replication_factor"]
        if topic["assignments"]:
            partitions = len(topic["assignments"])
            factor = len(topic["assignments"][0]["broker_ids"])
        if partitions == -1:
            partitions = broker.config.num_partitions
        if factor == -1:
            factor = broker.config.default_replication_factor
        configs = {c["name"]: c["value"] for c in topic["configs"] if c["value"] is not None}
        result = {"name": name, "error_code": ErrorCode.NONE, "error_message": None}
        results.append(result)
        try:
            if request["validate_only"]:
                broker.validate_topic(name, partitions, factor, configs)
                continue
            created = broker.create_topic(name, partitions, factor, configs)
        except TopicError as error:
            result.update(error_code=error.error_code, error_message=str(error))
            continue
        created.addErrback(_topic_failed, result)
        creations.append(created)
    response = {"topics": results}
    if not creations:
        return response
    return defer.gatherResults(creations).addCallback(lambda _: response)


def _topic_failed(failure, result: dict) -> None:
    if failure.check(TopicExists):
        result.update(error_code=ErrorCode.TOPIC_ALREADY_EXISTS)
    elif failure.check(Fenced):
        result.update(error_code=ErrorCode.NOT_CONTROLLER)
    elif failure.check(UnknownTopic):
        result.update(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    else:
        result.update(error_code=ErrorCode.UNKNOWN_SERVER_ERROR)
    result["error_message"] = failure.getErrorMessage()


def delete_topics(broker: Broker, header: RequestHeader, request: dict):
    """Delete each topic with its logs and committed offsets."""
    results = []
    deletions = []
    for name in request["topic_names"]:
        result = {"name": name, "error_code": ErrorCode.NONE}
        results.append(result)
        if name not in broker.topics:
            result["error_code"] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            continue
        deletions.append(broker.delete_topic(name).addErrback(_topic_failed, result))
    response = {"responses": results}
    return defer.gatherResults(deletions).addCallback(lambda _: response)


def init_producer_id(broker: Broker, header: RequestHeader, request: dict):
    """A fresh producer id (epoch 0) for an idempotent producer; no transactions."""
    if request["transactional_id"] is not None:
        return {"error_code": ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}

    def answer(producer_id):
        return {"error_code": ErrorCode.NONE, "producer_id": producer_id, "producer_epoch": 0}

    def failed(failure):
        return {"error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE}

    return broker.allocate_producer_id().addCallbacks(answer, failed)


def find_coordinator(broker: Broker, header: RequestHeader, request: dict) -> dict:
    """The coordinator of a group: the live broker the group hashes to (``Broker.coordinator_of``);
    transactions are not supported."""
    if request["key_type"] != 0:
        return {
            "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
            "error_message": "transactions are not supported",
            "node_id": -1,
            "host": "",
            "port": -1,
        }
    info = _live_brokers(broker).get(broker.coordinator_of(request["key"]))
    if info is None:
        return {
            "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
            "error_message": "no live broker",
            "node_id": -1,
            "host": "",
            "port": -1,
        }
    return {
        "error_code": ErrorCode.NONE,
        "node_id": info.broker_id,
        "host": info.host,
        "port": info.port,
    }


def offset_commit(broker: Broker, header: RequestHeader, request: dict):
    """Store committed offsets, at the group's coordinator: a member's of the group's current
    generation, or a simple consumer's (generation -1) while the group has no members."""
    refused = check_commit(broker, request)
    limit = broker.config.offset_metadata_max_bytes
    offsets = {}
    topics = []
    for topic in request["topics"]:
        name = topic["name"]
        partitions = []
        for p in topic["partitions"]:
            index = p["partition_index"]
            error = ErrorCode.NONE
            metadata = p["committed_metadata"]
            spec = broker.topics.get(name)
            if refused != ErrorCode.NONE:
                error = refused
            elif spec is None or not 0 <= index < spec.partitions:
                error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif metadata is not None and len(metadata.encode()) > limit:
                error = ErrorCode.OFFSET_METADATA_TOO_LARGE
            else:
                offsets[name, index] = CommittedOffset(
                    p["committed_offset"], metadata, p["committed_leader_epoch"], broker.now_ms()
                )
            partitions.append({"partition_index": index, "error_code": error})
        topics.append({"name": name, "partitions": partitions})
    response = {"topics": topics}
    if not request["group_id"]:
        for topic in topics:
            for p in topic["partitions"]:
                p["error_code"] = ErrorCode.INVALID_GROUP_ID
        return response
    if not offsets:
        return response

    def failed(failure):
        for topic in topics:
            for p in topic["partitions"]:
                if p["error_code"] == ErrorCode.NONE:
                    p["error_code"] = ErrorCode.COORDINATOR_NOT_AVAILABLE
        return response

    return broker.store.commit_offsets(request["group_id"], offsets).addCallbacks(
        lambda _: response, failed
    )


def offset_fetch(broker: Broker, header: RequestHeader, request: dict):
    """Committed offsets of a group (null topics, v2+: every partition it committed)."""
    refused = check_fetch(broker, request["group_id"])
    if refused != ErrorCode.NONE:
        return {"topics": [], "error_code": refused}
    asked = request["topics"]
    wanted = None
    if asked is not None:
        wanted = [(t["name"], index) for t in asked for index in t["partition_indexes"]]

    def answer(committed):
        keys = wanted if wanted is not None else sorted(committed)
        by_topic: dict[str, list] = {}
        for name, index in keys:
            found = committed.get((name, index))
            by_topic.setdefault(name, []).append(
                {
                    "partition_index": index,
                    "committed_offset": found.offset if found else -1,
                    "committed_leader_epoch": found.leader_epoch if found else -1,
                    "metadata": found.metadata if found else "",
                    "error_code": ErrorCode.NONE,
                }
            )
        return {
            "topics": [{"name": n, "partitions": ps} for n, ps in by_topic.items()],
            "error_code": ErrorCode.NONE,
        }

    def failed(failure):
        return {"topics": [], "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE}

    return broker.store.fetch_offsets(request["group_id"], wanted).addCallbacks(answer, failed)
