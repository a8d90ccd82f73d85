"""``LeaderStream``: pushes within the follower's window, at least one batch when nothing is
in flight, cumulative acks, out-of-step acks, high-watermark-only pushes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.replication.leader_stream import LeaderStream, Push, StreamOutOfStep


class FakeLog:
    """Batches of given sizes, one offset each: ``read`` returns whole batches from an
    offset, as many as fit in ``max_bytes`` (the first one even if it does not, when
    ``at_least_one``)."""

    def __init__(self, sizes):
        self.sizes = list(sizes)

    def read(self, offset, max_bytes, at_least_one):
        if offset >= len(self.sizes):
            return None
        end, total = offset, 0
        while end < len(self.sizes) and total + self.sizes[end] <= max_bytes:
            total += self.sizes[end]
            end += 1
        if end == offset:
            if not at_least_one:
                return None
            total, end = self.sizes[offset], offset + 1
        return b"x" * total, end


def reader(logs):
    return lambda partition, offset, max_bytes, one: logs[partition].read(offset, max_bytes, one)


class WindowTests:
    def test_pushes_fill_the_window(self):
        """With a window of 250 bytes and 100-byte batches, two batches go out; an ack frees
        room for more."""
        logs = {"p": FakeLog([100] * 5)}
        stream = LeaderStream(2, 250)
        stream.subscribe("p", 0)
        assert stream.pushes(reader(logs)) == [Push("p", b"x" * 200, 2)]
        assert stream.pushes(reader(logs)) == []
        stream.acked("p", 2)
        assert stream.pushes(reader(logs)) == [Push("p", b"x" * 200, 4)]

    def test_a_batch_bigger_than_the_window_still_goes(self):
        """With nothing in flight one batch goes out even if it exceeds the window."""
        logs = {"p": FakeLog([1000, 10])}
        stream = LeaderStream(2, 100)
        stream.subscribe("p", 0)
        assert stream.pushes(reader(logs)) == [Push("p", b"x" * 1000, 1)]
        assert stream.pushes(reader(logs)) == []
        stream.acked("p", 1)
        assert stream.pushes(reader(logs)) == [Push("p", b"x" * 10, 2)]

    def test_partitions_share_the_window(self):
        """Several partitions draw on one window: what does not fit waits for acks."""
        logs = {"a": FakeLog([60, 60]), "b": FakeLog([30, 30])}
        stream = LeaderStream(2, 100)
        stream.subscribe("a", 0)
        stream.subscribe("b", 0)
        pushes = stream.pushes(reader(logs))
        assert [(p.partition, p.next_offset) for p in pushes] == [("a", 1), ("b", 1)]
        assert stream.in_flight_bytes == 90 and stream.pushes(reader(logs)) == []
        stream.acked("a", 1)
        pushes = stream.pushes(reader(logs))
        assert [(p.partition, p.next_offset) for p in pushes] == [("a", 2)]

    def test_acks_are_cumulative(self):
        """An ack frees every push ending at or before it."""
        logs = {"p": FakeLog([10] * 6)}
        stream = LeaderStream(2, 20)
        stream.subscribe("p", 0)
        stream.pushes(reader(logs))  # offsets 0-1
        stream.acked("p", 1)  # covers no whole push
        assert stream.in_flight_bytes == 20
        stream.acked("p", 2)
        stream.pushes(reader(logs))  # 2-3
        assert stream.pushes(reader(logs)) == []
        stream.acked("p", 4)
        assert stream.in_flight_bytes == 0

    def test_out_of_step_acks(self):
        """An ack behind an earlier one (the follower lost data) or beyond what was pushed
        is StreamOutOfStep; an ack for an unsubscribed partition is ignored."""
        logs = {"p": FakeLog([10] * 3)}
        stream = LeaderStream(2, 100)
        stream.subscribe("p", 0)
        stream.pushes(reader(logs))
        stream.acked("p", 2)
        with pytest.raises(StreamOutOfStep):
            stream.acked("p", 1)
        with pytest.raises(StreamOutOfStep):
            stream.acked("p", 4)
        stream.unsubscribe("p")
        stream.acked("p", 9)

    def test_subscribe_again_resets(self):
        """A new subscription pushes from its own offset and forgets what was in flight."""
        logs = {"p": FakeLog([10] * 4)}
        stream = LeaderStream(2, 15)
        stream.subscribe("p", 0)
        stream.pushes(reader(logs))
        stream.subscribe("p", 2)
        assert stream.in_flight_bytes == 0
        assert stream.pushes(reader(logs)) == [Push("p", b"x" * 10, 3)]

    def test_high_watermark_only_pushes(self):
        """A moved HW is reported once per change, only for subscribed partitions."""
        stream = LeaderStream(2, 100)
        stream.subscribe("p", 0)
        assert stream.hw_pushes({"p": 5, "q": 7}) == ["p"]
        assert stream.hw_pushes({"p": 5}) == []
        stream.heard("p", 6)
        assert stream.hw_pushes({"p": 6}) == []
        assert stream.hw_pushes({"p": 8}) == ["p"]

    def test_window_must_be_positive(self):
        """A window of 0 bytes could never push: refused."""
        with pytest.raises(ValueError):
            LeaderStream(2, 0)

    @given(
        st.lists(st.integers(1, 300), min_size=1, max_size=30),
        st.integers(1, 500),
        st.lists(st.integers(0, 3), max_size=60),
    )
    def test_everything_arrives_in_order_within_the_window(self, sizes, window, acks):
        """Pushing and acknowledging in any rhythm delivers every batch once, in order, and
        never has more in flight than the window (or one batch bigger than it)."""
        logs = {"p": FakeLog(sizes)}
        stream = LeaderStream(2, window)
        stream.subscribe("p", 0)
        delivered, follower_leo = 0, 0
        for lag in [*acks, *[0] * (len(sizes) + 1)]:
            for push in stream.pushes(reader(logs)):
                assert push.next_offset > delivered
                delivered = push.next_offset
            assert stream.in_flight_bytes <= max(window, max(sizes))
            follower_leo = max(follower_leo, delivered - lag)
            stream.acked("p", follower_leo)
        assert delivered == len(sizes)
