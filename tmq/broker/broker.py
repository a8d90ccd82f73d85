"""``Broker``: the logic object every adapter calls (the TCP handlers, the replication stream).

It keeps a *view* of the metadata store — topics, partition states, live brokers, the
controller — current through the store's watch, and from it decides this broker's role for
every partition it holds a replica of (DESIGN §4 and §5):

* **leader** when the state names this broker *and* was written after this broker's
  registration (the state's ``version`` above the registration's ``broker_epoch``; both come
  from the store's one revision counter). A state written before — by a previous life of this
  broker, which may have lost an unflushed tail — is not led: the controller gives it a new
  epoch first (``controller.refresh_restarted``), so one leader epoch is one history;
* **follower** of the named leader when this broker is another assigned replica;
* nothing otherwise (an offline partition, a leader waiting for its new epoch).

A leader is a ``Partition`` (``self.partitions``, what the client handlers serve); a follower
a ``FollowerPartition`` fed by the ``ReplicaFetchers``. The leader's ISR changes are
compare-and-swap writes fenced by this broker's registration (``LeaderFence``); a shrink
counts only once the store has it.

Lease: ``lease_valid()`` is the registration's conservative deadline (``LeaseDeadline``),
checked before every leader action. When the registration is lost the broker drops every
leadership and its controller role, registers again (a new ``broker_epoch``) and takes up the
roles the store gives the new registration.

Not thread-safe: everything runs on the reactor thread.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import replace

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tmq.cluster.controller import NO_LEADER, UNCLEAN_ELECTION_CONFIG, InvalidAssignment
from tmq.cluster.controller_service import ControllerService, NotController
from tmq.cluster.store import (
    BrokerIdInUse,
    BrokerInfo,
    BrokerLost,
    BrokerRegistered,
    ControllerChanged,
    Fenced,
    InvalidTopic,
    LeaderFence,
    MetadataStore,
    MetadataStoreError,
    PartitionState,
    PartitionStateChanged,
    Registration,
    StaleVersion,
    TopicCreated,
    TopicDeleted,
    TopicSpec,
    validate_topic_name,
)
from tmq.groups.coordinator import GroupCoordinator
from tmq.protocol.errors import ErrorCode
from tmq.replication.follower import FollowerPartition
from tmq.replication.leader import PartitionLeader
from tmq.storage.config import LogConfig
from tmq.storage.errors import LogError
from tmq.storage.log_manager import LogManager

from .config import BrokerConfig
from .metrics import BrokerMetrics
from .partition import Partition
from .producer_state import ProducerStateManager
from .purgatory import Purgatory

__all__ = ["REPLICATION_TOPIC_KEYS", "Broker", "TopicError"]

_log = Logger()

_PRODUCER_ID_BLOCK = 1000
#: Topic configs about replication rather than the log.
REPLICATION_TOPIC_KEYS = ("min.insync.replicas", UNCLEAN_ELECTION_CONFIG)
#: Pauses between registration attempts (an old registration of this id may still live).
_REGISTER_RETRY_S = 0.5

TopicPartition = tuple[str, int]


class TopicError(Exception):
    """A topic request that cannot be done; ``error_code`` is the Kafka error."""

    def __init__(self, error_code, message: str):
        super().__init__(message)
        self.error_code = error_code


def _split_configs(configs) -> tuple[dict[str, str], dict[str, str]]:
    """A topic's configs: (log configs, replication configs)."""
    log_configs, replication = {}, {}
    for key, value in configs.items():
        (replication if key in REPLICATION_TOPIC_KEYS else log_configs)[key] = value
    return log_configs, replication


class Broker:
    """The broker's state and operations (see the module docstring).

    :param clock: the reactor (``seconds``, ``callLater``, ``callFromThread``).
    :param monotonic: the monotonic clock lease deadlines are kept on.
    :param metrics: where appends, fetches and ISR changes are counted (a new
        ``BrokerMetrics`` by default).
    """

    def __init__(
        self,
        config: BrokerConfig,
        clock: IReactorTime,
        logs: LogManager,
        store: MetadataStore,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: BrokerMetrics | None = None,
    ):
        self.config = config
        self.metrics = metrics if metrics is not None else BrokerMetrics()
        self.clock = clock
        self.logs = logs
        self.store = store
        self.monotonic = monotonic
        self.purgatory = Purgatory(clock)
        # the view of the store
        self.topics: dict[str, TopicSpec] = {}
        self.states: dict[TopicPartition, PartitionState] = {}
        self.live: dict[int, BrokerInfo] = {}
        self.controller_id = -1
        self._controller_epoch = -1
        # this broker's roles
        self.registration: Registration | None = None
        self.partitions: dict[TopicPartition, Partition] = {}
        self.followers: dict[TopicPartition, FollowerPartition] = {}
        self.controller = ControllerService(store, self, clock)
        #: The consumer groups this broker coordinates (``coordinator_of``).
        self.groups = GroupCoordinator(
            clock,
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms=config.group_min_session_timeout_ms,
            max_session_timeout_ms=config.group_max_session_timeout_ms,
        )
        #: The follower side of replication (``ReplicaFetchers``), set by the service.
        self.fetchers = None
        #: The leader's ends of replication streams (``ReplicaSession``).
        self.sessions: set = set()
        self._high_watermarks: dict[TopicPartition, int] = {}
        #: Groups with offsets but unknown to the coordinator at the last offset-retention check.
        self._memberless_seen: set[str] = set()
        #: Groups this broker coordinates seen empty by ``expire_group_offsets``, since when.
        self._empty_since: dict[str, int] = {}
        self._isr_writes: set[TopicPartition] = set()
        self._pending_creations: dict[str, defer.Deferred] = {}
        self._producer_ids = (0, 0)  # next id, end of the block
        self._unwatch = None
        self._isr_loop: task.LoopingCall | None = None
        self._stopped = False
        #: The port clients are told (set once the listening port is known).
        self.advertised_port = config.advertised_port or config.listen_port

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def lease_valid(self) -> bool:
        """Whether this broker may act as a leader now (its registration's deadline)."""
        registration = self.registration
        return registration is not None and registration.valid(self.monotonic())

    def topic_log_config(self, topic: str) -> LogConfig:
        """The broker's log defaults with the topic's own log configs applied."""
        spec = self.topics.get(topic)
        if spec is None or not spec.configs:
            return self.config.log
        return self.config.log.with_properties(_split_configs(spec.configs)[0])

    def min_insync(self, topic: str) -> int:
        spec = self.topics.get(topic)
        value = spec.configs.get("min.insync.replicas") if spec is not None else None
        return int(value) if value is not None else self.config.min_insync_replicas

    # -- lifecycle ----------------------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self):
        """Watch the store, load the view, open (recovering) the logs. Leads nothing yet:
        ``join`` registers and takes up the roles."""
        self._unwatch = self.store.watch(self._on_store_event)
        topics = yield self.store.topics()
        for name, spec in topics.items():
            self.topics.setdefault(name, spec)
            states = yield self.store.partition_states(name)
            for index, state in states.items():
                self._newer_state((name, index), state)
        self._report_recovery(self.logs.startup())
        for topic, index in list(self.logs.logs):
            if topic not in self.topics:
                _log.info("deleting the log of deleted topic {t}-{i}", t=topic, i=index)
                self.logs.delete_log(topic, index)
        self._high_watermarks = self.logs.read_high_watermarks()

    @staticmethod
    def _report_recovery(reports) -> None:
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

    @defer.inlineCallbacks
    def join(self):
        """Register (waiting while a previous registration of this id lives on), learn the
        live brokers and the controller, take up the roles, campaign for controller, and
        check the followers' lag every ``replica.lag.time.max.ms / 2``."""
        yield self._register()
        if self._isr_loop is None:
            self._isr_loop = task.LoopingCall(self._shrink_lagging)
            self._isr_loop.clock = self.clock
            self._isr_loop.start(self.config.replica_lag_time_max_ms / 2000, now=False)

    @defer.inlineCallbacks
    def _register(self):
        config = self.config
        info = BrokerInfo(
            config.broker_id, config.advertised_host, self.advertised_port, config.rack
        )
        while not self._stopped:
            try:
                registration = yield self.store.register_broker(
                    info, config.session_timeout_ms / 1000
                )
            except BrokerIdInUse:
                yield task.deferLater(self.clock, _REGISTER_RETRY_S, lambda: None)
                continue
            except MetadataStoreError as error:
                _log.warn("registration failed ({error}); retrying", error=error)
                yield task.deferLater(self.clock, 2 * _REGISTER_RETRY_S, lambda: None)
                continue
            break
        else:
            return
        self.registration = registration
        _log.info(
            "broker {id} registered (broker epoch {epoch})",
            id=config.broker_id,
            epoch=registration.broker_epoch,
        )
        registration.lost.addCallback(self._registration_lost, registration)
        live = yield self.store.live_brokers()
        for info in live.values():
            self._broker_registered(info)
        controller = yield self.store.controller()
        if controller is not None:
            self._controller_changed(*controller)
        for key in sorted(self.states):
            self._apply(key)
        self.controller.start(registration)

    def _registration_lost(self, reason: str, registration: Registration) -> None:
        if registration is not self.registration or self._stopped:
            return
        _log.warn(
            "this broker's registration ended ({reason}): leading and coordinating nothing",
            reason=reason,
        )
        self.registration = None
        self.controller.stop()
        for key in list(self.partitions):
            self._drop_leader(key)
        for listing in self.groups.groups():
            self.groups.unload(listing.group_id)  # another broker may coordinate it meanwhile
        self._register().addErrback(lambda f: _log.failure("registering again failed", f))

    @defer.inlineCallbacks
    def stop(self):
        """Stop every role, end the registration, write the high watermarks and close the
        logs cleanly (flush, checkpoints, marker). Stopping again does nothing."""
        if self._stopped:
            return
        self._stopped = True
        if self._isr_loop is not None and self._isr_loop.running:
            self._isr_loop.stop()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self.controller.stop()
        self.groups.close()
        if self.fetchers is not None:
            self.fetchers.stop()
        for session in list(self.sessions):
            session.close()
        registration, self.registration = self.registration, None
        for key in list(self.partitions):
            self._drop_leader(key)
        for key in list(self.followers):
            self._drop_follower(key)
        if registration is not None:
            try:
                yield registration.close()
            except MetadataStoreError as error:
                _log.warn("ending the registration failed: {error}", error=error)
        self.logs.write_high_watermarks(self._high_watermarks)
        self.logs.shutdown()

    def checkpoint_high_watermarks(self) -> None:
        """Write the high watermark of every replica this broker holds."""
        for key, partition in self.partitions.items():
            self._high_watermarks[key] = partition.high_watermark
        for key, follower in self.followers.items():
            self._high_watermarks[key] = follower.high_watermark
        self.logs.write_high_watermarks(
            {k: v for k, v in self._high_watermarks.items() if k in self.logs.logs}
        )

    # -- the view -----------------------------------------------------------------------------

    def _newer_state(self, key: TopicPartition, state: PartitionState) -> bool:
        known = self.states.get(key)
        if known is not None and known.version >= state.version:
            return False
        self.states[key] = state
        return True

    def _broker_registered(self, info: BrokerInfo) -> None:
        known = self.live.get(info.broker_id)
        if known is None or known.broker_epoch < info.broker_epoch:
            self.live[info.broker_id] = info
            if self.fetchers is not None:
                self.fetchers.broker_changed(info.broker_id)

    def _controller_changed(self, broker_id: int | None, epoch: int) -> None:
        if epoch >= self._controller_epoch:
            self._controller_epoch = epoch
            self.controller_id = -1 if broker_id is None else broker_id

    def _on_store_event(self, event) -> None:
        if isinstance(event, TopicCreated):
            self.topics[event.spec.name] = event.spec
        elif isinstance(event, TopicDeleted):
            self._topic_deleted(event.name)
        elif isinstance(event, PartitionStateChanged):
            key = (event.topic, event.partition)
            if self._newer_state(key, event.state) and self.registration is not None:
                self._apply(key)
        elif isinstance(event, BrokerRegistered):
            self._broker_registered(event.info)
            self.controller.reconcile()
            self._unload_moved_groups()
        elif isinstance(event, BrokerLost):
            known = self.live.get(event.broker_id)
            if known is not None and known.broker_epoch == event.broker_epoch:
                del self.live[event.broker_id]
                if self.fetchers is not None:
                    self.fetchers.broker_changed(event.broker_id)
            self.controller.reconcile()
            self._unload_moved_groups()
        elif isinstance(event, ControllerChanged):
            self._controller_changed(event.broker_id, event.controller_epoch)

    def _topic_deleted(self, name: str) -> None:
        self.topics.pop(name, None)
        self.metrics.forget_topic(name)
        for key in [k for k in self.states if k[0] == name]:
            del self.states[key]
            self._drop_leader(key)
            self._drop_follower(key)
            self._high_watermarks.pop(key, None)
            if self.logs.get_log(*key) is not None:
                self.logs.delete_log(*key)

    # -- roles --------------------------------------------------------------------------------

    def _apply(self, key: TopicPartition) -> None:
        """Take up the role the store gives this broker for ``key`` (see the module)."""
        state = self.states.get(key)
        spec = self.topics.get(key[0])
        registration = self.registration
        me = self.config.broker_id
        if state is None or spec is None or registration is None:
            return
        if state.leader == me:
            self._drop_follower(key)
            current = self.partitions.get(key)
            if current is not None and current.leader_epoch == state.leader_epoch:
                current.isr_committed(state.isr)
            elif state.version > registration.broker_epoch:
                self._drop_leader(key)
                self._become_leader(key, spec, state)
            else:
                self._drop_leader(key)  # a leadership of an earlier life: wait for a new epoch
            return
        self._drop_leader(key)
        if state.leader != NO_LEADER and me in spec.assignment.get(key[1], ()):
            follower = self.followers.get(key)
            if (
                follower is None
                or follower.leader_id != state.leader
                or follower.leader_epoch != state.leader_epoch
            ):
                self._drop_follower(key)
                self._become_follower(key, state)
        else:
            self._drop_follower(key)

    def _log_of(self, key: TopicPartition):
        return self.logs.get_log(*key) or self.logs.create_log(*key)

    def _producers_of(self, log) -> ProducerStateManager:
        producers = ProducerStateManager()
        producers.rebuild(log.batch_headers(), self.now_ms())
        return producers

    def _become_leader(self, key: TopicPartition, spec: TopicSpec, state: PartitionState) -> None:
        topic, index = key
        try:
            log = self._log_of(key)
            log.start_epoch(state.leader_epoch)
        except LogError as error:
            _log.error("cannot lead {t}-{i}: {error}", t=topic, i=index, error=error)
            return
        now = self.now_ms()
        replication = PartitionLeader(
            broker_id=self.config.broker_id,
            replicas=tuple(spec.assignment[index]),
            isr=state.isr,
            epoch_start_offset=log.log_end_offset,
            log_end_offset=log.log_end_offset,
            high_watermark=self._high_watermarks.get(key, 0),
            min_insync=self.min_insync(topic),
            lag_time_ms=self.config.replica_lag_time_max_ms,
            now_ms=now,
        )
        partition = Partition(
            topic,
            index,
            log,
            leader_epoch=state.leader_epoch,
            replication=replication,
            producers=self._producers_of(log),
            lease_valid=self.lease_valid,
            clock_ms=self.now_ms,
        )
        partition.on_data(lambda: self._wake_sessions())
        partition.on_high_watermark(lambda: self._high_watermark_moved(key))
        self.partitions[key] = partition
        _log.info(
            "leading {t}-{i} at epoch {epoch} (isr {isr}, log end {leo})",
            t=topic,
            i=index,
            epoch=state.leader_epoch,
            isr=list(state.isr),
            leo=log.log_end_offset,
        )
        self._high_watermark_moved(key)

    def _drop_leader(self, key: TopicPartition) -> None:
        partition = self.partitions.pop(key, None)
        if partition is None:
            return
        self._high_watermarks[key] = partition.high_watermark
        for session in list(self.sessions):
            session.forget(key)
        self.purgatory.touch(key)  # waiting produces answer NOT_LEADER_OR_FOLLOWER

    def _become_follower(self, key: TopicPartition, state: PartitionState) -> None:
        log = self._log_of(key)
        follower = FollowerPartition(
            key[0],
            key[1],
            log,
            leader_id=state.leader,
            leader_epoch=state.leader_epoch,
            high_watermark=self._high_watermarks.get(key, 0),
            producers=self._producers_of(log),
            clock_ms=self.now_ms,
        )
        self.followers[key] = follower
        if self.fetchers is not None:
            self.fetchers.follow(follower)

    def _drop_follower(self, key: TopicPartition) -> None:
        follower = self.followers.pop(key, None)
        if follower is None:
            return
        self._high_watermarks[key] = follower.high_watermark
        if self.fetchers is not None:
            self.fetchers.unfollow(follower)

    def _wake_sessions(self) -> None:
        for session in list(self.sessions):
            session.wake()

    def _high_watermark_moved(self, key: TopicPartition) -> None:
        self.purgatory.touch(key)
        self._wake_sessions()

    # -- the ISR ------------------------------------------------------------------------------

    def follower_reported(self, follower: int, key: TopicPartition, log_end_offset: int) -> None:
        """A follower's log of ``key`` ends at ``log_end_offset`` (from its stream)."""
        partition = self.partitions.get(key)
        if partition is None:
            return
        report = partition.follower_reported(follower, log_end_offset)
        if report is not None and report.expand_to is not None:
            self._write_isr(partition, report.expand_to, expanding=True)

    def _shrink_lagging(self) -> None:
        now = self.now_ms()
        for partition in list(self.partitions.values()):
            if not partition.lease_valid():
                continue
            lagging = partition.replication.lagging(now)
            if lagging:
                isr = tuple(r for r in partition.isr if r not in lagging)
                _log.info(
                    "{t}-{i}: followers {lagging} fell behind; shrinking the ISR to {isr}",
                    t=partition.topic,
                    i=partition.index,
                    lagging=list(lagging),
                    isr=list(isr),
                )
                self._write_isr(partition, isr, expanding=False)

    def _write_isr(self, partition: Partition, isr: tuple[int, ...], *, expanding: bool) -> None:
        """Compare-and-swap the partition state with ``isr``, fenced by this registration."""
        key = partition.key
        state = self.states.get(key)
        registration = self.registration
        if key in self._isr_writes or state is None or registration is None:
            if expanding:
                partition.replication.expansion_failed()  # proposed again on a later report
            return
        self._isr_writes.add(key)
        fence = LeaderFence(self.config.broker_id, registration.broker_epoch)
        written = self.store.update_partition_state(
            key[0], key[1], replace(state, isr=tuple(isr)), state.version, fence
        )

        def done(stored: PartitionState) -> None:
            self._isr_writes.discard(key)
            (self.metrics.isr_expands if expanding else self.metrics.isr_shrinks).inc()
            if self._newer_state(key, stored):
                self._apply(key)

        def failed(failure) -> None:
            self._isr_writes.discard(key)
            if expanding and self.partitions.get(key) is partition:
                partition.replication.expansion_failed()
            if failure.check(StaleVersion):
                return  # the watch brings the newer state, which this leader obeys
            if failure.check(Fenced):
                _log.warn(
                    "{t}-{i}: ISR write fenced: this broker's lease is over", t=key[0], i=key[1]
                )
                return
            _log.warn("{t}-{i}: ISR write failed: {error}", t=key[0], i=key[1], error=failure.value)

        written.addCallbacks(done, failed)

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
        live = max(len(self.live), 1)
        if not 1 <= replication_factor <= live:
            raise TopicError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"replication factor {replication_factor}: the cluster has {live} live "
                f"broker{'s' if live != 1 else ''}",
            )
        log_configs, replication = _split_configs(configs)
        try:
            self.config.log.with_properties(log_configs)
        except ValueError as error:
            raise TopicError(ErrorCode.INVALID_CONFIG, str(error)) from None
        insync = replication.get("min.insync.replicas", "1")
        if not insync.isdigit() or int(insync) < 1:
            raise TopicError(
                ErrorCode.INVALID_CONFIG, f"min.insync.replicas must be at least 1, not {insync!r}"
            )
        unclean = replication.get(UNCLEAN_ELECTION_CONFIG, "false").strip().lower()
        if unclean not in ("true", "false"):
            raise TopicError(
                ErrorCode.INVALID_CONFIG,
                f"{UNCLEAN_ELECTION_CONFIG} must be true or false, not {unclean!r}",
            )

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> defer.Deferred:
        """Create a topic (validated first) as the controller; fires once it is stored.

        :raises TopicError: invalid request, or NOT_CONTROLLER (raised at once).
        """
        self.validate_topic(name, partitions, replication_factor, configs)
        try:
            created = self.controller.create_topic(name, partitions, replication_factor, configs)
        except NotController as error:
            raise TopicError(ErrorCode.NOT_CONTROLLER, str(error)) from None
        except InvalidAssignment as error:
            raise TopicError(ErrorCode.INVALID_REPLICATION_FACTOR, str(error)) from None
        self._pending_creations[name] = created

        def done(result):
            self._pending_creations.pop(name, None)
            return result

        return created.addBoth(done)

    def delete_topic(self, name: str) -> defer.Deferred:
        return self.store.delete_topic(name)

    def maybe_auto_create(self, name: str) -> bool:
        """Start creating ``name`` with the defaults if auto-creation is on and this broker is
        the controller; return whether a creation is (now) under way."""
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

    def expire_group_offsets(self) -> None:
        """Offset retention, run every ``offsets.retention.check.interval.ms``, as Kafka does:

        * a group this broker coordinates that has been empty (no members) for
          ``offsets.retention.minutes``, as far as these checks saw, loses its committed
          offsets and is forgotten;
        * the offsets of a group with none (consumers that commit without joining, or a group
          whose members left before this broker became its coordinator) each expire
          ``offsets.retention.minutes`` after they were committed, once two checks in a row
          found the group without members here (so a group that just moved to this broker
          gets the time to rejoin it).
        """
        now = self.now_ms()
        retention_ms = self.config.offsets_retention_minutes * 60_000
        listed = self.store.offset_groups()
        listed.addCallback(self._expire_memberless, now - retention_ms).addErrback(
            lambda failure: _log.warn(
                "offset retention: listing the groups failed: {e}", e=failure.getErrorMessage()
            )
        )
        empty = {g.group_id for g in self.groups.groups() if g.state == "Empty"}
        for group in [g for g in self._empty_since if g not in empty]:
            del self._empty_since[group]
        for group in sorted(empty):
            since = self._empty_since.setdefault(group, now)
            if now - since < retention_ms:
                continue
            del self._empty_since[group]
            self.groups.unload(group)
            _log.info("group {g}: empty for {m} minutes, offsets expired", g=group,
                      m=self.config.offsets_retention_minutes)  # fmt: skip
            self.store.delete_offsets(group).addErrback(
                lambda failure, group=group: _log.warn(
                    "deleting the offsets of group {g} failed: {e}",
                    g=group,
                    e=failure.getErrorMessage(),
                )
            )

    def _expire_memberless(self, groups: list[str], committed_before_ms: int):
        known = {listing.group_id for listing in self.groups.groups()}
        memberless = {
            g for g in groups if g not in known and self.coordinator_of(g) == self.config.broker_id
        }
        seen_before, self._memberless_seen = self._memberless_seen, memberless
        for group in sorted(memberless & seen_before):
            expiring = self.store.expire_offsets(group, committed_before_ms)
            expiring.addCallback(_log_expired, group).addErrback(
                lambda failure, group=group: _log.warn(
                    "expiring the offsets of group {g} failed: {e}",
                    g=group,
                    e=failure.getErrorMessage(),
                )
            )

    def _unload_moved_groups(self) -> None:
        """Drop the groups another broker coordinates now (the live brokers changed)."""
        me = self.config.broker_id
        for listing in self.groups.groups():
            if self.coordinator_of(listing.group_id) != me:
                _log.info("group {g} is coordinated elsewhere now", g=listing.group_id)
                self.groups.unload(listing.group_id)

    def coordinator_of(self, group: str) -> int:
        """The broker id coordinating ``group``: of the live brokers (this one included), the
        one whose ``crc32(group NUL id)`` is highest (rendezvous hashing: when a broker comes
        or goes, only the groups it coordinates move)."""
        live = set(self.live) | {self.config.broker_id}
        return max(live, key=lambda b: (zlib.crc32(f"{group}\0{b}".encode()), b))

    def not_led_error(self, topic: str, index: int) -> ErrorCode:
        """The error for a request about a partition this broker does not lead."""
        spec = self.topics.get(topic)
        if spec is None or not 0 <= index < spec.partitions:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        return ErrorCode.NOT_LEADER_OR_FOLLOWER

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


def _log_expired(expired: list[tuple[str, int]], group: str) -> None:
    if expired:
        _log.info("group {g}: offsets of {p} expired", g=group, p=expired)
