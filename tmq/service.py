"""The service tree of a broker process (what ``tmq broker`` and ``twistd tmq-broker`` run).

``BrokerService.startService`` opens the metadata store (the local one, or etcd: its gRPC
channel is made here, never before twistd forks) and the logs (recovering them after an
unclean shutdown), listens, then registers the broker and takes up its partition roles.
Nothing is opened in the constructor: twistd may fork between building and starting the
service. ``stopService`` stops accepting connections, finishes in-flight requests, ends the
registration, then shuts the logs down cleanly (flush, checkpoints, clean-shutdown marker).

With ``metrics_listen`` the service first serves ``/metrics`` (``BrokerMetrics``),
``/healthz`` and ``/readyz`` (``readiness``) over HTTP there, until the very end of
``stopService``.
"""

from __future__ import annotations

import fcntl
import os
import posixpath

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from tmq.broker.broker import Broker
from tmq.broker.config import BrokerConfig
from tmq.broker.handlers import build_dispatcher
from tmq.broker.metrics import BrokerMetrics, MeteredDispatcher
from tmq.broker.replica_fetcher import ReplicaFetchers
from tmq.broker.replica_session import ReplicaSession
from tmq.broker.server import BrokerFactory
from tmq.cluster.etcd_store import EtcdMetadataStore
from tmq.cluster.local_store import LocalMetadataStore
from tmq.cluster.store import MetadataStoreError
from tmq.ops.http import listen
from tmq.storage.files import FileSystem, OsFileSystem
from tmq.storage.log_manager import LogManager

__all__ = ["LOCK_FILE", "METADATA_DIR", "BrokerService", "DataDirInUse"]

_log = Logger()

#: The local metadata store's directory, inside the first data directory.
METADATA_DIR = "__tmq_metadata"
#: The lock file of a data directory.
LOCK_FILE = ".lock"
#: How long a graceful shutdown waits for in-flight requests.
_DRAIN_TIMEOUT_S = 10.0
#: How long a follower's connection attempt to its leader may take.
_CONNECT_TIMEOUT_S = 5


class BrokerService(Service):
    """One broker: logs, metadata store, request handling, TCP listener.

    :param reactor: provides TCP and time; injected (nothing imports the global reactor).
    :param on_failure: called with the Failure if starting fails (the CLI exits 1 on it).
    """

    def __init__(
        self, config: BrokerConfig, reactor, *, fs: FileSystem | None = None, on_failure=None
    ):
        self.config = config
        self.reactor = reactor
        self.fs = fs or OsFileSystem()
        self.on_failure = on_failure
        self.broker: Broker | None = None
        self.port = None
        #: Counts of this broker's work; its registry is what ``/metrics`` serves.
        self.metrics = BrokerMetrics()
        #: The port of /metrics, /healthz and /readyz (``config.metrics_listen``).
        self.ops_port = None
        self.factory: BrokerFactory | None = None
        self._loops: list[task.LoopingCall] = []
        self._locks: list[int] = []
        self.started: defer.Deferred | None = None

    def startService(self) -> None:
        super().startService()
        self.started = self._start()
        if self.on_failure is None:
            # under twistd a service that cannot start must raise, or the process lives on
            # without listening
            failures = []
            self.started.addErrback(failures.append)
            if failures:
                self._failed(failures[0])
                failures[0].raiseException()
        self.started.addErrback(self._failed)

    def _failed(self, failure) -> None:
        if failure.check(DataDirInUse, CannotListenError, MetadataStoreError, OSError):
            # expected trouble (port taken, directory locked or unwritable): no traceback
            _log.error("the broker could not start: {reason}", reason=failure.getErrorMessage())
        else:
            _log.failure("the broker could not start", failure)
        if self.on_failure is not None:
            self.on_failure(failure)

    def readiness(self) -> tuple[bool, str]:
        """Ready once the logs are loaded, the broker listens, and it is registered with the
        metadata store (etcd, or the local one) under a lease still valid; not while
        stopping."""
        broker = self.broker
        if not self.running:
            return False, "stopped"
        if broker is None or self.port is None:
            return False, "loading the logs"
        if broker.registration is None:
            return False, "not registered with the metadata store"
        if not broker.lease_valid():
            return False, "the registration lease may have expired"
        return True, "serving"

    @defer.inlineCallbacks
    def _start(self):
        config = self.config
        if config.metrics_listen is not None:
            self.ops_port = listen(
                self.reactor, config.metrics_listen, self.metrics.registry, self.readiness
            )
        data_dirs = [os.path.abspath(d) for d in config.data_dirs]
        for data_dir in data_dirs:
            self.fs.makedirs(data_dir)
            self._locks.append(_lock_data_dir(data_dir))
        if config.etcd_endpoints:
            store = yield EtcdMetadataStore(
                self.reactor, config.etcd_endpoints, config.cluster_id
            ).open()
        else:
            store = LocalMetadataStore.open(self.fs, posixpath.join(data_dirs[0], METADATA_DIR))
        logs = LogManager(
            self.fs,
            data_dirs,
            lambda topic: broker.topic_log_config(topic),
            lambda: int(self.reactor.seconds() * 1000),
            on_fsync=self.metrics.fsynced,
        )
        broker = Broker(config, self.reactor, logs, store, metrics=self.metrics)
        broker.fetchers = ReplicaFetchers(
            broker,
            lambda host, port, factory: self.reactor.connectTCP(
                host, port, factory, timeout=_CONNECT_TIMEOUT_S
            ),
        )
        yield broker.start()
        self.broker = broker
        self.factory = factory = BrokerFactory(
            MeteredDispatcher(build_dispatcher(broker), self.metrics, self.reactor.seconds),
            max_frame_bytes=config.max_frame_bytes,
            max_in_flight=config.max_in_flight_requests,
            open_replication=lambda write, disconnect: ReplicaSession(broker, write, disconnect),
        )
        self.port = self.reactor.listenTCP(
            config.listen_port, factory, interface=config.listen_host
        )
        broker.advertised_port = config.advertised_port or self.port.getHost().port
        self.metrics.watch(broker, lambda: max(0, len(factory.connections) - len(broker.sessions)))
        yield broker.join()
        self._every(config.retention_check_interval_ms, logs.apply_retention)
        self._every(config.checkpoint_interval_ms, logs.checkpoint_recovery_points)
        self._every(config.checkpoint_interval_ms, broker.checkpoint_high_watermarks)
        self._every(config.offsets_retention_check_interval_ms, broker.expire_group_offsets)
        _log.info(
            "broker {id} listening on {host}:{port} (advertised {advertised}:{aport}), "
            "{count} partitions",
            id=config.broker_id,
            host=config.listen_host,
            port=self.port.getHost().port,
            advertised=config.advertised_host,
            aport=broker.advertised_port,
            count=len(broker.partitions),
        )

    def _every(self, interval_ms: int, function) -> None:
        loop = task.LoopingCall(function)
        loop.clock = self.reactor
        loop.start(interval_ms / 1000, now=False).addErrback(
            lambda failure: _log.failure("periodic task failed", failure)
        )
        self._loops.append(loop)

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        for loop in self._loops:
            if loop.running:
                loop.stop()
        if self.port is not None:
            yield self.port.stopListening()
        try:
            if self.broker is not None:
                # finish in-flight requests: delayed fetches now, produces once durable
                self.broker.purgatory.complete_all()
                if self.factory is not None:
                    yield self.factory.drain(self.reactor, _DRAIN_TIMEOUT_S)
                yield self.broker.stop()
                _log.info("broker {id} stopped cleanly", id=self.config.broker_id)
        finally:
            # whatever failed above: the store's threads must end, or the process never exits
            if self.broker is not None:
                yield self.broker.store.close()
            for fd in self._locks:
                os.close(fd)
            self._locks.clear()
            if self.ops_port is not None:
                yield self.ops_port.stopListening()


def _lock_data_dir(data_dir: str) -> int:
    """Hold an exclusive lock on ``<data_dir>/.lock`` for the life of the process, so that
    two brokers never write the same logs.

    :raises DataDirInUse: another process holds it.
    """
    fd = os.open(os.path.join(data_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(f"{data_dir} is in use by another broker") from None
    return fd


class DataDirInUse(Exception):
    """A data directory locked by another process."""
