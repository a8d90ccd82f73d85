"""The leader-epoch cache of a partition: at which offset each leader epoch began.

Entries ``(leader_epoch, start_offset)`` strictly increase in both fields and are persisted in
the partition's ``leader-epoch-checkpoint`` (format in ``checkpoints``) on every change.
``end_offset_for`` answers OffsetForLeaderEpoch (KIP-101/279): a replica truncates to the end
offset of the last epoch it shares with the leader.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from .checkpoints import write_epoch_checkpoint
from .files import FileSystem

__all__ = ["UNDEFINED_EPOCH", "UNDEFINED_OFFSET", "LeaderEpochCache"]

UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1


class LeaderEpochCache:
    """Epoch -> start offset for one partition. Not thread-safe.

    :param path: the checkpoint file written on every change.
    :param entries: the entries loaded from it (already validated by the caller).
    """

    def __init__(self, fs: FileSystem, path: str, entries: list[tuple[int, int]] = ()):
        self.fs = fs
        self.path = path
        self._epochs = [epoch for epoch, _ in entries]
        self._offsets = [offset for _, offset in entries]

    @property
    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._offsets, strict=True))

    @property
    def latest_epoch(self) -> int:
        return self._epochs[-1] if self._epochs else UNDEFINED_EPOCH

    def _replace(self, epochs: list[int], offsets: list[int]) -> None:
        """Checkpoint the new entries, then adopt them: if the write fails the cache is left
        as it was, so the same change is tried again later."""
        write_epoch_checkpoint(self.fs, self.path, list(zip(epochs, offsets, strict=True)))
        self._epochs, self._offsets = epochs, offsets

    def assign(self, epoch: int, start_offset: int) -> None:
        """Note that ``epoch`` starts at ``start_offset``; a no-op unless it is a new epoch.

        :raises ValueError: ``epoch`` is below the latest one, or its start offset is below
            the latest start.
        :raises OSError: the checkpoint could not be written (nothing changed).
        """
        if epoch < 0 or epoch == self.latest_epoch:
            return
        if epoch < self.latest_epoch or (self._offsets and start_offset < self._offsets[-1]):
            raise ValueError(
                f"epoch {epoch} at {start_offset} does not follow "
                f"epoch {self.latest_epoch} at {self._offsets[-1]}"
            )
        epochs, offsets = list(self._epochs), list(self._offsets)
        if offsets and start_offset == offsets[-1]:
            # the previous epoch wrote nothing: the new one replaces it
            epochs.pop()
            offsets.pop()
        self._replace([*epochs, epoch], [*offsets, start_offset])

    def truncate_from_end(self, end_offset: int) -> None:
        """Forget the epochs that start at or after ``end_offset`` (the log was cut there)."""
        keep = bisect_left(self._offsets, end_offset)
        if keep < len(self._offsets):
            self._replace(self._epochs[:keep], self._offsets[:keep])

    def truncate_from_start(self, start_offset: int) -> None:
        """Forget what lies before ``start_offset`` (retention deleted it); the epoch in force
        there now starts at ``start_offset``."""
        first = bisect_right(self._offsets, start_offset) - 1
        if first < 0 or (first == 0 and self._offsets[0] == start_offset):
            return
        self._replace(self._epochs[first:], [start_offset, *self._offsets[first + 1 :]])

    def epoch_at(self, offset: int) -> int:
        """The epoch in force at ``offset``: the last one starting at or before it."""
        i = bisect_right(self._offsets, offset)
        return self._epochs[i - 1] if i else UNDEFINED_EPOCH

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """``(epoch, end_offset)`` for OffsetForLeaderEpoch.

        The end offset of ``epoch`` is the start offset of the first larger epoch, or the log
        end offset if ``epoch`` is the latest; the epoch answered is the largest known one not
        above ``epoch``. ``(UNDEFINED_EPOCH, UNDEFINED_OFFSET)`` when ``epoch`` is undefined
        or above every known epoch.
        """
        if epoch == UNDEFINED_EPOCH or not self._epochs:
            return UNDEFINED_EPOCH, UNDEFINED_OFFSET
        if epoch == self._epochs[-1]:
            return epoch, log_end_offset
        higher = bisect_right(self._epochs, epoch)
        if higher == len(self._epochs):
            return UNDEFINED_EPOCH, UNDEFINED_OFFSET
        if higher == 0:
            return epoch, self._offsets[0]
        return self._epochs[higher - 1], self._offsets[higher]
