"""``tmq debug decode``: frames to JSON, clear failures on bad input."""

from __future__ import annotations

import json

import pytest

from tmq.protocol.apis import ApiKey
from tmq.protocol.framing import encode_frame
from tmq.protocol.headers import encode_request_header, encode_response_header
from tmq.protocol.messages.fetch import FetchResponse
from tmq.protocol.messages.metadata import MetadataRequest
from tmq.protocol.messages.produce import ProduceRequest
from tmq.protocol.records import Record, build_batch
from tmq.tools.cli import main


def _write_frame(tmp_path, header: bytes, body: bytes):
    path = tmp_path / "frame.bin"
    path.write_bytes(b"".join(encode_frame(header, body)))
    return path


def _batch(base_offset: int, count: int) -> bytes:
    records = [Record(i, 0, b"k%d" % i, b"v") for i in range(count)]
    return build_batch(records, base_offset=base_offset, base_timestamp=1_700_000_000_000)


class DecodeRequestTests:
    """Request frames: the API is named by the header."""

    def test_produce_request_with_batches_summarised(self, tmp_path, capsys):
        """A Produce v8 frame prints its header, its body and a summary of the batch."""
        body = ProduceRequest.build(
            {
                "transactional_id": None,
                "acks": -1,
                "timeout_ms": 1500,
                "topic_data": [
                    {"name": "gpu", "partition_data": [{"index": 3, "records": _batch(0, 4)}]}
                ],
            },
            8,
        )
        path = _write_frame(tmp_path, encode_request_header(ApiKey.PRODUCE, 8, 17, "cli"), body)
        assert main(["debug", "decode", "--request", str(path)]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["api"] == "Produce"
        assert out["header"]["correlation_id"] == 17
        assert out["header"]["client_id"] == "cli"
        partition = out["body"]["topic_data"][0]["partition_data"][0]
        assert partition["index"] == 3
        (batch,) = partition["records"]["batches"]
        assert (batch["base_offset"], batch["last_offset"], batch["count"]) == (0, 3, 4)
        assert batch["crc_ok"] is True

    def test_corrupt_batch_is_reported_not_crashed_on(self, tmp_path, capsys):
        """A batch whose CRC does not match is shown with crc_ok false."""
        batch = bytearray(_batch(0, 2))
        batch[-1] ^= 0xFF
        body = ProduceRequest.build(
            {
                "acks": 1,
                "timeout_ms": 10,
                "topic_data": [
                    {"name": "t", "partition_data": [{"index": 0, "records": bytes(batch)}]}
                ],
            },
            3,
        )
        path = _write_frame(tmp_path, encode_request_header(ApiKey.PRODUCE, 3, 1, None), body)
        assert main(["debug", "decode", "--request", str(path)]) == 0
        out = json.loads(capsys.readouterr().out)
        summary = out["body"]["topic_data"][0]["partition_data"][0]["records"]
        assert summary["batches"][0]["crc_ok"] is False

    def test_metadata_request_from_stdin(self, monkeypatch, capsys):
        """FILE '-' reads the frame from stdin."""
        import io

        frame = b"".join(
            encode_frame(
                encode_request_header(ApiKey.METADATA, 1, 5, "x"),
                MetadataRequest.build({"topics": None}, 1),
            )
        )
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(frame)))
        assert main(["debug", "decode", "--request", "-"]) == 0
        assert json.loads(capsys.readouterr().out)["body"] == {"topics": None}

    def test_truncated_frame_fails_with_one_line(self, tmp_path, capsys):
        """A file shorter than its size prefix announces exits 1 with a one-line reason."""
        path = tmp_path / "short.bin"
        path.write_bytes(b"\x00\x00\x00\x10\x00\x03")
        assert main(["debug", "decode", "--request", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "less than one whole frame" in err

    def test_malformed_body_fails_with_one_line(self, tmp_path, capsys):
        """A body that does not parse exits 1 naming the message."""
        path = _write_frame(
            tmp_path, encode_request_header(ApiKey.METADATA, 1, 5, "x"), b"\x00\x00\x00\x05"
        )
        assert main(["debug", "decode", "--request", str(path)]) == 1
        err = capsys.readouterr().err
        assert "malformed MetadataRequest v1" in err

    def test_unknown_api_key_fails(self, tmp_path, capsys):
        """An API key tmq does not know is a clear failure, not a crash."""
        path = _write_frame(tmp_path, encode_request_header(77, 0, 1, None), b"")
        assert main(["debug", "decode", "--request", str(path)]) == 1
        assert "unknown API key 77" in capsys.readouterr().err

    def test_missing_file_fails(self, tmp_path, capsys):
        """A file that cannot be read exits 1 naming it."""
        assert main(["debug", "decode", "--request", str(tmp_path / "nope")]) == 1
        assert "cannot read" in capsys.readouterr().err


class DecodeResponseTests:
    """Response frames need the API and version on the command line."""

    def test_fetch_response(self, tmp_path, capsys):
        """A Fetch v11 response prints its partitions with the batches summarised."""
        body = FetchResponse.build(
            {
                "responses": [
                    {
                        "topic": "gpu",
                        "partitions": [
                            {
                                "partition_index": 0,
                                "high_watermark": 12,
                                "records": _batch(10, 2) + _batch(12, 1)[:30],
                            }
                        ],
                    }
                ]
            },
            11,
        )
        path = _write_frame(tmp_path, encode_response_header(ApiKey.FETCH, 11, 9), body)
        argv = ["debug", "decode", "--response", "--api", "Fetch", "--version", "11", str(path)]
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["header"]["correlation_id"] == 9
        records = out["body"]["responses"][0]["partitions"][0]["records"]
        assert [b["base_offset"] for b in records["batches"]] == [10]
        assert records["partial_tail_bytes"] == 30

    def test_response_needs_api_and_version(self, tmp_path, capsys):
        """--response without --api/--version is a usage error (exit 2)."""
        path = tmp_path / "f.bin"
        path.write_bytes(b"\x00\x00\x00\x04\x00\x00\x00\x01")
        with pytest.raises(SystemExit) as exit_info:
            main(["debug", "decode", "--response", str(path)])
        assert exit_info.value.code == 2

    def test_unknown_version_fails(self, tmp_path, capsys):
        """A version the API does not have exits 1."""
        path = tmp_path / "f.bin"
        path.write_bytes(b"\x00\x00\x00\x04\x00\x00\x00\x01")
        argv = ["debug", "decode", "--response", "--api", "Fetch", "--version", "3", str(path)]
        assert main(argv) == 1
        assert "FetchResponse has no version 3" in capsys.readouterr().err
