"""``PartitionLog``: the segmented log of one partition.

A directory ``<topic>-<partition>/`` holding segments (``segment``) whose base offsets increase,
each starting where the previous one ends, plus the ``leader-epoch-checkpoint``. The log start
offset is the base offset of the first segment (tmq only ever deletes whole segments); the log
end offset (LEO) is the offset the next appended record gets.

Threads: one owner thread (the reactor's) appends, reads, truncates, rolls and deletes; the
data directory's flusher thread calls ``flush`` (and resolves the futures returned by
``durable``). ``flush`` and the operations that close files hold ``_io_lock``, so a file is
never closed under an fsync.
"""

from __future__ import annotations

import heapq
import itertools
import posixpath
import threading
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from tmq.protocol.errors import ProtocolError
from tmq.protocol.records import (
    RecordBatchHeader,
    batch_crc_ok,
    read_batch_header,
    set_base_offset,
    set_partition_leader_epoch,
)

from .checkpoints import CorruptCheckpoint, read_epoch_checkpoint
from .config import LogConfig
from .errors import (
    CorruptRecord,
    InvalidRecord,
    KafkaStorageError,
    MessageTooLarge,
    OffsetOutOfRange,
    RecordListTooLarge,
    StaleEpoch,
)
from .files import File, FileSystem
from .leader_epoch import LeaderEpochCache
from .names import (
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LEADER_EPOCH_CHECKPOINT,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    TMP_SUFFIX,
    base_offset_of,
    segment_file,
)
from .segment import LogSegment

__all__ = ["AppendInfo", "LoadReport", "LogRead", "PartitionLog"]

_MAX_RELATIVE_OFFSET = 2**31 - 1


@dataclass(frozen=True)
class AppendInfo:
    """Where an appended batch landed."""

    base_offset: int
    last_offset: int
    record_count: int
    max_timestamp: int
    position: int
    size: int


@dataclass(frozen=True)
class LogRead:
    """A byte range of whole batches in one segment file, to be served as it is."""

    file: File
    position: int
    size: int
    first_offset: int

    def read(self) -> bytes:
        """All the bytes at once (small reads and tests; servers read in chunks)."""
        return self.file.read(self.position, self.size)


@dataclass(frozen=True)
class LoadReport:
    """What opening the log found: ``recovered`` segments, bytes ``truncated`` at the first
    invalid byte (with the ``reason``) and ``deleted_segments`` after it."""

    recovered: int = 0
    truncated_bytes: int = 0
    reason: str | None = None
    deleted_segments: int = 0


class PartitionLog:
    """The log of one partition (see the module docstring). Use ``create`` or ``load``.

    :param clock: milliseconds since the epoch (for ``segment.ms`` and retention).
    """

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        topic: str,
        partition: int,
        config: LogConfig,
        clock: Callable[[], int],
        segments: list[LogSegment],
        epochs: LeaderEpochCache,
    ):
        self.fs = fs
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self.config = config
        self.clock = clock
        self.segments = segments
        self.epochs = epochs
        self._io_lock = threading.Lock()
        # the active segment as of the last append check, and since when (clock) it is
        self._active_seen: LogSegment | None = None
        self._active_since = 0
        self._unflushed_closed: list[LogSegment] = []
        #: Offsets below this are known to be on disk (the recovery point).
        self.durable_offset = self.log_end_offset
        self._waiters: list[tuple[int, int, Future]] = []
        self._waiters_lock = threading.Lock()
        self._waiter_ids = itertools.count()
        #: Set by ``flush_requested`` (the flusher) so ``durable`` can ask for a flush.
        self.flush_requested: Callable[[PartitionLog], None] = lambda log: None
        #: The disk error that took this log offline, if any.
        self.failure: OSError | None = None

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        fs: FileSystem,
        directory: str,
        topic: str,
        partition: int,
        config: LogConfig,
        clock: Callable[[], int],
        *,
        start_offset: int = 0,
    ) -> PartitionLog:
        """Create the partition directory and an empty first segment at ``start_offset``."""
        fs.makedirs(directory)
        fs.fsync_dir(posixpath.dirname(directory))
        segment = LogSegment.create(
            fs, directory, start_offset, index_interval_bytes=config.index_interval_bytes
        )
        fs.fsync_dir(directory)
        epochs = LeaderEpochCache(fs, posixpath.join(directory, LEADER_EPOCH_CHECKPOINT))
        return cls(fs, directory, topic, partition, config, clock, [segment], epochs)

    @classmethod
    def load(
        cls,
        fs: FileSystem,
        directory: str,
        topic: str,
        partition: int,
        config: LogConfig,
        clock: Callable[[], int],
        *,
        recovery_point: int | None,
    ) -> tuple[PartitionLog, LoadReport]:
        """Open an existing log.

        :param recovery_point: ``None`` after a clean shutdown (indexes are trusted after a
            sanity check); otherwise every segment from the one holding this offset on is
            recovered: each batch is validated, the log is cut at the first invalid byte and
            the segments after it are deleted.
        """
        names = fs.listdir(directory)
        bases = sorted(
            base
            for name in names
            if name.endswith(LOG_SUFFIX) and (base := base_offset_of(name)) is not None
        )
        _remove_leftovers(fs, directory, names, set(bases))
        interval = config.index_interval_bytes
        if recovery_point is None:
            first_to_recover = len(bases)
        else:
            first_to_recover = max(0, bisect_right(bases, recovery_point) - 1)
        checkpointed = _read_epochs(fs, directory)
        epoch_at = checkpointed.epoch_at if checkpointed is not None else None
        segments: list[LogSegment] = []
        recovered = truncated = deleted = 0
        reason = None
        for i, base in enumerate(bases):
            if reason is None and segments and segments[-1].next_offset != base:
                reason = f"segment {base} does not start where the previous one ends"
            if reason is not None:
                # everything after a cut, or after a gap in the offsets, is unusable
                _delete_segment_files(fs, directory, base)
                deleted += 1
                continue
            if i >= first_to_recover:
                segment, result = LogSegment.open_and_recover(
                    fs, directory, base, index_interval_bytes=interval, epoch_at=epoch_at
                )
            else:
                segment, result = LogSegment.open(
                    fs, directory, base, index_interval_bytes=interval
                )
            segments.append(segment)
            if result is not None:
                recovered += 1
                truncated, reason = result.truncated_bytes, result.reason
        if deleted:
            fs.fsync_dir(directory)
        if not segments:
            segments.append(LogSegment.create(fs, directory, 0, index_interval_bytes=interval))
            fs.fsync_dir(directory)
        if checkpointed is not None:
            epochs = checkpointed
        else:
            epochs = _epochs_from_batches(fs, directory, segments)
        log = cls(fs, directory, topic, partition, config, clock, segments, epochs)
        epochs.truncate_from_end(log.log_end_offset)
        if recovery_point is not None:
            # re-scan the same range after another crash: what was read back may still be
            # only in the page cache
            log.durable_offset = min(log.log_end_offset, recovery_point)
        return log, LoadReport(recovered, truncated, reason, deleted)

    # -- state ------------------------------------------------------------------------------

    @property
    def active(self) -> LogSegment:
        return self.segments[-1]

    @property
    def log_start_offset(self) -> int:
        return self.segments[0].base_offset

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset

    @property
    def size(self) -> int:
        return sum(segment.size for segment in self.segments)

    # -- appending --------------------------------------------------------------------------

    def append(self, batch: bytes | bytearray | memoryview, *, leader_epoch: int) -> AppendInfo:
        """Validate one RecordBatch v2 as received from a client, give it the next offsets and
        stamp ``leader_epoch`` on it, and append it. The CRC stays valid (baseOffset and
        partitionLeaderEpoch are outside it).

        :raises CorruptRecord: bad header or CRC.
        :raises InvalidRecord: not exactly one whole batch, record count and offsets that do
            not agree, a control batch, or a producer id without a sequence.
        :raises MessageTooLarge: above ``max.message.bytes``.
        :raises RecordListTooLarge: above ``segment.bytes``.
        :raises KafkaStorageError: the write failed (nothing was appended) or the log is
            offline after an earlier disk error.
        :raises ValueError: ``leader_epoch`` is below the latest epoch of the log (a caller
            bug: a leader stamps its own, current epoch).
        """
        header = _validate(batch, self.config)
        if leader_epoch < self.epochs.latest_epoch:
            raise ValueError(f"epoch {leader_epoch} is below epoch {self.epochs.latest_epoch}")
        data = bytearray(batch)
        base_offset = self.log_end_offset
        set_base_offset(data, 0, base_offset)
        set_partition_leader_epoch(data, 0, leader_epoch)
        header = header._replace(base_offset=base_offset, partition_leader_epoch=leader_epoch)
        self._check_online()
        try:
            # before the data: an epoch that starts where nothing was written is harmless,
            # data whose epoch is not recorded is not
            self.epochs.assign(leader_epoch, base_offset)
        except OSError as error:
            raise KafkaStorageError(f"leader epoch checkpoint failed: {error}") from error
        position = self._append(data, header)
        return AppendInfo(
            base_offset,
            header.last_offset,
            header.records_count,
            header.max_timestamp,
            position,
            header.size,
        )

    def append_replicated(self, batch: bytes | bytearray | memoryview) -> AppendInfo:
        """Append one batch copied from the leader, as it is: its base offset must be the log
        end offset and its leader epoch at least the latest one here (a follower's log is a
        copy of its leader's, offsets and epochs included).

        :raises CorruptRecord: bad header or CRC.
        :raises InvalidRecord: not exactly one whole batch, records and offsets that do not
            agree, or a base offset other than the log end offset.
        :raises StaleEpoch: the batch's epoch is below the latest epoch of the log.
        :raises KafkaStorageError: the write failed or the log is offline.
        """
        header = _validate(batch, self.config, replicated=True)
        base_offset = self.log_end_offset
        if header.base_offset != base_offset:
            raise InvalidRecord(
                f"replicated batch at offset {header.base_offset}, the log ends at {base_offset}"
            )
        epoch = header.partition_leader_epoch
        if epoch < self.epochs.latest_epoch:
            raise StaleEpoch(f"batch epoch {epoch} below epoch {self.epochs.latest_epoch}")
        self._check_online()
        self.start_epoch(epoch)
        position = self._append(bytearray(batch), header)
        return AppendInfo(
            base_offset,
            header.last_offset,
            header.records_count,
            header.max_timestamp,
            position,
            header.size,
        )

    def start_epoch(self, epoch: int) -> None:
        """Note that leader epoch ``epoch`` starts at the log end offset (a new leader does
        this before its first append, so OffsetForLeaderEpoch answers its epoch's start even
        while it has written nothing).

        :raises StaleEpoch: ``epoch`` is below the latest epoch of the log.
        :raises KafkaStorageError: the checkpoint could not be written.
        """
        if epoch < self.epochs.latest_epoch:
            raise StaleEpoch(f"epoch {epoch} below epoch {self.epochs.latest_epoch}")
        try:
            self.epochs.assign(epoch, self.log_end_offset)
        except OSError as error:
            raise KafkaStorageError(f"leader epoch checkpoint failed: {error}") from error

    def _check_online(self) -> None:
        if self.failure is not None:
            raise KafkaStorageError(f"{self.directory} is offline: {self.failure}")

    def _append(self, data: bytearray, header: RecordBatchHeader) -> int:
        if self._should_roll(header):
            self.roll()
        segment = self.active
        try:
            return segment.append(data, header)
        except OSError as error:
            if segment.broken:
                self.failure = error
            raise KafkaStorageError(f"append to {self.directory} failed: {error}") from error

    def _should_roll(self, header: RecordBatchHeader) -> bool:
        """Kafka's roll rules (``LogSegment.shouldRoll``). ``segment.ms`` compares record
        times, not the clock: the incoming batch's max timestamp against the segment's first
        batch's, so a replay of old data does not roll a segment per batch; only a segment
        whose first batch has no timestamp is aged by the clock, since it became active."""
        segment = self.active
        if segment is not self._active_seen:
            self._active_seen, self._active_since = segment, self.clock()
        if segment.is_empty:
            return False
        config = self.config
        first = segment.first_batch_timestamp
        waited = header.max_timestamp - first if first >= 0 else self.clock() - self._active_since
        return (
            segment.size + header.size > config.segment_bytes
            or waited > config.segment_ms
            or len(segment.offset_index) >= config.max_index_entries
            or header.last_offset - segment.base_offset > _MAX_RELATIVE_OFFSET
        )

    def roll(self) -> LogSegment:
        """Start a new active segment at the log end offset (the old one is fsynced by the next
        flush). Rolling an empty active segment does nothing."""
        old = self.active
        if old.is_empty:
            return old
        try:
            segment = LogSegment.create(
                self.fs,
                self.directory,
                old.next_offset,
                index_interval_bytes=self.config.index_interval_bytes,
            )
            # the new files must survive a crash once their data is fsynced
            self.fs.fsync_dir(self.directory)
        except OSError as error:
            raise KafkaStorageError(f"roll of {self.directory} failed: {error}") from error
        self._unflushed_closed.append(old)
        self.segments.append(segment)
        self.flush_requested(self)
        return segment

    # -- reading ----------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> LogRead | None:
        """Whole batches starting with the one that holds ``offset``, at most ``max_bytes``
        but at least one batch, none starting at or after ``max_offset`` (default: the LEO).

        :returns: ``None`` when there is nothing to read yet (``offset`` is at the end).
        :raises OffsetOutOfRange: ``offset`` below the log start or above the log end.
        """
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRange(
                f"offset {offset} outside {self.log_start_offset}..{self.log_end_offset}"
            )
        limit = self.log_end_offset if max_offset is None else min(max_offset, self.log_end_offset)
        i = max(0, bisect_right([s.base_offset for s in self.segments], offset) - 1)
        try:
            for segment in self.segments[i:]:
                if segment.base_offset >= limit:
                    return None
                found = segment.read_range(offset, max_bytes, limit)
                if found is not None:
                    position, size, first = found
                    return LogRead(segment.log, position, size, first)
        except (OSError, ProtocolError) as error:
            raise KafkaStorageError(f"read of {self.directory} failed: {error}") from error
        return None

    def batch_headers(self) -> Iterator[RecordBatchHeader]:
        """The header of every batch in the log, in offset order (reads 61 bytes a batch)."""
        return _headers_of(list(self.segments))

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record stamped at or after ``timestamp``."""
        for segment in self.segments:
            found = segment.offset_for_timestamp(timestamp)
            if found is not None:
                return found
        return None

    # -- truncation and retention ------------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Remove every batch holding an offset at or after ``offset`` (a batch that straddles
        it goes entirely), and the leader epochs that start there or later; used by a follower
        whose log diverged from its leader's. At the log end offset only epochs go: those a
        replica started as leader without writing (they are not the new leader's)."""
        if offset >= self.log_end_offset:
            if offset == self.log_end_offset:
                self.epochs.truncate_from_end(offset)
            return
        with self._io_lock:
            while len(self.segments) > 1 and self.active.base_offset >= offset:
                segment = self.segments.pop()
                if segment in self._unflushed_closed:
                    self._unflushed_closed.remove(segment)
                segment.delete()
            self.active.truncate_to(offset)
            self.fs.fsync_dir(self.directory)
        self.durable_offset = min(self.durable_offset, self.log_end_offset)
        self.epochs.truncate_from_end(self.log_end_offset)

    def restart_at(self, offset: int) -> None:
        """Remove every segment and the leader epochs, and start an empty log at ``offset``:
        a follower whose log ends below its leader's log start holds nothing the leader still
        has (retention deleted it there) and copies the leader's log from its start. A crash
        in between leaves an empty log at offset 0, which restarts the same way."""
        with self._io_lock:
            for segment in self.segments:
                if segment in self._unflushed_closed:
                    self._unflushed_closed.remove(segment)
                segment.delete()
            self.fs.fsync_dir(self.directory)
            self.segments = [
                LogSegment.create(
                    self.fs,
                    self.directory,
                    offset,
                    index_interval_bytes=self.config.index_interval_bytes,
                )
            ]
            self.fs.fsync_dir(self.directory)
        self.durable_offset = offset
        self.epochs.truncate_from_end(-1)

    def apply_retention(self) -> int:
        """Delete the oldest segments beyond ``retention.ms`` or ``retention.bytes``; return how
        many were deleted. The active segment goes too when it is past ``retention.ms`` (a new
        empty one takes its place at the log end offset)."""
        now = self.clock()
        config = self.config
        expired = 0
        if config.retention_ms >= 0:
            for segment in self.segments:
                if segment.is_empty or now - segment.max_timestamp <= config.retention_ms:
                    break
                expired += 1
        oversized = 0
        if config.retention_bytes >= 0:
            excess = self.size - config.retention_bytes
            for segment in self.segments[:-1]:
                if segment.size > excess:
                    break
                excess -= segment.size
                oversized += 1
        doomed = max(expired, oversized)
        if doomed == 0:
            return 0
        if doomed == len(self.segments):
            self.roll()
        with self._io_lock:
            for segment in self.segments[:doomed]:
                if segment in self._unflushed_closed:
                    self._unflushed_closed.remove(segment)
                segment.delete()
            del self.segments[:doomed]
            self.fs.fsync_dir(self.directory)
        self.epochs.truncate_from_start(self.log_start_offset)
        return doomed

    # -- durability -------------------------------------------------------------------------

    def durable(self, offset: int) -> Future:
        """A future resolved (with the durable offset) once every offset up to and including
        ``offset`` is on disk, or failed with ``KafkaStorageError``. Asks for a flush."""
        future: Future = Future()
        if self.durable_offset > offset:
            future.set_result(self.durable_offset)
            return future
        with self._waiters_lock:
            heapq.heappush(self._waiters, (offset, next(self._waiter_ids), future))
        self.flush_requested(self)
        return future

    def flush(self, *, final: bool = False) -> int:
        """fsync everything appended so far and resolve the waiters it covers; return how many
        waiters it resolved.

        Called by the flusher thread (and at shutdown with ``final``, which also syncs the
        active segment's indexes). Appends that land while the fsync runs are covered by the
        next call: that is the group commit. Rolled segments are synced whole; the active one
        only its ``.log`` (see ``LogSegment.flush``).
        """
        # Order matters: the target first (every offset below it is in a segment that exists
        # now), then the active segment, then the rolled ones (``roll`` queues the old segment
        # before switching), so no segment holding an offset below the target is missed.
        target = self.log_end_offset
        active = self.active
        with self._io_lock:
            closed = list(self._unflushed_closed)
            try:
                if self.failure is not None:
                    raise self.failure
                for segment in closed:
                    segment.flush()
                    self._unflushed_closed.remove(segment)
                if final or target > self.durable_offset:
                    active.flush(indexes=final)
            except OSError as error:
                self.failure = error
                self._fail_waiters(error)
                return 0
        self.durable_offset = max(self.durable_offset, target)
        return self._resolve_waiters(target)

    def _resolve_waiters(self, target: int) -> int:
        ready = []
        with self._waiters_lock:
            while self._waiters and self._waiters[0][0] < target:
                ready.append(heapq.heappop(self._waiters)[2])
        for future in ready:
            future.set_result(target)
        return len(ready)

    def _fail_waiters(self, error: OSError) -> None:
        with self._waiters_lock:
            ready = [entry[2] for entry in self._waiters]
            self._waiters.clear()
        for future in ready:
            future.set_exception(KafkaStorageError(f"fsync of {self.directory} failed: {error}"))

    def close(self) -> None:
        """Close every file (after ``flush(final=True)`` for a clean shutdown)."""
        with self._io_lock:
            for segment in self.segments:
                segment.close()

    def delete(self) -> None:
        """Remove the whole partition directory."""
        with self._io_lock:
            for segment in self.segments:
                segment.close()
            parent = posixpath.dirname(self.directory)
            # a short random name: <topic>-<partition> may already be 255 bytes long
            doomed = posixpath.join(parent, uuid.uuid4().hex + DELETED_SUFFIX)
            self.fs.rename(self.directory, doomed)
            self.fs.fsync_dir(parent)
            self.fs.rmtree(doomed)
        self._fail_waiters(OSError(f"{self.topic}-{self.partition} was deleted"))


def _validate(
    batch: bytes | bytearray | memoryview, config: LogConfig, replicated: bool = False
) -> RecordBatchHeader:
    """The header of one valid batch. ``replicated``: copied from a leader, which checked
    the client's rules (control batches, sequences) when it accepted the batch."""
    size = len(batch)
    if size > config.max_message_bytes:
        raise MessageTooLarge(f"batch of {size} bytes above max.message.bytes")
    if size > config.segment_bytes:
        raise RecordListTooLarge(f"batch of {size} bytes above segment.bytes")
    try:
        header = read_batch_header(batch)
    except ProtocolError as error:
        raise CorruptRecord(str(error)) from None
    if header.size != size:
        raise InvalidRecord(f"expected exactly one batch: {header.size} of {size} bytes")
    if not batch_crc_ok(batch, 0, header):
        raise CorruptRecord("record batch CRC mismatch")
    if header.records_count != header.last_offset_delta + 1:
        raise InvalidRecord(
            f"{header.records_count} records but lastOffsetDelta {header.last_offset_delta}"
        )
    if replicated:
        return header
    if header.is_control:
        raise InvalidRecord("clients may not write control batches")
    if header.producer_id >= 0 and header.base_sequence < 0:
        raise InvalidRecord("a batch with a producer id needs a base sequence")
    return header


def _read_epochs(fs: FileSystem, directory: str) -> LeaderEpochCache | None:
    """The checkpointed epochs, or ``None`` if the checkpoint is missing or corrupt."""
    path = posixpath.join(directory, LEADER_EPOCH_CHECKPOINT)
    if not fs.exists(path):
        return None
    try:
        return LeaderEpochCache(fs, path, read_epoch_checkpoint(fs, path))
    except CorruptCheckpoint:
        return None


def _epochs_from_batches(
    fs: FileSystem, directory: str, segments: list[LogSegment]
) -> LeaderEpochCache:
    """Epochs rebuilt from every batch header (when there is no usable checkpoint)."""
    cache = LeaderEpochCache(fs, posixpath.join(directory, LEADER_EPOCH_CHECKPOINT))
    for header in _headers_of(segments):
        if header.partition_leader_epoch > cache.latest_epoch:
            cache.assign(header.partition_leader_epoch, header.base_offset)
    return cache


def _headers_of(segments: list[LogSegment]) -> Iterator[RecordBatchHeader]:
    for segment in segments:
        position = 0
        while position < segment.size:
            header = segment.batch_at(position)
            yield header
            position += header.size


def _remove_leftovers(fs: FileSystem, directory: str, names: list[str], bases: set[int]) -> None:
    """Delete index files without a ``.log`` and half-written temporary files."""
    for name in names:
        base = base_offset_of(name)
        orphan = base is not None and base not in bases
        if orphan or name.endswith(TMP_SUFFIX):
            fs.unlink(posixpath.join(directory, name))


def _delete_segment_files(fs: FileSystem, directory: str, base: int) -> None:
    for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
        path = posixpath.join(directory, segment_file(base, suffix))
        if fs.exists(path):
            fs.unlink(path)
