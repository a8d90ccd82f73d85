"""DCGM CSV captures, parsed as a stream: every row becomes a ``Sample`` or a ``RowError``.

The format (the packaged real capture is an example, :func:`real_capture_path`)::

    timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw
    "2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","0","nvidia0","GPU-5fd4…","NVIDIA H100 …",…

* Line 1 is the header, exactly those twelve column names (quoted or not; a UTF-8 byte order
  mark before it is ignored). A first line that is not the header is reported as a
  ``RowError`` and not read as data; the rows after it are read with the columns above.
* Every other line is one row of twelve CSV fields (RFC 4180 quoting: any field may be quoted,
  a quote inside a quoted field is doubled). A field cannot hold a line break — DCGM's never
  do — so one physical line is one row, and a broken line cannot swallow the lines after it.
  Blank lines are skipped. A line of ``MAX_LINE_CHARS`` characters or more is not buffered
  whole: it is reported, skipped and the next line read.
* ``timestamp``: RFC 3339, with a ``Z`` or a ``±HH:MM`` offset and optional fractional
  seconds (``2025-07-18T20:42:34Z``, ``2025-07-18T22:42:34.25+02:00``); becomes ``time_us``
  (digits past microseconds are dropped).
* ``metric_name``: a DCGM field name, ``DCGM_FI_[A-Z0-9_]+`` (in the catalog or not).
* ``gpu_id``: the GPU index, ASCII digits, 0 to ``MAX_GPU_INDEX``.
* ``uuid``: not empty. ``device``, ``modelName``, ``Hostname``, ``container``, ``pod``,
  ``namespace``: any text, empty included.
* ``value``: a finite number; one of DCGM's blank sentinels becomes ``None``.
* ``labels_raw``: a label list, ``name="value"`` pairs joined by commas (inside the CSV field its
  quotes are doubled); see ``tmq.telemetry.exposition`` for the syntax.

Whatever is wrong with a row becomes a ``RowError`` naming the field and value, with the row's
physical line number (the header is line 1) and its text; parsing goes on with the next line.
Nothing in a row makes the parser raise; errors of the stream itself (``OSError``, a
``UnicodeDecodeError`` from a text stream opened with strict decoding) do propagate.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import TextIO

from .exposition import LabelParser, parse_gpu_index
from .model import RowError, Sample, is_blank, is_metric_name

__all__ = [
    "DEFAULT_LABEL_CACHE_SIZE",
    "HEADER",
    "MAX_LINE_CHARS",
    "CsvParser",
    "format_rfc3339",
    "parse_csv",
    "parse_rfc3339",
    "real_capture_path",
]

#: The columns of a DCGM CSV capture, in order.
HEADER = (
    "timestamp", "metric_name", "gpu_id", "device", "uuid", "modelName", "Hostname",
    "container", "pod", "namespace", "value", "labels_raw",
)  # fmt: skip

#: The longest line, line break included, that is read whole; longer ones are reported.
MAX_LINE_CHARS = 65536

#: How many distinct ``labels_raw`` texts a :class:`CsvParser` remembers by default. The real
#: capture has 2,470 (one per GPU and field); an entry costs about 1.2 KB.
DEFAULT_LABEL_CACHE_SIZE = 32768

_CAPTURE = "dcgm_metrics_20250718_134233.csv"
# What readline ends a line with (a stream opened with newline="" keeps \r and \r\n).
_LINE_ENDS = ("\n", "\r")

# Smaller caches: timestamps (a capture repeats each one for a whole scrape), field names and
# GPU indexes. Each is cleared when full.
_SMALL_CACHE_SIZE = 4096
# Any blank sentinel is at least this big; smaller finite values need no closer look.
_SMALLEST_BLANK = 2147483632.0
_LARGEST_FLOAT = 1.7976931348623157e308


def real_capture_path() -> Path:
    """The real DCGM capture shipped with tmq (2,470 rows: 247 GPUs on 31 hosts, 10 fields),
    found through ``importlib.resources``; tmq is installed as files, so it is a real path."""
    return Path(str(files("tmq.telemetry").joinpath("data", _CAPTURE)))


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH = datetime(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH.toordinal()


def parse_rfc3339(text: str) -> int:
    """An RFC 3339 date-time (``2025-07-18T20:42:34Z``, ``…34.123456+02:00``) as
    microseconds since the Unix epoch; fractional digits past microseconds are dropped.

    :raises ValueError: not RFC 3339, or not a real date or time (leap seconds included).
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("expected an RFC 3339 date-time such as 2025-07-18T20:42:34Z")
    year, month, day, hour, minute, second = map(int, match.group(1, 2, 3, 4, 5, 6))
    fraction, sign, offset_hours, offset_minutes = match.group(7, 8, 9, 10)
    moment = datetime(year, month, day, hour, minute, second)  # checks every range
    seconds = (moment.toordinal() - _EPOCH_ORDINAL) * 86400 + hour * 3600 + minute * 60 + second
    if sign:
        if int(offset_hours) > 23 or int(offset_minutes) > 59:
            raise ValueError(f"offset {sign}{offset_hours}:{offset_minutes} is out of range")
        offset = int(offset_hours) * 3600 + int(offset_minutes) * 60
        seconds -= offset if sign == "+" else -offset
    microseconds = int(fraction[:6].ljust(6, "0")) if fraction else 0
    return seconds * 1_000_000 + microseconds


def format_rfc3339(time_us: int) -> str:
    """Microseconds since the Unix epoch as RFC 3339 in UTC, the capture's way:
    ``2025-07-18T20:42:34Z``, with a fraction only when there is one (``…34.5Z``)."""
    moment = _EPOCH + timedelta(microseconds=time_us)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


class CsvParser:
    """Parses DCGM CSV streams into samples; one parser can read stream after stream (a
    producer re-reading a capture in a loop) and keeps what it learnt in between.

    A fleet repeats the same label texts every scrape, so the parser remembers what each
    ``labels_raw`` text parsed to, up to ``label_cache_size`` of them; past that it forgets
    them all and starts over. Samples that share a label text share one labels dict.
    Likewise it remembers the checked fields ``metric_name`` to ``namespace`` of each series
    by their text in the line: samples of one series share those field objects (whose
    hashes later stages then compute once).
    """

    def __init__(self, *, label_cache_size: int = DEFAULT_LABEL_CACHE_SIZE) -> None:
        if label_cache_size < 1:
            raise ValueError(f"label_cache_size must be at least 1, not {label_cache_size}")
        self._label_cache_size = label_cache_size
        # labels_raw as it appears between the field's quotes (quotes doubled) -> labels
        self._labels: dict[str, dict[str, str]] = {}
        self._label_parser = LabelParser()
        self._times: dict[str, int] = {}
        # metric_name ..namespace as they appear in a fully quoted line -> the checked fields
        self._series: dict[str, tuple] = {}

    def parse(self, stream: TextIO) -> Iterator[Sample | RowError]:
        """Every row of ``stream`` after the header, in order, as a ``Sample`` or a
        ``RowError`` (see the module docstring). ``stream`` is read line by line, with
        ``readline``; open files with ``newline=""`` or the default, either works."""
        readline = stream.readline
        first = readline(MAX_LINE_CHARS)
        if not first:
            return
        if len(first) >= MAX_LINE_CHARS and not first.endswith(_LINE_ENDS):
            _skip_rest_of_line(readline)
            header = []
        else:
            first = first.removeprefix("\ufeff").rstrip("\r\n")
            try:
                header = next(csv.reader((first,), strict=True), [])
            except csv.Error:
                header = []
        if tuple(header) != HEADER:
            yield RowError(1, f"expected the header {','.join(HEADER)}", first)
        labels_cache = self._labels
        label_cache_size = self._label_cache_size
        times = self._times
        series_cache = self._series
        parse_labels = self._label_parser.parse_doubled
        new_sample = tuple.__new__  # makes a Sample without its Python-level __new__
        number = 1
        while line := readline(MAX_LINE_CHARS):
            number += 1
            if len(line) >= MAX_LINE_CHARS and not line.endswith(_LINE_ENDS):
                _skip_rest_of_line(readline)
                reason = f"line is longer than {MAX_LINE_CHARS - 1} characters"
                yield RowError(number, reason, line)
                continue
            body = line.rstrip("\r\n")
            fields = body.split('","')
            # The fast path: all twelve fields quoted, quotes inside labels_raw only.
            # (20 quotes before the last '","': those of the other ten delimiters.)
            if (
                len(fields) == 12
                and body[0] == '"'
                and body[-1] == '"'
                and body.count('"', 1, len(body) - len(fields[11]) - 3) == 20
            ):
                timestamp = fields[0][1:]
                labels_text = fields[11][:-1]
                # fields 1 to 9 with their '","' delimiters: no other quote is in there
                series_text = body[
                    len(fields[0]) + 3 : len(body) - len(fields[11]) - len(fields[10]) - 6
                ]
            elif not body:
                continue
            else:
                try:
                    fields = next(csv.reader((body,), strict=True))
                except csv.Error as error:
                    yield RowError(number, f"malformed CSV: {error}", body)
                    continue
                if len(fields) != 12:
                    yield RowError(number, f"expected 12 fields, found {len(fields)}", body)
                    continue
                timestamp = fields[0]
                labels_text = fields[11].replace('"', '""')
                series_text = None

            time_us = times.get(timestamp)
            if time_us is None:
                try:
                    time_us = parse_rfc3339(timestamp)
                except ValueError as error:
                    yield RowError(number, f"bad timestamp {timestamp!r}: {error}", body)
                    continue
                if len(times) >= _SMALL_CACHE_SIZE:
                    times.clear()
                times[timestamp] = time_us

            series = series_cache.get(series_text)
            if series is None:
                metric = fields[1]
                if not is_metric_name(metric):
                    reason = f"bad metric_name {metric!r}: expected DCGM_FI_[A-Z0-9_]+"
                    yield RowError(number, reason, body)
                    continue
                try:
                    gpu_index = parse_gpu_index(fields[2])
                except ValueError as error:
                    yield RowError(number, f"bad gpu_id: {error}", body)
                    continue
                if not fields[4]:
                    yield RowError(number, "empty uuid", body)
                    continue
                series = (metric, gpu_index, *fields[3:10])
                if series_text is not None:
                    if len(series_cache) >= label_cache_size:
                        series_cache.clear()
                    series_cache[series_text] = series

            value_text = fields[10]
            try:
                value: float | None = float(value_text)
            except ValueError:
                yield RowError(number, f"bad value {value_text!r}: not a number", body)
                continue
            if not -_LARGEST_FLOAT <= value < _SMALLEST_BLANK:
                if value - value != 0:  # inf or nan
                    yield RowError(number, f"bad value {value_text!r}: not finite", body)
                    continue
                if is_blank(value):
                    value = None

            labels = labels_cache.get(labels_text)
            if labels is None:
                try:
                    labels = parse_labels(labels_text)
                except ValueError as error:
                    yield RowError(number, f"bad labels_raw: {error}", body)
                    continue
                if len(labels_cache) >= label_cache_size:
                    labels_cache.clear()
                labels_cache[labels_text] = labels

            yield new_sample(Sample, (time_us, *series, value, labels))


def _skip_rest_of_line(readline) -> None:
    while True:
        rest = readline(MAX_LINE_CHARS)
        if not rest or rest.endswith(_LINE_ENDS):
            return


def parse_csv(stream: TextIO) -> Iterator[Sample | RowError]:
    """Every row of a DCGM CSV stream as a ``Sample`` or a ``RowError``, with a parser of its
    own (see :class:`CsvParser` to keep its caches across streams)."""
    return CsvParser().parse(stream)
