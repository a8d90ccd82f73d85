"""What a broker can know about its own etcd lease (DESIGN §5), sans-IO.

etcd decides when a lease expires, and a broker that is paused (SIGSTOP, a long GC, a stalled
disk) or cut off cannot hear that it did. So a broker keeps a conservative deadline of its
own: a keepalive *sent* at monotonic time ``t`` and answered proves the lease was alive at
``t``, so etcd cannot have expired it before ``t + ttl``; the broker trusts it until
``t + ttl - margin``. Every leader action (append, high watermark advance, fetch answer)
checks ``valid(now)`` first, synchronously: the check still fails the instant a paused
process resumes past its deadline, before it can act on stale leadership.

Answers may arrive late or out of order: a deadline only moves forward, and an answer is
credited to the time its keepalive was sent, never to the time it arrived.
"""

from __future__ import annotations

import itertools

__all__ = ["LeaseDeadline"]


class LeaseDeadline:
    """The deadline of one lease (a new lease, after re-registration, gets a new object).

    :param ttl: the lease's time to live, seconds.
    :param margin: subtracted from every deadline (clock drift, etcd's own timing).
    """

    def __init__(self, ttl: float, margin: float = 1.0):
        if not 0 <= margin < ttl:
            raise ValueError(f"the margin {margin} must be below the TTL {ttl}")
        self.ttl = ttl
        self.margin = margin
        self.deadline = float("-inf")
        self._sent: dict[int, float] = {}
        self._ids = itertools.count()

    def granted(self, requested_at: float) -> None:
        """The lease was granted by a request sent at ``requested_at``."""
        self._extend(requested_at)

    def sending(self, now: float) -> int:
        """A keepalive goes out now; returns its token for ``answered``."""
        token = next(self._ids)
        self._sent[token] = now
        return token

    def answered(self, token: int) -> None:
        """The keepalive ``token`` was answered: the lease lived when it was sent."""
        sent = self._sent.pop(token, None)
        if sent is not None:
            self._extend(sent)
        # older keepalives still unanswered prove less than this one: forget them
        for older in [t for t in self._sent if t < token]:
            del self._sent[older]

    def lost(self, token: int) -> None:
        """The keepalive ``token`` failed or timed out."""
        self._sent.pop(token, None)

    def _extend(self, sent_at: float) -> None:
        self.deadline = max(self.deadline, sent_at + self.ttl - self.margin)

    def valid(self, now: float) -> bool:
        """Whether the broker may still act on what its lease gives it (leadership)."""
        return now < self.deadline

    def remaining(self, now: float) -> float:
        return self.deadline - now
