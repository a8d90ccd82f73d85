"""The fair-share rules of partition ownership (sans-IO)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.sink.ownership import fair_share, lock_key, plan


class FairShareTests:
    @pytest.mark.parametrize(
        ("partitions", "instances", "share"),
        [(6, 1, 6), (6, 2, 3), (6, 4, 2), (6, 6, 1), (6, 7, 1), (7, 2, 4), (0, 3, 0), (6, 0, 6)],
    )
    def test_is_the_ceiling_of_partitions_per_instance(self, partitions, instances, share):
        assert fair_share(partitions, instances) == share


class LockKeyTests:
    def test_keys_are_signed_32_bit_and_the_partition(self):
        for group in ("g", "tmq-sink", "x" * 200):
            key, partition = lock_key(group, "gpu", 5)
            assert -(2**31) <= key < 2**31
            assert partition == 5

    def test_groups_and_topics_get_different_keys(self):
        assert lock_key("a", "gpu", 0) != lock_key("b", "gpu", 0)
        assert lock_key("a", "gpu", 0) != lock_key("a", "gpu2", 0)
        # the separator keeps ("ab", "c") and ("a", "bc") apart
        assert lock_key("ab", "c", 0) != lock_key("a", "bc", 0)


class PlanTests:
    def test_nothing_to_do_at_the_share(self):
        assert plan([0, 1, 2], 6, 3, "i") == ([], [])

    def test_surplus_is_released_highest_first(self):
        change = plan([0, 1, 2, 3, 4, 5], 6, 3, "i")
        assert change.release == [3, 4, 5]
        assert change.acquire == []

    def test_partitions_beyond_the_topic_are_released(self):
        assert plan([1, 7], 6, 3, "i").release == [7]

    def test_missing_partitions_are_all_candidates_in_a_rotation(self):
        change = plan([2], 6, 3, "instance-a")
        assert change.release == []
        assert sorted(change.acquire) == [0, 1, 3, 4, 5]
        start = change.acquire[0]
        rotation = [(start + i) % 6 for i in range(6)]
        assert change.acquire == [p for p in rotation if p != 2]

    def test_instances_start_their_rotations_in_different_places(self):
        starts = {plan([], 64, 64, f"sink-{i}").acquire[0] for i in range(16)}
        assert len(starts) > 8

    @given(
        owned=st.sets(st.integers(0, 20)),
        partitions=st.integers(0, 16),
        instances=st.integers(1, 8),
        name=st.text(max_size=8),
    )
    def test_after_the_plan_an_instance_holds_at_most_its_share(
        self, owned, partitions, instances, name
    ):
        share = fair_share(partitions, instances)
        change = plan(owned, partitions, share, name)
        kept = owned - set(change.release)
        assert len(kept) <= share
        assert all(p < partitions for p in kept)
        assert set(change.acquire).isdisjoint(kept)
        assert set(change.release) <= owned
        if len(kept) < share:
            assert set(change.acquire) == set(range(partitions)) - kept
