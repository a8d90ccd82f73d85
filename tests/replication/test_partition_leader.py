"""``tmq.replication.leader.PartitionLeader``: the high watermark over the maximal ISR, the
min.insync gate, ISR expansion and shrink by Kafka's caught-up rules, by example and by
property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.replication.leader import PartitionLeader, Report

LAG = 10_000


def leader(isr=(1, 2, 3), leo=10, hw=10, min_insync=2, start=10, now=0):
    return PartitionLeader(
        broker_id=1,
        replicas=(1, 2, 3),
        isr=isr,
        epoch_start_offset=start,
        log_end_offset=leo,
        high_watermark=hw,
        min_insync=min_insync,
        lag_time_ms=LAG,
        now_ms=now,
    )


class HighWatermarkTests:
    def test_min_over_the_isr(self):
        """The HW is the smallest LEO over the ISR, leader included."""
        p = leader()
        p.appended(20, 0)
        assert p.report(2, 15, 1) == Report(False, None)  # 3 has not reported
        assert p.report(3, 18, 2) == Report(True, None)
        assert p.high_watermark == 15
        assert p.report(2, 20, 3).high_watermark_moved and p.high_watermark == 18

    def test_an_isr_of_one_starts_at_the_log_end(self):
        """A leader alone in its ISR (min.insync 1) starts with HW = LEO even from a stale
        checkpoint, so a retried batch answered as a duplicate is committed at once."""
        assert leader(isr=(1,), leo=30, hw=4, min_insync=1).high_watermark == 30
        assert leader(isr=(1,), leo=30, hw=4, min_insync=2).high_watermark == 4

    def test_unknown_follower_holds_it(self):
        """Until every ISR follower reports in the epoch, the HW stays."""
        p = leader()
        p.appended(30, 0)
        p.report(2, 30, 1)
        assert p.high_watermark == 10

    def test_never_backwards(self):
        """A lower report (a follower that truncated) does not move the HW back."""
        p = leader()
        p.appended(20, 0)
        p.report(2, 20, 1)
        p.report(3, 20, 1)
        p.report(3, 12, 2)
        assert p.high_watermark == 20

    def test_min_insync_gate(self):
        """With an ISR smaller than min.insync.replicas the HW does not move, and acks=all
        may not append."""
        p = leader(isr=(1,), min_insync=2)
        assert not p.enough_replicas
        assert not p.appended(20, 0) and p.high_watermark == 10
        q = leader(isr=(1,), min_insync=1)
        assert q.enough_replicas and q.appended(20, 0) and q.high_watermark == 20

    def test_reports_beyond_the_leader_or_from_strangers_refused(self):
        """A follower cannot be ahead of its leader; a non-replica is no follower."""
        p = leader()
        with pytest.raises(ValueError):
            p.report(2, 11, 1)
        with pytest.raises(ValueError):
            p.report(9, 1, 1)


class IsrTests:
    def test_expansion_counts_at_once(self):
        """A follower at the HW and past the epoch start joins: the expansion is proposed and
        counts for the HW before its write commits (KIP-497)."""
        p = leader(isr=(1, 2))
        p.appended(20, 0)
        p.report(2, 20, 1)
        assert p.high_watermark == 20
        p.appended(25, 0)
        report = p.report(3, 20, 2)
        assert report.expand_to == (1, 2, 3) and p.maximal_isr == (1, 2, 3)
        p.report(2, 25, 3)
        assert p.high_watermark == 20  # 3 now counts, at 20
        p.isr_committed((1, 2, 3))
        assert p.isr == (1, 2, 3) and p.maximal_isr == (1, 2, 3)

    def test_no_expansion_before_the_epoch_start(self):
        """A follower below the current epoch's start offset does not join, even at the HW."""
        p = leader(isr=(1, 2), leo=30, hw=5, start=30)
        assert p.report(3, 10, 1).expand_to is None

    def test_no_expansion_below_the_hw(self):
        """A follower below the HW does not join."""
        p = leader(isr=(1, 2), leo=20, hw=20, start=0)
        assert p.report(3, 19, 1).expand_to is None

    def test_failed_expansion_stops_counting(self):
        """When the expansion's write loses, the follower no longer holds the HW back."""
        p = leader(isr=(1, 2), leo=20, hw=10, start=0)
        p.report(3, 12, 1)
        p.report(2, 20, 1)
        assert p.high_watermark == 12
        p.expansion_failed()
        assert p.maximal_isr == (1, 2)
        assert p.report(2, 20, 2).high_watermark_moved and p.high_watermark == 20

    def test_stuck_follower_lags_after_the_lag_time(self):
        """A follower that stops reporting while the leader appends lags once lag time has
        passed since it was last caught up (at the append it missed); an idle, caught-up
        follower never does."""
        p = leader(now=0)
        p.report(2, 10, 0)
        p.report(3, 10, 0)
        assert p.lagging(LAG * 5) == ()  # nothing appended: both caught up
        p.appended(15, 50)
        p.report(2, 15, 100)
        assert p.lagging(LAG + 50) == ()
        assert p.lagging(LAG + 51) == (3,)

    def test_an_idle_follower_is_caught_up_until_the_next_append(self):
        """Followers level with the leader through a long idle spell (no reports: pushes only
        go out with data) count as caught up at the append that ends it, not at their last
        report."""
        p = leader(now=0)
        p.report(2, 10, 0)
        p.report(3, 10, 0)
        p.appended(15, 100_000)
        assert p.lagging(100_000 + LAG) == ()
        assert p.lagging(100_000 + LAG + 1) == (2, 3)

    def test_slow_follower_caught_up_at_its_previous_report(self):
        """A follower that reaches, at each report, the leader's LEO of its previous report
        is caught up as of that previous report (Replica.updateFetchState)."""
        p = leader(now=0)
        p.appended(20, 0)
        p.report(3, 10, 1_000)  # behind; the leader was at 20
        p.appended(30, 2_000)
        p.report(3, 20, 8_000)  # reached 20: caught up as of 1_000
        p.report(2, 30, 8_000)
        assert p.followers[3].last_caught_up_ms == 1_000
        assert p.lagging(11_000) == ()
        assert p.lagging(11_001) == (3,)

    def test_shrink_counts_only_once_committed(self):
        """Dropping a lagging follower lets the HW move only after the write commits."""
        p = leader()
        p.appended(20, 0)
        p.report(2, 20, 1)
        assert p.high_watermark == 10  # 3 never reported
        assert p.isr_committed((1, 2)) and p.high_watermark == 20


@st.composite
def scripts(draw):
    steps = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("append"), st.integers(0, 5)),
                st.tuples(st.just("report"), st.sampled_from([2, 3]), st.integers(0, 40)),
                st.tuples(st.just("commit"), st.sampled_from([(1,), (1, 2), (1, 3), (1, 2, 3)])),
                st.tuples(st.just("fail"), st.just(0)),
            ),
            max_size=40,
        )
    )
    return draw(st.sampled_from([(1,), (1, 2), (1, 2, 3)])), draw(st.integers(1, 3)), steps


class PropertyTests:
    @given(scripts())
    def test_hw_monotonic_and_bounded_by_the_maximal_isr(self, script):
        """Whatever happens, the HW never decreases and never passes the leader's LEO; and
        whenever it moves, the maximal ISR has min.insync members, each of which reported a
        LEO at least as high."""
        isr, min_insync, steps = script
        p = leader(isr=isr, leo=0, hw=0, start=0, min_insync=min_insync)
        leo, now, previous = 0, 0, 0
        for step in steps:
            now += 500
            if step[0] == "append":
                leo += step[1]
                p.appended(leo, now)
            elif step[0] == "report":
                p.report(step[1], min(step[2], leo), now)
            elif step[0] == "commit":
                p.isr_committed(step[1])
            else:
                p.expansion_failed()
            assert previous <= p.high_watermark <= leo
            if p.high_watermark > previous:
                assert len(p.maximal_isr) >= min_insync
                for member in p.maximal_isr:
                    if member != 1:
                        assert p.followers[member].log_end_offset >= p.high_watermark
            previous = p.high_watermark
