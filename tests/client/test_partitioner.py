"""murmur2 against Kafka's own vectors and kafka-python, and the partitioner built on it."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from tmq.client.partitioner import Partitioner, murmur2

# Apache Kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
KAFKA_UTILS_TEST_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


def _as_signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class Murmur2Tests:
    """The hash is Java's ``Utils.murmur2``, bit for bit."""

    @pytest.mark.parametrize(("data", "expected"), KAFKA_UTILS_TEST_VECTORS)
    def test_kafka_utils_test_vectors(self, data, expected):
        """Every vector of Kafka's UtilsTest.testMurmur2 hashes to Kafka's value."""
        assert murmur2(data) == expected

    @given(st.binary(max_size=70))
    def test_agrees_with_kafka_python(self, data):
        """Any byte string (every tail length 0-3) hashes as kafka-python's murmur2 does."""
        assert murmur2(data) == _as_signed(kafka_python_murmur2(data))

    def test_result_is_a_signed_int32(self):
        """The result is a Java int: negative values come back negative, never above 2**31."""
        values = [murmur2(bytes([i]) * i) for i in range(64)]
        assert all(-(2**31) <= v < 2**31 for v in values)
        assert any(v < 0 for v in values)


class PartitionerTests:
    """``murmur2_random``: keyed records by hash, unkeyed at random, keys cached."""

    def test_keyed_partition_is_to_positive_hash_modulo_count(self):
        """A key goes to ``(murmur2(key) & 0x7fffffff) % count``, as in Kafka's partitioner."""
        partitioner = Partitioner()
        for key, expected_hash in KAFKA_UTILS_TEST_VECTORS:
            for count in (1, 3, 8, 31):
                expected = (expected_hash & 0x7FFFFFFF) % count
                assert partitioner.partition(key, count) == expected

    def test_gpu_uuid_partitions_are_stable(self):
        """The same GPU UUID always lands in the same partition."""
        partitioner = Partitioner()
        key = b"GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
        first = partitioner.partition(key, 12)
        assert all(partitioner.partition(key, 12) == first for _ in range(10))
        assert first == (_as_signed(kafka_python_murmur2(key)) & 0x7FFFFFFF) % 12

    def test_null_key_is_random_over_all_partitions(self):
        """Records without a key are spread over every partition by the injected RNG."""
        partitioner = Partitioner(rng=random.Random(7))
        seen = {partitioner.partition(None, 4) for _ in range(200)}
        assert seen == {0, 1, 2, 3}
        again = Partitioner(rng=random.Random(7))
        replay = [again.partition(None, 4) for _ in range(5)]
        fresh = Partitioner(rng=random.Random(7))
        assert replay == [fresh.partition(None, 4) for _ in range(5)]

    def test_cache_remembers_keys_per_partition_count(self):
        """Each (key, count) pair is cached once; a count change is a different entry."""
        partitioner = Partitioner()
        for _ in range(3):
            partitioner.partition(b"GPU-a", 4)
            partitioner.partition(b"GPU-b", 4)
        assert partitioner.cached == 2
        partitioner.partition(b"GPU-a", 8)
        assert partitioner.cached == 3

    def test_cache_is_bounded_and_drops_the_oldest(self):
        """Past ``max_cached`` the oldest key is dropped; answers stay correct."""
        partitioner = Partitioner(max_cached=2)
        keys = [b"k1", b"k2", b"k3"]
        answers = [partitioner.partition(k, 5) for k in keys]
        assert partitioner.cached == 2
        assert [partitioner.partition(k, 5) for k in keys] == answers
        assert partitioner.cached == 2

    def test_no_partitions_is_an_error(self):
        """A partition count below one is refused."""
        with pytest.raises(ValueError):
            Partitioner().partition(b"k", 0)
