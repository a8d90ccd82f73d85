"""Which partitions a sink instance should hold: the sans-IO rules of the fair share.

Several sink instances of one consumer group split a topic's partitions. Each partition is
owned by at most one instance, proven by a PostgreSQL advisory lock held on that instance's
dedicated connection (``lock_key``); the offset fence in every write transaction makes a
stale owner harmless, the lock only keeps instances from tripping over each other.

Every instance heartbeats a row in ``sink_instances`` and counts the live rows, N. With P
partitions, an instance holds at most ``fair_share(P, N)`` = ceil(P / N): when it holds more
it releases the surplus (its highest partitions), when it holds fewer it tries the locks of
the partitions it lacks, starting from a point that depends on its instance id so that
instances starting together try different partitions first.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["OwnershipPlan", "fair_share", "lock_key", "plan"]


def fair_share(partitions: int, instances: int) -> int:
    """The most partitions one of ``instances`` live instances may hold: ceil(P / N)."""
    return -(-partitions // max(instances, 1))


def lock_key(group: str, topic: str, partition: int) -> tuple[int, int]:
    """The two signed 32-bit keys of ``pg_try_advisory_lock(key1, key2)`` for a partition:
    the CRC-32 of ``group NUL topic``, and the partition number."""
    digest = zlib.crc32(f"{group}\0{topic}".encode())
    return digest - (1 << 32) if digest >= 1 << 31 else digest, partition


class OwnershipPlan(NamedTuple):
    """What to change: partitions to release, and partitions to try to lock, in order."""

    release: list[int]
    acquire: list[int]


def plan(owned: Iterable[int], partitions: int, share: int, instance_id: str) -> OwnershipPlan:
    """The change that brings the ``owned`` partitions (of ``partitions``) to ``share``.

    Partitions at or beyond ``partitions`` (the topic shrank, which Kafka forbids, or the
    metadata is stale) are released first. ``acquire`` lists every partition not owned, in
    the instance's own rotation: the caller locks them in that order until it holds
    ``share``, since some may be held by others.
    """
    held = sorted(set(owned))
    release = [p for p in held if p >= partitions]
    kept = [p for p in held if p < partitions]
    if len(kept) > share:
        release += kept[share:]
        kept = kept[:share]
    if len(kept) == share:
        return OwnershipPlan(release, [])
    start = zlib.crc32(instance_id.encode()) % partitions if partitions else 0
    rotation = [(start + i) % partitions for i in range(partitions)]
    return OwnershipPlan(release, [p for p in rotation if p not in kept])
