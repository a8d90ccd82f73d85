"""A cluster harness: one throwaway etcd and N ``tmq broker`` processes on 127.0.0.1, and the
faults to inject into them.

* ``BrokerNode``: one broker (``--id N --metadata etcd://...``) with kill (SIGKILL), stop
  (SIGTERM), pause (SIGSTOP), resume (SIGCONT) and restart on the same port and data dir.
* ``Cluster``: etcd plus brokers 1..N; Metadata, CreateTopics and ListOffsets through
  ``RawClient`` to a chosen live broker (never a paused one); etcd kill and restart on the
  same port and data; every process stopped at the end, checked to be gone.
* The workload (a producer recording every outcome, the full read, the end-of-run check) is
  in ``cluster_workload``.
* ``cluster_factory``: the body of a pytest fixture (register it in a conftest:
  ``cluster_factory = pytest.fixture(process_cluster.cluster_factory)``).

Processes are started from the calling thread and are not tied to its life (a fault thread
may restart a broker); ``Cluster.close`` (the fixture's teardown) stops every one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from integration_helpers import BrokerProcess, RawClient, free_port, process_state, stop_process
from invariants import (
    ReplicaLog,
    replica_log_from_disk,
)
from pipeline_helpers import wait_for

from tmq.protocol.apis import ApiKey
from tmq.protocol.errors import ErrorCode
from tmq.storage.names import partition_dir_name
from tmq.tools.etcd import ThrowawayEtcd

__all__ = [
    "BrokerNode",
    "BrokerView",
    "Cluster",
    "PartitionState",
    "cluster_factory",
    "processes_mentioning",
]

METADATA_VERSION = 7  # the first with the partition leader epoch
CREATE_TOPICS_VERSION = 4
LIST_OFFSETS_VERSION = 4  # current_leader_epoch in, leader_epoch out
LATEST, EARLIEST = -1, -2  # ListOffsets timestamps: the high watermark, the log start


# -- one broker --------------------------------------------------------------------------------


class BrokerNode(BrokerProcess):
    """``tmq broker --id N ... --metadata M`` living in ``directory`` (its data in
    ``directory/data``, its output appended to ``directory/broker.log``, its cwd
    ``directory``: outside the checkout, whose ./tmq would shadow the installed package).

    :param metadata: ``etcd://HOST:PORT[,...]`` or ``local``.
    :param settings: ``KEY=VALUE`` broker settings (``--set``).
    """

    def __init__(
        self,
        broker_id: int,
        directory: Path,
        metadata: str,
        *settings: str,
        port: int | None = None,
        rack: str | None = None,
        cluster_id: str = "tmq-test",
    ):
        data_dir = Path(directory) / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(data_dir, *settings, port=port)
        self.broker_id = broker_id
        self.metadata = metadata
        self.rack = rack
        self.cluster_id = cluster_id
        self.log_path = Path(directory) / "broker.log"
        self.paused = False
        self.starts = 0

    def __repr__(self) -> str:
        return f"<BrokerNode {self.broker_id} :{self.port} pid {self.pid}>"

    def command(self) -> list[str]:
        command = [
            *super().command(),
            "--id", str(self.broker_id), "--metadata", self.metadata,
            "--cluster-id", self.cluster_id,
        ]  # fmt: skip
        if self.rack is not None:
            command += ["--rack", self.rack]
        return command

    @property
    def pid(self) -> int | None:
        """The process id while the process exists (running or paused)."""
        return self.process.pid if self.running else None

    @property
    def running(self) -> bool:
        """Whether the process exists (it may be paused)."""
        return self.process is not None and self.process.poll() is None

    @property
    def live(self) -> bool:
        """Running and not paused: it can answer."""
        return self.running and not self.paused

    def start(self, timeout: float = 30.0) -> BrokerNode:
        """Start the process and wait until it accepts connections on its port."""
        if self.running:
            raise AssertionError(f"broker {self.broker_id} is already running (pid {self.pid})")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(
                f"\n===== harness: start #{self.starts} of broker {self.broker_id} =====\n".encode()
            )
        self.paused = False
        super().start(timeout)
        return self

    def restart(self, timeout: float = 30.0) -> BrokerNode:
        """Start again on the same port and data directory (stopping it first, with SIGTERM,
        if it still runs)."""
        if self.running:
            self.stop()
        return self.start(timeout)

    def kill(self, timeout: float = 30.0) -> int:
        """SIGKILL (works on a paused process too); return the exit status."""
        self.paused = False
        return stop_process(self.process, signal.SIGKILL, timeout, self.log_path)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` (SIGCONT first if paused, so that it can act on it) and wait for the
        exit; return the exit status. Still running after ``timeout``: SIGKILL and fail."""
        if self.paused and self.running and sig != signal.SIGKILL:
            self.resume()
        self.paused = False
        return stop_process(self.process, sig, timeout, self.log_path)

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP, and wait until the kernel shows the process stopped."""
        self._signal(signal.SIGSTOP)
        self.paused = True
        wait_for(
            lambda: process_state(self.process.pid) in ("T", "t", None),
            timeout,
            f"broker {self.broker_id} to stop",
        )

    def resume(self, timeout: float = 10.0) -> None:
        """SIGCONT, and wait until the process is no longer stopped."""
        self._signal(signal.SIGCONT)
        self.paused = False
        wait_for(
            lambda: process_state(self.process.pid) not in ("T", "t"),
            timeout,
            f"broker {self.broker_id} to resume",
        )

    def _signal(self, sig: int) -> None:
        if not self.running:
            raise AssertionError(f"broker {self.broker_id} is not running")
        self.process.send_signal(sig)


# -- the cluster -------------------------------------------------------------------------------


class PartitionState(NamedTuple):
    """One partition as a broker's Metadata answer shows it (leader -1: none)."""

    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error_code: int


class BrokerView(NamedTuple):
    """The cluster as one broker's Metadata answer shows it."""

    answered_by: int
    controller_id: int
    brokers: dict[int, tuple[str, int, str | None]]  # id -> host, port, rack


class Cluster:
    """One throwaway etcd and brokers ``1..size``, each in ``directory/broker-<id>``.

    :param settings: ``KEY=VALUE`` settings of every broker (``min.insync.replicas=2``, ...).
    :param metadata: ``"etcd"`` (a ``ThrowawayEtcd`` in ``directory/etcd``, on a port kept
        across its restarts) or ``"local"`` (one broker with its embedded store, no etcd).
    :param racks: the rack of each broker id, if any.
    """

    def __init__(
        self,
        directory: Path,
        size: int = 3,
        settings: Iterable[str] = (),
        *,
        metadata: str = "etcd",
        cluster_id: str = "tmq-test",
        racks: Mapping[int, str] | None = None,
    ):
        if metadata not in ("etcd", "local"):
            raise ValueError(f"metadata {metadata!r}: 'etcd' or 'local'")
        if metadata == "local" and size != 1:
            raise ValueError("a cluster with local metadata has exactly one broker")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cluster_id = cluster_id
        self.etcd: ThrowawayEtcd | None = None
        self.etcd_port: int | None = None
        self.etcd_paused = False
        url = "local"
        if metadata == "etcd":
            self.etcd_port = free_port()
            self.etcd = ThrowawayEtcd(self.directory / "etcd", client_port=self.etcd_port)
            url = f"etcd://127.0.0.1:{self.etcd_port}"
        self.metadata_url = url
        racks = dict(racks or {})
        self.brokers: dict[int, BrokerNode] = {
            broker_id: BrokerNode(
                broker_id,
                self.directory / f"broker-{broker_id}",
                url,
                *settings,
                rack=racks.get(broker_id),
                cluster_id=cluster_id,
            )
            for broker_id in range(1, size + 1)
        }
        self._closed = False

    # -- life ---------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Cluster:
        """Start etcd, then every broker; wait until a broker's Metadata lists all of them.
        If that fails, everything started is stopped again."""
        try:
            if self.etcd is not None:
                self.etcd.start()
            for broker in self.brokers.values():
                broker.start()
            if self.brokers:
                wait_for(
                    lambda: self._registered() == set(self.brokers),
                    timeout,
                    f"brokers {sorted(self.brokers)} to register",
                    *self.brokers.values(),
                )
        except BaseException:
            with contextlib.suppress(AssertionError):
                self.close()
            raise
        return self

    def _registered(self) -> set[int]:
        try:
            return set(self.view().brokers)
        except AssertionError:
            return set()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def stop_brokers(self, sig: int = signal.SIGTERM) -> None:
        """Stop every running broker (paused ones are resumed first), e.g. before reading
        their logs from disk."""
        for broker in self.brokers.values():
            if broker.running:
                broker.stop(sig)

    def close(self) -> None:
        """Stop every broker (SIGCONT, SIGTERM, SIGKILL after 30 s), then etcd; fail if a
        broker ignored SIGTERM or if any process of this cluster is left."""
        if self._closed:
            return
        self._closed = True
        problems = []
        for broker in self.brokers.values():
            try:
                if broker.running:
                    broker.stop()
            except AssertionError as error:  # it ignored SIGTERM and was killed
                problems.append(str(error)[:3000])
        if self.etcd is not None:
            if self.etcd_paused and self.etcd.running:
                self.resume_etcd()
            self.etcd.stop()
        left = processes_mentioning(f"{self.directory}{os.sep}")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if left:
            problems.append(f"processes of {self.directory} left running (now killed): {left}")
        assert not problems, "\n".join(problems)

    # -- brokers ------------------------------------------------------------------------------

    def broker(self, broker_id: int) -> BrokerNode:
        return self.brokers[broker_id]

    def live(self, exclude: Collection[int] = ()) -> list[BrokerNode]:
        """The brokers that run and are not paused, but those in ``exclude``."""
        return [b for i, b in self.brokers.items() if b.live and i not in exclude]

    def bootstrap(self, exclude: Collection[int] = ()) -> str:
        """``HOST:PORT,...`` of the live brokers (but ``exclude``)."""
        live = self.live(exclude)
        assert live, "no live broker"
        return ",".join(broker.bootstrap for broker in live)

    def partition_dir(self, broker_id: int, topic: str, partition: int) -> Path:
        """Where ``broker_id`` keeps its replica of ``topic``-``partition``."""
        return self.brokers[broker_id].data_dir / partition_dir_name(topic, partition)

    # -- requests -----------------------------------------------------------------------------

    def request(
        self,
        api_key: int,
        version: int,
        body: dict,
        *,
        via: int | Iterable[int] | None = None,
        timeout: float = 5.0,
    ) -> tuple[int, Any]:
        """Send one request to the first live broker that answers (``via``: that broker, or
        those, in order); return ``(broker id, decoded response)``.

        :raises AssertionError: no broker answered (each one's failure in the message).
        """
        if via is None:
            candidates = [b.broker_id for b in self.live()]
        else:
            candidates = [via] if isinstance(via, int) else list(via)
        failures = []
        for broker_id in candidates:
            broker = self.brokers[broker_id]
            if not broker.live:
                failures.append(f"broker {broker_id}: not live")
                continue
            try:
                with RawClient(broker.port, timeout=timeout, client_id="tmq-harness") as client:
                    return broker_id, client.request(api_key, version, body)
            except (OSError, EOFError) as error:
                failures.append(f"broker {broker_id}: {error!r}")
        raise AssertionError(
            f"no broker answered {ApiKey(api_key).name}: {'; '.join(failures) or 'none live'}"
        )

    def view(self, *, via: int | Iterable[int] | None = None) -> BrokerView:
        """The brokers and the controller, as a broker's Metadata shows them."""
        answered_by, response = self.request(
            ApiKey.METADATA,
            METADATA_VERSION,
            {"topics": [], "allow_auto_topic_creation": False},
            via=via,
        )
        brokers = {b.node_id: (b.host, b.port, b.rack) for b in response.brokers}
        return BrokerView(answered_by, response.controller_id, brokers)

    def metadata(
        self, topic: str, *, via: int | Iterable[int] | None = None
    ) -> dict[int, PartitionState]:
        """Each partition of ``topic`` (leader, leader epoch, replicas, ISR) as a live broker
        (``via``: that one) shows it; empty while the broker does not know the topic."""
        _, response = self.request(
            ApiKey.METADATA,
            METADATA_VERSION,
            {"topics": [{"name": topic}], "allow_auto_topic_creation": False},
            via=via,
        )
        states = {}
        for answer in response.topics:
            if answer.name != topic or answer.error_code != ErrorCode.NONE:
                continue
            for p in answer.partitions:
                states[p.partition_index] = PartitionState(
                    p.partition_index,
                    p.leader_id,
                    p.leader_epoch,
                    tuple(p.replica_nodes),
                    tuple(p.isr_nodes),
                    p.error_code,
                )
        return states

    def leader_of(self, topic: str, partition: int, *, via: int | None = None) -> int | None:
        """The leader a live broker names for the partition (``None``: none, or unknown)."""
        state = self.metadata(topic, via=via).get(partition)
        return state.leader if state is not None and state.leader >= 0 else None

    def confirmed_leader(
        self, topic: str, partition: int, not_in: Collection[int] = ()
    ) -> int | None:
        """A leader that a live broker names (asking each in turn), that is live and not in
        ``not_in``, and that names itself at an epoch no older; ``None`` when there is no such
        leader now."""
        for asker in self._askers(not_in):
            try:
                named = self.metadata(topic, via=asker).get(partition)
                if named is None or named.leader < 0 or named.leader in not_in:
                    continue
                if named.leader not in self.brokers or not self.brokers[named.leader].live:
                    continue
                own = self.metadata(topic, via=named.leader).get(partition)
            except AssertionError:
                continue
            confirmed = own is not None and own.leader == named.leader
            if confirmed and own.leader_epoch >= named.leader_epoch:
                return own.leader
        return None

    def _askers(self, not_in: Collection[int]) -> list[int]:
        """Live brokers, those outside ``not_in`` first."""
        live = [b.broker_id for b in self.live()]
        return [i for i in live if i not in not_in] + [i for i in live if i in not_in]

    def wait_for_leader(
        self, topic: str, partition: int, not_in: Collection[int] = (), timeout: float = 30.0
    ) -> int:
        """Poll until a live broker outside ``not_in`` leads the partition (``confirmed_leader``);
        return its id."""
        found: list[int] = []

        def elected() -> bool:
            leader = self.confirmed_leader(topic, partition, not_in)
            if leader is not None:
                found.append(leader)
            return leader is not None

        wait_for(
            elected,
            timeout,
            f"a leader of {topic}-{partition} outside {sorted(not_in)}",
            *self.brokers.values(),
        )
        return found[-1]

    def wait_for_isr(
        self,
        topic: str,
        partition: int,
        members: Collection[int] | None = None,
        timeout: float = 30.0,
    ) -> PartitionState:
        """Poll until the partition's leader shows ``members`` (default: all its replicas) as
        its ISR; return that state."""
        found: list[PartitionState] = []

        def settled() -> bool:
            leader = self.confirmed_leader(topic, partition)
            if leader is None:
                return False
            try:
                state = self.metadata(topic, via=leader)[partition]
            except (AssertionError, KeyError):
                return False
            wanted = set(state.replicas if members is None else members)
            if set(state.isr) == wanted:
                found.append(state)
                return True
            return False

        wait_for(
            settled,
            timeout,
            f"the ISR of {topic}-{partition} to be {sorted(members or []) or 'all replicas'}",
            *self.brokers.values(),
        )
        return found[-1]

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = 3,
        configs: Mapping[str, str] | None = None,
        *,
        timeout: float = 60.0,
        wait: bool = True,
    ) -> None:
        """CreateTopics through a live broker, retried on another one (the controller that
        Metadata names first) while the answer is NOT_CONTROLLER or there is none; with
        ``wait``, poll until every partition has a confirmed leader.

        :raises AssertionError: any other error (TOPIC_ALREADY_EXISTS, INVALID_REPLICATION_FACTOR
            ...), or no success within ``timeout``.
        """
        body = {
            "topics": [
                {
                    "name": name,
                    "num_partitions": partitions,
                    "replication_factor": replication_factor,
                    "assignments": [],
                    "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
                }
            ],
            "timeout_ms": int(timeout * 1000),
            "validate_only": False,
        }
        tried: list[str] = []
        unanswered = []

        def created() -> bool:
            try:
                controller = self.view().controller_id
                order = [controller] + [
                    b.broker_id for b in self.live() if b.broker_id != controller
                ]
                order = [i for i in order if i in self.brokers and self.brokers[i].live]
                answered_by, response = self.request(
                    ApiKey.CREATE_TOPICS, CREATE_TOPICS_VERSION, body, via=order, timeout=timeout
                )
            except AssertionError as error:
                tried.append(str(error))
                unanswered.append(True)  # it may have been created all the same
                return False
            (answer,) = response.topics
            if answer.error_code == ErrorCode.NONE:
                return True
            if answer.error_code == ErrorCode.TOPIC_ALREADY_EXISTS and unanswered:
                return True
            if answer.error_code == ErrorCode.NOT_CONTROLLER:
                tried.append(f"broker {answered_by}: NOT_CONTROLLER")
                return False
            raise AssertionError(
                f"CreateTopics {name} via broker {answered_by}: "
                f"{_error_name(answer.error_code)} {answer.error_message or ''}"
            )

        try:
            wait_for(created, timeout, f"CreateTopics {name}", *self.brokers.values())
        except AssertionError as error:
            raise AssertionError(f"{error}\nthe last tries: {tried[-3:]}") from None
        if wait:
            deadline = time.monotonic() + timeout
            for partition in range(partitions):
                self.wait_for_leader(name, partition, timeout=max(1.0, deadline - time.monotonic()))

    def list_offsets(
        self,
        topic: str,
        timestamp: int,
        partitions: Iterable[int] | None = None,
        timeout: float = 30.0,
    ) -> dict[int, int]:
        """ListOffsets (consumer view) for each partition, asked of its confirmed leader (again
        while the answer is a leadership error): ``LATEST`` gives the high watermark,
        ``EARLIEST`` the log start."""
        wanted = sorted(self.metadata(topic)) if partitions is None else list(partitions)
        return {p: self._list_offset(topic, p, timestamp, timeout) for p in wanted}

    def _list_offset(self, topic: str, partition: int, timestamp: int, timeout: float) -> int:
        found: list[int] = []
        retriable = {
            ErrorCode.NOT_LEADER_OR_FOLLOWER,
            ErrorCode.LEADER_NOT_AVAILABLE,
            ErrorCode.FENCED_LEADER_EPOCH,
            ErrorCode.UNKNOWN_LEADER_EPOCH,
        }

        def answered() -> bool:
            leader = self.confirmed_leader(topic, partition)
            if leader is None:
                return False
            try:
                epoch = self.metadata(topic, via=leader)[partition].leader_epoch
                _, response = self.request(
                    ApiKey.LIST_OFFSETS,
                    LIST_OFFSETS_VERSION,
                    {
                        "replica_id": -1,
                        "isolation_level": 0,
                        "topics": [
                            {
                                "name": topic,
                                "partitions": [
                                    {
                                        "partition_index": partition,
                                        "current_leader_epoch": epoch,
                                        "timestamp": timestamp,
                                    }
                                ],
                            }
                        ],
                    },
                    via=leader,
                )
            except (AssertionError, KeyError):
                return False
            (answer,) = response.topics[0].partitions
            if answer.error_code in retriable:
                return False
            if answer.error_code != ErrorCode.NONE:
                raise AssertionError(
                    f"ListOffsets {topic}-{partition} at broker {leader}: "
                    f"{_error_name(answer.error_code)}"
                )
            found.append(answer.offset)
            return True

        wait_for(answered, timeout, f"ListOffsets {topic}-{partition}", *self.brokers.values())
        return found[-1]

    def high_watermarks(
        self, topic: str, partitions: Iterable[int] | None = None
    ) -> dict[int, int]:
        """Each partition's high watermark, from its leader."""
        return self.list_offsets(topic, LATEST, partitions)

    def log_start_offsets(
        self, topic: str, partitions: Iterable[int] | None = None
    ) -> dict[int, int]:
        """Each partition's log start offset, from its leader."""
        return self.list_offsets(topic, EARLIEST, partitions)

    def replica_logs(
        self, topic: str, partitions: Iterable[int], *, records: bool = True
    ) -> list[ReplicaLog]:
        """Each broker's log of each partition it holds, read from disk (stop the brokers
        first: a running one may be writing)."""
        logs = []
        for broker_id in self.brokers:
            for partition in partitions:
                directory = self.partition_dir(broker_id, topic, partition)
                if directory.is_dir():
                    logs.append(replica_log_from_disk(broker_id, directory, records=records))
        return logs

    # -- etcd ---------------------------------------------------------------------------------

    def _member(self) -> ThrowawayEtcd:
        if self.etcd is None:
            raise AssertionError("this cluster has no etcd (metadata='local')")
        return self.etcd

    def kill_etcd(self) -> None:
        """SIGKILL etcd (its data stays in ``directory/etcd``)."""
        member = self._member()
        pid = member.pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        self.etcd_paused = False
        member.stop()  # reaps it; the directory is not a temporary one, so it stays

    def stop_etcd(self) -> None:
        """Stop etcd cleanly (SIGTERM)."""
        if self.etcd_paused:
            self.resume_etcd()
        self._member().stop()

    def restart_etcd(self, timeout: float = 30.0) -> None:
        """Start etcd again, on the same client port, with the same data. Call it from the
        main thread: ``ThrowawayEtcd`` asks for SIGTERM when the starting thread ends."""
        member = self._member()
        member.start(timeout)
        assert member.client_port == self.etcd_port

    def pause_etcd(self) -> None:
        """SIGSTOP etcd: its port still accepts connections, nothing answers."""
        os.kill(self._running_etcd_pid(), signal.SIGSTOP)
        self.etcd_paused = True

    def resume_etcd(self) -> None:
        """SIGCONT etcd."""
        os.kill(self._running_etcd_pid(), signal.SIGCONT)
        self.etcd_paused = False

    def _running_etcd_pid(self) -> int:
        pid = self._member().pid
        if pid is None:
            raise AssertionError("etcd is not running")
        return pid


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


def processes_mentioning(text: str) -> list[int]:
    """The ids of live (not zombie) processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if text.encode() not in cmdline.read():
                    continue
            with open(f"/proc/{entry}/stat") as stat:
                if stat.read().rpartition(")")[2].split()[0] == "Z":
                    continue
        except (OSError, IndexError):
            continue
        found.append(int(entry))
    return found


def cluster_factory(tmp_path: Path):
    """The body of the ``cluster_factory`` fixture: ``cluster_factory(size=3, *settings,
    metadata="etcd", racks=None)`` starts a ``Cluster`` in ``tmp_path``; every cluster made is
    closed at the end (and fails the test if a process was left or ignored SIGTERM).

    Register it in a conftest::

        cluster_factory = pytest.fixture(process_cluster.cluster_factory)
    """
    made: list[Cluster] = []

    def make(size: int = 3, *settings: str, **options: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster-{len(made)}", size, settings, **options)
        made.append(cluster)
        return cluster.start()

    try:
        yield make
    finally:
        failures = []
        for cluster in made:
            try:
                cluster.close()
            except AssertionError as error:
                failures.append(error)
        if failures:
            raise failures[0]
