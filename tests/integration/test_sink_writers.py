"""The writers' contract, held against a real PostgreSQL: every test runs once with the
txpostgres writer and once with the binary COPY writer, on a real reactor (in a thread)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime

import psycopg
import pytest
from twisted.python.threadpool import ThreadPool

from tmq.client.sync import ReactorThread, shared_reactor_thread
from tmq.sink.schema import migrate
from tmq.sink.writer import (
    CopyWriter,
    DeadLetter,
    FencedError,
    PartitionBatch,
    TelemetryWriter,
    TxPostgresWriter,
    WriteResult,
)
from tmq.telemetry.model import Sample

T0 = 1_752_871_354_000_000  # 2025-07-18T20:42:34Z, in microseconds
SECOND = 1_000_000
GROUP, TOPIC = "sink", "gpu-telemetry"


def sample(
    time_us: int = T0,
    metric: str = "DCGM_FI_DEV_GPU_UTIL",
    uuid: str = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50",
    value: float | None = 1.0,
    *,
    hostname: str = "mtv5-dgx1-hgpu-031",
    gpu_index: int = 0,
    container: str = "",
    pod: str = "",
    namespace: str = "",
    driver: str = "535.129.03",
) -> Sample:
    labels = {"Hostname": hostname, "__name__": metric, "instance": f"{hostname}:9400"}
    if driver:
        labels["DCGM_FI_DRIVER_VERSION"] = driver
    return Sample(
        time_us,
        metric,
        gpu_index,
        f"nvidia{gpu_index}",
        uuid,
        "NVIDIA H100 80GB HBM3",
        hostname,
        container,
        pod,
        namespace,
        value,
        labels,
    )


def stored_row(s: Sample) -> tuple:
    """A sample as ``telemetry_rows`` reads it back."""
    return (
        s.time_us,
        s.uuid,
        s.metric,
        s.value,
        s.container or None,
        s.pod or None,
        s.namespace or None,
    )


class Database:
    """Blocking reads of the test database."""

    def __init__(self, dsn: str):
        self.dsn = dsn

    def rows(self, query: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.dsn) as connection:
            return connection.execute(query, params).fetchall()

    def telemetry(self) -> set[tuple]:
        return set(
            self.rows(
                "SELECT (extract(epoch FROM time) * 1000000)::bigint, g.uuid, metric, value,"
                " container, pod, namespace FROM telemetry JOIN gpus g ON g.id = telemetry.gpu"
            )
        )

    def count(self, table: str) -> int:
        return self.rows(f"SELECT count(*) FROM {table}")[0][0]

    def offset(self, partition: int = 0, group: str = GROUP) -> int | None:
        found = self.rows(
            "SELECT next_offset FROM consumer_offsets"
            " WHERE consumer_group = %s AND topic = %s AND partition = %s",
            (group, TOPIC, partition),
        )
        return found[0][0] if found else None

    def gpu(self, uuid: str) -> dict:
        with psycopg.connect(self.dsn) as connection:
            cursor = connection.execute(
                "SELECT hostname, device, gpu_index, model, driver, labels,"
                " (extract(epoch FROM first_seen) * 1000000)::bigint AS first_us,"
                " (extract(epoch FROM last_seen) * 1000000)::bigint AS last_us"
                " FROM gpus WHERE uuid = %s",
                (uuid,),
            )
            names = [column.name for column in cursor.description]
            return dict(zip(names, cursor.fetchone(), strict=True))

    def backends(self) -> list[int]:
        """The process ids of the other sessions on this database."""
        return [
            pid
            for (pid,) in self.rows(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]


class Harness:
    """Writers of one kind on a real reactor; calls block the test until they are done."""

    def __init__(self, kind: str, dsn: str, runner: ReactorThread, threadpool: ThreadPool):
        self.kind = kind
        self.dsn = dsn
        self.runner = runner
        self.threadpool = threadpool
        self.made: list[TelemetryWriter] = []

    def writer(self) -> TelemetryWriter:
        """A started writer (closed at the end of the test)."""
        if self.kind == "txpostgres":
            writer = self.runner.call(TxPostgresWriter, self.runner.reactor, self.dsn)
        else:
            writer = self.runner.call(CopyWriter, self.runner.reactor, self.threadpool, self.dsn)
        self.runner.call(writer.start)
        self.made.append(writer)
        return writer

    def call(self, method: Callable, *args, **kwargs):
        return self.runner.call(method, *args, **kwargs)

    def submit(self, method: Callable, *args, **kwargs) -> Future:
        return self.runner.submit(method, *args, **kwargs)

    def write(
        self,
        writer: TelemetryWriter,
        expected: int | None,
        next_offset: int,
        samples=(),
        dead_letters=(),
        partition: int = 0,
        group: str = GROUP,
    ) -> WriteResult:
        return self.call(
            writer.write_batch,
            group,
            TOPIC,
            partition,
            expected,
            next_offset,
            list(samples),
            list(dead_letters),
        )

    def close_all(self) -> None:
        for writer in self.made:
            self.call(writer.close)


@pytest.fixture(scope="module")
def threadpool() -> Iterator[ThreadPool]:
    pool = ThreadPool(minthreads=1, maxthreads=4, name="test-copy-writer")
    pool.start()
    yield pool
    pool.stop()


@pytest.fixture
def database(pg_dsn) -> Database:
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        migrate(connection)
    return Database(pg_dsn)


@pytest.fixture(params=["txpostgres", "copy"])
def harness(request, database, threadpool) -> Iterator[Harness]:
    harness = Harness(request.param, database.dsn, shared_reactor_thread(), threadpool)
    yield harness
    harness.close_all()


def wait_for_lock_waiters(database: Database, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        (waiting,) = database.rows(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )[0]
        if waiting >= count:
            return
        assert time.monotonic() < deadline, f"{waiting} of {count} sessions waiting for a lock"
        time.sleep(0.02)


class TelemetryWriterContractTests:
    def test_rows_written_equal_the_samples(self, harness, database):
        """Every sample becomes one row with its exact time, GPU, metric, value and workload
        labels (empty labels stored as NULL); the offset is committed."""
        samples = [
            sample(
                T0 + i * SECOND,
                metric,
                uuid,
                float(i) + 0.25,
                container=container,
                pod=f"pod-{i}" if container else "",
                namespace="ml" if container else "",
            )
            for i in range(3)
            for metric in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED")
            for uuid, container in (("GPU-a", "trainer"), ("GPU-b", ""))
        ]
        writer = harness.writer()
        result = harness.write(writer, None, 12, samples)
        assert result == WriteResult(inserted=12, duplicates=0, dead_letters=0, next_offset=12)
        assert database.telemetry() == {stored_row(s) for s in samples}
        assert database.offset() == 12

    def test_blank_values_are_null_and_special_floats_survive(self, harness, database):
        """A DCGM blank (None) is stored as NULL, not a number; infinities and NaN are
        stored as themselves."""
        values = {"A": None, "B": math.inf, "C": -math.inf, "D": math.nan, "E": 1e300}
        writer = harness.writer()
        harness.write(writer, None, 1, [sample(metric=m, value=v) for m, v in values.items()])
        stored = dict(database.rows("SELECT metric, value FROM telemetry"))
        assert stored["A"] is None
        assert stored["B"] == math.inf and stored["C"] == -math.inf
        assert math.isnan(stored["D"]) and stored["E"] == 1e300
        assert database.rows("SELECT count(*) FROM telemetry WHERE value IS NULL") == [(1,)]

    def test_text_with_quotes_backslashes_and_braces_is_stored_exactly(self, harness, database):
        """Strings reach the tables exactly, whatever they contain: quotes, backslashes,
        commas, braces, the word NULL, non-ASCII."""
        awkward = ['a"b', "back\\slash\\", "x,y", "{z}", "NULL", "é ü 雪", " padded "]
        samples = [
            sample(T0, metric=f"M{i}", container=text, pod=text, namespace=text, hostname=text)
            for i, text in enumerate(awkward)
        ]
        writer = harness.writer()
        harness.write(writer, None, 1, samples)
        assert database.telemetry() == {stored_row(s) for s in samples}
        gpu = database.gpu(samples[0].uuid)
        assert gpu["hostname"] == awkward[-1]
        assert gpu["labels"]["Hostname"] == awkward[-1]

    def test_duplicates_within_and_across_batches_are_absorbed(self, harness, database):
        """A sample repeated inside a batch, or already stored by an earlier batch (a replay),
        is counted as a duplicate and never fails the batch."""
        first = [sample(T0), sample(T0), sample(T0 + SECOND)]
        writer = harness.writer()
        assert harness.write(writer, None, 3, first) == WriteResult(2, 1, 0, 3)
        second = [sample(T0), sample(T0 + SECOND), sample(T0 + 2 * SECOND)]
        assert harness.write(writer, 3, 6, second) == WriteResult(1, 2, 0, 6)
        assert database.telemetry() == {stored_row(s) for s in first + second}
        assert database.offset() == 6

    def test_fence_mismatch_fails_and_writes_nothing(self, harness, database):
        """A batch expecting another offset than the committed one (or expecting none when
        one is committed) fails with FencedError saying both, and none of it is written:
        no rows, no GPU, no dead letter, the offset unchanged."""
        writer = harness.writer()
        harness.write(writer, None, 10, [sample(T0)])
        stray = [sample(T0 + SECOND, uuid="GPU-stray")]
        letters = [DeadLetter(12, b"k", b"v", "undecodable")]
        for expected in (5, None, 11):
            with pytest.raises(FencedError) as failure:
                harness.write(writer, expected, 20, stray, letters)
            assert (failure.value.expected, failure.value.actual) == (expected, 10)
            assert (failure.value.group, failure.value.topic) == (GROUP, TOPIC)
        assert database.telemetry() == {stored_row(sample(T0))}
        assert database.count("gpus") == 1
        assert database.count("dead_letters") == 0
        assert database.offset() == 10
        assert harness.write(writer, 10, 20, stray) == WriteResult(1, 0, 0, 20)

    def test_several_partitions_in_one_transaction(self, harness, database):
        """write_batches commits every partition's offset with all their rows and dead
        letters; one failed fence (named in the error) writes nothing of any."""
        writer = harness.writer()
        harness.write(writer, None, 5, [sample(T0)], partition=1)
        batches = [
            PartitionBatch(1, 5, 9, [sample(T0 + SECOND)]),
            PartitionBatch(0, None, 3, [sample(T0, uuid="GPU-b")],
                           [DeadLetter(2, None, b"x", "undecodable")]),
        ]  # fmt: skip
        result = harness.call(writer.write_batches, GROUP, TOPIC, batches)
        assert result == WriteResult(2, 0, 1, None)
        assert (database.offset(0), database.offset(1)) == (3, 9)
        assert database.count("telemetry") == 3
        stale = [
            PartitionBatch(0, 3, 4, [sample(T0 + 2 * SECOND)]),
            PartitionBatch(1, 5, 12, [sample(T0 + 3 * SECOND)]),
        ]
        with pytest.raises(FencedError) as failure:
            harness.call(writer.write_batches, GROUP, TOPIC, stale)
        assert (failure.value.partition, failure.value.actual) == (1, 9)
        assert (database.offset(0), database.offset(1)) == (3, 9)
        assert database.count("telemetry") == 3
        with pytest.raises(ValueError):
            harness.call(writer.write_batches, GROUP, TOPIC, [stale[0], stale[0]])
        with pytest.raises(ValueError):
            harness.call(writer.write_batches, GROUP, TOPIC, [])

    @pytest.mark.parametrize("expected", [None, 10], ids=["first-batch", "next-batch"])
    def test_two_writers_racing_on_one_fence_exactly_one_wins(self, harness, database, expected):
        """Two writers send a batch for the same partition with the same expected offset
        (the first batch: both insert the offset row) while the table is locked, so both
        reach the fence together: one commits, the other fails with FencedError naming the
        winner's offset, and none of the loser's rows are stored."""
        setup = harness.writer()
        if expected is not None:
            harness.write(setup, None, expected, [])
        one, two = harness.writer(), harness.writer()
        batches = {
            20: [sample(T0 + i * SECOND, uuid="GPU-one") for i in range(5)],
            30: [sample(T0 + i * SECOND, uuid="GPU-two") for i in range(5)],
        }
        with psycopg.connect(database.dsn) as blocker:
            blocker.execute("LOCK TABLE consumer_offsets IN ACCESS EXCLUSIVE MODE")
            futures = {
                next_offset: harness.submit(
                    writer.write_batch, GROUP, TOPIC, 0, expected, next_offset, samples, []
                )
                for (next_offset, samples), writer in zip(batches.items(), (one, two), strict=True)
            }
            wait_for_lock_waiters(database, 2)
        outcomes = {}
        for next_offset, future in futures.items():
            try:
                outcomes[next_offset] = future.result(timeout=30)
            except FencedError as error:
                outcomes[next_offset] = error
        winners = [n for n, o in outcomes.items() if isinstance(o, WriteResult)]
        assert len(winners) == 1, outcomes
        (winner,) = winners
        (loser,) = set(outcomes) - {winner}
        assert outcomes[loser].actual == winner
        assert database.offset() == winner
        assert database.telemetry() == {stored_row(s) for s in batches[winner]}

    def test_dead_letters_keep_raw_bytes_and_reason_and_offsets_advance(self, harness, database):
        """Dead letters are stored with their exact bytes (NULL key or value included) and
        reason, next to the batch's good samples, and the offset moves past them."""
        letters = [
            DeadLetter(7, b"GPU-x", b"\x00\xff\x80not msgpack", "undecodable: msgpack"),
            DeadLetter(8, None, b"", "empty value"),
            DeadLetter(9, b"\x00", None, "tombstone"),
        ]
        writer = harness.writer()
        result = harness.write(writer, None, 11, [sample(T0)], letters, partition=3)
        assert result == WriteResult(1, 0, 3, 11)
        stored = database.rows(
            "SELECT consumer_group, topic, partition, record_offset, key, value, reason,"
            " received_at IS NOT NULL FROM dead_letters ORDER BY record_offset"
        )
        assert stored == [
            (GROUP, TOPIC, 3, letter.offset, letter.key, letter.value, letter.reason, True)
            for letter in letters
        ]
        assert database.offset(partition=3) == 11
        only_letters = [DeadLetter(11, b"k", b"\x01", "invalid")]
        assert harness.write(writer, 11, 12, [], only_letters, partition=3) == WriteResult(
            0, 0, 1, 12
        )
        assert database.offset(partition=3) == 12
        assert database.count("dead_letters") == 4

    def test_gpus_upsert_keeps_first_and_last_seen_and_the_newest_facts(self, harness, database):
        """first_seen only moves back and last_seen only forward; hostname, index, labels
        (without __name__) come from the newest sample, also within a batch, and a known
        driver is kept when a newer sample does not say."""
        uuid = "GPU-upsert"
        writer = harness.writer()
        harness.write(
            writer,
            None,
            2,
            [
                sample(T0 + 2 * SECOND, uuid=uuid, hostname="host-b", gpu_index=1),
                sample(T0 + 1 * SECOND, uuid=uuid, hostname="host-a", gpu_index=0),
            ],
        )
        gpu = database.gpu(uuid)
        assert (gpu["first_us"], gpu["last_us"]) == (T0 + SECOND, T0 + 2 * SECOND)
        assert (gpu["hostname"], gpu["device"], gpu["gpu_index"]) == ("host-b", "nvidia1", 1)
        assert gpu["model"] == "NVIDIA H100 80GB HBM3"
        assert gpu["driver"] == "535.129.03"
        assert gpu["labels"] == {
            "Hostname": "host-b",
            "instance": "host-b:9400",
            "DCGM_FI_DRIVER_VERSION": "535.129.03",
        }

        harness.write(writer, 2, 3, [sample(T0, uuid=uuid, hostname="old-host", driver="1")])
        gpu = database.gpu(uuid)
        assert (gpu["first_us"], gpu["last_us"]) == (T0, T0 + 2 * SECOND)
        assert (gpu["hostname"], gpu["driver"]) == ("host-b", "535.129.03")

        harness.write(
            writer, 3, 4, [sample(T0 + 9 * SECOND, uuid=uuid, hostname="host-c", driver="")]
        )
        gpu = database.gpu(uuid)
        assert (gpu["first_us"], gpu["last_us"]) == (T0, T0 + 9 * SECOND)
        assert (gpu["hostname"], gpu["driver"]) == ("host-c", "535.129.03")
        assert database.count("gpus") == 1

    def test_gpu_ids_are_drawn_only_for_new_gpus(self, harness, database):
        """Every row's gpu is its GPU's gpus.id, and updating known GPUs batch after batch
        draws no id: the next new GPU gets the next number."""
        writer = harness.writer()
        for batch in range(3):
            harness.write(writer, batch or None, batch + 1, [
                sample(T0 + batch * SECOND, uuid="GPU-a"),
                sample(T0 + batch * SECOND, uuid="GPU-b"),
            ])  # fmt: skip
        harness.write(writer, 3, 4, [sample(T0, uuid="GPU-c")])
        ids = dict(database.rows("SELECT uuid, id FROM gpus"))
        assert sorted(ids.values()) == [1, 2, 3]
        assert ids["GPU-c"] == 3
        assert database.rows(
            "SELECT count(*) FROM telemetry t LEFT JOIN gpus g ON g.id = t.gpu WHERE g.uuid IS NULL"
        ) == [(0,)]
        assert len(database.telemetry()) == database.count("telemetry") == 7

    def test_a_gpu_first_seen_without_a_driver_stores_null(self, harness, database):
        """An exporter that never reports the driver leaves gpus.driver NULL."""
        writer = harness.writer()
        harness.write(writer, None, 1, [sample(uuid="GPU-nodriver", driver="")])
        assert database.gpu("GPU-nodriver")["driver"] is None

    def test_retention_removes_only_rows_older_than_the_cutoff(self, harness, database):
        """delete_older_than removes every row older than the cutoff, in steps of at most
        batch_rows rows, keeps the rest (the cutoff itself included) and returns the count."""
        samples = [
            sample(T0 + i * SECOND, metric, uuid)
            for i in range(10)
            for metric in ("M1", "M2")
            for uuid in ("GPU-a", "GPU-b")
        ]
        writer = harness.writer()
        harness.write(writer, None, 40, samples)
        cutoff = datetime.fromtimestamp((T0 + 6 * SECOND) / SECOND, UTC)
        assert harness.call(writer.delete_older_than, cutoff, 7) == 24
        kept = {stored_row(s) for s in samples if s.time_us >= T0 + 6 * SECOND}
        assert database.telemetry() == kept
        assert harness.call(writer.delete_older_than, cutoff, 7) == 0
        with pytest.raises(ValueError, match="timezone"):
            writer.delete_older_than(cutoff.replace(tzinfo=None), 7)

    def test_load_offsets_of_one_group_and_topic(self, harness, database):
        """load_offsets returns the committed next offset of each partition of the topic for
        the group, and nothing of other groups or topics."""
        writer = harness.writer()
        assert harness.call(writer.load_offsets, GROUP, TOPIC) == {}
        harness.write(writer, None, 5, partition=0)
        harness.write(writer, None, 7, partition=2)
        harness.write(writer, 7, 9, partition=2)
        harness.write(writer, None, 100, partition=0, group="other")
        harness.call(writer.write_batch, GROUP, "other-topic", 1, None, 3, [], [])
        assert harness.call(writer.load_offsets, GROUP, TOPIC) == {0: 5, 2: 9}

    def test_calls_on_one_writer_run_one_at_a_time_in_order(self, harness, database):
        """Batches handed to one writer without waiting are written in the order given, so
        consecutive fences hold."""
        writer = harness.writer()
        futures = [
            harness.submit(
                writer.write_batch,
                GROUP,
                TOPIC,
                0,
                expected,
                expected_next,
                [sample(T0 + index * SECOND)],
                [],
            )
            for index, (expected, expected_next) in enumerate([(None, 1), (1, 2), (2, 3)])
        ]
        assert [future.result(timeout=30).next_offset for future in futures] == [1, 2, 3]
        assert database.offset() == 3

    def test_bad_offsets_are_refused_before_any_io(self, harness, database):
        """next_offset must follow the expected offset."""
        writer = harness.writer()
        for expected, next_offset in ((5, 5), (5, 4), (None, -1)):
            with pytest.raises(ValueError):
                writer.write_batch(GROUP, TOPIC, 0, expected, next_offset, [], [])
        assert database.offset() is None

    def test_reconnects_after_the_connection_dies(self, harness, database):
        """The server ends the writer's session: at most the next call fails (its
        transaction rolled back), and the call after it connects again and writes."""
        writer = harness.writer()
        harness.write(writer, None, 1, [sample(T0)])
        (backend,) = database.backends()
        database.rows("SELECT pg_terminate_backend(%s)", (backend,))
        batch = [sample(T0 + SECOND)]
        try:
            result = harness.write(writer, 1, 2, batch)
        except FencedError:
            raise
        except Exception:
            result = harness.write(writer, 1, 2, batch)
        assert result == WriteResult(1, 0, 0, 2)
        assert database.offset() == 2
        assert database.backends() != [backend]

    def test_connection_dying_mid_transaction_fails_the_call_and_writes_nothing(
        self, harness, database
    ):
        """The server ends the writer's session while its batch waits inside the
        transaction: the call fails (not with FencedError), nothing of it is stored, and the
        same batch written again succeeds on a new connection."""
        writer = harness.writer()
        batch = [sample(T0), sample(T0 + SECOND)]
        with psycopg.connect(database.dsn) as blocker:
            blocker.execute("LOCK TABLE consumer_offsets IN ACCESS EXCLUSIVE MODE")
            future = harness.submit(writer.write_batch, GROUP, TOPIC, 0, None, 2, batch, [])
            wait_for_lock_waiters(database, 1)
            database.rows(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            with pytest.raises(Exception) as failure:
                future.result(timeout=30)
            assert not isinstance(failure.value, FencedError)
        assert database.count("telemetry") == 0
        assert database.offset() is None
        assert harness.write(writer, None, 2, batch) == WriteResult(2, 0, 0, 2)

    def test_close_disconnects(self, harness, database):
        """close() ends the writer's session."""
        writer = harness.writer()
        assert len(database.backends()) == 1
        harness.call(writer.close)
        deadline = time.monotonic() + 10
        while database.backends():
            assert time.monotonic() < deadline, "the writer's session outlived close()"
            time.sleep(0.02)
