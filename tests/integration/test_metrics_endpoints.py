"""A real ``tmq broker`` process with ``--metrics-listen`` and ``--log-format json``: records
produced with ``tmq produce`` move its Prometheus counters, scraped over HTTP with
``/healthz`` and ``/readyz``; every log line is a JSON object."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request

from integration_helpers import BrokerProcess, assert_no_traceback, free_port
from pipeline_helpers import run_tmq


class MetricsBrokerProcess(BrokerProcess):
    """A broker serving /metrics, /healthz and /readyz on ``metrics_port``, logging JSON."""

    def __init__(self, data_dir, metrics_port: int):
        super().__init__(data_dir)
        self.metrics_port = metrics_port

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--metrics-listen",
            f"127.0.0.1:{self.metrics_port}",
            "--log-format",
            "json",
        ]


def get(port: int, path: str) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of ``GET path``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def sample(text: str, name: str) -> float:
    """The value of the series line starting with ``name`` (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def ready_within(port: int, seconds: float) -> tuple[int, dict]:
    """Poll /readyz until it answers 200 or ``seconds`` pass; its last answer."""
    deadline = time.monotonic() + seconds
    while True:
        status, _, body = get(port, "/readyz")
        if status == 200 or time.monotonic() > deadline:
            return status, json.loads(body)
        time.sleep(0.1)


def test_scraping_a_broker_after_producing(tmp_path):
    """/healthz is ok and /readyz ready; after ``tmq produce`` of 20 lines and ``tmq
    consume`` of them, /metrics (text format 0.0.4) counts the Produce and Fetch requests,
    the topic's bytes and messages in and bytes out, one led partition, with the connection
    and fsync families and the process metrics; unknown paths are 404 JSON; the broker's log
    is JSON lines; SIGTERM stops it cleanly."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    broker = MetricsBrokerProcess(data_dir, free_port()).start()
    port = broker.metrics_port
    try:
        assert get(port, "/healthz")[::2] == (200, b'{"status": "ok"}\n')
        assert ready_within(port, 10) == (200, {"status": "ready"})
        boot = ["--bootstrap", broker.bootstrap]
        created = run_tmq("topics", "create", "m", "--partitions", "1", *boot, cwd=tmp_path)
        assert created.returncode == 0, created.stderr
        lines = b"".join(b"record %d\n" % i for i in range(20))
        produced = run_tmq("produce", "m", *boot, cwd=tmp_path, stdin=lines)
        assert produced.returncode == 0, produced.stderr
        consumed = run_tmq(
            "consume", "m", "--from-beginning", "--max-messages", "20", *boot, cwd=tmp_path
        )
        assert consumed.returncode == 0, consumed.stderr

        status, content_type, body = get(port, "/metrics")
        assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
        text = body.decode()
        assert sample(text, 'tmq_broker_requests_total{api="Produce"}') >= 1
        assert sample(text, 'tmq_broker_requests_total{api="CreateTopics"}') == 1
        assert sample(text, 'tmq_broker_messages_in_total{topic="m"}') == 20
        bytes_in = sample(text, 'tmq_broker_bytes_in_total{topic="m"}')
        assert bytes_in > 20 * len(b"record 10")
        assert sample(text, 'tmq_broker_bytes_out_total{topic="m"}') >= bytes_in
        assert sample(text, 'tmq_broker_requests_total{api="Fetch"}') >= 1
        assert sample(text, "tmq_broker_leader_partitions") == 1
        assert sample(text, "tmq_broker_under_replicated_partitions") == 0
        assert "# TYPE tmq_broker_connections gauge" in text
        assert "# TYPE tmq_broker_fsync_duration_seconds histogram" in text
        assert sample(text, "process_resident_memory_bytes") > 0

        status, content_type, body = get(port, "/nothing")
        assert (status, content_type) == (404, "application/json")
    finally:
        assert broker.stop(signal.SIGTERM) == 0
    log = broker.log()
    assert_no_traceback(log)
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert records, "the broker logged nothing"
    for record in records:
        assert {"time", "level", "namespace", "message"} <= set(record)
    assert any("listening on 127.0.0.1" in r["message"] for r in records)
