"""``tmq bench api`` end to end on a tiny data set: a throwaway PostgreSQL, the real ``tmq api``,
wrk, the open loops and their psycopg baselines. Nothing here asserts performance: the JSON
has every figure, the figures are positive and agree with each other, and nothing is left
running, after a normal run and after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from integration_helpers import alive

TINY = ["--gpus", "4", "--days", "0.1", "--duration", "2", "--rounds", "1"]


def _bench(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "tmq.tools.cli", "bench", "api", *arguments]


def _descendants(pid: int) -> set[int]:
    """Every live process under ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _check_open_loop(summary: dict, rate: float) -> None:
    for entry in summary["rounds"]:
        for side in ("api", "baseline"):
            result = entry[side]
            assert result["errors"] == 0, result
            assert result["requests"] == round(rate * 2)
            assert result["achieved_per_s"] > 0
            latency = result["latency_ms"]
            assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
        assert entry["p99_ratio"] == pytest.approx(
            entry["api"]["latency_ms"]["p99"] / entry["baseline"]["latency_ms"]["p99"], abs=0.01
        )
    assert summary["latency_ms"] == summary["rounds"][0]["api"]["latency_ms"]
    assert summary["baseline"]["latency_ms"] == summary["rounds"][0]["baseline"]["latency_ms"]
    assert summary["meets_floor"] is (summary["latency_ms"]["p99"] <= summary["floor_p99_ms"])


class BenchApiRunTests:
    def test_a_tiny_run_reports_every_figure_next_to_its_baseline(self, tmp_path):
        """Every scenario has the API's figures and the psycopg baseline's, from one round,
        all positive; the data was loaded and checked; the exit status is 0."""
        finished = subprocess.run(
            _bench(*TINY), cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert finished.returncode == 0, finished.stderr
        data = json.loads(finished.stdout)
        assert data["benchmark"] == "api"
        assert data["verified"] is True and data["problems"] == []
        assert data["errors"] == 0
        assert data["config"]["rows"] == 4 * 10 * 144
        assert "durable=False" in data["config"]["postgres"]
        load = data["load"]
        assert load["rows"] == 5760 and load["seconds"] >= 0 and load["rows_per_s"] > 0

        gpus = data["gpus"]
        (entry,) = gpus["rounds"]
        assert entry["api"]["errors"] == 0
        assert gpus["requests_per_s"] == entry["api"]["requests_per_s"] > 0
        assert gpus["baseline"]["queries_per_s"] == entry["baseline"]["queries_per_s"] > 0
        assert gpus["ratio_to_baseline"] == pytest.approx(
            gpus["requests_per_s"] / gpus["baseline"]["queries_per_s"], abs=0.01
        )
        assert entry["api"]["api_cpu_us_per_request"] > 0
        assert all(value > 0 for value in gpus["latency_ms"].values())
        assert gpus["meets_floor"] is (gpus["requests_per_s"] >= gpus["floor_requests_per_s"])

        _check_open_loop(data["metrics"], 100)
        _check_open_loop(data["telemetry"], 50)
        assert data["meets_floors"] is all(
            data[name]["meets_floor"] for name in ("gpus", "metrics", "telemetry")
        )
        assert "round 1 of 1" in finished.stderr

    def test_an_empty_database_of_dsn_is_loaded_measured_and_emptied(self, tmp_path, pg_dsn):
        """With --dsn the bench uses that database (no cluster of its own) and leaves it
        migrated and empty."""
        import psycopg

        finished = subprocess.run(
            _bench(*TINY, "--dsn", pg_dsn), cwd=tmp_path, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert finished.returncode == 0, finished.stderr
        data = json.loads(finished.stdout)
        assert data["config"]["postgres"].startswith("the database of --dsn")
        assert data["verified"] is True and data["errors"] == 0
        assert "prewarm_seconds" not in data["load"]
        with psycopg.connect(pg_dsn) as connection:
            counts = connection.execute(
                "SELECT (SELECT count(*) FROM gpus), (SELECT count(*) FROM telemetry)"
            ).fetchone()
        assert counts == (0, 0)

    def test_a_database_of_dsn_that_holds_data_is_refused_and_kept(self, tmp_path, pg_dsn):
        """A --dsn with GPUs in it is refused (status 1, saying why), and its rows stay."""
        import psycopg

        from tmq.sink.schema import migrate

        with psycopg.connect(pg_dsn) as connection:
            migrate(connection)
            connection.execute(
                "INSERT INTO gpus (uuid, hostname, device, gpu_index, model, first_seen, "
                "last_seen) VALUES ('GPU-real', 'h', 'nvidia0', 0, 'm', now(), now())"
            )
        finished = subprocess.run(
            _bench(*TINY, "--dsn", pg_dsn), cwd=tmp_path, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert finished.returncode == 1
        assert "already holds GPUs or samples" in finished.stderr
        with psycopg.connect(pg_dsn) as connection:
            uuids = connection.execute("SELECT uuid FROM gpus").fetchall()
        assert uuids == [("GPU-real",)]

    def test_bad_options_are_usage_errors(self, tmp_path):
        """A bad option exits with status 2 and says which, without starting anything."""
        finished = subprocess.run(
            _bench("--rounds", "0"), cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert finished.returncode == 2
        assert "--rounds must be >= 1" in finished.stderr

    def test_ctrl_c_stops_every_process_it_started(self, tmp_path):
        """Ctrl-C (SIGINT to the foreground process group) during a measurement: the bench
        exits with 130, and the API, PostgreSQL and wrk it started are all gone."""
        bench = subprocess.Popen(
            _bench(*TINY[:-4], "--duration", "30", "--rounds", "1"),
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            process_group=0,
        )  # fmt: skip
        try:
            seen = ""
            deadline = time.monotonic() + 300
            while "round 1 of 1" not in seen:
                line = bench.stderr.readline()
                assert line or bench.poll() is None, seen
                seen += line
                assert time.monotonic() < deadline, seen
            time.sleep(1)  # wrk is running
            started = _descendants(bench.pid)
            assert started, "no child process to stop"
            os.killpg(bench.pid, signal.SIGINT)
            bench.wait(120)
            assert bench.returncode == 130, bench.stderr.read()
            deadline = time.monotonic() + 10
            while any(alive(pid) for pid in started) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not [pid for pid in started if alive(pid)]
        finally:
            if bench.poll() is None:
                os.killpg(bench.pid, signal.SIGKILL)
                bench.wait()
