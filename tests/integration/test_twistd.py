"""``twistd -n tmq-broker`` runs the same broker as ``tmq broker`` (DESIGN §8, §10).

twistd finds plugins on sys.path, which an editable install does not extend (DESIGN §1), so
these tests put a non-editable install (the ``installed_site`` fixture: a wheel built from this
tree and unpacked) on PYTHONPATH and run from a temporary directory, never the repo root.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
from integration_helpers import (
    TwistdBrokerProcess,
    assert_no_traceback,
    free_port,
    require_binary,
    twistd_command,
)


def run(command: list[str], cwd, site, timeout: float = 60, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def test_the_plugin_is_found_in_the_installed_package(installed_site, tmp_path):
    """With the installed package, ``twistd --help`` lists tmq-broker, ``twistd tmq-broker
    --help`` documents the broker options, and tmq imports from the install, not the repo."""
    listing = run([*twistd_command(), "--help"], tmp_path, installed_site)
    assert listing.returncode == 0, listing.stderr
    assert "tmq-broker" in listing.stdout
    options = run([*twistd_command(), "tmq-broker", "--help"], tmp_path, installed_site)
    assert options.returncode == 0, options.stderr
    for option in ("--data-dir", "--listen", "--advertise", "--set"):
        assert option in options.stdout
    where = run(
        [sys.executable, "-c", "import tmq.protocol; print(tmq.protocol.__file__)"],
        tmp_path,
        installed_site,
    )
    assert where.stdout.strip().startswith(str(installed_site)), where.stdout


def test_twistd_serves_kcat_and_stops_cleanly(installed_site, tmp_path):
    """``twistd -n tmq-broker --data-dir D --listen 127.0.0.1:PORT`` serves kcat (produce,
    consume, metadata); SIGTERM stops it cleanly (the broker's shutdown, the clean-shutdown
    marker). twistd then ends by re-raising the signal on itself, so the status is -SIGTERM
    (Twisted's own convention, ``twisted.application.app._exitWithSignal``), not the 0 of
    ``tmq broker``."""
    kcat = require_binary("kcat", "kcat")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    broker = TwistdBrokerProcess(data_dir, site_dir=installed_site).start()
    try:
        lines = b"".join(b"twistd line %d\n" % i for i in range(1000))
        produced = subprocess.run(
            [kcat, "-b", broker.bootstrap, "-P", "-t", "via-twistd", "-z", "lz4"],
            input=lines,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert produced.returncode == 0, produced.stderr
        consumed = subprocess.run(
            [
                kcat,
                "-b",
                broker.bootstrap,
                "-C",
                "-t",
                "via-twistd",
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%s\\n",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert consumed.returncode == 0, consumed.stderr
        assert consumed.stdout == lines
        listing = subprocess.run(
            [kcat, "-b", broker.bootstrap, "-L", "-t", "via-twistd"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert f"broker 0 at 127.0.0.1:{broker.port}" in listing.stdout
        assert 'topic "via-twistd" with 1 partitions' in listing.stdout
    finally:
        status = broker.stop(signal.SIGTERM)
    log = broker.log()
    assert status in (0, -signal.SIGTERM), log
    assert "twistd" in log and "stopped cleanly" in log
    assert (data_dir / ".tmq_cleanshutdown").exists()
    assert_no_traceback(log)


@pytest.mark.parametrize("runner", ["tmq broker", "twistd"])
def test_a_broker_that_cannot_listen_exits_nonzero(installed_site, tmp_path, runner):
    """A broker whose port is taken says it could not start and exits with a non-zero status,
    under ``tmq broker`` and under ``twistd -n tmq-broker`` alike (a process that stays up
    without listening looks alive to a supervisor)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data_dir = tmp_path / "data"
        if runner == "twistd":
            command = [*twistd_command(), "-n", "--pidfile=", "tmq-broker"]
        else:
            command = [sys.executable, "-m", "tmq.tools.cli", "broker"]
        command += ["--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"]
        try:
            result = run(command, tmp_path, installed_site, timeout=10)
        except subprocess.TimeoutExpired as expired:
            output = (expired.stdout or b"").decode(errors="replace")
            pytest.fail(f"{runner} was still running 10s after failing to listen:\n{output}")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "could not start" in output or "Address already in use" in output
    assert free_port()  # the machine still has ports to give
