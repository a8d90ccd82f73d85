"""``tmq demo`` as a user runs it: the whole pipeline from one command, in a subprocess whose
working directory is outside the checkout; the data reaches the API, every service serves its
metrics, and the demo leaves no process and no listening port behind, whether stopped with
Ctrl-C or by the death of one of its parts."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from uuid import uuid4

import pytest
from integration_helpers import alive
from process_cluster import processes_mentioning

from tmq.tools.processes import free_port

#: GPUs in the DCGM capture the demo replays.
CAPTURE_GPUS = 247
START_S = 120.0
STOP_S = 60.0
#: A line of the demo's table of its parts: name and pid.
SERVICE_LINE = re.compile(r"^  (\S+)\s+pid (\d+)\s", re.MULTILINE)
METRICS_URL = re.compile(r"metrics (http://\S+/metrics)")
PORT = re.compile(r"127\.0\.0\.1:(\d+)|port=(\d+)")
STATUS_LINE = re.compile(
    r"^up \d+:\d\d:\d\d \| [\d,]+ rows written \| [\d,?]+ rows/s \| consumer lag", re.MULTILINE
)


class DemoProcess:
    """``tmq demo --api-listen 127.0.0.1:<free port> --workdir /tmp/<new> ARGS`` in its own
    process group, its stdout and stderr read into ``output`` by a thread. The work directory
    is under /tmp: as root, PostgreSQL runs as the postgres user, who cannot reach pytest's
    ``tmp_path``."""

    def __init__(self, cwd: Path, *arguments: str, env: dict[str, str] | None = None):
        self.api_port = free_port()
        self.workdir = Path(f"/tmp/tmq-demo-test-{uuid4().hex[:12]}")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tmq.tools.cli", "demo",
                "--api-listen", f"127.0.0.1:{self.api_port}", "--workdir", str(self.workdir),
                *arguments,
            ],
            cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, process_group=0, env=env,
        )  # fmt: skip
        self._chunks: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._chunks.append(line)

    @property
    def output(self) -> str:
        return "".join(self._chunks)

    def wait_for(self, condition, timeout: float, what: str):
        """Poll ``condition()`` until it returns something true (returned); fail with the
        output when the demo exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                break
            time.sleep(0.25)
        pytest.fail(f"{what}: not within {timeout:.0f} s; the demo's output:\n{self.output}")

    def services(self) -> dict[str, int]:
        """The pid of every part, from the demo's table (empty before it is printed)."""
        return {name: int(pid) for name, pid in SERVICE_LINE.findall(self.output)}

    def stopped(self, timeout: float) -> int:
        """Wait for the exit (the reader done too); its status. Fails with the output when
        the demo has not exited within ``timeout``."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo did not exit within {timeout:.0f} s; its output:\n{self.output}")
        self._reader.join(10)
        return status

    def close(self) -> None:
        """Kill the demo if it still runs (its parts get SIGTERM when it dies); remove the
        work directory."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def start_demo(tmp_path):
    """``start_demo(*arguments)``: a ``DemoProcess``; every one is killed at the end."""
    started: list[DemoProcess] = []

    def start(*arguments: str, env: dict[str, str] | None = None) -> DemoProcess:
        demo = DemoProcess(tmp_path, *arguments, env=env)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        demo.close()


def path_without(program: str, directory: Path) -> str:
    """A PATH holding every program of this one but ``program``: ``directory`` filled with
    links to them."""
    directory.mkdir()
    for entry in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(entry):
            continue
        for name in os.listdir(entry):
            link = directory / name
            if name != program and not link.exists():
                link.symlink_to(Path(entry, name))
    assert shutil.which(program, path=str(directory)) is None
    return str(directory)


def get(url: str) -> tuple[int, str]:
    """``GET url``: status and body; (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:
        return 0, str(error)


def gpus_total(api_port: int) -> int | None:
    status, body = get(f"http://127.0.0.1:{api_port}/api/v1/gpus?limit=1")
    return json.loads(body)["total"] if status == 200 else None


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def assert_nothing_left(demo: DemoProcess, pids: dict[str, int]) -> None:
    """No part is alive, no process mentions the work directory, no port of the demo's
    output is listening."""
    assert [name for name, pid in pids.items() if alive(pid)] == []
    assert processes_mentioning(str(demo.workdir)) == []
    ports = {int(a or b) for a, b in PORT.findall(demo.output)}
    assert demo.api_port in ports
    assert sorted(port for port in ports if listening(port)) == []


class DemoTests:
    """The whole pipeline from ``tmq demo``, and how it ends."""

    def test_pipeline_metrics_and_ctrl_c(self, start_demo):
        """The demo brings the capture's 247 GPUs to the API; the 3 brokers, the sink, the
        producer and the API each serve tmq_ metrics at the URL it prints; the status line
        shows the sink's figures; Ctrl-C (SIGINT) stops everything: exit status 0, no part
        left, no port listening, the work directory it created removed."""
        demo = start_demo("--status-interval", "1")
        demo.wait_for(
            lambda: gpus_total(demo.api_port) == CAPTURE_GPUS, START_S, "247 GPUs in the API"
        )
        pids = demo.services()
        expected = {"etcd", "postgres", "sink", "api", "producer"}
        expected |= {f"broker-{n}" for n in (1, 2, 3)}
        assert set(pids) == expected
        metrics = {}
        for line in demo.output.splitlines():
            named, url = SERVICE_LINE.match(line), METRICS_URL.search(line)
            if named and url:
                metrics[named.group(1)] = url.group(1)
        assert set(metrics) == expected - {"etcd", "postgres"}
        for name, url in metrics.items():
            status, body = get(url)
            assert status == 200, (name, url, body)
            family = name.split("-")[0]
            assert re.search(rf"^# TYPE tmq_{family}_\w+ ", body, re.MULTILINE), (name, body)
        assert "Swagger UI  http://127.0.0.1:" in demo.output
        demo.wait_for(
            lambda: STATUS_LINE.search(demo.output), 30, "a status line of the sink's figures"
        )
        demo.process.send_signal(signal.SIGINT)
        assert demo.stopped(STOP_S) == 0, demo.output
        assert "stopping everything... ok" in demo.output
        assert_nothing_left(demo, pids)
        assert not demo.workdir.exists()

    def test_a_part_that_dies_stops_the_demo(self, start_demo):
        """When the producer is killed, the demo names it, shows the end of its log, stops
        everything else and exits 1, keeping the work directory for the logs."""
        demo = start_demo("--brokers", "1", "--partitions", "1")
        pids = demo.wait_for(
            lambda: "producer" in (found := demo.services()) and found, START_S, "the table"
        )
        os.kill(pids["producer"], signal.SIGKILL)
        assert demo.stopped(STOP_S) == 1, demo.output
        producer_log = demo.workdir / "logs" / "producer.log"
        assert (
            f"tmq demo: producer (pid {pids['producer']}) was killed by SIGKILL; the end of "
            f"its log, {producer_log}:" in demo.output
        )
        assert f"tmq demo: error: producer (pid {pids['producer']}) was killed by SIGKILL" in (
            demo.output
        )
        assert_nothing_left(demo, pids)
        assert producer_log.exists()

    def test_without_etcd_one_broker_on_local_metadata(self, start_demo, tmp_path):
        """With no etcd on PATH the demo says so, runs one broker on the local metadata store
        (replication factor 1), still brings the 247 GPUs to the API, and stops cleanly."""
        env = {**os.environ, "PATH": path_without("etcd", tmp_path / "bin")}
        demo = start_demo("--status-interval", "1", env=env)
        demo.wait_for(
            lambda: gpus_total(demo.api_port) == CAPTURE_GPUS, START_S, "247 GPUs in the API"
        )
        assert "etcd is not installed" in demo.output
        assert "replication factor 1" in demo.output
        pids = demo.services()
        assert set(pids) == {"postgres", "broker-1", "sink", "api", "producer"}
        demo.process.send_signal(signal.SIGINT)
        assert demo.stopped(STOP_S) == 0, demo.output
        assert_nothing_left(demo, pids)
