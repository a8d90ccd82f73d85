"""``tmq bench api``: the parts that need no server (percentiles, the open-loop schedule, the
requests and the data set they address, HTTP response heads, best-of, usage errors). The run
itself is an integration test (tests/integration/test_bench_api_run.py)."""

from __future__ import annotations

import argparse
import itertools
from datetime import timedelta

import pytest
from cli_helpers import run_main

from tmq.api import validation
from tmq.telemetry.gen import REAL_METRICS
from tmq.tools import bench_api
from tmq.tools.cli import build_parser
from tmq.tools.errors import CommandError


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", "api", *argv])


def _parsed(operation, request: bench_api.HttpRequest):
    """``request`` read as the API reads it (raises ApiError when the API would refuse it)."""
    args = {name.encode(): [value.encode()] for name, value in request.args.items()}
    return validation.parse_query(operation, args, request.uuid)


class PercentileTests:
    def test_nearest_rank_of_one_to_a_hundred(self):
        """On 1..100 the p-th percentile is p itself, and p99.9 is the maximum."""
        values = list(range(1, 101))
        assert bench_api.percentile(values, 50) == 50
        assert bench_api.percentile(values, 90) == 90
        assert bench_api.percentile(values, 99) == 99
        assert bench_api.percentile(values, 99.9) == 100
        assert bench_api.percentile(values, 100) == 100

    def test_is_a_value_of_the_sample_whatever_its_order(self):
        """Nearest rank never interpolates, and the input need not be sorted."""
        values = [0.030, 0.010, 0.020, 0.040]
        assert bench_api.percentile(values, 50) == 0.020
        assert bench_api.percentile(values, 51) == 0.030
        assert bench_api.percentile(values, 1) == 0.010

    def test_one_value_is_every_percentile(self):
        """A single latency is its own p50 and p99."""
        assert bench_api.percentile([7.0], 50) == bench_api.percentile([7.0], 99) == 7.0

    def test_rank_is_not_lost_to_floating_point(self):
        """p99 of 1,000 values is the 990th, not the 991st (0.99 * 1000 is 990.0000000000001)."""
        values = list(range(1, 1001))
        assert bench_api.percentile(values, 99) == 990

    def test_no_values_or_a_bad_p_is_an_error(self):
        """An empty sample, p <= 0 and p > 100 are refused."""
        with pytest.raises(ValueError):
            bench_api.percentile([], 50)
        for p in (0, -1, 100.1):
            with pytest.raises(ValueError):
                bench_api.percentile([1.0], p)

    def test_summary_is_in_milliseconds(self):
        """latency_summary turns seconds into milliseconds: the percentiles, max and mean."""
        summary = bench_api.latency_summary([0.001 * n for n in range(1, 1001)])
        assert summary == {
            "p50": 500.0,
            "p90": 900.0,
            "p99": 990.0,
            "p99.9": 999.0,
            "max": 1000.0,
            "mean": 500.5,
        }


class OpenLoopScheduleTests:
    def test_evenly_spaced_from_zero(self):
        """100 requests/s for 2 s: 200 sends, 10 ms apart, the first at once."""
        schedule = bench_api.open_loop_schedule(100, 2)
        assert len(schedule) == 200
        assert schedule[0] == 0
        gaps = {round(b - a, 9) for a, b in itertools.pairwise(schedule)}
        assert gaps == {0.01}

    def test_every_send_is_before_the_end(self):
        """A rate that does not divide the duration: as many as fit before it, none after."""
        schedule = bench_api.open_loop_schedule(3, 1.5)
        assert schedule == pytest.approx([0, 1 / 3, 2 / 3, 1, 4 / 3])
        assert all(at < 1.5 for at in schedule)

    def test_sends_do_not_wait_for_answers(self):
        """The schedule is a function of rate and duration alone: nothing in it depends on
        when answers come (what makes the loop open)."""
        assert bench_api.open_loop_schedule(50, 10) == bench_api.open_loop_schedule(50, 10)
        assert bench_api.open_loop_schedule(50, 10)[-1] == pytest.approx(9.98)

    def test_at_least_one_send(self):
        """A very short or slow loop still sends once."""
        assert bench_api.open_loop_schedule(0.5, 1) == [0]

    def test_a_rate_or_duration_of_zero_is_an_error(self):
        """Rates and durations must be positive."""
        for rate, duration in ((0, 1), (1, 0), (-1, 1)):
            with pytest.raises(ValueError):
                bench_api.open_loop_schedule(rate, duration)


class DatasetTests:
    def test_the_default_is_the_issue_s_nine_million_rows(self):
        """64 GPUs x 10 metrics x 10 days of minutes: 9,216,000 rows, ending at DATA_END."""
        dataset = bench_api.make_dataset(64, 10)
        assert dataset.rows == 9_216_000
        assert dataset.minutes == 14_400
        assert dataset.end == bench_api.DATA_END
        assert dataset.end - dataset.start == timedelta(minutes=14_399)
        assert dataset.metrics == REAL_METRICS

    def test_gpus_are_distinct_and_eight_to_a_host(self):
        """Every GPU has its own UUID; hosts hold 8 GPUs each."""
        dataset = bench_api.make_dataset(20, 1)
        assert len(set(dataset.uuids)) == 20
        assert all(uuid.startswith("GPU-") for uuid in dataset.uuids)
        assert [dataset.hostnames.count(host) for host in sorted(set(dataset.hostnames))] == [
            8,
            8,
            4,
        ]

    def test_a_fraction_of_a_day(self):
        """--days 0.1 is 144 minutes."""
        assert bench_api.make_dataset(4, 0.1).minutes == 144


class RequestTests:
    def test_metrics_requests_cover_24_hours_of_one_gpu_and_metric(self):
        """Each /metrics request averages one metric of one GPU of the data set over 24 hours
        inside the data, and the API's own parser accepts it."""
        dataset = bench_api.make_dataset(64, 10)
        requests = bench_api.metrics_requests(dataset, 300)
        assert len(requests) == 300
        for request in requests:
            query = _parsed(validation.GPU_METRICS, request)
            assert query.gpu_id in dataset.uuids
            assert query.metric_name in dataset.metrics
            assert query.aggregation == "avg"
            assert query.end_time - query.start_time == timedelta(hours=24)
            assert dataset.start <= query.start_time and query.end_time <= dataset.end
            assert request.path.startswith(f"/api/v1/gpus/{request.uuid}/metrics?")

    def test_requests_vary_and_repeat_from_run_to_run(self):
        """GPUs, metrics and windows vary between requests, and the same seed gives the same
        requests (every run measures the same work)."""
        dataset = bench_api.make_dataset(64, 10)
        requests = bench_api.metrics_requests(dataset, 200)
        assert requests == bench_api.metrics_requests(dataset, 200)
        assert len({request.uuid for request in requests}) > 30
        assert len({request.args["metric_name"] for request in requests}) == 10
        assert len({request.args["start_time"] for request in requests}) > 150

    def test_telemetry_pages_are_full_pages_of_a_24_hour_window(self):
        """Each /telemetry request asks for 1,000 samples at a multiple of 1,000 that still
        leaves a full page in its 24-hour window (1,441 minutes x 10 metrics)."""
        dataset = bench_api.make_dataset(64, 10)
        requests = bench_api.telemetry_requests(dataset, 300)
        offsets = set()
        for request in requests:
            query = _parsed(validation.GPU_TELEMETRY, request)
            assert query.limit == 1000
            assert query.offset % 1000 == 0
            assert query.offset + 1000 <= 1441 * 10
            assert query.end_time - query.start_time == timedelta(hours=24)
            assert dataset.start <= query.start_time and query.end_time <= dataset.end
            assert query.metric_name is None
            offsets.add(query.offset)
        assert min(offsets) == 0 and max(offsets) == 13_000

    def test_a_data_set_shorter_than_a_day_is_one_window(self):
        """With less than 24 hours of data the window is all of it, and pages stay inside it
        (144 minutes x 10 metrics: offsets 0 only, as 1,440 rows hold one full page)."""
        dataset = bench_api.make_dataset(4, 0.1)
        for request in bench_api.telemetry_requests(dataset, 50):
            query = _parsed(validation.GPU_TELEMETRY, request)
            assert (query.start_time, query.end_time) == (dataset.start, dataset.end)
            assert query.offset == 0
        for request in bench_api.metrics_requests(dataset, 50):
            query = _parsed(validation.GPU_METRICS, request)
            assert (query.start_time, query.end_time) == (dataset.start, dataset.end)

    def test_gpus_asks_for_the_first_page(self):
        """Scenario 1 is the bare route: its default page of 50."""
        assert bench_api.gpus_path() == "/api/v1/gpus"


class ResponseHeadTests:
    def test_status_and_lower_cased_headers(self):
        """The status code, and header names lower-cased with values stripped."""
        head = (
            b"HTTP/1.1 200 OK\r\nServer: TwistedWeb\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type:  application/json \r\n\r\n"
        )
        status, headers = bench_api.parse_response_head(head)
        assert status == 200
        assert headers[b"transfer-encoding"] == b"chunked"
        assert headers[b"content-type"] == b"application/json"

    def test_a_status_without_a_reason(self):
        """A reason phrase is optional."""
        assert bench_api.parse_response_head(b"HTTP/1.0 503\r\n\r\n") == (503, {})

    def test_not_http_is_an_error(self):
        """Anything else than a status line, or a header line without a colon, is refused."""
        with pytest.raises(ValueError):
            bench_api.parse_response_head(b"SSH-2.0-OpenSSH\r\n\r\n")
        with pytest.raises(ValueError):
            bench_api.parse_response_head(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")


class BestRoundTests:
    def test_highest_rate_or_lowest_latency(self):
        """Rates: the highest round; latencies (a dotted key): the lowest."""
        rounds = [
            {"requests_per_s": 900, "latency_ms": {"p99": 30}},
            {"requests_per_s": 1100, "latency_ms": {"p99": 45}},
            {"requests_per_s": 1000, "latency_ms": {"p99": 20}},
        ]
        assert bench_api.best_round(rounds, "requests_per_s") is rounds[1]
        assert bench_api.best_round(rounds, "latency_ms.p99", lowest=True) is rounds[2]


class ArgumentTests:
    def test_the_defaults_are_the_issue_s(self):
        """Defaults: 64 GPUs, 10 days, 50 connections, 100 and 50 requests/s, 3 rounds."""
        args = _args()
        assert bench_api.check_arguments(args) is None
        assert (args.gpus, args.days, args.connections) == (64, 10.0, 50)
        assert (args.metrics_rate, args.telemetry_rate, args.rounds) == (100.0, 50.0, 3)
        assert args.dsn is None

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--days", "0"], "--days"),
            (["--days", "400"], "--days"),
            (["--gpus", "0"], "--gpus"),
            (["--duration", "0"], "--duration"),
            (["--rounds", "0"], "--rounds"),
            (["--connections", "0"], "--connections"),
            (["--pool-size", "0"], "--pool-size"),
            (["--workers", "0"], "--workers"),
            (["--baseline-threads", "0"], "--baseline-threads"),
            (["--metrics-rate", "0"], "--metrics-rate"),
            (["--telemetry-rate", "nan"], "--telemetry-rate"),
            (["--telemetry-rate", "0.5", "--duration", "1"], "at least one request"),
        ],
    )
    def test_bad_values_are_named(self, argv, message):
        """Each bad option is refused, naming it."""
        problem = bench_api.check_arguments(_args(*argv))
        assert problem is not None and message in problem

    def test_bad_values_are_usage_errors_before_anything_starts(self):
        """On the command line a bad value exits with status 2 and the reason, before any
        server is started."""
        status, err = run_main("bench", "api", "--gpus", "0", "--duration", "1")
        assert status == 2
        assert "--gpus must be from 1" in err

    def test_a_missing_wrk_names_the_package(self):
        """Without wrk the bench stops with the Debian package to install."""
        with pytest.raises(CommandError, match="apt-get install wrk"):
            bench_api.require_wrk(lambda name: None)
        assert bench_api.require_wrk(lambda name: f"/usr/bin/{name}") == "/usr/bin/wrk"
