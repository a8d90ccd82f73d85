"""Log observers of tmq's services: Twisted's text lines, or one JSON object per line.

A JSON line has ``time`` (RFC 3339, UTC, microseconds), ``level`` (debug, info, warn, error,
critical), ``namespace`` (the logger's, usually the module), ``message`` (the formatted
event) and, for an event carrying a failure, ``error`` (``Type: message``) and
``traceback``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TextIO

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    formatEvent,
    globalLogBeginner,
    textFileLogObserver,
)

__all__ = ["LOG_FORMATS", "begin_logging", "format_json", "log_observer"]

#: The values of ``--log-format`` (the first is the default).
LOG_FORMATS = ("text", "json")


def format_json(event: dict) -> str:
    """One event as a JSON object and a newline."""
    stamp = datetime.fromtimestamp(event.get("log_time", 0), UTC)
    level = event.get("log_level")
    line = {
        "time": stamp.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "level": level.name if level is not None else "info",
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        line["error"] = f"{failure.type.__name__}: {failure.getErrorMessage()}"
        line["traceback"] = failure.getTraceback()
    return json.dumps(line, ensure_ascii=False) + "\n"


def log_observer(log_format: str, stream: TextIO) -> ILogObserver:
    """The observer writing ``log_format`` (``text`` or ``json``) lines to ``stream``.

    :raises ValueError: another format.
    """
    if log_format == "text":
        return textFileLogObserver(stream)
    if log_format == "json":
        return FileLogObserver(stream, format_json)
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")


def begin_logging(log_format: str, stream: TextIO | None = None) -> None:
    """Send every log event from now on (and those buffered so far) to ``log_observer``
    (on ``stream``, standard error by default); print and stdio are left alone."""
    observer = log_observer(log_format, stream or sys.stderr)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
