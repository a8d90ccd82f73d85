"""``tmq gen``: synthetic DCGM CSV or Prometheus text on stdout or in a file."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from tmq.telemetry.csv_source import parse_csv, parse_rfc3339
from tmq.telemetry.exposition import parse_exposition, render_exposition
from tmq.telemetry.gen import DEFAULT_START_US, generate, write_csv
from tmq.telemetry.model import Sample
from tmq.tools.cli import main

SIZE = ["--hosts", "2", "--gpus-per-host", "3", "--scrapes", "2"]


def run(capsys, *argv: str) -> str:
    """Run ``tmq gen`` successfully; its stdout."""
    assert main(["gen", *argv]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def expected_csv(**arguments) -> str:
    out = io.StringIO()
    write_csv(generate(**{"hosts": 2, "gpus_per_host": 3, "scrapes": 2, **arguments}), out)
    return out.getvalue()


class OutputTests:
    """What tmq gen writes, and where."""

    def test_csv_on_stdout_by_default(self, capsys):
        """Without --format and --output, stdout is the CSV capture of the simulated fleet:
        2 hosts x 3 GPUs x 2 scrapes x 10 fields, every row a sample."""
        out = run(capsys, *SIZE)
        assert out == expected_csv()
        items = list(parse_csv(io.StringIO(out)))
        assert len(items) == 120
        assert all(isinstance(item, Sample) for item in items)

    def test_options_reach_the_generator(self, capsys):
        """--interval, --start, --seed and --extra-metrics shape the output."""
        out = run(
            capsys, *SIZE, "--interval", "0.5", "--start", "2030-01-01T01:00:00+01:00",
            "--seed", "42", "--extra-metrics",
        )  # fmt: skip
        assert out == expected_csv(
            interval_s=0.5,
            start_us=parse_rfc3339("2030-01-01T00:00:00Z"),
            seed=42,
            extra_metrics=True,
        )

    def test_output_file(self, capsys, tmp_path):
        """--output writes the same bytes to PATH, nothing to stdout, replacing a file."""
        path = tmp_path / "fleet.csv"
        path.write_text("old content that is longer than nothing\n" * 1000)
        assert run(capsys, *SIZE, "--output", str(path)) == ""
        assert path.read_bytes() == expected_csv().encode()

    def test_prometheus_one_scrape(self, capsys):
        """--format prometheus with one scrape is what an exporter serves: no timestamps."""
        out = run(capsys, "--hosts", "1", "--gpus-per-host", "2", "--scrapes", "1",
                  "--format", "prometheus")  # fmt: skip
        samples = list(generate(hosts=1, gpus_per_host=2, scrapes=1))
        assert out == render_exposition(samples)
        assert list(parse_exposition(out, DEFAULT_START_US)) == samples

    def test_prometheus_several_scrapes(self, capsys):
        """With several scrapes each line carries its time, so the page parses back to the
        generated samples (grouped by field)."""
        out = run(capsys, *SIZE, "--format", "prometheus")
        samples = list(generate(hosts=2, gpus_per_host=3, scrapes=2))
        parsed = list(parse_exposition(out, 0))
        assert sorted(parsed, key=_order) == sorted(samples, key=_order)

    def test_help_explains_every_option(self, capsys):
        """--help exits 0 and describes each option."""
        with pytest.raises(SystemExit) as exit_info:
            main(["gen", "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        for option in ("--hosts H", "--gpus-per-host G", "--scrapes S", "--interval SECONDS",
                       "--start RFC3339", "--seed N", "--extra-metrics", "--format",
                       "--output PATH"):  # fmt: skip
            assert option in text


def _order(sample: Sample):
    return (sample.metric, sample.time_us, sample.uuid)


class UsageTests:
    """Bad values are usage errors (exit 2); output failures exit 1 with one line."""

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--gpus-per-host", "1", "--scrapes", "1"], "--hosts"),
            (["--hosts", "0", "--gpus-per-host", "1", "--scrapes", "1"], "at least 1, not 0"),
            (["--hosts", "x", "--gpus-per-host", "1", "--scrapes", "1"], "not a whole number"),
            (["--hosts", "1", "--gpus-per-host", "65537", "--scrapes", "1"], "at most 65536"),
            (["--hosts", "1", "--gpus-per-host", "1", "--scrapes", "-3"], "--scrapes"),
            ([*SIZE, "--interval", "0"], "--interval"),
            ([*SIZE, "--interval", "nan"], "--interval"),
            ([*SIZE, "--interval", "soon"], "not a number of seconds"),
            ([*SIZE, "--start", "yesterday"], "--start"),
            ([*SIZE, "--start", "2025-07-18"], "RFC 3339"),
            ([*SIZE, "--seed", "1.5"], "--seed"),
            ([*SIZE, "--format", "json"], "invalid choice"),
        ],
    )
    def test_bad_values_exit_2(self, capsys, argv, message):
        """argparse refuses the value, names the problem, and writes nothing to stdout."""
        with pytest.raises(SystemExit) as exit_info:
            main(["gen", *argv])
        assert exit_info.value.code == 2
        captured = capsys.readouterr()
        assert message in captured.err
        assert captured.out == ""

    def test_unwritable_output_exits_1(self, capsys, tmp_path):
        """An --output in a missing directory fails with one line on stderr."""
        path = tmp_path / "missing" / "fleet.csv"
        assert main(["gen", *SIZE, "--output", str(path)]) == 1
        captured = capsys.readouterr()
        assert captured.err == f"tmq gen: error: cannot write {path}: No such file or directory\n"

    def test_reader_closing_the_pipe(self, tmp_path):
        """`tmq gen … | head -1`: the command stops with one line on stderr and status 1,
        no traceback (run in a process of its own, outside the repo root)."""
        process = subprocess.Popen(
            [sys.executable, "-m", "tmq.tools.cli", "gen", "--hosts", "40",
             "--gpus-per-host", "8", "--scrapes", "5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
        )  # fmt: skip
        assert process.stdout.readline().startswith(b"timestamp,metric_name,")
        process.stdout.close()
        status = process.wait(timeout=60)
        err = process.stderr.read().decode()
        process.stderr.close()
        assert status == 1
        assert err == "tmq gen: error: the output was closed before everything was written\n"
