"""``LeaseDeadline``: a broker's own, conservative view of its etcd lease."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.cluster.lease import LeaseDeadline


class LeaseDeadlineTests:
    def test_no_lease_no_validity(self):
        """Before the grant the broker may not lead."""
        assert not LeaseDeadline(6).valid(0)

    def test_grant_and_keepalives_extend_from_the_send_time(self):
        """A grant requested at 10 with TTL 6 and margin 1 holds until 15; a keepalive sent
        at 12 and answered (whenever) holds until 17."""
        lease = LeaseDeadline(6, margin=1)
        lease.granted(10)
        assert lease.valid(14.9) and not lease.valid(15)
        token = lease.sending(12)
        lease.answered(token)
        assert lease.deadline == 17

    def test_paused_broker_is_invalid_on_resume(self):
        """A broker paused past its deadline finds itself invalid at once when it resumes,
        even if a late answer to an old keepalive arrives then."""
        lease = LeaseDeadline(6, margin=1)
        lease.granted(0)
        token = lease.sending(2)
        # paused until 30; the answer to the keepalive of 2 arrives now
        lease.answered(token)
        assert not lease.valid(30)

    def test_deadline_never_moves_back(self):
        """An answer to an older keepalive, after a newer one's, changes nothing."""
        lease = LeaseDeadline(6, margin=1)
        first, second = lease.sending(1), lease.sending(3)
        lease.answered(second)
        lease.answered(first)
        assert lease.deadline == 8

    def test_lost_keepalive_extends_nothing(self):
        """A failed keepalive leaves the deadline where it was."""
        lease = LeaseDeadline(6, margin=1)
        lease.granted(0)
        token = lease.sending(4)
        lease.lost(token)
        lease.answered(token)
        assert lease.deadline == 5

    def test_margin_must_leave_time(self):
        """A margin at or above the TTL, or negative, is refused."""
        for margin in (6, 7, -1):
            with pytest.raises(ValueError):
                LeaseDeadline(6, margin=margin)

    @given(st.lists(st.tuples(st.floats(0, 100), st.booleans()), min_size=1, max_size=20))
    def test_deadline_is_bounded_by_the_latest_answered_send(self, keepalives):
        """Whatever is answered in whatever order, the deadline is exactly the latest send
        time among answered keepalives plus TTL minus margin, or -inf with none."""
        lease = LeaseDeadline(6, margin=1)
        sent = sorted(keepalives)
        tokens = [(lease.sending(at), at, answered) for at, answered in sent]
        answered_at = [at for _, at, answered in tokens if answered]
        for token, _, answered in reversed(tokens):
            if answered:
                lease.answered(token)
        expected = max(answered_at) + 6 - 1 if answered_at else float("-inf")
        assert lease.deadline == expected
