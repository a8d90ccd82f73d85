"""File and directory names of the log, in one place (Kafka's layout).

::

    <data_dir>/
        <topic>-<partition>/
            00000000000000000000.log         record batches, as received (offsets rewritten)
            00000000000000000000.index       sparse offset index, 8-byte entries
            00000000000000000000.timeindex   sparse time index, 12-byte entries
            leader-epoch-checkpoint          epoch -> start offset
        recovery-point-offset-checkpoint
        replication-offset-checkpoint        high watermarks
        log-start-offset-checkpoint
        .tmq_cleanshutdown                   present only after a clean shutdown

A segment's files are named by its base offset, zero-padded to 20 digits so that ``ls`` sorts
them numerically.
"""

from __future__ import annotations

import re

__all__ = [
    "CLEAN_SHUTDOWN",
    "DELETED_SUFFIX",
    "INDEX_SUFFIX",
    "LEADER_EPOCH_CHECKPOINT",
    "LOG_START_OFFSET_CHECKPOINT",
    "LOG_SUFFIX",
    "RECOVERY_POINT_CHECKPOINT",
    "REPLICATION_OFFSET_CHECKPOINT",
    "TIME_INDEX_SUFFIX",
    "TMP_SUFFIX",
    "base_offset_of",
    "parse_partition_dir",
    "partition_dir_name",
    "segment_file",
]

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
TMP_SUFFIX = ".tmp"
DELETED_SUFFIX = ".deleted"
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"
RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
REPLICATION_OFFSET_CHECKPOINT = "replication-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
CLEAN_SHUTDOWN = ".tmq_cleanshutdown"

_SEGMENT_NAME = re.compile(r"^(\d{20})\.(log|index|timeindex)$")
_PARTITION_DIR = re.compile(r"^(.+)-(\d+)$")


def segment_file(base_offset: int, suffix: str) -> str:
    """``segment_file(42, ".log")`` -> ``"00000000000000000042.log"``."""
    return f"{base_offset:020d}{suffix}"


def base_offset_of(file_name: str) -> int | None:
    """The base offset a segment file name encodes, or ``None`` for any other name."""
    match = _SEGMENT_NAME.match(file_name)
    return int(match.group(1)) if match else None


def partition_dir_name(topic: str, partition: int) -> str:
    """``<topic>-<partition>``."""
    return f"{topic}-{partition}"


def parse_partition_dir(name: str) -> tuple[str, int] | None:
    """``(topic, partition)`` from a partition directory name, or ``None``."""
    match = _PARTITION_DIR.match(name)
    if match is None:
        return None
    return match.group(1), int(match.group(2))
