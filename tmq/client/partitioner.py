"""Choosing a partition for a record: librdkafka's ``murmur2_random``.

A record with a key goes to ``toPositive(murmur2(key)) % partitions``, where ``murmur2`` is
Kafka's Java ``Utils.murmur2`` bit for bit and ``toPositive(h)`` is ``h & 0x7fffffff`` — the
partition the Java client, kafka-python and librdkafka's ``murmur2``/``murmur2_random``
partitioners pick for the same key, so records written by tmq and by those clients for one GPU
land in the same partition. A record without a key goes to a random partition.
"""

from __future__ import annotations

import random
import struct

__all__ = ["Partitioner", "murmur2"]

_SEED = 0x9747B28C
_MULTIPLIER = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORD = struct.Struct("<I")  # Java assembles each 4-byte block little-endian


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: the 32-bit MurmurHash2 of ``data`` with Kafka's seed.

    :returns: the hash as Java's signed ``int``, in ``[-2**31, 2**31)``.
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length & ~3
    with memoryview(data) as view:
        for (k,) in _WORD.iter_unpack(view[:whole]):
            k = (k * _MULTIPLIER) & _MASK
            k ^= k >> 24
            k = (k * _MULTIPLIER) & _MASK
            h = ((h * _MULTIPLIER) & _MASK) ^ k
    tail = length & 3
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _MULTIPLIER) & _MASK
    h ^= h >> 13
    h = (h * _MULTIPLIER) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


class Partitioner:
    """Picks the partition of a record (``murmur2_random``), remembering recent keys.

    Telemetry keys are GPU UUIDs, a small set repeated on every scrape, so the partition of each
    (key, partition count) is cached; past ``max_cached`` entries the oldest is dropped.

    :param rng: the source of random partitions for records without a key.
    :param max_cached: how many (key, partition count) pairs to remember.
    """

    def __init__(self, rng: random.Random | None = None, max_cached: int = 4096):
        if max_cached < 1:
            raise ValueError("max_cached must be at least 1")
        self._rng = rng if rng is not None else random.Random()
        self._max_cached = max_cached
        self._cache: dict[tuple[bytes, int], int] = {}

    @property
    def cached(self) -> int:
        """How many (key, partition count) pairs are cached."""
        return len(self._cache)

    def partition(self, key: bytes | None, partition_count: int) -> int:
        """Return the partition, in ``[0, partition_count)``, for a record with ``key``.

        :raises ValueError: ``partition_count`` is not positive.
        """
        if partition_count < 1:
            raise ValueError(f"a topic has at least one partition, not {partition_count}")
        if key is None:
            return self._rng.randrange(partition_count)
        entry = (key, partition_count)
        partition = self._cache.get(entry)
        if partition is None:
            partition = (murmur2(key) & 0x7FFFFFFF) % partition_count
            if len(self._cache) >= self._max_cached:
                del self._cache[next(iter(self._cache))]
            self._cache[entry] = partition
        return partition
