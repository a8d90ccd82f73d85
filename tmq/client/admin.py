"""Cluster administration: create, delete and describe topics; describe the cluster.

CreateTopics and DeleteTopics go to the controller named in Metadata; a topic answered
NOT_CONTROLLER (the controller moved) or a connection failure is retried on the controller of
refreshed metadata, until ``api_timeout_ms``. Each topic has its own outcome: the batch calls
return ``{name: None or BrokerResponseError}``, the single-topic calls fail with the error.

``describe_offsets`` adds to the metadata where each partition's log stands: the leader's high
watermark (ListOffsets LATEST as a consumer asks it, ``replica_id`` -1) and every replica's log
end offset (ListOffsets LATEST with ``replica_id`` -2, Kafka's DEBUGGING_REPLICA_ID, which any
replica answers from its own log). One request per broker and kind, all at once; what a broker
cannot tell is ``None``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode

from .cluster import BrokerInfo, Cluster, ClusterMetadata, PartitionInfo, TopicInfo
from .errors import BrokerResponseError, KafkaError

__all__ = ["Admin", "ClusterInfo", "NewTopic", "PartitionOffsets"]

_LATEST = -1  # ListOffsets timestamp: the high watermark (consumer) or log end offset (replica)
_CONSUMER = -1  # ListOffsets replica_id of a consumer: the leader answers, with the HW
_DEBUGGING_REPLICA = -2  # ListOffsets replica_id of a tool: any replica answers, with its LEO
_READ_UNCOMMITTED = 0


@dataclasses.dataclass(frozen=True)
class NewTopic:
    """A topic to create.

    :ivar configs: topic configs (``{"retention.ms": "86400000"}``); ``None`` values unset.
    """

    name: str
    partitions: int = 1
    replication_factor: int = 1
    configs: Mapping[str, str | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """The cluster as Metadata describes it."""

    cluster_id: str | None
    controller_id: int
    brokers: list[BrokerInfo]


@dataclasses.dataclass(frozen=True)
class PartitionOffsets:
    """One partition's metadata and where its log stands on each replica.

    :ivar info: the partition's leader, epoch, replicas and ISR, from the same Metadata answer
        the offsets were asked by.
    :ivar high_watermark: the leader's high watermark; ``None`` when there is no leader, or it
        could not be reached, or it answered an error (e.g. it no longer leads).
    :ivar log_end_offsets: ``{replica broker id: log end offset}`` for every assigned replica,
        in replica order; ``None`` for a replica whose broker is not live in the metadata,
        could not be reached, or answered an error.
    """

    info: PartitionInfo
    high_watermark: int | None
    log_end_offsets: dict[int, int | None]


class Admin:
    """Topic and cluster administration over a shared ``Cluster``.

    :param cluster: the shared ``Cluster`` (the admin client does not close it).
    :param operation_timeout_ms: the requests' ``timeout_ms``: how long the controller may
        take to create or delete topics before answering.
    :param api_timeout_ms: how long a call keeps retrying a moved controller or a failed
        connection.
    :param retry_backoff_ms: the first wait between retries; it doubles up to one second.
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        operation_timeout_ms: int = 30_000,
        api_timeout_ms: int = 60_000,
        retry_backoff_ms: float = 100,
    ):
        self._cluster = cluster
        self._clock = cluster.reactor
        self._operation_timeout_ms = operation_timeout_ms
        self._api_timeout_s = api_timeout_ms / 1000
        self._backoff_s = retry_backoff_ms / 1000

    def create_topics(self, topics: Iterable[NewTopic], *, validate_only: bool = False) -> Deferred:
        """Create ``topics``.

        :param validate_only: ask the controller to check the request without creating (v1+).
        :returns: a Deferred firing with ``{name: None or BrokerResponseError}`` (e.g.
            TOPIC_ALREADY_EXISTS, INVALID_REPLICATION_FACTOR).
        """
        wanted = {topic.name: topic for topic in topics}

        def body(names: list[str]) -> dict:
            return {
                "topics": [
                    {
                        "name": name,
                        "num_partitions": wanted[name].partitions,
                        "replication_factor": wanted[name].replication_factor,
                        "assignments": [],
                        "configs": [
                            {"name": key, "value": value}
                            for key, value in wanted[name].configs.items()
                        ],
                    }
                    for name in names
                ],
                "timeout_ms": self._operation_timeout_ms,
                "validate_only": validate_only,
            }

        return Deferred.fromCoroutine(
            self._on_controller(ApiKey.CREATE_TOPICS, list(wanted), body, "topics")
        )

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = 1,
        configs: Mapping[str, str | None] | None = None,
    ) -> Deferred:
        """Create one topic; the Deferred fails with the ``BrokerResponseError`` if refused."""
        topic = NewTopic(name, partitions, replication_factor, dict(configs or {}))
        return self.create_topics([topic]).addCallback(_single, name)

    def delete_topics(self, names: Iterable[str]) -> Deferred:
        """Delete topics.

        :returns: a Deferred firing with ``{name: None or BrokerResponseError}``.
        """

        def body(wanted: list[str]) -> dict:
            return {"topic_names": wanted, "timeout_ms": self._operation_timeout_ms}

        return Deferred.fromCoroutine(
            self._on_controller(ApiKey.DELETE_TOPICS, list(dict.fromkeys(names)), body, "responses")
        )

    def delete_topic(self, name: str) -> Deferred:
        """Delete one topic; the Deferred fails with the ``BrokerResponseError`` if refused."""
        return self.delete_topics([name]).addCallback(_single, name)

    def describe_topics(self, names: Iterable[str] | None = None) -> Deferred:
        """Metadata of ``names`` (every topic when ``None``).

        :returns: a Deferred firing with ``{name: TopicInfo}``, or failing with
            UNKNOWN_TOPIC_OR_PARTITION when a named topic does not exist.
        """
        wanted = None if names is None else list(names)
        return self._cluster.describe(wanted).addCallback(_found_topics, wanted)

    def describe_offsets(self, names: Iterable[str] | None = None) -> Deferred:
        """Metadata of ``names`` (every topic when ``None``) with each partition's high
        watermark and its replicas' log end offsets.

        The high watermark is asked of the leader named by the metadata, fenced by its leader
        epoch; each log end offset of the replica's broker (ListOffsets ``replica_id`` -2, one
        request per broker). A broker that cannot be reached or answers an error makes its
        values ``None``; that never fails the call. The values are read one broker at a time,
        so under traffic a log end offset may be ahead of the high watermark or of another
        replica's without being behind in replication.

        :returns: a Deferred firing with ``{name: {partition index: PartitionOffsets}}``, or
            failing as ``describe_topics`` does (UNKNOWN_TOPIC_OR_PARTITION for a named topic
            that does not exist, a ``KafkaError`` when no broker answers Metadata).
        """
        wanted = None if names is None else list(names)
        return Deferred.fromCoroutine(self._describe_offsets(wanted))

    async def _describe_offsets(
        self, wanted: list[str] | None
    ) -> dict[str, dict[int, PartitionOffsets]]:
        metadata: ClusterMetadata = await self._cluster.describe(wanted)
        topics = _found_topics(metadata, wanted)
        leaders: dict[int, list[PartitionInfo]] = {}
        replicas: dict[int, list[PartitionInfo]] = {}
        for topic in topics.values():
            for partition in topic.partitions.values():
                if partition.leader in metadata.brokers:
                    leaders.setdefault(partition.leader, []).append(partition)
                for replica in partition.replicas:
                    if replica in metadata.brokers:
                        replicas.setdefault(replica, []).append(partition)
        asked = [
            self._latest_offsets(node, _CONSUMER, partitions)
            for node, partitions in sorted(leaders.items())
        ] + [
            self._latest_offsets(node, _DEBUGGING_REPLICA, partitions)
            for node, partitions in sorted(replicas.items())
        ]
        answers = await gatherResults(asked)
        high_watermarks: dict[tuple[str, int], int] = {}
        for answer in answers[: len(leaders)]:
            high_watermarks.update(answer)
        ends: dict[int, dict[tuple[str, int], int]] = dict(
            zip(sorted(replicas), answers[len(leaders) :], strict=True)
        )
        return {
            name: {
                index: PartitionOffsets(
                    info=partition,
                    high_watermark=high_watermarks.get((name, index)),
                    log_end_offsets={
                        replica: ends.get(replica, {}).get((name, index))
                        for replica in partition.replicas
                    },
                )
                for index, partition in sorted(topic.partitions.items())
            }
            for name, topic in topics.items()
        }

    def _latest_offsets(
        self, node: int, replica_id: int, partitions: list[PartitionInfo]
    ) -> Deferred:
        """ListOffsets LATEST of ``partitions`` at broker ``node`` as ``replica_id``.

        :returns: a Deferred firing with ``{(topic, index): offset}`` for the partitions
            answered without error; a failed request (unreachable broker, timeout, version
            mismatch) fires with ``{}``.
        """
        by_topic: dict[str, list[dict]] = {}
        for partition in partitions:
            # a consumer read is fenced by the epoch the metadata named, so the high
            # watermark is the one of the leadership described; a replica read is not fenced
            epoch = partition.leader_epoch if replica_id == _CONSUMER else -1
            by_topic.setdefault(partition.topic, []).append(
                {
                    "partition_index": partition.partition,
                    "current_leader_epoch": epoch,
                    "timestamp": _LATEST,
                }
            )
        body = {
            "replica_id": replica_id,
            "isolation_level": _READ_UNCOMMITTED,
            "topics": [{"name": name, "partitions": parts} for name, parts in by_topic.items()],
        }

        def offsets(response: Any) -> dict[tuple[str, int], int]:
            found = {}
            for topic in response.topics:
                for answer in topic.partitions:
                    if answer.error_code == ErrorCode.NONE and answer.offset >= 0:
                        found[topic.name, answer.partition_index] = answer.offset
            return found

        def unknown(failure: Failure) -> dict:
            failure.trap(KafkaError)
            return {}

        sent = self._cluster.send(node, ApiKey.LIST_OFFSETS, body)
        return sent.addCallbacks(offsets, unknown)

    def list_topics(self) -> Deferred:
        """The names of every topic but internal ones, sorted."""
        return self._cluster.describe().addCallback(
            lambda metadata: sorted(n for n, t in metadata.topics.items() if not t.is_internal)
        )

    def describe_cluster(self) -> Deferred:
        """The cluster id, the controller and the brokers (``ClusterInfo``)."""
        return self._cluster.describe([]).addCallback(
            lambda metadata: ClusterInfo(
                metadata.cluster_id,
                metadata.controller_id,
                sorted(metadata.brokers.values(), key=lambda broker: broker.node_id),
            )
        )

    async def _on_controller(
        self, api_key: int, names: list[str], body, results_field: str
    ) -> dict[str, KafkaError | None]:
        outcomes: dict[str, KafkaError | None] = {}
        pending = names
        deadline = self._clock.seconds() + self._api_timeout_s
        attempt = 0
        while pending:
            retry: list[str] = []
            try:
                response = await self._send_to_controller(api_key, body(pending))
            except KafkaError as e:
                if not e.retriable or self._clock.seconds() >= deadline:
                    raise
                retry = pending
            else:
                for answer in getattr(response, results_field):
                    if answer.name not in pending:
                        continue
                    if answer.error_code == ErrorCode.NONE:
                        outcomes[answer.name] = None
                        continue
                    error = BrokerResponseError(
                        answer.error_code,
                        f"{_NAMES[api_key]} {answer.name}",
                        answer.get("error_message"),
                    )
                    late = self._clock.seconds() >= deadline
                    if answer.error_code == ErrorCode.NOT_CONTROLLER and not late:
                        retry.append(answer.name)
                    else:
                        outcomes[answer.name] = error
            for name in pending:
                if name not in outcomes and name not in retry:
                    outcomes[name] = BrokerResponseError(
                        ErrorCode.UNKNOWN_SERVER_ERROR, f"{_NAMES[api_key]} {name}: no answer"
                    )
            if not retry:
                break
            self._cluster.request_update()
            attempt += 1
            await deferLater(self._clock, min(self._backoff_s * 2 ** (attempt - 1), 1.0))
            pending = retry
        return outcomes

    async def _send_to_controller(self, api_key: int, body: dict) -> Any:
        metadata = await self._cluster.describe([])
        timeout_ms = self._operation_timeout_ms + self._cluster.request_timeout_ms
        if metadata.controller_id < 0:  # Metadata v0 names no controller
            return await self._cluster.send_any(api_key, body, timeout_ms=timeout_ms)
        return await self._cluster.send(
            metadata.controller_id, api_key, body, timeout_ms=timeout_ms
        )


_NAMES = {ApiKey.CREATE_TOPICS: "CreateTopics", ApiKey.DELETE_TOPICS: "DeleteTopics"}


def _found_topics(metadata: ClusterMetadata, wanted: list[str] | None) -> dict[str, TopicInfo]:
    """The topics of a Metadata answer; UNKNOWN_TOPIC_OR_PARTITION if one ``wanted`` is not."""
    missing = [name for name in wanted or () if name not in metadata.topics]
    if missing:
        raise BrokerResponseError(
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Metadata for {', '.join(missing)}"
        )
    return dict(metadata.topics)


def _single(outcomes: dict[str, KafkaError | None], name: str) -> None:
    error = outcomes.get(name)
    if error is not None:
        raise error
