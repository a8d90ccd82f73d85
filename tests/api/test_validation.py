"""The parameter parsers of ``tmq.api.validation``: RFC 3339 times (offsets, fractions and
their rounding, the ends of the range), intervals, and ``parse_query``'s typed queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.api.validation import (
    GPU_METRICS,
    GPUS,
    ApiError,
    GpuListQuery,
    MetricsQuery,
    parse_interval,
    parse_query,
    parse_time,
)


class ParseTimeTests:
    def test_utc_and_offsets_name_instants(self):
        """Z, z, +hh:mm and -hh:mm, and a space for T, all give the same UTC instant."""
        expected = datetime(2025, 7, 18, 20, 42, 34, tzinfo=UTC)
        for text in (
            "2025-07-18T20:42:34Z",
            "2025-07-18t20:42:34z",
            "2025-07-18 20:42:34Z",
            "2025-07-18T22:42:34+02:00",
            "2025-07-18T15:12:34-05:30",
        ):
            assert parse_time(text) == expected, text

    def test_fractions_round_toward_the_inside_of_a_window(self):
        """Up to six digits are exact; more round down for an end and up for a start."""
        assert parse_time("2025-07-18T20:42:34.5Z").microsecond == 500_000
        assert parse_time("2025-07-18T20:42:34.1234564Z").microsecond == 123_456
        assert parse_time("2025-07-18T20:42:34.1234564Z", round_up=True).microsecond == 123_457
        assert parse_time("2025-07-18T20:42:34.1234560Z", round_up=True).microsecond == 123_456

    def test_range_ends_are_held(self):
        """Offsets that move a time past year 1 or year 9999 hold it at that end."""
        assert parse_time("0001-01-01T00:00:00+01:00") == datetime.min.replace(tzinfo=UTC)
        assert parse_time("9999-12-31T23:59:59-01:00") == datetime.max.replace(tzinfo=UTC)
        assert parse_time("0000-01-01T00:00:00Z") == datetime.min.replace(tzinfo=UTC)

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "2025-07-18",
            "2025-07-18T20:42:34",
            "2025-07-18T20:42Z",
            "2025-07-18T20:42:34+0200",
            "2025-07-18T20:42:34+02",
            "2025-07-18T20:42:34.Z",
            "2025-7-18T20:42:34Z",
            "2025-07-18T20:42:60Z",
            "2025-07-18T24:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-07-18T20:42:34+24:00",
            "2025-07-18T20:42:34Z ",
            "\uff11\uff12\uff13\uff14-07-18T20:42:34Z",
        ],
    )
    def test_rejects(self, text):
        """Anything that is not an RFC 3339 date-time with a zone is a ValueError."""
        with pytest.raises(ValueError):
            parse_time(text)

    @given(st.datetimes(timezones=st.just(UTC)))
    def test_round_trips_isoformat(self, moment):
        """Every aware datetime's ISO form parses back to it."""
        assert parse_time(moment.isoformat()) == moment


class ParseIntervalTests:
    def test_units(self):
        """s, m, h and d multiply a whole number."""
        assert parse_interval("10s") == timedelta(seconds=10)
        assert parse_interval("1m") == timedelta(minutes=1)
        assert parse_interval("2h") == timedelta(hours=2)
        assert parse_interval("366d") == timedelta(days=366)

    @pytest.mark.parametrize(
        "text", ["", "0s", "01s", "1", "s", "1.5h", "1w", "1M", "367d", "9999999999s"]
    )
    def test_rejects(self, text):
        """No unit, a zero or leading zero, a fraction, an unknown unit, or more than 366
        days is a ValueError."""
        with pytest.raises(ValueError):
            parse_interval(text)


class ParseQueryTests:
    def test_defaults(self):
        """Missing optional parameters take their defaults."""
        assert parse_query(GPUS, {}, None) == GpuListQuery(50, 0, None)

    def test_typed_query(self):
        """Values arrive typed, the GPU id from the path."""
        args = {
            b"metric_name": [b"DCGM_FI_DEV_GPU_TEMP"],
            b"aggregation": [b"sum"],
            b"interval": [b"5m"],
            b"start_time": [b"2025-07-18T20:00:00Z"],
            b"limit": [b"7"],
        }
        query = parse_query(GPU_METRICS, args, "GPU-1")
        assert query == MetricsQuery(
            "GPU-1",
            "DCGM_FI_DEV_GPU_TEMP",
            "sum",
            datetime(2025, 7, 18, 20, tzinfo=UTC),
            None,
            timedelta(minutes=5),
            7,
            0,
        )

    def test_error_body(self):
        """An ApiError's body is the error JSON of DESIGN §7."""
        with pytest.raises(ApiError) as raised:
            parse_query(GPUS, {b"limit": [b"0"]}, None)
        assert raised.value.status == 400
        assert raised.value.body() == {
            "error": {
                "code": "invalid_parameter",
                "message": "invalid limit '0': out of range: allowed 1 to 1000",
                "details": {
                    "parameter": "limit",
                    "value": "0",
                    "allowed": "an integer from 1 to 1000",
                },
            }
        }
