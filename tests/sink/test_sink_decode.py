"""``decode_records``: which records become samples and which become dead letters."""

from __future__ import annotations

from tmq.client import ConsumerRecord
from tmq.sink.service import decode_records
from tmq.telemetry.codec import encode_sample
from tmq.telemetry.model import Sample


def sample(time_us: int) -> Sample:
    return Sample(
        time_us, "DCGM_FI_DEV_GPU_UTIL", 0, "nvidia0", "GPU-1", "NVIDIA H100 80GB HBM3",
        "host", "", "", "", 1.0, {"Hostname": "host"},
    )  # fmt: skip


def record(offset: int, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord("gpu", 0, offset, 0, b"GPU-1", value, ())


class DecodeRecordsTests:
    def test_samples_in_order_and_dead_letters_with_reasons(self):
        """Valid records become samples in order; a record without a value or that is not
        msgpack becomes a dead letter with its offset, raw bytes and reason."""
        good = [sample(1_752_871_354_000_000 + i) for i in range(3)]
        records = [
            record(0, encode_sample(good[0])),
            record(1, None),
            record(2, encode_sample(good[1])),
            record(3, b"\xc1"),
            record(4, encode_sample(good[2])),
        ]
        samples, dead = decode_records(records)
        assert samples == good
        assert [(letter.offset, letter.value) for letter in dead] == [(1, None), (3, b"\xc1")]
        assert dead[0].reason == "record has no value"
        assert dead[1].reason.startswith("not one msgpack value")

    def test_times_outside_years_1_to_9999_are_dead_letters(self):
        """A time no table could hold would fail every write of its batch: it is a dead
        letter instead; the first and last microseconds of the range are samples."""
        first, last = -62_135_596_800_000_000, 253_402_300_799_999_999
        times = [first - 1, first, last, last + 1, 2**63 - 1]
        samples, dead = decode_records(
            [record(i, encode_sample(sample(t))) for i, t in enumerate(times)]
        )
        assert [s.time_us for s in samples] == [first, last]
        assert [letter.offset for letter in dead] == [0, 3, 4]
        assert all("outside the years 1 to 9999" in letter.reason for letter in dead)
