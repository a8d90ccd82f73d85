"""The telemetry pipeline with real processes: ``tmq producer`` -> broker -> ``tmq sink`` ->
PostgreSQL. Values are checked against the input, read independently of tmq's parser."""

from __future__ import annotations

import csv
import http.server
import io
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from integration_helpers import free_port
from pipeline_helpers import (
    SinkProcess,
    committed,
    csv_metric_figures,
    csv_rows,
    db_metric_figures,
    db_rows,
    generate_csv,
    partition_locks,
    query,
    run_tmq,
    scalar,
    start_producer,
    tmq_command,
    wait_for,
)

from tmq.telemetry.csv_source import parse_csv, real_capture_path
from tmq.telemetry.exposition import render_exposition

REAL_ROWS = 2470


@pytest.fixture
def pipeline(broker_factory, pg_dsn, tmp_path):
    """A broker with topic ``gpu`` (4 partitions), the database, and a way to start sinks."""
    broker = broker_factory("flush.policy=always")
    # The captures are dated in the past: no broker retention may remove them mid-test.
    created = run_tmq(
        "topics", "create", "gpu", "--partitions", "4", "--set", "retention.ms=-1",
        "--bootstrap", broker.bootstrap, cwd=tmp_path,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    sinks: list[SinkProcess] = []

    def sink(*extra: str, name: str = "a", topic: str = "gpu") -> SinkProcess:
        process = SinkProcess(
            tmp_path, broker.bootstrap, pg_dsn, *extra, name=name, topic=topic
        ).start()
        sinks.append(process)
        return process

    yield broker, pg_dsn, sink, tmp_path
    for process in sinks:
        process.stop(signal.SIGKILL)


def produce_csv(broker, path, tmp_path, *extra: str):
    return run_tmq(
        "producer", "--csv", str(path), "--topic", "gpu", "--bootstrap", broker.bootstrap,
        *extra, cwd=tmp_path,
    )  # fmt: skip


class RealCaptureTests:
    def test_every_row_arrives_once_with_the_files_values(self, pipeline):
        broker, dsn, sink, tmp_path = pipeline
        produced = produce_csv(broker, real_capture_path(), tmp_path, "--timestamps", "source")
        assert produced.returncode == 0, produced.stderr
        assert b"2470 samples sent, 0 rejected, 0 failed" in produced.stderr
        process = sink()
        wait_for(lambda: committed(dsn) == REAL_ROWS, 60, "the sink to commit", process)
        assert process.stop() == 0, process.log()
        assert scalar(dsn, "SELECT count(*) FROM telemetry") == REAL_ROWS
        assert scalar(dsn, "SELECT count(*) FROM gpus") == 247
        assert scalar(dsn, "SELECT count(DISTINCT hostname) FROM gpus") == 31
        expected = csv_metric_figures(real_capture_path())
        stored = db_metric_figures(dsn)
        assert set(stored) == set(expected)
        for metric, (count, low, high, total) in expected.items():
            assert stored[metric][:3] == (count, low, high), metric
            assert stored[metric][3] == pytest.approx(total, rel=1e-12), metric
        assert scalar(dsn, "SELECT count(*) FROM dead_letters") == 0
        (driver,) = query(dsn, "SELECT DISTINCT driver FROM gpus")
        assert driver == ("535.129.03",)

    def test_a_replay_with_source_timestamps_adds_no_row(self, pipeline):
        broker, dsn, sink, tmp_path = pipeline
        process = sink()
        for _ in range(2):
            produced = produce_csv(broker, real_capture_path(), tmp_path, "--timestamps", "source")
            assert produced.returncode == 0, produced.stderr
        wait_for(lambda: committed(dsn) == 2 * REAL_ROWS, 60, "both passes", process)
        assert scalar(dsn, "SELECT count(*) FROM telemetry") == REAL_ROWS
        assert process.stop() == 0


class BadInputTests:
    def test_bad_rows_are_reported_and_undecodable_records_dead_lettered(self, pipeline):
        broker, dsn, sink, tmp_path = pipeline
        lines = real_capture_path().read_text().splitlines()
        header, good = lines[0], lines[1:11]

        def changed(line: str, column: int, value: str) -> str:
            fields = next(csv.reader([line]))
            fields[column] = value
            out = io.StringIO()
            csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="").writerow(fields)
            return out.getvalue()

        bad = [
            '"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","0"',  # wrong column count
            changed(good[0], 10, "n/a"),  # value
            changed(good[1], 0, "yesterday"),  # timestamp
            changed(good[2], 4, ""),  # uuid
        ]
        path = tmp_path / "bad.csv"
        path.write_text("\n".join([header, *good[:5], *bad, *good[5:]]) + "\n")
        rejects = tmp_path / "rejects.tsv"
        produced = produce_csv(broker, path, tmp_path, "--rejects", str(rejects))
        assert produced.returncode == 0, produced.stderr
        assert b"10 samples sent, 4 rejected" in produced.stderr
        rows = [line.split("\t") for line in rejects.read_text().splitlines()]
        assert [int(number) for number, _, _ in rows] == [7, 8, 9, 10]
        words = ("fields", "value", "timestamp", "uuid")
        for (_, reason, _), word in zip(rows, words, strict=True):
            assert word in reason.lower(), reason
        garbage = run_tmq(
            "produce", "gpu", "--key", "GPU-bogus", "--bootstrap", broker.bootstrap,
            cwd=tmp_path, stdin=b"not msgpack\n\x93\x01\x02\n",
        )  # fmt: skip
        assert garbage.returncode == 0, garbage.stderr
        process = sink()
        wait_for(lambda: committed(dsn) == 12, 60, "every record", process)
        assert scalar(dsn, "SELECT count(*) FROM telemetry") == 10
        letters = query(dsn, "SELECT value, reason FROM dead_letters ORDER BY value")
        assert sorted(bytes(value) for value, _ in letters) == [b"not msgpack", b"\x93\x01\x02"]
        assert all(reason for _, reason in letters)
        assert process.stop() == 0


class FailureTests:
    def test_exactly_once_through_sink_kills_and_a_broker_restart(self, pipeline, broker_factory):
        """200,000 generated rows; the sink is SIGKILLed and restarted three times and the
        broker restarted once while they flow; at the end every row is stored, once."""
        broker, dsn, sink, tmp_path = pipeline
        path = tmp_path / "fleet.csv"
        total = generate_csv(path, hosts=25, gpus=8, scrapes=100, seed=11)
        assert total == 200_000
        producer = start_producer(path, "gpu", broker.bootstrap, rate=20_000)
        process = sink()
        for round_number in range(3):
            wait_for(
                lambda n=round_number: committed(dsn) > (n + 1) * 30_000, 120,
                "progress", process,
            )  # fmt: skip
            process.stop(signal.SIGKILL)
            if round_number == 1:
                assert broker.stop() == 0
                broker = broker_factory(
                    "flush.policy=always", data_dir=broker.data_dir, port=broker.port
                )
            process = sink(name=f"a{round_number}")
        _, producer_err = producer.communicate(timeout=180)
        assert producer.returncode == 0, producer_err.decode()
        assert f"{total} samples sent, 0 rejected, 0 failed".encode() in producer_err
        wait_for(lambda: committed(dsn) == total, 180, "the sink to catch up", process)
        assert process.stop() == 0, process.log()
        assert scalar(dsn, "SELECT count(*) FROM telemetry") == total
        assert db_rows(dsn) == csv_rows(path)
        assert scalar(dsn, "SELECT count(*) FROM dead_letters") == 0


class SharingTests:
    def test_two_sinks_split_six_partitions_and_one_takes_over(self, pipeline):
        broker, dsn, sink, tmp_path = pipeline
        created = run_tmq(
            "topics", "create", "gpu6", "--partitions", "6", "--set", "retention.ms=-1",
            "--bootstrap", broker.bootstrap, cwd=tmp_path,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        first = sink(name="first", topic="gpu6")
        second = sink(name="second", topic="gpu6")
        wait_for(lambda: partition_locks(dsn) == [3, 3], 60, "a 3/3 split", first, second)
        path = tmp_path / "fleet.csv"
        total = generate_csv(path, hosts=10, gpus=8, scrapes=60, seed=3)
        producer = start_producer(path, "gpu6", broker.bootstrap, rate=8000)
        wait_for(lambda: committed(dsn) > 10_000, 60, "progress", first, second)
        first.stop(signal.SIGKILL)
        wait_for(lambda: partition_locks(dsn) == [6], 60, "the takeover", second)
        _, producer_err = producer.communicate(timeout=120)
        assert producer.returncode == 0, producer_err.decode()
        wait_for(lambda: committed(dsn) == total, 120, "the survivor to catch up", second)
        assert second.stop() == 0, second.log()
        assert scalar(dsn, "SELECT count(*) FROM telemetry") == total
        assert db_rows(dsn) == csv_rows(path)


class RetentionTests:
    def test_only_rows_older_than_the_setting_are_removed(self, pipeline):
        broker, dsn, sink, tmp_path = pipeline
        old = produce_csv(broker, real_capture_path(), tmp_path, "--timestamps", "source")
        assert old.returncode == 0, old.stderr
        path = tmp_path / "fresh.csv"
        generated = run_tmq(
            "gen", "--hosts", "2", "--gpus-per-host", "4", "--scrapes", "3", "--output",
            str(path), cwd=tmp_path,
        )  # fmt: skip
        assert generated.returncode == 0, generated.stderr
        fresh = produce_csv(broker, path, tmp_path, "--timestamps", "now")
        assert fresh.returncode == 0, fresh.stderr
        fresh_rows = 2 * 4 * 3 * 10
        process = sink("--retention-days", "1", "--retention-interval", "1")
        wait_for(lambda: committed(dsn) == REAL_ROWS + fresh_rows, 60, "every record", process)
        wait_for(
            lambda: scalar(dsn, "SELECT count(*) FROM telemetry") == fresh_rows, 30,
            "retention", process,
        )  # fmt: skip
        assert scalar(dsn, "SELECT min(time) > now() - interval '1 day' FROM telemetry")
        assert process.stop() == 0
        assert f"retention removed {REAL_ROWS} rows" in process.log()


class ScrapeTests:
    def test_scraping_a_dcgm_exporter_gives_the_captures_samples(self, pipeline):
        """A local HTTP server serves the real capture as dcgm-exporter's /metrics page;
        ``tmq producer --scrape`` turns each scrape into the same samples as the CSV path."""
        broker, dsn, sink, tmp_path = pipeline
        with real_capture_path().open(newline="") as capture:
            page = render_exposition(parse_csv(capture)).encode()
        hits = []

        class Exporter(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
        serving = threading.Thread(target=server.serve_forever, daemon=True)
        serving.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
            producer = subprocess.Popen(
                tmq_command(
                    "producer", "--scrape", url, "--interval", "0.5", "--topic", "gpu",
                    "--bootstrap", broker.bootstrap,
                ),
                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            process = sink()
            wait_for(lambda: committed(dsn) >= 2 * REAL_ROWS, 60, "two scrapes", process)
            producer.send_signal(signal.SIGTERM)
            _, err = producer.communicate(timeout=60)
        finally:
            server.shutdown()
            server.server_close()
        assert producer.returncode == 0, err.decode()
        assert b" 0 rejected, 0 failed" in err
        scrapes = len(hits)
        assert scrapes >= 2 and set(hits) == {"/metrics"}
        wait_for(lambda: committed(dsn) == scrapes * REAL_ROWS, 60, "every scrape", process)
        assert process.stop() == 0
        assert scalar(dsn, "SELECT count(*) FROM telemetry") == scrapes * REAL_ROWS
        stored = db_metric_figures(dsn)
        for metric, (count, low, high, total) in csv_metric_figures(real_capture_path()).items():
            assert stored[metric][:3] == (scrapes * count, low, high), metric
            assert stored[metric][3] == pytest.approx(scrapes * total, rel=1e-12), metric
        assert scalar(dsn, "SELECT count(*) FROM gpus") == 247


class DatabaseOutageTests:
    def test_the_sink_rides_out_a_database_restart(self, broker_factory, tmp_path):
        """PostgreSQL stops for a few seconds while rows flow: the sink retries, takes its
        partitions again, and every row ends up stored once."""
        from tmq.tools.postgres import ThrowawayPostgres

        broker = broker_factory("flush.policy=always")
        created = run_tmq(
            "topics", "create", "gpu", "--partitions", "4", "--set", "retention.ms=-1",
            "--bootstrap", broker.bootstrap, cwd=tmp_path,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        # its own cluster, in a directory that outlives a stop (a temporary one would not)
        directory = Path(tempfile.mkdtemp(prefix="tmq-pg-outage-"))
        try:
            with ThrowawayPostgres(directory, port=free_port(), durable=False) as postgres:
                dsn = postgres.create_database("outage")
                path = tmp_path / "fleet.csv"
                total = generate_csv(path, hosts=5, gpus=8, scrapes=60, seed=9)
                process = SinkProcess(tmp_path, broker.bootstrap, dsn, name="outage").start()
                try:
                    producer = start_producer(path, "gpu", broker.bootstrap, rate=6000)
                    wait_for(lambda: committed(dsn) > 5000, 60, "progress", process)
                    postgres.stop()
                    time.sleep(3)
                    postgres.start()
                    _, err = producer.communicate(timeout=120)
                    assert producer.returncode == 0, err.decode()
                    wait_for(lambda: committed(dsn) == total, 120, "the sink to recover", process)
                    assert process.stop() == 0, process.log()
                finally:
                    process.stop(signal.SIGKILL)
                assert db_rows(dsn) == csv_rows(path)
                assert "retrying" in process.log() or "giving up every partition" in process.log()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
