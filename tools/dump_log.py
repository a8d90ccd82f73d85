"""``tmq debug dump-log``: the record batches of log segments, as JSON lines.

``tmq debug dump-log PATH [--records]`` walks segment files with the scanner recovery uses
(``tmq.storage.scan.scan_batches``, in lenient mode) and prints one JSON object per line:

* one per batch, in file order::

      {"file", "position", "size", "base_offset", "last_offset", "count", "leader_epoch",
       "base_timestamp", "max_timestamp", "timestamp_type", "compression", "producer_id",
       "producer_epoch", "base_sequence", "is_transactional", "is_control", "crc_ok"}

  plus ``"problem"`` (a reason) when the batch breaks a rule of the scanner: a CRC mismatch, a
  records count that does not match its offsets, a baseOffset other than the one expected (the
  segment's base offset for the first batch, then the offset after the previous batch), or a
  leader epoch going down. ``timestamp_type`` is ``create_time`` or ``log_append_time``,
  ``compression`` is ``none``, ``gzip``, ``snappy``, ``lz4`` or ``zstd``.
* with ``--records``, each batch line also holds ``"records"``: a list of
  ``{"offset", "timestamp", "key", "value", "headers"}``, or ``"records_error"`` (a reason)
  instead when the records do not decode (bad CRC, corrupt compressed data). A key or value is a
  string when it is UTF-8, ``{"hex": ...}`` otherwise, ``null`` when null; ``headers`` is a list
  of ``{"key", "value"}``. In a LogAppendTime batch every record's timestamp is the batch's
  maxTimestamp, as in Kafka.
* one for the region where the walk stopped, if it stopped before the end of the file (a
  header that does not read, or a batch cut short)::

      {"file", "position", "corrupt": true, "reason", "remaining_bytes"}

  ``remaining_bytes`` counts the bytes from ``position`` to the end of the file: what recovery
  would truncate away.

PATH is a segment file, a partition directory (its ``*.log`` segments, in offset order) or a
data directory (each ``<topic>-<partition>`` directory in it, by topic then partition number).
A directory that holds neither segments nor partition directories is an error, as is a PATH
that cannot be read (exit status 1). Output stops quietly when stdout is closed early (``| head``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Iterator

from tmq.protocol.errors import ProtocolError
from tmq.protocol.framing import MAX_FRAME_BYTES
from tmq.protocol.records import (
    Record,
    RecordBatchHeader,
    TimestampType,
    batch_crc_ok,
    decode_batch,
)
from tmq.storage.files import File, FileSystem, OsFileSystem
from tmq.storage.names import LOG_SUFFIX, base_offset_of, parse_partition_dir
from tmq.storage.scan import Corruption, ScannedBatch, scan_batches

from .errors import CommandError

__all__ = ["add_parser", "dump_segment", "segment_paths"]

_EPILOG = """\
output, one JSON object per line:
  a batch:   file, position, size, base_offset, last_offset, count, leader_epoch,
             base_timestamp, max_timestamp, timestamp_type, compression, producer_id,
             producer_epoch, base_sequence, is_transactional, is_control, crc_ok,
             problem (only when the batch breaks a rule: CRC, offsets, leader epoch),
             records or records_error (only with --records)
  a record:  offset, timestamp, key, value, headers [{key, value}]; keys and values are
             strings when UTF-8, {"hex": ...} otherwise, null when null
  corrupt:   file, position, corrupt (true), reason, remaining_bytes (position to end of
             file); printed where the walk stops, e.g. at a batch cut short by a crash

examples:
  tmq debug dump-log /var/lib/tmq/gpu-3/00000000000000000000.log
  tmq debug dump-log /var/lib/tmq/gpu-3 --records | head
  tmq debug dump-log /var/lib/tmq | jq 'select(.corrupt or .crc_ok == false)'
"""


def add_parser(tools) -> None:
    """Add ``dump-log`` to the ``tmq debug`` subcommands ``tools``."""
    parser = tools.add_parser(
        "dump-log",
        help="print the record batches of log segments as JSON lines",
        description=(
            "Print the record batches of log segments as JSON lines, one per batch: offsets,\n"
            "count, position and size in the file, leader epoch, timestamps, codec, producer\n"
            "fields and whether the CRC matches. A corrupt region (a batch cut short, a header\n"
            "that does not read) is reported as a line of its own, not crashed on."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "path",
        metavar="PATH",
        help=(
            "a segment file (<base offset>.log), a partition directory (<topic>-<partition>: "
            "its segments in offset order) or a data directory (all its partitions)"
        ),
    )
    parser.add_argument(
        "--records",
        action="store_true",
        help="also decode and print the records of each batch",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    fs = OsFileSystem()
    paths = segment_paths(fs, args.path)
    try:
        for path in paths:
            for line in _dump_path(fs, path, records=args.records):
                sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
    return 0


def segment_paths(fs: FileSystem, path: str) -> list[str]:
    """The segment files ``path`` names, in the order to dump them.

    A file is itself. A directory holding ``*.log`` files is a partition directory: its
    segments, sorted by name (20-digit base offsets sort numerically; names that are not a
    base offset come last). Otherwise it is a data directory: the segments of each
    ``<topic>-<partition>`` directory in it, by topic, then partition number.

    :raises CommandError: ``path`` does not exist or cannot be listed, or is a directory with
        neither segments nor partition directories.
    """
    if not fs.exists(path):
        raise CommandError(f"{path}: no such file or directory")
    if not os.path.isdir(path):
        return [path]
    names = _listdir(fs, path)
    segments = _segments_in(path, names)
    if segments:
        return segments
    partitions = sorted(
        (parsed, name)
        for name in names
        if (parsed := parse_partition_dir(name)) is not None
        and os.path.isdir(os.path.join(path, name))
    )
    if not partitions:
        raise CommandError(
            f"{path} holds no segment ({LOG_SUFFIX}) files and no <topic>-<partition> directories"
        )
    return [
        segment
        for _, name in partitions
        for segment in _segments_in(
            os.path.join(path, name), _listdir(fs, os.path.join(path, name))
        )
    ]


def _listdir(fs: FileSystem, path: str) -> list[str]:
    try:
        return fs.listdir(path)
    except OSError as error:
        raise CommandError(f"cannot list {path}: {error.strerror}") from None


def _segments_in(directory: str, names: list[str]) -> list[str]:
    """The ``*.log`` files among ``names`` of ``directory``, segments in offset order first."""
    logs = [
        name
        for name in names
        if name.endswith(LOG_SUFFIX) and os.path.isfile(os.path.join(directory, name))
    ]
    logs.sort(key=lambda name: (base_offset_of(name) is None, name))
    return [os.path.join(directory, name) for name in logs]


def _dump_path(fs: FileSystem, path: str, *, records: bool) -> Iterator[dict]:
    try:
        file = fs.open(path, writable=False)
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None
    try:
        yield from dump_segment(file, records=records)
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None
    finally:
        file.close()


def dump_segment(file: File, *, records: bool = False) -> Iterator[dict]:
    """One JSON-ready dict per batch of the segment ``file``, then one for the corrupt region
    where the walk stopped, if it stopped early (the line formats of the module docstring).

    The first batch is expected at the base offset the file's name encodes (any offset when
    the name is not a segment name).

    :param records: decode the records of each batch into the batch's dict.
    :raises OSError: reading the file failed.
    """
    results = scan_batches(
        file,
        expected_offset=base_offset_of(os.path.basename(file.path)),
        max_batch_bytes=MAX_FRAME_BYTES,
        keep_data=True,
        lenient=True,
    )
    for result in results:
        if isinstance(result, Corruption):
            yield {
                "file": file.path,
                "position": result.position,
                "corrupt": True,
                "reason": result.reason,
                "remaining_bytes": file.size - result.position,
            }
        else:
            yield _batch_line(file.path, result, records=records)


def _batch_line(path: str, batch: ScannedBatch, *, records: bool) -> dict:
    header = batch.header
    line = {
        "file": path,
        "position": batch.position,
        "size": header.size,
        "base_offset": header.base_offset,
        "last_offset": header.last_offset,
        "count": header.records_count,
        "leader_epoch": header.partition_leader_epoch,
        "base_timestamp": header.base_timestamp,
        "max_timestamp": header.max_timestamp,
        "timestamp_type": header.timestamp_type.name.lower(),
        "compression": header.compression.name.lower(),
        "producer_id": header.producer_id,
        "producer_epoch": header.producer_epoch,
        "base_sequence": header.base_sequence,
        "is_transactional": header.is_transactional,
        "is_control": header.is_control,
        "crc_ok": batch_crc_ok(batch.data, 0, header),
    }
    if batch.problem is not None:
        line["problem"] = batch.problem
    if records:
        try:
            _, decoded = decode_batch(batch.data, max_batch_size=MAX_FRAME_BYTES)
        except ProtocolError as error:
            line["records_error"] = str(error)
        else:
            line["records"] = [_record_line(header, record) for record in decoded]
    return line


def _record_line(header: RecordBatchHeader, record: Record) -> dict:
    if header.timestamp_type is TimestampType.LOG_APPEND_TIME:
        timestamp = header.max_timestamp
    else:
        timestamp = header.base_timestamp + record.timestamp_delta
    return {
        "offset": header.base_offset + record.offset_delta,
        "timestamp": timestamp,
        "key": _text_or_hex(record.key),
        "value": _text_or_hex(record.value),
        "headers": [{"key": key, "value": _text_or_hex(value)} for key, value in record.headers],
    }


def _text_or_hex(value: bytes | None) -> str | dict | None:
    """``value`` as a string if it is UTF-8, else ``{"hex": ...}``; ``None`` stays ``None``."""
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return {"hex": value.hex()}


def _discard_stdout() -> None:
    """Point stdout's descriptor at /dev/null after the reader went away, so that the final
    flush of the lines still buffered does not fail again at exit. A stdout without a
    descriptor (one a caller substituted) is left alone."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)
