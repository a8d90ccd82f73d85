"""The error a ``tmq`` subcommand raises to fail with a one-line reason (exit status 1)."""

from __future__ import annotations

__all__ = ["CommandError"]


class CommandError(Exception):
    """A failure to report on stderr as one line, without a traceback."""
