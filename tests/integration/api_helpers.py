"""Helpers of the API's integration tests: loading samples straight into the sink's tables
(the sink's own path is tested in test_sink_pipeline.py), and running ``tmq api``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from tmq.sink.schema import migrate
from tmq.telemetry.csv_source import parse_csv
from tmq.telemetry.model import Sample

_UPSERT_GPU = """
    INSERT INTO gpus (uuid, hostname, device, gpu_index, model, first_seen, last_seen)
    VALUES (%s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (uuid) DO UPDATE SET
        first_seen = least(gpus.first_seen, excluded.first_seen),
        last_seen = greatest(gpus.last_seen, excluded.last_seen)
"""


def _time(time_us: int) -> datetime:
    return datetime.fromtimestamp(time_us / 1e6, UTC).replace(microsecond=time_us % 1_000_000)


def load_samples(dsn: str, samples: Iterable[Sample]) -> int:
    """Migrate the database and write ``samples`` (GPUs first, then COPY of the rows);
    returns the number of samples."""
    samples = list(samples)
    gpus: dict[str, tuple] = {}
    for s in samples:
        first, last = gpus.get(s.uuid, (None, None, None, None, None, s.time_us, s.time_us))[5:]
        gpus[s.uuid] = (
            s.uuid, s.hostname, s.device, s.gpu_index, s.model,
            min(first, s.time_us), max(last, s.time_us),
        )  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as connection:
        migrate(connection)
        with connection.transaction():
            for uuid, host, device, index, model, first, last in gpus.values():
                connection.execute(
                    _UPSERT_GPU, (uuid, host, device, index, model, _time(first), _time(last))
                )
            ids = dict(connection.execute("SELECT uuid, id FROM gpus").fetchall())
            with connection.cursor().copy(
                "COPY telemetry (time, gpu, metric, value, container, pod, namespace) FROM STDIN"
            ) as copy:
                for s in samples:
                    copy.write_row(
                        (
                            _time(s.time_us), ids[s.uuid], s.metric, s.value,
                            s.container or None, s.pod or None, s.namespace or None,
                        )
                    )  # fmt: skip
        connection.execute("ANALYZE")
    return len(samples)


def load_csv(dsn: str, path: Path) -> int:
    with open(path, newline="") as stream:
        samples = [row for row in parse_csv(stream) if isinstance(row, Sample)]
    return load_samples(dsn, samples)


class ApiProcess:
    """``tmq api`` on 127.0.0.1 and a free port; ``url(path)`` addresses it."""

    def __init__(self, dsn: str, cwd: Path, *extra: str):
        self.log_path = cwd / "api.log"
        with open(self.log_path, "w") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tmq.tools.cli", "api", "--dsn", dsn,
                 "--listen", "127.0.0.1:0", *extra],
                cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.base = self._wait_for_address()

    def _wait_for_address(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"listening on (http://\S+)", self.log_path.read_text())
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"tmq api exited: {self.log_path.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"tmq api did not listen in {timeout} s: {self.log_path.read_text()}")

    def url(self, path: str) -> str:
        return self.base + path

    def get(self, path: str) -> tuple[int, dict]:
        """Status and JSON body of GET ``path``."""
        try:
            with urllib.request.urlopen(self.url(path), timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
