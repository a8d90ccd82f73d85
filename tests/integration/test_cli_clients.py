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


def test_producing_to_a_missing_topic_says_how_to_create_it(broker, tmp_path):
    """``tmq produce`` to a topic that does not exist exits 1 at once (not after the
    producer's delivery timeout, which the 60 s limit of ``tmq`` here would exceed) with one
    line naming the command that creates the topic."""
    boot = ["--bootstrap", broker.bootstrap]
    produced = tmq("produce", "nowhere", *boot, cwd=tmp_path, data=b"a\nb\n")
    assert produced.returncode == 1
    assert produced.stderr.count(b"\n") == 1
    assert b"topic 'nowhere' does not exist" in produced.stderr
    assert b"tmq topics create nowhere --partitions N" in produced.stderr
