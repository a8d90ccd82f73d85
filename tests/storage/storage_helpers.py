"""Shared helpers of the recovery, crash-model and write-error tests of ``tmq.storage``.

They build deterministic or hypothesis-generated logs, remember exactly what was appended (the
batch bytes as the log must hold them, with baseOffset and partitionLeaderEpoch stamped), copy
a log's files into a fresh ``MemoryFileSystem`` so that a test can crash it at any byte, and
check a (recovered) log against what was appended: the log must hold a prefix of the appended
batches, byte for byte, with sound indexes and a matching leader-epoch cache.
"""

from __future__ import annotations

import dataclasses
import posixpath
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from tmq.protocol.compression import Codec
from tmq.protocol.records import (
    Record,
    RecordBatchHeader,
    build_batch,
    decode_batch,
    read_batch_header,
    set_base_offset,
    set_partition_leader_epoch,
)
from tmq.storage.checkpoints import read_epoch_checkpoint
from tmq.storage.config import LogConfig
from tmq.storage.files import FileSystem
from tmq.storage.log import PartitionLog
from tmq.storage.memory_fs import MemoryFileSystem
from tmq.storage.names import (
    INDEX_SUFFIX,
    LEADER_EPOCH_CHECKPOINT,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    base_offset_of,
    segment_file,
)

T0 = 1_700_000_000_000
TOPIC = "gpu"
PARTITION = 0
DATA_DIR = "/data"
LOG_DIR = f"{DATA_DIR}/{TOPIC}-{PARTITION}"
CODECS = list(Codec)

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


def clock() -> int:
    """A clock that stands still a second after ``T0`` (no time-based rolls or retention)."""
    return T0 + 1000


# -- describing and building batches ---------------------------------------------------------


@dataclass(frozen=True)
class BatchSpec:
    """What one appended batch holds: ``count`` records with keys of ``key_bytes`` (``None``:
    null keys) and values of ``value_bytes``, compressed with ``codec``, appended under leader
    epoch ``epoch``, first record at ``timestamp`` (deltas grow by ``step`` ms per record)."""

    count: int
    key_bytes: int | None
    value_bytes: int
    codec: Codec
    epoch: int
    timestamp: int
    step: int = 1

    def records(self, salt: int) -> list[Record]:
        """The records, their bytes varied by ``salt`` so no two batches are alike."""
        result = []
        for i in range(self.count):
            tag = b"%d.%d|" % (salt, i)
            key = None if self.key_bytes is None else (tag * self.key_bytes)[: self.key_bytes]
            value = (tag * (self.value_bytes + 1))[: self.value_bytes]
            headers = (("h", tag),) if (salt + i) % 3 == 0 else ()
            result.append(Record(i, i * self.step, key, value, headers))
        return result


@dataclass(frozen=True)
class Appended:
    """A batch the log accepted: ``data`` is the batch as the log stores it (offsets and epoch
    stamped), ``records`` what a consumer must decode from it."""

    data: bytes
    header: RecordBatchHeader
    records: list[Record]

    @property
    def base_offset(self) -> int:
        return self.header.base_offset

    @property
    def last_offset(self) -> int:
        return self.header.last_offset

    @property
    def epoch(self) -> int:
        return self.header.partition_leader_epoch


def client_batch(spec: BatchSpec, salt: int) -> tuple[bytes, list[Record]]:
    """The batch a producer would send (base offset 0, no epoch) and its records."""
    records = spec.records(salt)
    data = build_batch(records, base_timestamp=spec.timestamp, compression=spec.codec)
    return data, records


def stamp(data: bytes, base_offset: int, epoch: int) -> bytes:
    """``data`` with baseOffset and partitionLeaderEpoch set, as the log writes it."""
    stamped = bytearray(data)
    set_base_offset(stamped, 0, base_offset)
    set_partition_leader_epoch(stamped, 0, epoch)
    return bytes(stamped)


def append_spec(log: PartitionLog, spec: BatchSpec, salt: int) -> Appended:
    """Append one batch built from ``spec`` and return what the log must now hold for it."""
    data, records = client_batch(spec, salt)
    expected_base = log.log_end_offset
    info = log.append(data, leader_epoch=spec.epoch)
    assert info.base_offset == expected_base
    stamped = stamp(data, expected_base, spec.epoch)
    return Appended(stamped, read_batch_header(stamped), records)


def fixed_specs(limit: int = 8192) -> list[BatchSpec]:
    """A deterministic log of at most ``limit`` bytes: record counts 1-5, null, empty and
    longer keys, values of 0-60 bytes, every codec in turn, leader epochs 0, 1, 3 and 7 (each
    over about a quarter of the batches), timestamps that sometimes go back."""
    shapes, total = [], 0
    while True:
        i = len(shapes)
        spec = BatchSpec(
            count=1 + (i * 7) % 5,
            key_bytes=None if i % 4 == 3 else (i * 3) % 9,
            value_bytes=(i * 11) % 61,
            codec=CODECS[i % len(CODECS)],
            epoch=0,
            timestamp=T0 + i * 10 - (25 if i % 6 == 5 else 0),
            step=1 + i % 3,
        )
        size = len(client_batch(spec, i)[0])
        if total + size > limit:
            break
        shapes.append(spec)
        total += size
    epochs = (0, 1, 3, 7)
    return [
        dataclasses.replace(spec, epoch=epochs[i * len(epochs) // len(shapes)])
        for i, spec in enumerate(shapes)
    ]


def batch_specs(
    min_batches: int = 5, max_batches: int = 40, max_value: int = 300
) -> st.SearchStrategy:
    """Hypothesis: a list of batch specs whose leader epochs never decrease."""
    one = st.tuples(
        st.integers(1, 8),
        st.one_of(st.none(), st.integers(0, 40)),
        st.integers(0, max_value),
        st.sampled_from(CODECS),
        st.integers(0, 2),  # epoch bump
        st.integers(-50, 50),  # timestamp jitter
    )

    def build(rows: list[tuple]) -> list[BatchSpec]:
        specs, epoch = [], 0
        for i, (count, key, value, codec, bump, jitter) in enumerate(rows):
            epoch += bump if i else 0
            specs.append(BatchSpec(count, key, value, codec, epoch, T0 + 100 * i + jitter))
        return specs

    return st.lists(one, min_size=min_batches, max_size=max_batches).map(build)


# -- file systems and logs --------------------------------------------------------------------


def new_fs(capacity_bytes: int | None = None) -> MemoryFileSystem:
    """A memory file system whose ``DATA_DIR`` exists durably."""
    fs = MemoryFileSystem(capacity_bytes=capacity_bytes)
    fs.makedirs(DATA_DIR)
    fs.fsync_dir("/")
    return fs


def create_log(fs: FileSystem, config: LogConfig, directory: str = LOG_DIR) -> PartitionLog:
    return PartitionLog.create(fs, directory, TOPIC, PARTITION, config, clock)


def load_log(
    fs: FileSystem, config: LogConfig, *, recovery_point: int | None, directory: str = LOG_DIR
):
    """``PartitionLog.load`` of the test partition: ``(log, report)``."""
    return PartitionLog.load(
        fs, directory, TOPIC, PARTITION, config, clock, recovery_point=recovery_point
    )


def build_log(config: LogConfig, specs: Sequence[BatchSpec]):
    """A memory file system holding a log of ``specs``, flushed and closed: ``(fs, appended)``."""
    fs = new_fs()
    log = create_log(fs, config)
    appended = [append_spec(log, spec, salt) for salt, spec in enumerate(specs)]
    log.flush()
    log.close()
    return fs, appended


@dataclass(frozen=True)
class Snapshot:
    """The files of one partition directory: ``files`` by name, and where each ``.log`` starts
    in the concatenation of all ``.log`` files (in offset order)."""

    files: dict[str, bytes]
    log_starts: dict[str, int]
    total_log_bytes: int

    @classmethod
    def of(cls, fs: FileSystem, directory: str = LOG_DIR) -> Snapshot:
        names = fs.listdir(directory)
        files = {name: fs.read_file(posixpath.join(directory, name)) for name in names}
        starts, total = {}, 0
        for name in sorted(n for n in files if n.endswith(LOG_SUFFIX)):
            starts[name] = total
            total += len(files[name])
        return cls(files, starts, total)

    def restore(self, directory: str = LOG_DIR) -> MemoryFileSystem:
        """A fresh file system in which every file of the snapshot exists (the directory
        entries are durable) but no byte of a segment file was fsynced yet; other files (the
        epoch checkpoint) are durable."""
        fs = new_fs()
        fs.makedirs(directory)
        fs.fsync_dir(DATA_DIR)
        for name, data in self.files.items():
            path = posixpath.join(directory, name)
            if base_offset_of(name) is None:
                fs.write_file(path, data)
                continue
            file = fs.open(path)
            file.append(data)
            file.close()
        fs.fsync_dir(directory)
        return fs

    def crash_at(
        self, position: int, index_keep: Callable[[int, int], int] | None = None
    ) -> MemoryFileSystem:
        """Restore the snapshot and crash it so that exactly the first ``position`` bytes of
        the concatenated ``.log`` files survive (a later ``.log`` keeps nothing).

        :param index_keep: ``(index_size, position) -> bytes kept`` of each index file; by
            default the whole (now stale) index survives.
        """
        fs = self.restore()

        def keep(path: str, durable_size: int, current_size: int) -> int:
            name = posixpath.basename(path)
            if name.endswith(LOG_SUFFIX):
                return max(0, min(current_size, position - self.log_starts[name]))
            if index_keep is None:
                return current_size
            return max(0, min(current_size, index_keep(current_size, position)))

        fs.crash(keep=keep)
        return fs


def surviving(appended: Sequence[Appended], kept_bytes: int) -> list[Appended]:
    """The batches lying wholly in the first ``kept_bytes`` of the concatenated log."""
    result, end = [], 0
    for batch in appended:
        end += len(batch.data)
        if end > kept_bytes:
            break
        result.append(batch)
    return result


def is_prefix(found: Sequence[Appended], appended: Sequence[Appended]) -> bool:
    return len(found) <= len(appended) and all(
        a.data == b.data for a, b in zip(found, appended, strict=False)
    )


# -- checking a log -------------------------------------------------------------------------


def expected_epochs(batches: Iterable[Appended]) -> list[tuple[int, int]]:
    """``(epoch, first offset)`` of every epoch the batches carry, in order."""
    entries: list[tuple[int, int]] = []
    for batch in batches:
        if batch.epoch >= 0 and (not entries or entries[-1][0] != batch.epoch):
            entries.append((batch.epoch, batch.base_offset))
    return entries


def expected_indexes(
    batches: Sequence[tuple[int, RecordBatchHeader]], interval: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The offset and time index entries the documented sparse rule gives a segment holding
    ``batches`` (``(position, header)``): an entry for a batch once more than ``interval``
    bytes of batches were appended since the last entry; the time entry holds the largest
    timestamp so far and the batch that holds it, if it grew."""
    offsets: list[tuple[int, int]] = []
    times: list[tuple[int, int]] = []
    since, max_timestamp, offset_of_max = 0, -1, None
    for position, header in batches:
        if header.max_timestamp > max_timestamp:
            max_timestamp, offset_of_max = header.max_timestamp, header.base_offset
        if since > interval:
            offsets.append((header.base_offset, position))
            if not times or max_timestamp > times[-1][0]:
                times.append((max_timestamp, offset_of_max))
            since = 0
        since += header.size
    return offsets, times


def index_entries(fs: FileSystem, directory: str, base: int) -> tuple[list, list]:
    """The entries of a segment's ``.index`` and ``.timeindex`` as stored on disk, with
    absolute offsets."""

    def entries(suffix: str, entry: struct.Struct) -> list[tuple[int, int]]:
        name = segment_file(base, suffix)
        raw = fs.read_file(posixpath.join(directory, name))
        assert len(raw) % entry.size == 0, f"{name}: {len(raw)} bytes are not whole entries"
        return list(entry.iter_unpack(raw))

    offsets = [(base + rel, pos) for rel, pos in entries(INDEX_SUFFIX, _OFFSET_ENTRY)]
    times = [(ts, base + rel) for ts, rel in entries(TIME_INDEX_SUFFIX, _TIME_ENTRY)]
    return offsets, times


def check_log(
    fs: FileSystem,
    log: PartitionLog,
    expected: Sequence[Appended],
    *,
    every_offset: bool = True,
    directory: str = LOG_DIR,
) -> None:
    """Assert that ``log`` holds exactly the batches ``expected`` and is sound.

    * the ``.log`` files hold the batches byte for byte, each segment starting at a batch
      boundary named by its file name, and the directory holds nothing else;
    * the log end offset follows the last batch; reads walk the batches in order and decode
      to the appended records; with ``every_offset``, a read at each offset returns first the
      batch that holds it;
    * the indexes (in memory and on disk) are exactly what the sparse rule gives;
    * the leader-epoch cache and its checkpoint list the epochs of the batches
      (``check_epochs``).
    """
    start = expected[0].base_offset if expected else log.log_start_offset
    end = expected[-1].last_offset + 1 if expected else start
    assert (log.log_start_offset, log.log_end_offset) == (start, end)

    # files: segments chain, hold the batches byte for byte, nothing else in the directory
    names = set(fs.listdir(directory))
    wanted = {LEADER_EPOCH_CHECKPOINT} if LEADER_EPOCH_CHECKPOINT in names else set()
    remaining = list(expected)
    next_offset = start
    for segment in log.segments:
        assert segment.base_offset == next_offset
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
            wanted.add(segment_file(segment.base_offset, suffix))
        path = posixpath.join(directory, segment_file(segment.base_offset, LOG_SUFFIX))
        data = fs.read_file(path)
        assert len(data) == segment.size
        batches, position = [], 0
        while position < len(data):
            assert remaining, f"segment {segment.base_offset} holds more than was appended"
            batch = remaining.pop(0)
            assert data[position : position + len(batch.data)] == batch.data
            batches.append((position, batch.header))
            position += len(batch.data)
        next_offset = batches[-1][1].last_offset + 1 if batches else segment.base_offset
        assert segment.next_offset == next_offset
        offsets, times = expected_indexes(batches, log.config.index_interval_bytes)
        on_disk = index_entries(fs, directory, segment.base_offset)
        assert on_disk == (offsets, times), f"indexes of segment {segment.base_offset}"
        in_memory = (
            list(zip(segment.offset_index._keys, segment.offset_index._values, strict=True)),
            list(zip(segment.time_index._keys, segment.time_index._values, strict=True)),
        )
        assert in_memory == on_disk
    assert not remaining, f"{len(remaining)} batches missing from the segments"
    assert names == wanted

    # reads
    offset = start
    for batch in expected:
        read = log.read(offset, 1)
        assert read is not None and read.first_offset == batch.base_offset
        data = read.read()
        assert data == batch.data
        header, records = decode_batch(data)
        assert records == batch.records
        offset = header.last_offset + 1
    assert log.read(end, 1) is None
    if every_offset:
        for batch in expected:
            for offset in range(batch.base_offset, batch.last_offset + 1):
                read = log.read(offset, 1)
                assert read is not None and read.first_offset == batch.base_offset, offset

    # leader epochs, in memory and in the checkpoint
    path = posixpath.join(directory, LEADER_EPOCH_CHECKPOINT)
    check_epochs(log.epochs.entries, expected, end)
    check_epochs(read_epoch_checkpoint(fs, path), expected, end)


def check_epochs(entries: list[tuple[int, int]], expected: Sequence[Appended], end: int) -> None:
    """The epoch entries below the log end offset ``end`` are exactly those of the batches;
    at most one more may start at ``end`` itself, with a higher epoch (a leader's epoch begins
    at the log end offset before it writes anything, as in Kafka)."""
    epochs = expected_epochs(expected)
    assert entries[: len(epochs)] == epochs, entries
    rest = entries[len(epochs) :]
    top = epochs[-1][0] if epochs else -1
    assert len(rest) <= 1 and all(s == end and e > top for e, s in rest), entries


def check_append_continues(log: PartitionLog, epoch: int, salt: int = 10_000) -> Appended:
    """A new append lands at the log end offset under ``epoch`` and reads back."""
    end = log.log_end_offset
    spec = BatchSpec(3, 5, 17, Codec.NONE, epoch, T0 + 999_000)
    batch = append_spec(log, spec, salt)
    assert batch.base_offset == end
    read = log.read(end, 1)
    assert read is not None and read.read() == batch.data
    assert log.epochs.entries[-1] == (epoch, log.epochs.entries[-1][1])
    return batch


def state_of(fs: FileSystem, log: PartitionLog, directory: str = LOG_DIR) -> tuple:
    """Everything observable of a loaded log: its files, offsets and epochs (to compare two
    recoveries that must have come out the same)."""
    files = tuple(
        (name, fs.read_file(posixpath.join(directory, name))) for name in fs.listdir(directory)
    )
    return files, log.log_start_offset, log.log_end_offset, tuple(log.epochs.entries)
