"""``tmq bench log``: append throughput of the partition log under each flush policy.

Every figure stands next to baselines measured in the same run, on the same directory and
with the same batch size:

* ``raw_sequential_write``: ``os.write`` of batch-sized chunks to one file, no fsync;
* ``raw_write_fsync``: the same, with one ``os.fsync`` after every chunk.

The tmq measurements append one pre-built RecordBatch (uncompressed, ``--batch-bytes`` long)
over and over to a real ``PartitionLog`` (``OsFileSystem``, default ``LogConfig`` but for the
flush policy, so segments roll at 128 MiB) served by a real ``Flusher`` thread:

* ``never`` and ``interval``: one appender appending as fast as it can;
* ``always_1_appender``: append, then wait for ``log.durable(last_offset)``: one fsync round
  per batch;
* ``always_<N>_appenders``: N concurrent producers modelled the way the broker drives the
  single-writer log: the owner thread appends and keeps up to N durability futures in flight,
  blocking on the oldest only when N are outstanding. Group commit lets one fsync round cover
  every batch appended while the previous round ran.

fsyncs are counted exactly, by the file system the log is opened on (``OsFileSystem`` with
``fsync`` counted per file kind). ``log_fsyncs`` are the fsyncs of ``.log`` files, i.e. the
commits; ``fsync_calls`` adds the index fsyncs that go with them. ``Flusher.flushes`` is also
reported (``flusher_rounds``), but a round that finds nothing new to sync calls no fsync.

The build of the batch is not measured; ``PartitionLog.append`` validating (CRC) and copying
it is. Throughput is in MB/s with MB = 10**6 bytes.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import Future

from tmq.protocol.records import Record, build_batch
from tmq.storage.config import FlushPolicy, LogConfig
from tmq.storage.files import OsFile, OsFileSystem
from tmq.storage.flusher import Flusher
from tmq.storage.log import PartitionLog
from tmq.storage.names import LOG_SUFFIX

from .errors import CommandError

__all__ = ["FLOORS", "add_parser", "build_bench_batch", "run_log_bench"]

#: Floors set by the issue: fsyncs (commits) per appended batch with ``always`` and N
#: appenders, and the ``never`` throughput as a fraction of raw sequential write bandwidth.
FLOORS = {"always_fsyncs_per_batch": 0.25, "never_ratio_to_raw_sequential_write": 0.30}

_MB = 1_000_000
_VALUE_BYTES = 200
_KEY_BYTES = 16
_MIN_BATCH_BYTES = 256
_PATTERN = bytes(range(256))
_TOPIC = "bench"


# -- the command ----------------------------------------------------------------------------


def add_parser(kinds) -> None:
    """Register ``log`` under ``tmq bench``."""
    parser = kinds.add_parser(
        "log",
        help="partition log append throughput per flush policy, next to raw write/fsync",
        description=(
            "Measure PartitionLog append throughput (MB/s and batches/s) under each flush "
            "policy (never, interval, always with 1 and with N appenders), with real files and "
            "a real fsync (Flusher) thread, next to the raw sequential write and raw "
            "write+fsync rates of the same batch size measured on the same directory in the "
            "same run. Results are JSON on stdout, progress on stderr. Floors: with 'always' "
            "and N appenders at most 0.25 fsyncs per batch (group commit), with 'never' at "
            "least 30% of the raw sequential write bandwidth."
        ),
    )
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help=(
            "existing directory to measure on; a fresh subdirectory is created in it and "
            "removed afterwards (default: a fresh directory under the system temporary "
            "directory, removed afterwards)"
        ),
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="duration of each of the 6 measurements (default %(default)s)",
    )
    parser.add_argument(
        "--batch-bytes",
        type=int,
        default=16384,
        help="size of each appended RecordBatch and of each raw write (default %(default)s)",
    )
    parser.add_argument(
        "--appenders",
        type=int,
        default=8,
        help=(
            "concurrent appenders for the group-commit measurement, modelled as that many "
            "appends in flight (default %(default)s)"
        ),
    )
    parser.set_defaults(run=_run_log, log_parser=parser)


def _run_log(args: argparse.Namespace) -> int:
    if args.seconds <= 0:
        args.log_parser.error("--seconds must be > 0")
    if not _MIN_BATCH_BYTES <= args.batch_bytes <= LogConfig().max_message_bytes:
        args.log_parser.error(
            f"--batch-bytes must be between {_MIN_BATCH_BYTES} and "
            f"{LogConfig().max_message_bytes} (max.message.bytes)"
        )
    if args.appenders < 1:
        args.log_parser.error("--appenders must be >= 1")
    if args.dir is not None and not os.path.isdir(args.dir):
        raise CommandError(f"--dir {args.dir}: not a directory")
    results = run_log_bench(
        parent=args.dir,
        seconds=args.seconds,
        batch_bytes=args.batch_bytes,
        appenders=args.appenders,
        progress=sys.stderr,
    )
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


# -- fsync counting -------------------------------------------------------------------------


class _FsyncCounts:
    """fsync calls by kind; incremented from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log = 0
        self.index = 0
        self.directory = 0

    def add(self, kind: str) -> None:
        with self._lock:
            setattr(self, kind, getattr(self, kind) + 1)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"log": self.log, "index": self.index, "directory": self.directory}


class _CountingOsFile(OsFile):
    """``OsFile`` that counts its fsyncs (appends and reads are ``OsFile``'s own code)."""

    __slots__ = ("_counts", "_kind")

    def __init__(self, path: str, counts: _FsyncCounts):
        super().__init__(path)
        self._counts = counts
        self._kind = "log" if path.endswith(LOG_SUFFIX) else "index"

    def fsync(self) -> None:
        super().fsync()
        self._counts.add(self._kind)


class _CountingFileSystem(OsFileSystem):
    """``OsFileSystem`` whose files and directories count their fsyncs."""

    def __init__(self) -> None:
        self.counts = _FsyncCounts()

    def open(self, path: str) -> OsFile:
        return _CountingOsFile(path, self.counts)

    def fsync_dir(self, path: str) -> None:
        super().fsync_dir(path)
        self.counts.add("directory")


# -- the batch --------------------------------------------------------------------------------


def build_bench_batch(batch_bytes: int, *, base_timestamp: int) -> tuple[bytes, int]:
    """An uncompressed RecordBatch of exactly ``batch_bytes`` bytes (records with a 16-byte key
    and a 200-byte value, the last one shortened to fit); returns ``(batch, record_count)``.

    :raises ValueError: ``batch_bytes`` too small for a batch of one record.
    """

    def build(count: int, last_value: int) -> bytes:
        records = [
            Record(
                offset_delta=i,
                timestamp_delta=i,
                key=b"gpu-%012d" % i,
                value=(_PATTERN * (size // len(_PATTERN) + 2))[i % 251 : i % 251 + size],
            )
            for i, size in enumerate([_VALUE_BYTES] * (count - 1) + [last_value])
        ]
        return build_batch(records, base_timestamp=base_timestamp)

    per_record = len(build(2, _VALUE_BYTES)) - len(build(1, _VALUE_BYTES))
    count = max(1, batch_bytes // per_record)
    last_value = _VALUE_BYTES
    # varint lengths grow with the offset and timestamp deltas and make the size a step
    # function of the last value: converge on the exact size, dropping records if needed
    seen: set[tuple[int, int]] = set()
    for _ in range(64):
        batch = build(count, last_value)
        value = last_value + batch_bytes - len(batch)
        if value == last_value:
            return batch, count
        seen.add((count, last_value))
        if (count, value) in seen and count > 1:  # straddling a varint step: one record less
            count -= 1
            last_value = value + per_record
        elif value >= 0:
            last_value = value
        elif count > 1:
            count = max(1, count + value // per_record)
            last_value = _VALUE_BYTES
        else:
            break
    raise ValueError(f"cannot build a batch of exactly {batch_bytes} bytes")


# -- measurements ---------------------------------------------------------------------------


def _clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _figures(batches: int, batch_bytes: int, elapsed: float) -> dict:
    return {
        "mb_per_s": round(batches * batch_bytes / elapsed / _MB, 1),
        "batches_per_s": round(batches / elapsed),
        "batches": batches,
        "seconds": round(elapsed, 3),
    }


def _raw_write(path: str, chunk: bytes, seconds: float, *, fsync: bool) -> dict:
    """``os.write`` ``chunk`` to a new file for ``seconds``, with an fsync after each write
    if ``fsync``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    write, sync, clock = os.write, os.fsync, time.perf_counter
    batches = 0
    try:
        start = clock()
        deadline = start + seconds
        while True:
            if write(fd, chunk) != len(chunk):
                raise CommandError(f"short write to {path}")
            if fsync:
                sync(fd)
            batches += 1
            if clock() >= deadline:
                break
        elapsed = clock() - start
    finally:
        os.close(fd)
        os.unlink(path)
    return _figures(batches, len(chunk), elapsed)


def _log_append(
    workdir: str, name: str, policy: FlushPolicy, batch: bytes, seconds: float, window: int
) -> dict:
    """Append ``batch`` to a new log with ``policy`` for ``seconds``.

    :param window: 0: never wait for durability; N: keep at most N ``durable`` futures
        outstanding, waiting for the oldest before appending once N are (the time includes
        waiting for the last ones).
    """
    fs = _CountingFileSystem()
    directory = os.path.join(workdir, f"{_TOPIC}-{name}-0")
    config = LogConfig(flush_policy=policy)
    log = PartitionLog.create(fs, directory, f"{_TOPIC}-{name}", 0, config, _clock_ms)
    flusher = Flusher(name)
    flusher.register(log)
    flusher.start()
    try:
        before = fs.counts.snapshot()
        rounds_before = flusher.flushes
        pending: collections.deque[Future] = collections.deque()
        append, durable, clock = log.append, log.durable, time.perf_counter
        batches = 0
        start = clock()
        deadline = start + seconds
        while True:
            if window and len(pending) >= window:
                pending.popleft().result()
            info = append(batch, leader_epoch=0)
            batches += 1
            if window:
                pending.append(durable(info.last_offset))
            if clock() >= deadline:
                break
        for future in pending:
            future.result()
        elapsed = clock() - start
        after = fs.counts.snapshot()
        rounds = flusher.flushes - rounds_before
        segments = len(log.segments)
    finally:
        flusher.stop()
        flusher.unregister(log)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)
    log_fsyncs = after["log"] - before["log"]
    index_fsyncs = after["index"] - before["index"]
    return {
        "flush_policy": policy.value,
        **_figures(batches, len(batch), elapsed),
        "segments": segments,
        "log_fsyncs": log_fsyncs,
        "fsync_calls": log_fsyncs + index_fsyncs,
        "flusher_rounds": rounds,
        "fsyncs_per_batch": round(log_fsyncs / batches, 4),
        "fsync_calls_per_batch": round((log_fsyncs + index_fsyncs) / batches, 4),
    }


# -- environment ----------------------------------------------------------------------------


def _filesystem_of(path: str) -> dict | None:
    """Mount point, type and device of the file system holding ``path`` (from /proc/mounts),
    or ``None`` where that is not available."""
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            lines = mounts.read().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount_point, fstype = fields[0], _unescape(fields[1]), fields[2]
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) >= len(best["mount_point"])):
            best = {"type": fstype, "mount_point": mount_point, "device": device}
    return best


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


# -- the run --------------------------------------------------------------------------------


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else 0.0


def run_log_bench(
    *,
    parent: str | None,
    seconds: float,
    batch_bytes: int = 16384,
    appenders: int = 8,
    progress=None,
) -> dict:
    """Run every measurement in a fresh directory under ``parent`` (default: the system
    temporary directory), remove it, and return the JSON-ready results."""

    def say(name: str) -> None:
        if progress is not None:
            print(f"measuring {name} ...", file=progress, flush=True)

    batch, record_count = build_bench_batch(batch_bytes, base_timestamp=_clock_ms())
    workdir = tempfile.mkdtemp(prefix="tmq-bench-log-", dir=parent)
    try:
        filesystem = _filesystem_of(workdir)
        baselines: dict[str, dict] = {}
        say("raw sequential write")
        raw_path = os.path.join(workdir, "raw.bin")
        baselines["raw_sequential_write"] = _raw_write(raw_path, batch, seconds, fsync=False)
        say("raw write+fsync")
        baselines["raw_write_fsync"] = _raw_write(raw_path, batch, seconds, fsync=True)
        raw_mb = baselines["raw_sequential_write"]["mb_per_s"]
        raw_fsync_rate = baselines["raw_write_fsync"]["batches_per_s"]

        measurements: list[tuple[str, FlushPolicy, int]] = [
            ("never", FlushPolicy.NEVER, 0),
            ("interval", FlushPolicy.INTERVAL, 0),
            ("always_1_appender", FlushPolicy.ALWAYS, 1),
            (f"always_{appenders}_appenders", FlushPolicy.ALWAYS, appenders),
        ]
        results: dict[str, dict] = {}
        for name, policy, window in measurements:
            say(f"log append, {name.replace('_', ' ')}")
            result = _log_append(workdir, name, policy, batch, seconds, window)
            result["appenders"] = max(1, window)
            result["ratio_to_raw_sequential_write"] = _ratio(result["mb_per_s"], raw_mb)
            if policy is FlushPolicy.ALWAYS:
                result["ratio_to_raw_write_fsync"] = _ratio(result["batches_per_s"], raw_fsync_rate)
            results[name] = result
        results["interval"]["flush_ms"] = LogConfig().flush_ms

        never = results["never"]
        floor = FLOORS["never_ratio_to_raw_sequential_write"]
        never["floor_ratio_to_raw_sequential_write"] = floor
        never["meets_floor"] = never["ratio_to_raw_sequential_write"] >= floor

        group = results[f"always_{appenders}_appenders"]
        one = results["always_1_appender"]
        group["ratio_to_one_fsync_per_batch"] = _ratio(group["batches_per_s"], one["batches_per_s"])
        floor = FLOORS["always_fsyncs_per_batch"]
        group["floor_fsyncs_per_batch"] = floor
        group["meets_floor"] = group["fsyncs_per_batch"] <= floor
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    return {
        "benchmark": "log",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "directory": workdir,
        "directory_removed": not os.path.exists(workdir),
        "filesystem": filesystem,
        "seconds": seconds,
        "batch_bytes": len(batch),
        "records_per_batch": record_count,
        "compression": "none",
        "segment_bytes": LogConfig().segment_bytes,
        "units": {
            "mb_per_s": "10**6 bytes per second",
            "fsyncs_per_batch": ".log fsyncs (commits) per appended batch",
            "fsync_calls_per_batch": "fsync calls on .log, .index and .timeindex per batch",
        },
        "baselines": baselines,
        "results": results,
        "meets_floors": all(entry.get("meets_floor", True) for entry in results.values()),
    }
