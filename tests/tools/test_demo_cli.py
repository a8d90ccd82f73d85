"""``tmq demo``: its options, the commands it runs, and what it shows — the parts that start
nothing (the whole demo runs in tests/integration/test_demo.py)."""

from __future__ import annotations

import argparse
import io
import itertools
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_helpers import run_main

from tmq.tools.cli import build_parser, main
from tmq.tools.demo import (
    ChildService,
    api_arguments,
    broker_arguments,
    describe_services,
    exit_description,
    listen_address,
    log_tail,
    producer_arguments,
    sink_arguments,
    url_host,
)
from tmq.tools.demo_status import Console, Reading, SinkFigures, format_status, parse_sink_metrics


def demo_options(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["demo", *argv])


class OptionTests:
    """What ``tmq demo`` accepts, and what it refuses before starting anything."""

    def test_defaults(self):
        """Three brokers, six partitions, the API on 0.0.0.0:8080, a replay a second, a new
        work directory that is not kept."""
        options = demo_options()
        assert (options.brokers, options.partitions) == (3, 6)
        assert options.api_listen == ("0.0.0.0", 8080)
        assert (options.interval, options.status_interval) == (1.0, 5.0)
        assert (options.workdir, options.keep) == (None, False)

    def test_options(self):
        """Every option reaches the namespace, converted."""
        options = demo_options(
            "--workdir", "/tmp/d", "--keep", "--brokers", "1", "--partitions", "2",
            "--api-listen", "127.0.0.1:9999", "--interval", "0.5", "--status-interval", "2",
        )  # fmt: skip
        assert (options.workdir, options.keep) == ("/tmp/d", True)
        assert (options.brokers, options.partitions) == (1, 2)
        assert options.api_listen == ("127.0.0.1", 9999)
        assert (options.interval, options.status_interval) == (0.5, 2.0)

    def test_help_explains_everything(self, capsys):
        """--help names every option, the parts it starts, the etcd fallback, how it stops
        and where the logs are."""
        with pytest.raises(SystemExit) as exited:
            main(["demo", "--help"])
        assert exited.value.code == 0
        text = capsys.readouterr().out
        for option in (
            "--workdir", "--keep", "--brokers", "--partitions", "--api-listen", "--interval",
            "--status-interval",
        ):  # fmt: skip
            assert option in text
        for fact in ("etcd", "PostgreSQL", "tmq sink", "tmq api", "/metrics", "Swagger UI",
                     "Ctrl-C", "SIGTERM", "local metadata", "logs/", "TMQ_API_LISTEN"):  # fmt: skip
            assert fact in text

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--brokers", "0"], "--brokers and --partitions must be at least 1"),
            (["--partitions", "0"], "--brokers and --partitions must be at least 1"),
            (["--interval", "-1"], "--interval must be >= 0"),
            (["--status-interval", "0"], "--status-interval must be > 0"),
            (["--api-listen", "8080"], "takes HOST:PORT"),
            (["--api-listen", "localhost:0"], "a port in 1..65535"),
        ],
    )
    def test_bad_usage(self, argv, message):
        """A bad value exits 2 with the reason, before anything starts."""
        status, err = run_main("demo", *argv)
        assert status == 2
        assert message in err

    def test_listen_addresses(self):
        """HOST:PORT, [v6]:PORT and :PORT (all interfaces)."""
        assert listen_address("127.0.0.1:80") == ("127.0.0.1", 80)
        assert listen_address("[::1]:8080") == ("::1", 8080)
        assert listen_address(":8080") == ("0.0.0.0", 8080)

    def test_url_hosts(self):
        """A wildcard listen address is reached on loopback; IPv6 goes in brackets."""
        assert url_host("0.0.0.0") == "127.0.0.1"
        assert url_host("::") == "[::1]"
        assert url_host("::1") == "[::1]"
        assert url_host("example.org") == "example.org"


class CommandTests:
    """The ``tmq`` command lines of the parts: the names of DESIGN §10 and the ops contract."""

    def test_broker(self):
        """A broker listens and serves its metrics on loopback, with its id, data directory
        and metadata store."""
        arguments = broker_arguments(2, 9092, Path("/w/broker-2"), "etcd://127.0.0.1:2379", 9100)
        assert arguments[0] == "broker"
        assert pairs(arguments) >= {
            ("--id", "2"),
            ("--listen", "127.0.0.1:9092"),
            ("--data-dir", "/w/broker-2"),
            ("--metadata", "etcd://127.0.0.1:2379"),
            ("--metrics-listen", "127.0.0.1:9100"),
        }

    def test_sink(self):
        """The sink consumes the demo's topic as the demo's group into the database."""
        arguments = sink_arguments("h:1,h:2", "dbname=telemetry", 9101)
        assert arguments[0] == "sink"
        assert pairs(arguments) >= {
            ("--topic", "gpu-telemetry"),
            ("--group", "tmq-demo"),
            ("--dsn", "dbname=telemetry"),
            ("--metrics-listen", "127.0.0.1:9101"),
            ("--bootstrap", "h:1,h:2"),
        }

    def test_api(self):
        """The API serves the database on the listen address, an IPv6 host in brackets."""
        assert api_arguments("dbname=t", ("0.0.0.0", 8080)) == [
            "api", "--dsn", "dbname=t", "--listen", "0.0.0.0:8080",
        ]  # fmt: skip
        assert api_arguments("dbname=t", ("::", 80))[-1] == "[::]:80"

    def test_producer(self):
        """The producer replays the CSV into the topic in a loop, without a progress line."""
        arguments = producer_arguments("h:1", Path("/data/x.csv"), 0.5, 9102)
        assert arguments[0] == "producer"
        assert "--loop" in arguments
        assert pairs(arguments) >= {
            ("--csv", "/data/x.csv"),
            ("--topic", "gpu-telemetry"),
            ("--interval", "0.5"),
            ("--progress", "never"),
            ("--metrics-listen", "127.0.0.1:9102"),
            ("--bootstrap", "h:1"),
        }

    def test_child_runs_this_python(self, tmp_path):
        """A part runs ``python -m tmq.tools.cli`` of this interpreter, logs to
        ``logs/NAME.log``, and has not failed before it starts."""
        child = ChildService("sink", ["sink"], tmp_path, lambda: True)
        assert child.command == [sys.executable, "-m", "tmq.tools.cli", "sink"]
        assert child.log_path == tmp_path / "logs" / "sink.log"
        assert (child.pid, child.failure()) == (None, None)


def pairs(arguments: list[str]) -> set[tuple[str, str]]:
    """Every (argument, next argument) pair of a command line."""
    return set(itertools.pairwise(arguments))


SINK_METRICS = """\
# HELP tmq_sink_rows_written_total Rows inserted.
# TYPE tmq_sink_rows_written_total counter
tmq_sink_rows_written_total 24700.0
tmq_sink_rows_written_created 1.7e+09
# HELP tmq_sink_consumer_lag_messages Records behind the high watermark.
# TYPE tmq_sink_consumer_lag_messages gauge
tmq_sink_consumer_lag_messages{partition="0"} 3.0
tmq_sink_consumer_lag_messages{partition="1"} 4.0
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.5
"""


class StatusTests:
    """The status line: the sink's metrics, the figures shown, and how they are drawn."""

    def test_sink_metrics(self):
        """Rows written come from the counter; the lag is summed over the partitions."""
        assert parse_sink_metrics(SINK_METRICS) == SinkFigures(24700.0, 7.0)

    def test_sink_metrics_without_partitions(self):
        """No lag samples (the sink owns no partition yet): the lag is unknown."""
        text = "# TYPE tmq_sink_rows_written_total counter\ntmq_sink_rows_written_total 0\n"
        assert parse_sink_metrics(text) == SinkFigures(0.0, None)

    @pytest.mark.parametrize("text", ["process_cpu_seconds_total 1.5\n", "not { metrics\n"])
    def test_not_sink_metrics(self, text):
        """Text without the rows counter, or not the exposition format: nothing."""
        assert parse_sink_metrics(text) is None

    def test_first_status(self):
        """The first line has no rate yet."""
        line = format_status(None, Reading(10.0, 2470, "rows written", 12), 65)
        assert line == "up 0:01:05 | 2,470 rows written | ? rows/s | consumer lag 12"

    def test_rate(self):
        """The rate is the count's growth per second since the previous reading."""
        before = Reading(10.0, 2470, "rows written", 0)
        after = Reading(12.0, 7410, "rows written", 0)
        line = format_status(before, after, 3725)
        assert line == "up 1:02:05 | 7,410 rows written | 2,470 rows/s | consumer lag 0"

    def test_fallback_figures(self):
        """Counted in PostgreSQL: records committed, lag unknown; no rate across a change of
        what is counted, nor from an unknown count."""
        metrics = Reading(10.0, 2470, "rows written", 0)
        committed = Reading(12.0, 4940, "records committed", None)
        assert format_status(metrics, committed, 5) == (
            "up 0:00:05 | 4,940 records committed | ? records/s | consumer lag ?"
        )
        unknown = Reading(14.0, None, "records committed", None)
        assert format_status(committed, unknown, 7) == (
            "up 0:00:07 | ? records committed | ? records/s | consumer lag ?"
        )

    def test_console_on_a_terminal(self):
        """On a terminal the status line is redrawn in place, and ended before a line."""
        stream = Terminal()
        console = Console(stream)
        console.begin("starting etcd")
        console.done("127.0.0.1:2379")
        console.status("one")
        console.status("two")
        console.say("bye")
        assert stream.getvalue() == (
            "starting etcd... ok (127.0.0.1:2379)\n\rone\x1b[K\rtwo\x1b[K\nbye\n"
        )

    def test_console_on_a_pipe(self):
        """Elsewhere each status is a line; a step cut short is ended by the next line."""
        stream = io.StringIO()
        console = Console(stream)
        console.status("one")
        console.begin("starting etcd")
        console.say("failed")
        console.begin("stopping")
        console.done()
        assert stream.getvalue() == "one\nstarting etcd... \nfailed\nstopping... ok\n"

    def test_console_on_a_closed_pipe(self):
        """A stream that fails stops getting writes, and the failure does not reach the
        caller (the demo still stops cleanly)."""
        stream = ClosedPipe()
        console = Console(stream)
        console.say("one")
        console.status("two")
        console.begin("stopping")
        console.done()
        assert stream.writes == 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class ClosedPipe(io.StringIO):
    """Counts writes; every one fails as on a pipe whose reader is gone."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")


class ReportTests:
    """What the demo shows about its parts."""

    def test_service_lines(self):
        """A line per part: name, pid, address, metrics URL and log."""
        services = [
            SimpleNamespace(name="etcd", pid=10, address="127.0.0.1:2379", metrics_url=None,
                            log_path=Path("/w/etcd/etcd.log")),
            SimpleNamespace(name="broker-1", pid=11, address="kafka 127.0.0.1:9092",
                            metrics_url="http://127.0.0.1:9100/metrics",
                            log_path=Path("/w/logs/broker-1.log")),
        ]  # fmt: skip
        assert describe_services(services) == [
            "  etcd       pid 10       127.0.0.1:2379  log /w/etcd/etcd.log",
            "  broker-1   pid 11       kafka 127.0.0.1:9092  metrics "
            "http://127.0.0.1:9100/metrics  log /w/logs/broker-1.log",
        ]

    def test_exit_descriptions(self):
        """An exit status, or the signal that killed the process."""
        assert exit_description(1) == "exited with status 1"
        assert exit_description(-signal.SIGKILL) == "was killed by SIGKILL"
        assert exit_description(-99) == "was killed by signal 99"

    def test_log_tail(self, tmp_path):
        """The last lines of a log; a missing log says so."""
        log = tmp_path / "sink.log"
        log.write_text("".join(f"line {n}\n" for n in range(50)))
        assert log_tail(log, 3) == "line 47\nline 48\nline 49"
        assert log_tail(tmp_path / "gone.log").startswith("(no log: ")
