"""How far a follower truncates its log before following a leader (KIP-101, KIP-279).

A follower must not keep records its new leader does not have: it asks the leader for the end
of its own latest epoch (OffsetForLeaderEpoch), the leader answers with the largest epoch it
knows at or below that one and where that epoch ends in its log, and the follower truncates to
the end of the last epoch both logs share. ``plan_truncation`` is one round of that exchange,
after Kafka's ``AbstractFetcherThread.getOffsetTruncationState``:

* the leader knows no such epoch (``UNDEFINED_EPOCH``): truncate to the high watermark (all a
  follower knows to be committed), done;
* the follower knows no epoch at all: truncate to the leader's end offset, done;
* the follower does not know the epoch the leader answered: truncate to the end of the
  follower's largest epoch below it, and ask again with the (now lower) latest epoch;
* otherwise truncate to the smaller of the two logs' ends of that epoch, done. (An epoch below
  the follower's first one "ends" at the follower's first offset: nothing is shared.)

Nothing is ever truncated below what both hold in common: the end offsets only shrink toward
the divergence point, and a follower's log end offset bounds every answer.
"""

from __future__ import annotations

from typing import NamedTuple

from tmq.storage.leader_epoch import UNDEFINED_EPOCH, LeaderEpochCache

__all__ = ["Truncation", "plan_truncation"]


class Truncation(NamedTuple):
    """Truncate the log to ``offset`` (no-op when it is the log end offset); ``done``
    ``False``: ask the leader again with the log's new latest epoch."""

    offset: int
    done: bool


def plan_truncation(
    epochs: LeaderEpochCache,
    log_end_offset: int,
    high_watermark: int,
    leader_epoch: int,
    leader_end_offset: int,
) -> Truncation:
    """One round of the exchange: the follower's ``epochs`` and log end offset, its high
    watermark, and the leader's answer ``(leader_epoch, leader_end_offset)`` to the
    follower's latest epoch."""
    if leader_epoch == UNDEFINED_EPOCH:
        return Truncation(min(high_watermark, log_end_offset), True)
    # our largest epoch at or below the leader's, and where it ends in our log
    own_epoch, own_end = epochs.end_offset_for(leader_epoch, log_end_offset)
    if own_epoch == UNDEFINED_EPOCH:  # we know no epoch at or below the leader's
        return Truncation(min(leader_end_offset, log_end_offset), True)
    if own_epoch == leader_epoch:
        return Truncation(min(own_end, leader_end_offset, log_end_offset), True)
    return Truncation(min(own_end, log_end_offset), False)
