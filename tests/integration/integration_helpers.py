"""Helpers of the integration tier: broker processes and required binaries."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tmq.protocol.apis import API_BY_KEY
from tmq.protocol.framing import encode_frame
from tmq.protocol.headers import encode_request_header, read_response_header


def require_binary(name: str, package: str) -> str:
    """The path of ``name``; fails the test naming the Debian package when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install {package} (make test does, as root)")
    return path


def process_state(pid: int) -> str | None:
    """The state letter of ``/proc/<pid>/stat`` (``T`` stopped, ``Z`` zombie), ``None`` when
    there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    return process_state(pid) not in (None, "Z")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen | None, sig: int, timeout: float, log_path: Path) -> int:
    """Send ``sig`` to ``process`` and return its exit status; a process still running after
    ``timeout`` is killed and the test fails with its log."""
    if process is None or process.poll() is not None:
        return process.returncode if process else 0
    process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"{log_path.name}: ignored {sig}:\n{log_path.read_text()}") from None


class BrokerProcess:
    """A ``tmq broker`` subprocess with its own data directory."""

    def __init__(self, data_dir: Path, *settings: str, port: int | None = None):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.settings = settings
        self.process: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"broker-{self.port}.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line that runs this broker."""
        command = [
            sys.executable,
            "-m",
            "tmq.tools.cli",
            "broker",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
        ]
        for setting in self.settings:
            command += ["--set", setting]
        return command

    def environment(self) -> dict[str, str]:
        """The environment the broker runs with."""
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir.parent,
            env=self.environment(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"broker exited at start:\n{self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        log = self.log_path.read_text()
        raise AssertionError(f"broker did not listen within {timeout}s:\n{log}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop the process with ``sig`` and return its exit status."""
        return stop_process(self.process, sig, timeout, self.log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_size(self) -> int:
        """The length of the log so far: pass it to ``log_since`` to read what comes after."""
        return len(self.log()) if self.log_path.exists() else 0

    def log_since(self, mark: int) -> str:
        return self.log()[mark:]


def twistd_command() -> list[str]:
    """How to run this interpreter's twistd (the script next to it, as a venv installs it)."""
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; run()"]


class TwistdBrokerProcess(BrokerProcess):
    """The same broker run as ``twistd -n tmq-broker``, importing tmq from ``site_dir`` (a
    non-editable install: twistd does not see the plugin of an editable one, DESIGN §1)."""

    def __init__(self, data_dir: Path, *settings: str, site_dir: Path, port: int | None = None):
        super().__init__(data_dir, *settings, port=port)
        self.site_dir = site_dir
        self.log_path = data_dir.parent / f"twistd-{self.port}.log"

    def command(self) -> list[str]:
        command = [
            *twistd_command(),
            "-n",
            "--pidfile=",
            "tmq-broker",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
        ]
        for setting in self.settings:
            command += ["--set", setting]
        return command

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "PYTHONPATH": str(self.site_dir)}


TRACEBACK_MARKERS = ("Traceback", "Unhandled Error", "Unhandled error", "#critical")


def assert_no_traceback(log: str) -> None:
    """Fail, quoting the log, if it shows a traceback or a critical (unexpected) failure."""
    found = [marker for marker in TRACEBACK_MARKERS if marker in log]
    assert not found, f"the broker log shows {found}:\n{log[-6000:]}"


def dump_log(partition_dir: Path) -> list[dict]:
    """The batches of a partition directory, as ``tmq debug dump-log`` prints them."""
    result = subprocess.run(
        [sys.executable, "-m", "tmq.tools.cli", "debug", "dump-log", str(partition_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=partition_dir,  # not the repo root, whose tmq/ would shadow the installed package
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


class RawClient:
    """A bare Kafka connection: frames built with ``tmq.protocol``, bytes sent as they are.

    Every read is bounded by ``timeout`` seconds, so a broker that neither answers nor closes
    fails the test instead of hanging it.
    """

    def __init__(self, port: int, timeout: float = 10.0, client_id: str | None = "raw-test"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.client_id = client_id
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self, api_key: int, api_version: int, body: bytes | dict) -> bytes:
        """A request frame, the next correlation id in its header. A dict body is built with
        the API's request declaration at ``api_version``."""
        if isinstance(body, dict):
            body = API_BY_KEY[api_key].request.build(body, api_version)
        self.correlation_id += 1
        header = encode_request_header(api_key, api_version, self.correlation_id, self.client_id)
        return b"".join(encode_frame(header, body))

    def send(self, api_key: int, api_version: int, body: bytes | dict) -> int:
        """Send one request; return its correlation id."""
        self.send_bytes(self.frame(api_key, api_version, body))
        return self.correlation_id

    def _read_exactly(self, count: int) -> bytes:
        chunks = []
        while count:
            chunk = self.sock.recv(min(count, 1 << 20))
            if not chunk:
                raise EOFError("the broker closed the connection")
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    def read_frame(self) -> bytes:
        (size,) = struct.unpack(">i", self._read_exactly(4))
        assert 0 <= size <= 64 << 20, f"response frame size {size}"
        return self._read_exactly(size)

    def read_response(self, api_key: int, api_version: int, correlation_id: int):
        """The next response, decoded with the API's response declaration; its correlation id
        must be ``correlation_id``."""
        frame = self.read_frame()
        header, offset = read_response_header(frame, api_key, api_version)
        assert header.correlation_id == correlation_id
        return API_BY_KEY[api_key].response.parse(frame[offset:], api_version)

    def request(self, api_key: int, api_version: int, body: bytes | dict):
        """Send a request and return its decoded response."""
        correlation_id = self.send(api_key, api_version, body)
        return self.read_response(api_key, api_version, correlation_id)

    def closed_by_broker(self) -> bool:
        """Whether the broker closes the connection (within the timeout) without answering.
        Raises if it answers instead."""
        try:
            data = self.sock.recv(4)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        assert data == b"", f"the broker answered ({data!r}...) instead of closing"
        return True
