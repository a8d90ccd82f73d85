"""Child servers that never outlive their parent: the helpers ``ThrowawayPostgres`` and
``ThrowawayEtcd`` share."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess

__all__ = ["die_with_parent_hook", "free_port", "stop_process_group"]

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may take it before use)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def die_with_parent_hook(signal_number: int = signal.SIGINT):
    """A ``preexec_fn`` asking Linux to send the child ``signal_number`` when the thread that
    forked it dies. It runs after the child took another user's ids, if any (which clear that
    setting); ``prctl`` is looked up here, in the parent, so the child only calls it."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal_number, 0, 0, 0)

    return hook


def stop_process_group(
    process: subprocess.Popen, timeout: float, signal_number: int = signal.SIGINT
) -> None:
    """Send ``signal_number`` (the server's clean shutdown) to ``process``, the leader of its
    own process group; after ``timeout`` seconds, SIGKILL that group (the server and its
    children), then reap the leader.

    The group is signalled only while its leader is not yet reaped, so its id cannot belong
    to anyone else."""
    if process.poll() is not None:
        return
    process.send_signal(signal_number)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
