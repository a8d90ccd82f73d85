"""The broker process itself: refusing a data directory in use, and bad command lines."""

from __future__ import annotations

import subprocess
import sys

from integration_helpers import free_port


def run_broker(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tmq.tools.cli", "broker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def test_second_broker_on_the_same_data_dir_exits_1(broker, tmp_path):
    """A second broker on a data directory in use exits 1 saying so; the first keeps
    serving."""
    result = run_broker(
        "--data-dir", str(broker.data_dir), "--listen", f"127.0.0.1:{free_port()}", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "is in use by another broker" in result.stderr
    assert "Traceback" not in result.stderr
    assert broker.process.poll() is None


def test_bad_options_exit_2(tmp_path):
    """A bad option value is a usage error (exit 2) naming the option."""
    result = run_broker(
        "--data-dir", str(tmp_path / "d"), "--set", "flush.policy=sometimes", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "flush.policy must be one of always, interval, never" in result.stderr
    missing = run_broker(cwd=tmp_path)
    assert missing.returncode == 2
    assert "--data-dir is required" in missing.stderr
