"""Helpers of the integration tier: broker processes and required binaries."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def require_binary(name: str, package: str) -> str:
    """The path of ``name``; fails the test naming the Debian package when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install {package} (make test does, as root)")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        command = [
            sys.executable, "-m", "tmq.tools.cli", "broker",
            "--data-dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.port}",
        ]
        for setting in self.settings:
            command += ["--set", setting]
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
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
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"broker ignored {sig}:\n{self.log_path.read_text()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
