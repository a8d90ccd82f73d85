"""``tmq debug dump-log``: segment files to JSON lines, corrupt regions reported, not crashed on."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from tmq.protocol.compression import Codec
from tmq.protocol.records import Record, TimestampType, build_batch
from tmq.tools.cli import main

BASE_TIMESTAMP = 1_700_000_000_000

# Batches of one segment at base offset 100, as (build_batch arguments, records): every codec,
# leader epochs going up, producer fields, a transactional batch and a LogAppendTime one.
SEGMENT_BATCHES = [
    (
        {"base_offset": 100, "partition_leader_epoch": 3, "compression": Codec.NONE},
        [
            Record(0, 0, b"gpu-0", b'{"util": 91}'),
            Record(1, 5, None, b"\xff\xfe binary"),
            Record(2, 9, b"gpu-2", None, (("host", b"node-1"), ("trace", None))),
        ],
    ),
    (
        {
            "base_offset": 103,
            "partition_leader_epoch": 3,
            "compression": Codec.GZIP,
            "producer_id": 4000,
            "producer_epoch": 2,
            "base_sequence": 17,
        },
        [Record(0, 0, b"k", b"gzip value"), Record(1, 40, b"k", b"second")],
    ),
    (
        {
            "base_offset": 105,
            "partition_leader_epoch": 4,
            "compression": Codec.SNAPPY,
            "producer_id": 4000,
            "producer_epoch": 2,
            "base_sequence": 19,
            "is_transactional": True,
        },
        [Record(0, 3, b"snappy", b"v" * 300)],
    ),
    (
        {
            "base_offset": 106,
            "partition_leader_epoch": 4,
            "compression": Codec.LZ4,
            "timestamp_type": TimestampType.LOG_APPEND_TIME,
        },
        [Record(0, 0, b"a", b"lz4 one"), Record(1, 7, b"b", b"lz4 two")],
    ),
    (
        {"base_offset": 108, "partition_leader_epoch": 7, "compression": Codec.ZSTD},
        [Record(i, i * 2, b"z%d" % i, b"zstd %d" % i) for i in range(5)],
    ),
]


def _build(arguments: dict, records: list[Record]) -> bytes:
    return build_batch(records, base_timestamp=BASE_TIMESTAMP, **arguments)


def _write_segment(directory, base_offset: int, batches: list[bytes]):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{base_offset:020d}.log"
    path.write_bytes(b"".join(batches))
    return path


def _simple_batch(base_offset: int, count: int = 1, epoch: int = 0) -> bytes:
    records = [Record(i, i, b"key-%d" % i, b"value-%d" % i) for i in range(count)]
    return build_batch(
        records,
        base_offset=base_offset,
        base_timestamp=BASE_TIMESTAMP,
        partition_leader_epoch=epoch,
    )


def _dump(capsys, *argv: str) -> list[dict]:
    assert main(["debug", "dump-log", *map(str, argv)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return [json.loads(line) for line in captured.out.splitlines()]


def _expected_batch_line(path, position: int, arguments: dict, records: list[Record]) -> dict:
    """The batch line the documented format promises, computed from what was built."""
    base_offset = arguments["base_offset"]
    return {
        "file": str(path),
        "position": position,
        "size": len(_build(arguments, records)),
        "base_offset": base_offset,
        "last_offset": base_offset + records[-1].offset_delta,
        "count": len(records),
        "leader_epoch": arguments["partition_leader_epoch"],
        "base_timestamp": BASE_TIMESTAMP,
        "max_timestamp": BASE_TIMESTAMP + max(record.timestamp_delta for record in records),
        "timestamp_type": (
            "log_append_time"
            if arguments.get("timestamp_type") is TimestampType.LOG_APPEND_TIME
            else "create_time"
        ),
        "compression": arguments["compression"].name.lower(),
        "producer_id": arguments.get("producer_id", -1),
        "producer_epoch": arguments.get("producer_epoch", -1),
        "base_sequence": arguments.get("base_sequence", -1),
        "is_transactional": arguments.get("is_transactional", False),
        "is_control": False,
        "crc_ok": True,
    }


def _as_json(value: bytes | None):
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return {"hex": value.hex()}


def _expected_records(arguments: dict, records: list[Record]) -> list[dict]:
    """The records of a batch line, from what was built (LogAppendTime: maxTimestamp)."""
    max_timestamp = BASE_TIMESTAMP + max(record.timestamp_delta for record in records)
    log_append = arguments.get("timestamp_type") is TimestampType.LOG_APPEND_TIME
    return [
        {
            "offset": arguments["base_offset"] + record.offset_delta,
            "timestamp": max_timestamp if log_append else BASE_TIMESTAMP + record.timestamp_delta,
            "key": _as_json(record.key),
            "value": _as_json(record.value),
            "headers": [{"key": key, "value": _as_json(value)} for key, value in record.headers],
        }
        for record in records
    ]


@pytest.fixture
def segment(tmp_path):
    """A partition directory with one segment holding SEGMENT_BATCHES; returns its path."""
    batches = [_build(arguments, records) for arguments, records in SEGMENT_BATCHES]
    return _write_segment(tmp_path / "gpu-0", 100, batches)


class BatchLineTests:
    """One JSON line per batch, every field as built."""

    def test_every_field_of_every_batch(self, segment, capsys):
        """Each batch of a segment is one line whose fields match the batch that was built,
        at the position where it starts, across all five codecs."""
        lines = _dump(capsys, segment)
        expected = []
        position = 0
        for arguments, records in SEGMENT_BATCHES:
            expected.append(_expected_batch_line(segment, position, arguments, records))
            position += len(_build(arguments, records))
        assert lines == expected

    def test_batch_at_an_unexpected_offset_carries_a_problem(self, tmp_path, capsys):
        """A first batch that does not start at the segment's base offset, and a later batch
        that leaves a gap, are listed with crc_ok true and a problem naming the offsets."""
        path = _write_segment(tmp_path, 5, [_simple_batch(0, 2), _simple_batch(4)])
        first, second = _dump(capsys, path)
        assert first["crc_ok"] is True
        assert first["problem"] == "batch offset 0 where 5 was expected"
        assert second["problem"] == "batch offset 4 where 2 was expected"

    def test_falling_leader_epoch_carries_a_problem(self, tmp_path, capsys):
        """A batch whose leader epoch is below the previous batch's is flagged."""
        path = _write_segment(tmp_path, 0, [_simple_batch(0, epoch=6), _simple_batch(1, epoch=5)])
        first, second = _dump(capsys, path)
        assert "problem" not in first
        assert second["leader_epoch"] == 5
        assert second["problem"] == "leader epoch 5 after epoch 6"

    def test_file_not_named_by_a_base_offset_accepts_any_first_offset(self, tmp_path, capsys):
        """A .log file whose name is not a base offset has no expected first offset."""
        path = tmp_path / "copy.log"
        path.write_bytes(_simple_batch(42))
        (line,) = _dump(capsys, path)
        assert (line["base_offset"], line["file"]) == (42, str(path))
        assert "problem" not in line


class PathTests:
    """PATH is a segment, a partition directory or a data directory."""

    def test_partition_directory_dumps_its_segments_in_offset_order(self, tmp_path, capsys):
        """Both segments of a partition directory are dumped, the lower base offset first;
        index files and checkpoints beside them are skipped."""
        partition = tmp_path / "gpu-3"
        later = _write_segment(partition, 10, [_simple_batch(10, 4)])
        earlier = _write_segment(partition, 0, [_simple_batch(0, 6), _simple_batch(6, 4)])
        (partition / "00000000000000000000.index").write_bytes(bytes(8))
        (partition / "leader-epoch-checkpoint").write_text("0\n0\n")
        lines = _dump(capsys, partition)
        assert [(line["file"], line["base_offset"], line["last_offset"]) for line in lines] == [
            (str(earlier), 0, 5),
            (str(earlier), 6, 9),
            (str(later), 10, 13),
        ]

    def test_data_directory_dumps_partitions_by_topic_then_number(self, tmp_path, capsys):
        """A data directory dumps each <topic>-<partition> directory, partition numbers in
        numeric order, and ignores checkpoint files and other directories."""
        for name in ("gpu-10", "gpu-2", "cpu-0"):
            _write_segment(tmp_path / name, 0, [_simple_batch(0)])
        (tmp_path / "recovery-point-offset-checkpoint").write_text("0\n0\n")
        (tmp_path / "lost+found").mkdir()
        lines = _dump(capsys, tmp_path)
        assert [line["file"] for line in lines] == [
            str(tmp_path / name / "00000000000000000000.log")
            for name in ("cpu-0", "gpu-2", "gpu-10")
        ]

    def test_missing_path_fails_with_one_line(self, tmp_path, capsys):
        """A PATH that does not exist exits 1 with a one-line reason on stderr and no output."""
        missing = tmp_path / "nope-0"
        assert main(["debug", "dump-log", str(missing)]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == f"tmq debug: error: {missing}: no such file or directory\n"
        assert not missing.exists()

    def test_directory_without_segments_or_partitions_fails(self, tmp_path, capsys):
        """A directory holding neither .log files nor partition directories exits 1."""
        (tmp_path / "notes.txt").write_text("nothing to see")
        assert main(["debug", "dump-log", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "no segment (.log) files and no <topic>-<partition> directories" in err

    def test_missing_path_argument_is_a_usage_error(self, capsys):
        """Without PATH, argparse exits 2."""
        with pytest.raises(SystemExit) as exit_info:
            main(["debug", "dump-log"])
        assert exit_info.value.code == 2
        assert "PATH" in capsys.readouterr().err


class CorruptionTests:
    """A damaged segment is described, never crashed on."""

    @pytest.mark.parametrize(
        ("kept", "reason"),
        [
            (30, "truncated batch header: 30 bytes"),
            (70, "truncated batch: {size} bytes, 70 in the file"),
        ],
    )
    def test_file_cut_mid_batch_reports_the_region(self, tmp_path, capsys, kept, reason):
        """A segment cut inside its third batch (inside the header, or after it) lists the two
        whole batches, then a corrupt line at the third's position with the bytes left."""
        whole = [_simple_batch(0, 3), _simple_batch(3, 2)]
        cut = _simple_batch(5, 4)
        path = _write_segment(tmp_path, 0, [*whole, cut[:kept]])
        *batches, corrupt = _dump(capsys, path)
        assert [line["base_offset"] for line in batches] == [0, 3]
        assert corrupt == {
            "file": str(path),
            "position": len(whole[0]) + len(whole[1]),
            "corrupt": True,
            "reason": reason.format(size=len(cut)),
            "remaining_bytes": kept,
        }

    def test_unreadable_header_stops_the_walk(self, tmp_path, capsys):
        """A batch whose magic byte is damaged ends the walk there: the rest of the file is
        one corrupt region."""
        first, second = _simple_batch(0), bytearray(_simple_batch(1))
        second[16] = 1  # magic
        path = _write_segment(tmp_path, 0, [first, bytes(second), _simple_batch(2)])
        batch, corrupt = _dump(capsys, path)
        assert batch["base_offset"] == 0
        assert corrupt["position"] == len(first)
        assert corrupt["reason"].startswith("bad batch header: record batch magic 1")
        assert corrupt["remaining_bytes"] == path.stat().st_size - len(first)

    def test_flipped_byte_fails_the_crc_and_the_walk_goes_on(self, tmp_path, capsys):
        """A byte flipped inside the second batch's records gives crc_ok false and a problem;
        the batches after it are still listed, intact."""
        batches = [_simple_batch(0, 2), bytearray(_simple_batch(2, 3)), _simple_batch(5, 2)]
        batches[1][-4] ^= 0x40
        path = _write_segment(tmp_path, 0, [bytes(batch) for batch in batches])
        lines = _dump(capsys, path)
        assert [line["crc_ok"] for line in lines] == [True, False, True]
        assert lines[1]["problem"] == "CRC mismatch in the batch at offset 2"
        assert "problem" not in lines[2]
        assert (lines[2]["position"], lines[2]["base_offset"]) == (
            len(batches[0]) + len(batches[1]),
            5,
        )


class RecordsTests:
    """``--records`` adds the decoded records to each batch line."""

    def test_records_equal_the_records_built(self, segment, capsys):
        """Every record of every codec comes back with its offset, timestamp, key, value and
        headers: UTF-8 as text, other bytes as hex, null as null, LogAppendTime batches
        stamped with their maxTimestamp."""
        lines = _dump(capsys, segment, "--records")
        assert [line["records"] for line in lines] == [
            _expected_records(arguments, records) for arguments, records in SEGMENT_BATCHES
        ]
        assert lines[0]["records"][1]["key"] is None
        assert lines[0]["records"][1]["value"] == {"hex": "fffe2062696e617279"}

    def test_records_of_a_batch_that_fails_its_crc_give_an_error(self, tmp_path, capsys):
        """With a bad CRC a batch line holds records_error instead of records; the next batch
        still decodes."""
        damaged = bytearray(_simple_batch(0, 2))
        damaged[-1] ^= 0x01
        path = _write_segment(tmp_path, 0, [bytes(damaged), _simple_batch(2)])
        first, second = _dump(capsys, path, "--records")
        assert "records" not in first
        assert first["records_error"] == "record batch at offset 0 fails its CRC"
        assert second["records"][0]["value"] == "value-0"

    def test_without_records_flag_no_records(self, segment, capsys):
        """Without --records no line carries records or records_error."""
        for line in _dump(capsys, segment):
            assert "records" not in line
            assert "records_error" not in line


class ClosedOutputTests:
    """A reader that goes away early ends the dump quietly."""

    def test_broken_pipe_in_process(self, segment, monkeypatch, capsys):
        """A stdout whose writes raise BrokenPipeError ends the command with status 0 and
        nothing on stderr."""

        class ClosedPipe(io.StringIO):
            def write(self, text):
                raise BrokenPipeError(32, "Broken pipe")

        monkeypatch.setattr(sys, "stdout", ClosedPipe())
        assert main(["debug", "dump-log", str(segment)]) == 0
        assert capsys.readouterr().err == ""

    def test_reader_closing_the_pipe_early(self, tmp_path):
        """Piped into a reader that takes one line and closes the pipe (``| head -1``), the
        process exits 0 without a traceback."""
        path = _write_segment(tmp_path, 0, [_simple_batch(offset) for offset in range(3000)])
        process = subprocess.Popen(
            [sys.executable, "-m", "tmq.tools.cli", "debug", "dump-log", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,  # not the repo root, whose tmq/ would shadow the installed package
        )
        first = json.loads(process.stdout.readline())
        process.stdout.close()
        stderr = process.stderr.read()
        assert process.wait(timeout=60) == 0
        assert first["base_offset"] == 0
        assert stderr == b""
