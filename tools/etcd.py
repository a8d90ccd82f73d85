"""``ThrowawayEtcd``: a private one-member etcd for the demo and the tests.

One member lives in one directory::

    <directory>/data       the member's data (kept across stop()/start())
    <directory>/etcd.log   its output, appended

It listens for clients and peers on 127.0.0.1 only, on free ports (or the ``client_port``
given), without TLS or authentication: for throwaway data, never for anything reachable from
another host.

No process is left behind: etcd runs in its own process group, which ``stop()`` shuts down
(SIGTERM, etcd's clean stop, then SIGKILL of the group); ``stop()`` also runs at interpreter
exit, and etcd gets SIGTERM when the thread that started it dies. Start it from a thread that
lives as long as the member (the main thread).
"""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .processes import die_with_parent_hook, free_port, stop_process_group

__all__ = ["EtcdError", "ThrowawayEtcd"]

INSTALL_HINT = "apt-get install etcd-server"


class EtcdError(RuntimeError):
    """etcd is not installed, cannot start, or does not become healthy."""


class ThrowawayEtcd:
    """A private etcd member.

    :param directory: where it lives; default a new temporary directory, removed by ``stop()``.
    :param client_port: the client port; default a free one (another free one for peers).
    :param path: where to look for the ``etcd`` program; default ``$PATH``.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        client_port: int | None = None,
        path: str | None = None,
    ):
        found = shutil.which("etcd", path=path)
        if found is None:
            raise EtcdError(f"etcd is not installed (not on PATH): {INSTALL_HINT}")
        self.binary = found
        self._temporary = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="tmq-etcd-"))
        self._fixed_port = client_port
        self.client_port: int | None = None
        self._process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "etcd.log"

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:<client port>`` (while running)."""
        if self.client_port is None:
            raise EtcdError("etcd is not running")
        return f"127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> ThrowawayEtcd:
        """Start the member and wait until it answers ``/health``; return ``self``.

        :raises EtcdError: it exited or did not become healthy within ``timeout`` seconds (the
            message holds the end of its log).
        """
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        client_port = self._fixed_port or free_port()
        peer_port = free_port()
        client = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        command = [
            self.binary, "--name", "tmq", "--data-dir", str(self.directory / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"tmq={peer}",
        ]  # fmt: skip
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                process_group=0, preexec_fn=die_with_parent_hook(signal.SIGTERM),
            )  # fmt: skip
        atexit.register(self.stop)
        self.client_port = client_port
        deadline = time.monotonic() + timeout
        while not self._healthy(client):
            if self._process.poll() is not None or time.monotonic() > deadline:
                stop_process_group(self._process, 5, signal.SIGTERM)
                self.client_port = None
                state = "exited" if self._process.returncode else "did not become healthy"
                raise EtcdError(f"etcd {state}:\n{self._log_since(mark)}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the member (SIGTERM, then SIGKILL of its group after ``timeout`` seconds);
        remove the directory if it was a temporary one. Stopping again does nothing."""
        atexit.unregister(self.stop)
        if self._process is not None:
            stop_process_group(self._process, timeout, signal.SIGTERM)
            self._process = None
        self.client_port = None
        if self._temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ThrowawayEtcd:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @staticmethod
    def _healthy(client_url: str) -> bool:
        try:
            with urllib.request.urlopen(f"{client_url}/health", timeout=1) as answer:
                return b'"health":"true"' in answer.read()
        except (OSError, urllib.error.URLError):
            return False

    def _log_since(self, mark: int, limit: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(mark)
                return log.read().decode(errors="replace")[-limit:]
        except OSError:
            return "(no log)"
