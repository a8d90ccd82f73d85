"""``LogManager``: every partition log of a broker, across its data directories.

Per data directory (``names``): the partition directories, a ``recovery-point-offset-checkpoint``
(offsets known to be on disk), a ``replication-offset-checkpoint`` (high watermarks, written by
the broker through ``write_high_watermarks``) and, only between a clean shutdown and the next
start, the clean-shutdown marker. Each data directory has its own ``Flusher`` thread.

Startup: without the marker the shutdown was not clean, so each log recovers from its
checkpointed recovery point (``PartitionLog.load``); with it, indexes are trusted. The marker is
removed at startup (so a later crash is seen as one) and written again by ``shutdown`` after
every log is flushed and the checkpoints are written.

Not thread-safe: call from one thread (the reactor's).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from .checkpoints import (
    CorruptCheckpoint,
    read_offset_checkpoint,
    write_atomically,
    write_offset_checkpoint,
)
from .config import LogConfig
from .files import FileSystem
from .flusher import Flusher
from .log import LoadReport, PartitionLog
from .names import (
    CLEAN_SHUTDOWN,
    DELETED_SUFFIX,
    RECOVERY_POINT_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
    parse_partition_dir,
    partition_dir_name,
)

__all__ = ["LogManager"]

TopicPartition = tuple[str, int]


class LogManager:
    """The partition logs of one broker.

    :param data_dirs: absolute paths; created if missing.
    :param topic_config: the ``LogConfig`` of a topic (its overrides on the broker defaults).
    :param clock: milliseconds since the epoch.
    :param on_fsync: given to every data directory's ``Flusher`` as ``on_flush``.
    """

    def __init__(
        self,
        fs: FileSystem,
        data_dirs: list[str],
        topic_config: Callable[[str], LogConfig],
        clock: Callable[[], int],
        *,
        on_fsync: Callable[[float], None] | None = None,
    ):
        if not data_dirs:
            raise ValueError("at least one data directory is needed")
        self.fs = fs
        self.data_dirs = list(data_dirs)
        self.topic_config = topic_config
        self.clock = clock
        self.logs: dict[TopicPartition, PartitionLog] = {}
        self._dir_of: dict[TopicPartition, str] = {}
        self.flushers = {
            d: Flusher(posixpath.basename(d) or d, on_flush=on_fsync) for d in self.data_dirs
        }

    # -- lifecycle --------------------------------------------------------------------------

    def startup(self) -> dict[TopicPartition, LoadReport]:
        """Open every log (recovering after an unclean shutdown) and start the flushers."""
        reports = {}
        for data_dir in self.data_dirs:
            if not self.fs.exists(data_dir):
                self.fs.makedirs(data_dir)
                self.fs.fsync_dir(posixpath.dirname(data_dir))
            marker = posixpath.join(data_dir, CLEAN_SHUTDOWN)
            clean = self.fs.exists(marker)
            recovery_points = self._read_checkpoint(data_dir, RECOVERY_POINT_CHECKPOINT)
            for name in self.fs.listdir(data_dir):
                path = posixpath.join(data_dir, name)
                if name.endswith(DELETED_SUFFIX):
                    self.fs.rmtree(path)  # a deletion a crash interrupted
                    continue
                key = parse_partition_dir(name)
                if key is None:
                    continue
                log, report = PartitionLog.load(
                    self.fs,
                    path,
                    key[0],
                    key[1],
                    self.topic_config(key[0]),
                    self.clock,
                    recovery_point=None if clean else recovery_points.get(key, 0),
                )
                self._add(key, data_dir, log)
                reports[key] = report
            if clean:
                self.fs.unlink(marker)
                self.fs.fsync_dir(data_dir)
        for flusher in self.flushers.values():
            flusher.start()
        return reports

    def _read_checkpoint(self, data_dir: str, name: str) -> dict[TopicPartition, int]:
        try:
            return read_offset_checkpoint(self.fs, posixpath.join(data_dir, name))
        except CorruptCheckpoint:
            return {}  # recover every log of this directory from its start

    def shutdown(self) -> None:
        """Flush every log, write the checkpoints, close the files, mark the shutdown clean."""
        for flusher in self.flushers.values():
            flusher.stop()
        failed = False
        for log in self.logs.values():
            log.flush(final=True)
            failed = failed or log.failure is not None
        self.checkpoint_recovery_points()
        for log in self.logs.values():
            log.close()
        if failed:
            return  # not clean: the next start must recover
        for data_dir in self.data_dirs:
            write_atomically(self.fs, posixpath.join(data_dir, CLEAN_SHUTDOWN), b"")

    # -- logs -------------------------------------------------------------------------------

    def _add(self, key: TopicPartition, data_dir: str, log: PartitionLog) -> None:
        self.logs[key] = log
        self._dir_of[key] = data_dir
        self.flushers[data_dir].register(log)

    def get_log(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get((topic, partition))

    def create_log(self, topic: str, partition: int, *, start_offset: int = 0) -> PartitionLog:
        """Create the log in the data directory holding the fewest partitions.

        :raises ValueError: the log exists already.
        """
        key = (topic, partition)
        if key in self.logs:
            raise ValueError(f"log {topic}-{partition} exists")
        counts = {d: 0 for d in self.data_dirs}
        for data_dir in self._dir_of.values():
            counts[data_dir] += 1
        data_dir = min(self.data_dirs, key=counts.__getitem__)
        log = PartitionLog.create(
            self.fs,
            posixpath.join(data_dir, partition_dir_name(topic, partition)),
            topic,
            partition,
            self.topic_config(topic),
            self.clock,
            start_offset=start_offset,
        )
        self._add(key, data_dir, log)
        return log

    def delete_log(self, topic: str, partition: int) -> None:
        """Delete a log and its directory (a no-op for an unknown one)."""
        key = (topic, partition)
        log = self.logs.pop(key, None)
        if log is None:
            return
        data_dir = self._dir_of.pop(key)
        self.flushers[data_dir].unregister(log)
        log.delete()

    # -- checkpoints and retention ------------------------------------------------------------

    def _by_dir(self, values: dict[TopicPartition, int]) -> dict[str, dict[TopicPartition, int]]:
        grouped: dict[str, dict[TopicPartition, int]] = {d: {} for d in self.data_dirs}
        for key, value in values.items():
            if key in self._dir_of:
                grouped[self._dir_of[key]][key] = value
        return grouped

    def checkpoint_recovery_points(self) -> None:
        """Write each log's durable offset to its directory's recovery-point checkpoint."""
        points = {key: log.durable_offset for key, log in self.logs.items()}
        for data_dir, values in self._by_dir(points).items():
            path = posixpath.join(data_dir, RECOVERY_POINT_CHECKPOINT)
            write_offset_checkpoint(self.fs, path, values)

    def write_high_watermarks(self, high_watermarks: dict[TopicPartition, int]) -> None:
        """Checkpoint the high watermarks of the logs this manager holds."""
        for data_dir, values in self._by_dir(high_watermarks).items():
            path = posixpath.join(data_dir, REPLICATION_OFFSET_CHECKPOINT)
            write_offset_checkpoint(self.fs, path, values)

    def read_high_watermarks(self) -> dict[TopicPartition, int]:
        """The checkpointed high watermarks of every data directory."""
        result = {}
        for data_dir in self.data_dirs:
            result.update(self._read_checkpoint(data_dir, REPLICATION_OFFSET_CHECKPOINT))
        return result

    def apply_retention(self) -> int:
        """Apply retention to every log; return the number of segments deleted."""
        return sum(log.apply_retention() for log in self.logs.values())
