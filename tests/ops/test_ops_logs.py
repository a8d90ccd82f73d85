"""``tmq.ops.logs``: the text and JSON log observers."""

from __future__ import annotations

import io
import json

import pytest
from twisted.logger import Logger, LogLevel

from tmq.ops.logs import format_json, log_observer


def logged(log_format: str, emit) -> str:
    """What ``emit(logger)`` writes through the ``log_format`` observer."""
    stream = io.StringIO()
    emit(Logger(namespace="tmq.test", observer=log_observer(log_format, stream)))
    return stream.getvalue()


class JsonLogTests:
    def test_one_object_per_line_with_the_contract_fields(self):
        """Each event is one line: an object with an RFC 3339 UTC time, the level, the
        namespace and the formatted message."""
        text = logged("json", lambda log: log.warn("broker {id} listening", id=3))
        assert text.endswith("\n") and text.count("\n") == 1
        line = json.loads(text)
        assert set(line) == {"time", "level", "namespace", "message"}
        assert (line["level"], line["namespace"], line["message"]) == (
            "warn",
            "tmq.test",
            "broker 3 listening",
        )
        assert line["time"].endswith("Z") and line["time"][10] == "T"

    def test_a_failure_adds_error_and_traceback(self):
        """An event carrying a failure names it in ``error`` and keeps its traceback."""

        def emit(log):
            try:
                raise OSError("disk full")
            except OSError:
                log.failure("append failed")

        line = json.loads(logged("json", emit))
        assert line["level"] == "critical"
        assert line["message"] == "append failed"
        assert line["error"] == "OSError: disk full"
        assert "Traceback" in line["traceback"]

    def test_time_is_utc_with_microseconds(self):
        """The event's time is written in UTC, to the microsecond."""
        event = {
            "log_time": 0.25,
            "log_level": LogLevel.info,
            "log_namespace": "n",
            "log_format": "x",
            "log_failure": None,
        }
        assert json.loads(format_json(event))["time"] == "1970-01-01T00:00:00.250000Z"
        assert "error" not in json.loads(format_json(event))


class ObserverChoiceTests:
    def test_text_is_twisteds_line_format(self):
        """``text`` writes Twisted's usual lines: time, [namespace#level], message."""
        text = logged("text", lambda log: log.info("hello {who}", who="ops"))
        assert "[tmq.test#info] hello ops" in text

    def test_an_unknown_format_is_refused(self):
        """Only text and json exist."""
        with pytest.raises(ValueError, match="text, json"):
            log_observer("xml", io.StringIO())
