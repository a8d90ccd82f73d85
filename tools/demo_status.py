"""The demo's console and status line (``tmq demo``): progress of the pipeline read from the
sink's ``/metrics`` (or, failing that, from PostgreSQL), and a console that redraws the status
line in place on a terminal."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TextIO

__all__ = [
    "Console",
    "Reading",
    "SinkFigures",
    "StatusReader",
    "format_status",
    "parse_sink_metrics",
]


@dataclass(frozen=True)
class SinkFigures:
    """From the sink's ``/metrics``: rows written so far; consumer lag summed over its
    partitions (``None`` while it owns none)."""

    rows_written: float
    lag: float | None


def parse_sink_metrics(text: str) -> SinkFigures | None:
    """``tmq_sink_rows_written_total`` and the sum of ``tmq_sink_consumer_lag_messages`` of a
    Prometheus text exposition. ``None`` when it has no ``tmq_sink_rows_written_total``, does
    not parse, or prometheus_client (its parser) is not installed."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return None
    rows = lag = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "tmq_sink_rows_written_total":
                    rows = (rows or 0.0) + sample.value
                elif sample.name == "tmq_sink_consumer_lag_messages":
                    lag = (lag or 0.0) + sample.value
    except ValueError:
        return None
    return None if rows is None else SinkFigures(rows, lag)


@dataclass(frozen=True)
class Reading:
    """One look at the pipeline's progress.

    :param at: when (``time.monotonic()``).
    :param count: rows written, or records committed (see ``noun``); ``None``: unknown.
    :param noun: what ``count`` counts: ``"rows written"`` or ``"records committed"``.
    :param lag: the sink's consumer lag in messages; ``None``: unknown.
    """

    at: float
    count: float | None
    noun: str
    lag: float | None


def format_status(previous: Reading | None, current: Reading, uptime: float) -> str:
    """The status line: uptime, the count, its rate since ``previous`` (``?`` without a
    previous reading of the same kind) and the consumer lag (``?`` when unknown), e.g.
    ``up 0:01:05 | 123,450 rows written | 2,470 rows/s | consumer lag 12``."""
    minutes, seconds = divmod(int(uptime), 60)
    hours, minutes = divmod(minutes, 60)
    count = "?" if current.count is None else f"{current.count:,.0f}"
    rate = "?"
    if (
        previous is not None
        and previous.noun == current.noun
        and None not in (previous.count, current.count)
        and current.at > previous.at
    ):
        rate = f"{(current.count - previous.count) / (current.at - previous.at):,.0f}"
    lag = "?" if current.lag is None else f"{current.lag:,.0f}"
    unit = current.noun.split()[0]
    return (
        f"up {hours}:{minutes:02}:{seconds:02} | {count} {current.noun} | {rate} {unit}/s | "
        f"consumer lag {lag}"
    )


class StatusReader:
    """Reads the pipeline's progress: from the sink's ``/metrics`` at ``metrics_url``, or,
    when that cannot be read or parsed, the records committed by the demo's group in the
    database at ``dsn`` by consumer group ``group`` (the lag then unknown)."""

    def __init__(self, metrics_url: str, dsn: str, group: str):
        self.metrics_url = metrics_url
        self.dsn = dsn
        self.group = group

    def read(self) -> Reading:
        figures = None
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as answer:
                figures = parse_sink_metrics(answer.read().decode("utf-8", errors="replace"))
        except (OSError, urllib.error.URLError):
            pass
        if figures is not None:
            return Reading(time.monotonic(), figures.rows_written, "rows written", figures.lag)
        return Reading(time.monotonic(), self._committed(), "records committed", None)

    def _committed(self) -> float | None:
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=2) as connection:
                (total,) = connection.execute(
                    "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
                    "WHERE consumer_group = %s",
                    (self.group,),
                ).fetchone()
        except psycopg.Error:  # the server is away, or the sink has not made its tables yet
            return None
        return float(total)


class Console:
    """Where the demo talks: steps (``starting etcd... ok (127.0.0.1:2379)``), lines, and
    the status line, redrawn in place when ``stream`` is a terminal and printed as a line of
    its own otherwise. Every write is flushed. Once ``stream`` fails (a closed terminal or
    pipe), nothing more is written to it: the demo goes on, and stops cleanly when asked."""

    def __init__(self, stream: TextIO):
        self._stream: TextIO | None = stream
        self._tty = stream.isatty()
        self._open = False  # the last line written has no line break yet

    def begin(self, text: str) -> None:
        """Start a step's line: ``text...``."""
        self.end_line()
        self._write(f"{text}... ")
        self._open = True

    def done(self, detail: str = "") -> None:
        """End the step's line with ``ok`` (and ``(detail)``)."""
        self._write(f"ok ({detail})\n" if detail else "ok\n")
        self._open = False

    def say(self, text: str) -> None:
        """Write ``text`` as a line of its own."""
        self.end_line()
        self._write(f"{text}\n")

    def status(self, line: str) -> None:
        """Show the status ``line``: in place of the previous one on a terminal."""
        if not self._tty:
            self.say(line)
            return
        self._write(f"\r{line}\x1b[K")
        self._open = True

    def end_line(self) -> None:
        """End an unfinished line (a step's or the status line)."""
        if self._open:
            self._write("\n")
            self._open = False

    def _write(self, text: str) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except OSError:
            self._stream = None
