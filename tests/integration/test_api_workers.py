"""``tmq api --workers N``: N processes serve one socket, stop together, and a worker that
dies takes the API down whole (so its supervisor restarts it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from api_helpers import ApiProcess, load_csv
from pipeline_helpers import wait_for

from tmq.telemetry.csv_source import real_capture_path


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(child) for child in found.stdout.split()]


@pytest.fixture(scope="module")
def loaded_dsn(postgres_cluster):
    dsn = postgres_cluster.create_database("api_workers")
    load_csv(dsn, real_capture_path())
    yield dsn
    postgres_cluster.drop_database("api_workers")


class WorkersTests:
    def test_workers_serve_and_stop_together(self, loaded_dsn):
        """With --workers 3 there are two forked workers; requests are answered; SIGTERM to
        the parent stops all three with status 0."""
        api = ApiProcess(loaded_dsn, Path(tempfile.mkdtemp()), "--workers", "3")
        try:
            wait_for(lambda: len(children(api.process.pid)) == 2, 10, "two workers")
            workers = children(api.process.pid)
            statuses = [api.get("/api/v1/gpus?limit=1") for _ in range(40)]
            assert all(status == 200 and body["total"] == 247 for status, body in statuses)
            api.process.send_signal(signal.SIGTERM)
            assert api.process.wait(15) == 0
            assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
        finally:
            api.stop()

    def test_a_dead_worker_stops_the_api(self, loaded_dsn):
        """When a worker is killed, the parent stops the others and exits with status 1,
        saying which worker stopped."""
        api = ApiProcess(loaded_dsn, Path(tempfile.mkdtemp()), "--workers", "3")
        try:
            wait_for(lambda: len(children(api.process.pid)) == 2, 10, "two workers")
            first, second = children(api.process.pid)
            os.kill(first, signal.SIGKILL)
            assert api.process.wait(15) == 1
            assert f"worker {first} stopped" in api.log_path.read_text()
            wait_for(lambda: not os.path.exists(f"/proc/{second}"), 10, "the other worker gone")
        finally:
            api.stop()

    def test_bad_worker_count(self, loaded_dsn, tmp_path):
        """--workers 0 is a usage error (status 2)."""
        result = subprocess.run(
            [sys.executable, "-m", "tmq.tools.cli", "api", "--dsn", loaded_dsn, "--workers", "0"],
            cwd=tmp_path, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 2 and "--workers" in result.stderr
