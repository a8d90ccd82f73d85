"""``tmq topics``, ``tmq produce`` and ``tmq consume`` against a real broker."""

from __future__ import annotations

import subprocess
import sys


def tmq(*args: str, cwd, data: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tmq.tools.cli", *args],
        input=data,
        capture_output=True,
        timeout=60,
        cwd=cwd,  # not the repo root, whose tmq/ would shadow the installed package
        check=False,
    )


def test_cli_round_trip(broker, tmp_path):
    """topics create/list/describe, produce stdin lines, consume them back from the beginning,
    resume a group after its commit, and delete the topic; errors exit 1 with one line."""
    boot = ["--bootstrap", broker.bootstrap]
    created = tmq("topics", "create", "cli", "--partitions", "2", *boot, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert tmq("topics", "list", *boot, cwd=tmp_path).stdout.split() == [b"cli"]
    described = tmq("topics", "describe", "cli", *boot, cwd=tmp_path).stdout.decode()
    assert "topic cli: 2 partitions" in described and "leader 0" in described
    lines = [b"line %d" % i for i in range(500)]
    produced = tmq(
        "produce", "cli", "--key", "GPU-1", *boot, cwd=tmp_path, data=b"\n".join(lines) + b"\n"
    )
    assert produced.returncode == 0, produced.stderr
    consumed = tmq(
        "consume",
        "cli",
        "--from-beginning",
        "--max-messages",
        "500",
        "--group",
        "g",
        *boot,
        cwd=tmp_path,
    )
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.split(b"\n")[:-1] == lines
    tmq("produce", "cli", "--key", "GPU-1", *boot, cwd=tmp_path, data=b"after\n")
    resumed = tmq(
        "consume",
        "cli",
        "--from-beginning",
        "--max-messages",
        "1",
        "--group",
        "g",
        *boot,
        cwd=tmp_path,
    )
    assert resumed.stdout == b"after\n"
    assert tmq("topics", "delete", "cli", *boot, cwd=tmp_path).returncode == 0
    again = tmq("topics", "delete", "cli", *boot, cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.count(b"\n") == 1
