"""Cluster administration: create, delete and describe topics and groups; describe the cluster.

CreateTopics and DeleteTopics go to the controller named in Metadata; a topic answered
NOT_CONTROLLER (the controller moved) or a connection failure is retried on the controller of
refreshed metadata, until ``api_timeout_ms``. Each topic has its own outcome: the batch calls
return ``{name: None or BrokerResponseError}``, the single-topic calls fail with the error.

``describe_offsets`` adds to the metadata where each partition's log stands: the leader's high
watermark (ListOffsets LATEST as a consumer asks it, ``replica_id`` -1) and every replica's log
end offset (ListOffsets LATEST with ``replica_id`` -2, Kafka's DEBUGGING_REPLICA_ID, which any
replica answers from its own log). One request per broker and kind, all at once; what a broker
cannot tell is ``None``.

Groups: ``list_groups`` asks every live broker for the groups it coordinates (ListGroups), then
each broker for their states (DescribeGroups, as ListGroups v0-2 carries no state).
``describe_groups`` asks each group's coordinator (FindCoordinator, then DescribeGroups) and
decodes the members' assignments of ``"consumer"`` groups; ``group_offsets`` reads a group's
committed offsets from its coordinator (OffsetFetch) and the partitions' end offsets from their
leaders (ListOffsets LATEST, the high watermark a consumer reads up to), hence the lag. A request
to a coordinator is retried on retriable errors until ``api_timeout_ms``; a moved or unavailable
coordinator (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, a lost connection) is looked up again.
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
from .consumer import TopicPartition
from .consumer_protocol import ConsumerAssignment, decode_assignment
from .errors import (
    BrokerResponseError,
    KafkaError,
    UnsupportedVersionError,
)

__all__ = [
    "Admin",
    "ClusterInfo",
    "GroupDescription",
    "GroupList",
    "GroupListing",
    "GroupMember",
    "GroupOffset",
    "NewTopic",
    "PartitionOffsets",
]

_LATEST = -1  # ListOffsets timestamp: the high watermark (consumer) or log end offset (replica)
_CONSUMER = -1  # ListOffsets replica_id of a consumer: the leader answers, with the HW
_DEBUGGING_REPLICA = -2  # ListOffsets replica_id of a tool: any replica answers, with its LEO
_READ_UNCOMMITTED = 0
_CONSUMER_PROTOCOL = "consumer"  # the protocol type whose assignments are decoded


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


@dataclasses.dataclass(frozen=True)
class GroupListing:
    """A group as ``list_groups`` finds it.

    :ivar protocol_type: ``"consumer"`` for consumer groups; empty for a group that only
        commits offsets.
    :ivar state: as DescribeGroups names it (``"Stable"``, ``"Empty"``, ...); ``None`` when the
        coordinator did not tell (DescribeGroups unsupported, failed, or answered an error).
    :ivar coordinator: the id of the broker that listed it: its coordinator.
    """

    group_id: str
    protocol_type: str
    state: str | None
    coordinator: int


@dataclasses.dataclass(frozen=True)
class GroupList:
    """What ``list_groups`` found.

    :ivar groups: every group listed, by group id; a group two brokers both list (its
        coordinator moving) appears once, as the broker with the lower id listed it.
    :ivar errors: ``{broker id: KafkaError}`` for each live broker that could not be reached or
        answered ListGroups with an error: the listing lacks the groups it coordinates.
    """

    groups: list[GroupListing]
    errors: dict[int, KafkaError]


@dataclasses.dataclass(frozen=True)
class GroupMember:
    """One member of a described group.

    :ivar raw_assignment: the assignment bytes as the coordinator gave them (empty unless the
        group is Stable).
    :ivar assignment: ``raw_assignment`` decoded, for a ``"consumer"`` group whose member has a
        non-empty assignment that decodes; ``None`` otherwise.
    :ivar assignment_error: why a ``"consumer"`` member's non-empty assignment did not decode;
        ``None`` when it did or was not decoded.
    """

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    raw_assignment: bytes
    assignment: ConsumerAssignment | None = None
    assignment_error: str | None = None


@dataclasses.dataclass(frozen=True)
class GroupDescription:
    """A group as its coordinator describes it.

    :ivar state: ``"Empty"``, ``"PreparingRebalance"``, ``"CompletingRebalance"``,
        ``"Stable"`` or ``"Dead"`` (which is also how a coordinator before DescribeGroups v6
        answers for a group it does not know).
    :ivar protocol: the protocol the members agreed on (e.g. ``"range"``), empty unless Stable.
    :ivar members: in the coordinator's order.
    :ivar coordinator: the id of the broker that answered.
    """

    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: list[GroupMember]
    coordinator: int


@dataclasses.dataclass(frozen=True)
class GroupOffset:
    """One partition of a group: its committed offset and where the partition ends.

    :ivar committed: the offset the group committed; ``None`` when it committed none.
    :ivar metadata: the metadata committed with it (``None`` when none, or null).
    :ivar end_offset: the leader's high watermark (ListOffsets LATEST as a consumer reads it);
        ``None`` when the topic is unknown, the partition has no leader, or the leader could not
        be reached or answered an error.
    """

    topic: str
    partition: int
    committed: int | None
    metadata: str | None
    end_offset: int | None

    @property
    def lag(self) -> int | None:
        """``end_offset - committed`` when both are known, else ``None``; negative when the
        log was truncated below the committed offset."""
        if self.committed is None or self.end_offset is None:
            return None
        return self.end_offset - self.committed


class Admin:
    """Topic, group and cluster administration over a shared ``Cluster``.

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

    # -- groups ----------------------------------------------------------------------------

    def list_groups(self) -> Deferred:
        """Every group of the cluster: ListGroups to each live broker (those Metadata names),
        then DescribeGroups to each for the states of the groups it listed.

        A broker's ListGroups answered with a retriable error (COORDINATOR_LOAD_IN_PROGRESS) is
        asked again until ``api_timeout_ms``; a broker that cannot be reached or keeps
        answering an error is reported in ``GroupList.errors``, never failing the call.

        :returns: a Deferred firing with a ``GroupList``, or failing with a ``KafkaError`` when
            no broker answers Metadata.
        """
        return Deferred.fromCoroutine(self._list_groups())

    async def _list_groups(self) -> GroupList:
        metadata: ClusterMetadata = await self._cluster.describe([])
        nodes = sorted(metadata.brokers)
        answers = await gatherResults(
            [Deferred.fromCoroutine(self._groups_on(node)) for node in nodes]
        )
        found: dict[str, GroupListing] = {}
        errors: dict[int, KafkaError] = {}
        for node, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, KafkaError):
                errors[node] = answer
                continue
            for listing in answer:
                found.setdefault(listing.group_id, listing)
        return GroupList([found[group] for group in sorted(found)], errors)

    async def _groups_on(self, node: int) -> list[GroupListing] | KafkaError:
        """The groups broker ``node`` coordinates, with their states; the error that kept it
        from listing them otherwise."""
        deadline = self._clock.seconds() + self._api_timeout_s
        attempt = 0
        while True:
            try:
                response = await self._cluster.send(node, ApiKey.LIST_GROUPS, {})
            except KafkaError as error:
                return error
            if response.error_code == ErrorCode.NONE:
                break
            error = BrokerResponseError(response.error_code, f"ListGroups on broker {node}")
            if not error.retriable or self._clock.seconds() >= deadline:
                return error
            attempt += 1
            await deferLater(self._clock, min(self._backoff_s * 2 ** (attempt - 1), 1.0))
        listed = [(group.group_id, group.protocol_type) for group in response.groups]
        states = await self._states_on(node, [group_id for group_id, _ in listed])
        return [
            GroupListing(group_id, protocol_type, states.get(group_id), node)
            for group_id, protocol_type in listed
        ]

    async def _states_on(self, node: int, group_ids: list[str]) -> dict[str, str]:
        """``{group id: state}`` as broker ``node`` describes them, for those it answers
        without error; ``{}`` when the request fails."""
        if not group_ids:
            return {}
        body = {"groups": group_ids, "include_authorized_operations": False}
        try:
            response = await self._cluster.send(node, ApiKey.DESCRIBE_GROUPS, body)
        except KafkaError:
            return {}
        return {
            group.group_id: group.group_state
            for group in response.groups
            if group.error_code == ErrorCode.NONE
        }

    def describe_groups(self, group_ids: Iterable[str]) -> Deferred:
        """Describe groups, each by its coordinator (FindCoordinator, then DescribeGroups),
        all at once.

        Members' assignments are decoded for groups of protocol type ``"consumer"``; one that
        does not decode is kept raw (``GroupMember.assignment_error`` says why).

        :returns: a Deferred firing with ``{group id: GroupDescription or KafkaError}``: the
            error for a group whose coordinator could not be found or reached, or answered an
            error (e.g. GROUP_AUTHORIZATION_FAILED), once retries stop.
        """
        wanted = list(dict.fromkeys(group_ids))
        return Deferred.fromCoroutine(self._describe_groups(wanted))

    async def _describe_groups(self, wanted: list[str]) -> dict[str, GroupDescription | KafkaError]:
        async def one(group: str) -> GroupDescription | KafkaError:
            try:
                return await self._on_coordinator(
                    group,
                    ApiKey.DESCRIBE_GROUPS,
                    {"groups": [group], "include_authorized_operations": False},
                    _described,
                )
            except KafkaError as error:
                return error

        answers = await gatherResults([Deferred.fromCoroutine(one(group)) for group in wanted])
        return dict(zip(wanted, answers, strict=True))

    def describe_group(self, group_id: str) -> Deferred:
        """Describe one group (see ``describe_groups``).

        :returns: a Deferred firing with its ``GroupDescription``, or failing with the
            ``KafkaError`` that kept it from being described.
        """
        return self.describe_groups([group_id]).addCallback(_single_description, group_id)

    def group_offsets(self, group_id: str, include: Iterable[tuple[str, int]] = ()) -> Deferred:
        """The committed offsets of group ``group_id``, with each partition's end offset and
        so its lag.

        The coordinator is asked for every partition the group committed (OffsetFetch with
        null topics, v2+); the leaders named by fresh metadata for their high watermarks
        (ListOffsets LATEST, one request per leader; a leader that cannot tell leaves
        ``end_offset`` ``None``). The offsets and end offsets are read one after the other, so
        under traffic a lag is a snapshot, not exact.

        :param include: partitions to report even if the group committed nothing for them
            (``committed`` ``None``), e.g. those assigned to its members.
        :returns: a Deferred firing with ``{TopicPartition: GroupOffset}`` ordered by topic and
            partition, or failing with a ``KafkaError``: the coordinator's error once retries
            stop (a group the coordinator does not know has no offsets: ``{}`` plus
            ``include``), ``UnsupportedVersionError`` from a broker without OffsetFetch v2.
        """
        return Deferred.fromCoroutine(self._group_offsets(group_id, list(include)))

    async def _group_offsets(
        self, group: str, include: list[tuple[str, int]]
    ) -> dict[TopicPartition, GroupOffset]:
        def body(version: int) -> dict:
            if version < 2:
                raise UnsupportedVersionError(
                    f"OffsetFetch v{version} cannot ask for all of a group's offsets (v2+ can)"
                )
            return {"group_id": group, "topics": None}

        committed: dict[TopicPartition, tuple[int, str | None]] = await self._on_coordinator(
            group, ApiKey.OFFSET_FETCH, body, _fetched
        )
        wanted = set(committed) | {TopicPartition(*tp) for tp in include}
        ends = await self._end_offsets(wanted)
        offsets = {}
        for tp in sorted(wanted):
            offset, metadata = committed.get(tp, (None, None))
            offsets[tp] = GroupOffset(tp.topic, tp.partition, offset, metadata, ends.get(tp))
        return offsets

    async def _end_offsets(self, wanted: set[TopicPartition]) -> dict[TopicPartition, int]:
        """The high watermark of each ``wanted`` partition whose leader tells it."""
        if not wanted:
            return {}
        metadata: ClusterMetadata = await self._cluster.describe({tp.topic for tp in wanted})
        leaders: dict[int, list[PartitionInfo]] = {}
        for tp in sorted(wanted):
            topic = metadata.topics.get(tp.topic)
            partition = topic.partitions.get(tp.partition) if topic is not None else None
            if partition is not None and partition.leader in metadata.brokers:
                leaders.setdefault(partition.leader, []).append(partition)
        answers = await gatherResults(
            [
                self._latest_offsets(node, _CONSUMER, partitions)
                for node, partitions in sorted(leaders.items())
            ]
        )
        ends: dict[TopicPartition, int] = {}
        for answer in answers:
            for (topic, index), offset in answer.items():
                ends[TopicPartition(topic, index)] = offset
        return ends

    def _on_coordinator(self, group: str, api_key: int, body, interpret) -> Deferred:
        """``Cluster.on_coordinator`` with this admin's timeout and backoff;
        ``interpret(response, group, node)``."""
        return Deferred.fromCoroutine(
            self._cluster.on_coordinator(
                group,
                api_key,
                body,
                lambda response, node: interpret(response, group, node),
                timeout_s=self._api_timeout_s,
                backoff_s=self._backoff_s,
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


def _described(response: Any, group: str, node: int) -> GroupDescription:
    """The ``GroupDescription`` of ``group`` in a DescribeGroups answer from broker ``node``.

    :raises BrokerResponseError: the group's error code, or UNKNOWN_SERVER_ERROR when the
        answer does not mention the group.
    """
    for answer in response.groups:
        if answer.group_id == group:
            break
    else:
        raise BrokerResponseError(
            ErrorCode.UNKNOWN_SERVER_ERROR, f"DescribeGroups {group!r}: not in the answer"
        )
    if answer.error_code != ErrorCode.NONE:
        raise BrokerResponseError(answer.error_code, f"DescribeGroups {group!r}")
    decode = answer.protocol_type == _CONSUMER_PROTOCOL
    return GroupDescription(
        group_id=answer.group_id,
        state=answer.group_state,
        protocol_type=answer.protocol_type,
        protocol=answer.protocol_data,
        members=[_member(member, decode) for member in answer.members],
        coordinator=node,
    )


def _member(answer: Any, decode: bool) -> GroupMember:
    raw = bytes(answer.member_assignment)
    assignment = error = None
    if decode and raw:
        try:
            assignment = decode_assignment(raw)
        except ValueError as e:
            error = str(e)
    return GroupMember(
        member_id=answer.member_id,
        group_instance_id=answer.group_instance_id,
        client_id=answer.client_id,
        client_host=answer.client_host,
        raw_assignment=raw,
        assignment=assignment,
        assignment_error=error,
    )


def _fetched(response: Any, group: str, _node: int) -> dict[TopicPartition, tuple[int, str | None]]:
    """``{partition: (committed offset, metadata)}`` of an OffsetFetch answer, leaving out the
    partitions with nothing committed (offset -1).

    :raises BrokerResponseError: the answer's error code, or a partition's.
    """
    if response.error_code != ErrorCode.NONE:
        raise BrokerResponseError(response.error_code, f"OffsetFetch for group {group!r}")
    committed = {}
    for topic in response.topics:
        for answer in topic.partitions:
            if answer.error_code != ErrorCode.NONE:
                raise BrokerResponseError(
                    answer.error_code,
                    f"OffsetFetch {topic.name}-{answer.partition_index} for group {group!r}",
                )
            if answer.committed_offset >= 0:
                tp = TopicPartition(topic.name, answer.partition_index)
                committed[tp] = (answer.committed_offset, answer.metadata)
    return committed


def _single_description(
    described: dict[str, GroupDescription | KafkaError], group: str
) -> GroupDescription:
    outcome = described[group]
    if isinstance(outcome, KafkaError):
        raise outcome
    return outcome


def _single(outcomes: dict[str, KafkaError | None], name: str) -> None:
    error = outcomes.get(name)
    if error is not None:
        raise error
