"""``Broker``: the logic object every adapter calls (TCP handlers now, admin tools later).

It owns the topic metadata (kept in a ``MetadataStore``), the partitions this broker leads
(each over a ``PartitionLog`` of the ``LogManager``), the fetch purgatory and the producer-id
blocks. Topic creation and deletion go through the store; the store's watch events create and
delete the logs, so a topic exists locally exactly when the store says so.

Single node (issue #4): this broker leads every partition, at the leader epoch the store holds.
Not thread-safe: everything runs on the reactor thread.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tmq.cluster.store import (
    InvalidTopic,
    MetadataStore,
    PartitionState,
    PartitionStateChanged,
    TopicCreated,
    TopicDeleted,
    TopicSpec,
    validate_topic_name,
)
from tmq.protocol.errors import ErrorCode
from tmq.storage.config import LogConfig
from tmq.storage.log_manager import LogManager

from .config import BrokerConfig
from .partition import Partition
from .producer_state import ProducerStateManager
from .purgatory import Purgatory

__all__ = ["Broker", "TopicError"]

_log = Logger()

_PRODUCER_ID_BLOCK = 1000


class TopicError(Exception):
    """A topic request that cannot be done; ``error_code`` is the Kafka error."""

    def __init__(self, error_code, message: str):
        super().__init__(message)
        self.error_code = error_code


class Broker:
    """The broker's state and operations (see the module docstring).

    :param clock: the reactor (``seconds`` and ``callLater``).
    """

    def __init__(
        self,
        config: BrokerConfig,
        clock: IReactorTime,
        logs: LogManager,
        store: MetadataStore,
    ):
        self.config = config
        self.clock = clock
        self.logs = logs
        self.store = store
        self.purgatory = Purgatory(clock)
        self.topics: dict[str, TopicSpec] = {}
        self.partitions: dict[tuple[str, int], Partition] = {}
        self._pending_creations: dict[str, defer.Deferred] = {}
        self._producer_ids = (0, 0)  # next id, end of the block
        self._unwatch = None
        #: The port clients are told (set once the listening port is known).
        self.advertised_port = config.advertised_port or config.listen_port

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def topic_log_config(self, topic: str) -> LogConfig:
        """The broker's log defaults with the topic's own configs applied."""
        spec = self.topics.get(topic)
        if spec is None or not spec.configs:
            return self.config.log
        return self.config.log.with_properties(dict(spec.configs))

    # -- lifecycle ----------------------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self):
        """Load the topics from the store, open (recovering) the logs, lead every partition."""
        self.topics = dict((yield self.store.topics()))
        states = {}
        for name in self.topics:
            states[name] = yield self.store.partition_states(name)
        reports = self.logs.startup()
        for (topic, index), report in reports.items():
            if report.truncated_bytes or report.deleted_segments:
                _log.warn(
                    "recovered {topic}-{index}: cut {bytes} bytes ({reason}), "
                    "deleted {deleted} segments",
                    topic=topic,
                    index=index,
                    bytes=report.truncated_bytes,
                    reason=report.reason,
                    deleted=report.deleted_segments,
                )
        for topic, index in list(self.logs.logs):
            if topic not in self.topics:
                _log.info("deleting the log of deleted topic {t}-{i}", t=topic, i=index)
                self.logs.delete_log(topic, index)
        for name, spec in self.topics.items():
            for index in range(spec.partitions):
                self._lead(name, index, states[name][index])
        self._unwatch = self.store.watch(self._on_store_event)

    def stop(self) -> None:
        """Stop watching the store and close the logs cleanly (flush, checkpoints, marker)."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self.logs.shutdown()

    def _lead(self, topic: str, index: int, state: PartitionState) -> Partition:
        log = self.logs.get_log(topic, index) or self.logs.create_log(topic, index)
        producers = ProducerStateManager()
        producers.rebuild(log.batch_headers(), self.now_ms())
        partition = Partition(
            topic,
            index,
            log,
            leader_epoch=state.leader_epoch,
            producers=producers,
            clock_ms=self.now_ms,
        )
        partition.on_data(lambda key=(topic, index): self.purgatory.touch(key))
        self.partitions[topic, index] = partition
        return partition

    def _on_store_event(self, event) -> None:
        if isinstance(event, TopicCreated):
            self.topics[event.spec.name] = event.spec
        elif isinstance(event, TopicDeleted):
            self.topics.pop(event.name, None)
            for key in [k for k in self.partitions if k[0] == event.name]:
                del self.partitions[key]
                self.logs.delete_log(*key)
        elif isinstance(event, PartitionStateChanged):
            partition = self.partitions.get((event.topic, event.partition))
            if partition is None:
                self._lead(event.topic, event.partition, event.state)
            else:
                partition.leader_epoch = event.state.leader_epoch

    # -- topics -------------------------------------------------------------------------------

    def validate_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None:
        """:raises TopicError: with the Kafka error code for what is wrong."""
        try:
            validate_topic_name(name)
        except InvalidTopic as error:
            raise TopicError(error.error_code, str(error)) from None
        if name in self.topics or name in self._pending_creations:
            raise TopicError(ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists")
        if partitions < 1:
            raise TopicError(ErrorCode.INVALID_PARTITIONS, "partitions must be at least 1")
        if replication_factor < 1 or replication_factor > 1:
            raise TopicError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"replication factor {replication_factor}: this cluster has 1 broker",
            )
        try:
            self.config.log.with_properties(configs)
        except ValueError as error:
            raise TopicError(ErrorCode.INVALID_CONFIG, str(error)) from None

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> defer.Deferred:
        """Create a topic (validated first); fires once its partitions are led here.

        :raises TopicError: invalid request (raised at once, not through the Deferred).
        """
        self.validate_topic(name, partitions, replication_factor, configs)
        me = self.config.broker_id
        spec = TopicSpec(
            name=name,
            partitions=partitions,
            replication_factor=replication_factor,
            assignment={p: (me,) for p in range(partitions)},
            configs=dict(configs),
        )
        states = {
            p: PartitionState(leader=me, leader_epoch=0, isr=(me,), controller_epoch=0, version=0)
            for p in range(partitions)
        }
        created = self.store.create_topic(spec, states)
        self._pending_creations[name] = created

        def done(result):
            self._pending_creations.pop(name, None)
            if name not in self.topics:  # a store without watch events for our own writes
                self.topics[name] = spec
            for p in range(partitions):
                if (name, p) not in self.partitions:
                    self._lead(name, p, states[p])
            return result

        return created.addBoth(done)

    def delete_topic(self, name: str) -> defer.Deferred:
        return self.store.delete_topic(name)

    def maybe_auto_create(self, name: str) -> bool:
        """Start creating ``name`` with the defaults if auto-creation is on; return whether a
        creation is (now) under way."""
        if name in self._pending_creations:
            return True
        if not self.config.auto_create_topics:
            return False
        try:
            self.create_topic(
                name, self.config.num_partitions, self.config.default_replication_factor, {}
            ).addErrback(
                lambda failure: _log.warn(
                    "auto-creating topic {name} failed: {error}",
                    name=name,
                    error=failure.getErrorMessage(),
                )
            )
        except TopicError:
            return False
        return True

    # -- producer ids -------------------------------------------------------------------------

    @defer.inlineCallbacks
    def allocate_producer_id(self):
        """A producer id never handed out before (blocks of ids reserved in the store)."""
        next_id, end = self._producer_ids
        if next_id >= end:
            first = yield self.store.allocate_producer_ids(_PRODUCER_ID_BLOCK)
            next_id, end = first, first + _PRODUCER_ID_BLOCK
        self._producer_ids = (next_id + 1, end)
        return next_id
