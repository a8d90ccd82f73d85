"""Cluster administration: create, delete and describe topics; describe the cluster.

CreateTopics and DeleteTopics go to the controller named in Metadata; a topic answered
NOT_CONTROLLER (the controller moved) or a connection failure is retried on the controller of
refreshed metadata, until ``api_timeout_ms``. Each topic has its own outcome: the batch calls
return ``{name: None or BrokerResponseError}``, the single-topic calls fail with the error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode

from .cluster import BrokerInfo, Cluster, TopicInfo
from .errors import BrokerResponseError, KafkaError

__all__ = ["Admin", "ClusterInfo", "NewTopic"]


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
        described = self._cluster.describe(wanted)

        def topics(metadata: Any) -> dict[str, TopicInfo]:
            missing = [name for name in wanted or () if name not in metadata.topics]
            if missing:
                raise BrokerResponseError(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Metadata for {', '.join(missing)}"
                )
            return dict(metadata.topics)

        return described.addCallback(topics)

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


def _single(outcomes: dict[str, KafkaError | None], name: str) -> None:
    error = outcomes.get(name)
    if error is not None:
        raise error
