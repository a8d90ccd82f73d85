"""kcat (Debian's, librdkafka 2.0.2) against a real broker process."""

from __future__ import annotations

import json
import subprocess

import pytest
from integration_helpers import require_binary

from tmq.tools.cli import main as tmq_main

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def kcat(*args: str, data: bytes | None = None, timeout: float = 60) -> bytes:
    binary = require_binary("kcat", "kcat")
    result = subprocess.run(
        [binary, *args], input=data, capture_output=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_10000_lines(broker, codec, capsys):
    """10,000 lines produced with -z CODEC come back byte for byte, and the stored batches
    carry that codec's bits (a client that silently stopped compressing fails here)."""
    topic = f"lines-{codec}"
    lines = [f"line {i} {'x' * (i % 50)}".encode() for i in range(10_000)]
    kcat(
        "-b",
        broker.bootstrap,
        "-P",
        "-t",
        topic,
        "-z",
        codec,
        "-X",
        "linger.ms=50",
        data=b"\n".join(lines) + b"\n",
    )
    out = kcat(
        "-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"
    )
    assert out.split(b"\n")[:-1] == lines
    capsys.readouterr()
    partition_dir = broker.data_dir / f"{topic}-0"
    assert tmq_main(["debug", "dump-log", str(partition_dir)]) == 0
    batches = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert batches and all(b["crc_ok"] for b in batches)
    # librdkafka leaves a batch uncompressed when compressing would not shrink it (here the
    # first, single-record batch); every other record must be stored with the codec asked for
    by_codec: dict[str, int] = {}
    for batch in batches:
        by_codec[batch["compression"]] = by_codec.get(batch["compression"], 0) + batch["count"]
    assert set(by_codec) <= {codec, "none"}
    assert by_codec[codec] >= 0.99 * len(lines)


def test_metadata_listing(broker):
    """kcat -L lists the broker and an auto-created topic with its partition."""
    kcat("-b", broker.bootstrap, "-P", "-t", "listed", data=b"one\n")
    listing = kcat("-b", broker.bootstrap, "-L", "-t", "listed").decode()
    assert "1 brokers:" in listing
    assert 'topic "listed" with 1 partitions' in listing
    assert "partition 0, leader 0" in listing
