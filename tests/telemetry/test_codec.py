"""The telemetry record codec: msgpack map round trips, the documented map, invalid values."""

from __future__ import annotations

import contextlib
import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.telemetry.codec import InvalidSample, decode_sample, encode_sample, record_key
from tmq.telemetry.csv_source import parse_csv, real_capture_path
from tmq.telemetry.model import MAX_GPU_INDEX, Sample, is_blank

metric_names = st.from_regex(r"DCGM_FI_[A-Z0-9_]{1,30}", fullmatch=True)
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
values = st.none() | st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda value: not is_blank(value)
)
samples = st.builds(
    Sample,
    time_us=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    metric=metric_names,
    gpu_index=st.integers(min_value=0, max_value=MAX_GPU_INDEX),
    device=st.text(),
    uuid=st.text(min_size=1),
    model=st.text(),
    hostname=st.text(),
    container=st.text(),
    pod=st.text(),
    namespace=st.text(),
    value=values,
    labels=st.dictionaries(label_names, st.text(), max_size=12),
)

EXAMPLE = Sample(
    time_us=1_752_871_354_000_000,
    metric="DCGM_FI_DEV_POWER_USAGE",
    gpu_index=0,
    device="nvidia0",
    uuid="GPU-5fd4f087-86f3-7a43-b711-4771313afc50",
    model="NVIDIA H100 80GB HBM3",
    hostname="mtv5-dgx1-hgpu-031",
    container="trainer",
    pod="job-7",
    namespace="ml",
    value=156.596,
    labels={"DCGM_FI_DRIVER_VERSION": "535.129.03", "gpu": "0"},
)
EXAMPLE_MAP = {
    "version": 1,
    "time_us": 1_752_871_354_000_000,
    "metric": "DCGM_FI_DEV_POWER_USAGE",
    "gpu_index": 0,
    "device": "nvidia0",
    "uuid": "GPU-5fd4f087-86f3-7a43-b711-4771313afc50",
    "model": "NVIDIA H100 80GB HBM3",
    "hostname": "mtv5-dgx1-hgpu-031",
    "container": "trainer",
    "pod": "job-7",
    "namespace": "ml",
    "value": 156.596,
    "labels": {"DCGM_FI_DRIVER_VERSION": "535.129.03", "gpu": "0"},
}


def packed_sample(sample: Sample) -> bytes:
    """The documented map of ``sample``, packed by msgpack."""
    return msgpack.packb({"version": 1, **sample._asdict()})


def packed(**changes) -> bytes:
    """EXAMPLE_MAP with ``changes`` (a value of ``...`` removes the key), packed."""
    fields = {**EXAMPLE_MAP, **changes}
    return msgpack.packb({key: value for key, value in fields.items() if value is not ...})


class RoundTripTests:
    """decode_sample(encode_sample(s)) == s."""

    @given(samples)
    def test_any_valid_sample(self, sample):
        """Every valid sample survives: any text, int64 times, None and extreme floats."""
        assert decode_sample(encode_sample(sample)) == sample

    def test_the_real_capture(self):
        """Every sample of the real capture survives."""
        with real_capture_path().open(newline="") as stream:
            real = list(parse_csv(stream))
        assert [decode_sample(encode_sample(sample)) for sample in real] == real

    @given(samples)
    def test_bytes_equal_packing_the_documented_map(self, sample):
        """The pieces cached by encode_sample add up to exactly the packed map, in order."""
        expected = packed_sample(sample)
        assert encode_sample(sample) == expected
        assert encode_sample(sample) == expected  # from the caches

    @given(st.lists(samples, min_size=2, max_size=6), st.data())
    def test_samples_sharing_a_time(self, batch, data):
        """A scrape's samples share their time, which encode_sample packs once: each sample
        still packs to exactly its own map."""
        times = (batch[0].time_us, batch[-1].time_us)
        for sample in batch:
            sample = sample._replace(time_us=data.draw(st.sampled_from(times)))
            assert encode_sample(sample) == packed_sample(sample)

    def test_record_key_is_the_uuid(self):
        """The record key is the UUID in UTF-8."""
        assert record_key(EXAMPLE) == b"GPU-5fd4f087-86f3-7a43-b711-4771313afc50"


class FormatTests:
    """The value is the msgpack map the module docstring documents."""

    def test_encoded_map(self):
        """The map has exactly the documented keys, in str, with the documented types; the
        value is a float 64 (0xcb) and strings are str, not bin."""
        data = encode_sample(EXAMPLE)
        assert msgpack.unpackb(data, raw=False) == EXAMPLE_MAP
        assert b"\xcb" + msgpack.packb(156.596)[1:] in data
        assert msgpack.unpackb(data, raw=True)[b"uuid"] == EXAMPLE.uuid.encode()

    def test_none_is_nil(self):
        """A blank value is nil."""
        data = encode_sample(EXAMPLE._replace(value=None))
        assert msgpack.unpackb(data)["value"] is None

    def test_written_by_another_producer(self):
        """A map built by hand, keys in another order, an int value and an unknown extra
        key, decodes: the value as a float, the extra key ignored."""
        fields = dict(reversed(list(EXAMPLE_MAP.items())))
        fields.update(value=42, unit="W")
        sample = decode_sample(msgpack.packb(fields))
        assert sample.value == 42.0 and isinstance(sample.value, float)
        assert sample.uuid == EXAMPLE.uuid

    def test_blank_sentinel_decodes_as_none(self):
        """A producer that sent DCGM's raw blank is read as no value."""
        assert decode_sample(packed(value=9223372036854775794)).value is None
        assert decode_sample(packed(value=140737488355328.0)).value is None


INVALID = {
    "not msgpack": (b"\xc1", "not one msgpack value"),
    "truncated": (encode_sample(EXAMPLE)[:-3], "not one msgpack value"),
    "trailing bytes": (encode_sample(EXAMPLE) + b"\x00", "not one msgpack value"),
    "empty": (b"", "not one msgpack value"),
    "a list": (msgpack.packb([1, 2]), "not a msgpack map but list"),
    "an int": (msgpack.packb(7), "not a msgpack map but int"),
    "non-string map key": (msgpack.packb({1: 2}), "not one msgpack value"),
    "no version": (packed(version=...), "version None, expected 1"),
    "version 2": (packed(version=2), "version 2, expected 1"),
    "version true": (packed(version=True), "version True, expected 1"),
    "no time": (packed(time_us=...), "time_us is missing"),
    "time as text": (packed(time_us="2025"), "time_us is str, expected int"),
    "time as float": (packed(time_us=1.5), "time_us is float, expected int"),
    "time past int64": (packed(time_us=2**64 - 1), "time_us 18446744073709551615 is outside"),
    "no metric": (packed(metric=...), "metric is missing"),
    "bad metric": (packed(metric="gpu_util"), "metric 'gpu_util' is not a DCGM field name"),
    "metric as bin": (packed(metric=b"DCGM_FI_DEV_GPU_UTIL"), "metric is bytes, expected str"),
    "gpu as bool": (packed(gpu_index=True), "gpu_index is bool, expected int"),
    "negative gpu": (packed(gpu_index=-1), "gpu_index -1 is outside 0..65535"),
    "gpu too big": (packed(gpu_index=65536), "gpu_index 65536 is outside"),
    "no uuid": (packed(uuid=...), "uuid is missing"),
    "empty uuid": (packed(uuid=""), "uuid is empty"),
    "uuid nil": (packed(uuid=None), "uuid is NoneType, expected str"),
    "no hostname": (packed(hostname=...), "hostname is missing"),
    "device as int": (packed(device=0), "device is int, expected str"),
    "no value": (packed(value=...), "value is missing"),
    "value as text": (packed(value="42"), "value is str, expected float or nil"),
    "value as bool": (packed(value=False), "value is bool, expected float or nil"),
    "nan value": (packed(value=math.nan), "value nan is not finite"),
    "infinite value": (packed(value=-math.inf), "value -inf is not finite"),
    "no labels": (packed(labels=...), "labels is missing"),
    "labels as list": (packed(labels=["a"]), "labels is list, expected dict"),
    "label value int": (packed(labels={"gpu": 0}), "label 'gpu' is int, expected str"),
    "label name bin": (packed(labels={b"gpu": "0"}), "label b'gpu' has a bytes name"),
}


class InvalidTests:
    """Anything but a valid version-1 sample raises InvalidSample with the reason."""

    @pytest.mark.parametrize(("data", "reason"), INVALID.values(), ids=INVALID.keys())
    def test_reason(self, data, reason):
        with pytest.raises(InvalidSample) as error:
            decode_sample(data)
        assert str(error.value).startswith(reason), str(error.value)

    def test_is_a_value_error(self):
        """InvalidSample is a ValueError."""
        assert issubclass(InvalidSample, ValueError)

    @given(st.binary(max_size=300))
    def test_arbitrary_bytes(self, data):
        """Random bytes give a Sample or an InvalidSample, never another exception."""
        with contextlib.suppress(InvalidSample):
            decode_sample(data)

    @given(samples, st.integers(min_value=0, max_value=10_000), st.integers(0, 255))
    def test_damaged_records(self, sample, position, byte):
        """A valid record with one byte changed decodes to a sample or raises InvalidSample."""
        data = bytearray(encode_sample(sample))
        data[position % len(data)] = byte
        with contextlib.suppress(InvalidSample):
            decode_sample(bytes(data))


class KnownLabelsTests:
    """The fast path for label maps already seen gives exactly what the plain path gives."""

    def test_repeated_values_decode_the_same_and_share_the_labels(self):
        data = encode_sample(EXAMPLE)
        first, second = decode_sample(data), decode_sample(bytes(data))
        assert first == second == EXAMPLE
        assert second.labels is first.labels

    def test_a_label_named_labels_or_holding_the_key_bytes(self):
        for labels in (
            {"labels": "x", "gpu": "0"},
            {"gpu": "\xa6labels"},
            {"labels": "labels", "labelsx": ""},
        ):
            data = encode_sample(EXAMPLE._replace(labels=labels))
            for _ in range(2):
                assert decode_sample(data) == EXAMPLE._replace(labels=labels)

    def test_a_known_label_map_behind_other_fields_is_still_checked(self):
        decode_sample(encode_sample(EXAMPLE))  # remembers EXAMPLE's label map
        with pytest.raises(InvalidSample, match="uuid is empty"):
            decode_sample(packed(uuid=""))
        with pytest.raises(InvalidSample, match="gpu_index"):
            decode_sample(packed(gpu_index="0"))

    def test_other_key_orders_take_the_plain_path(self):
        reordered = {"labels": EXAMPLE_MAP["labels"], **EXAMPLE_MAP}
        assert decode_sample(msgpack.packb(reordered)) == EXAMPLE

    @given(
        labels=st.dictionaries(
            st.sampled_from(["labels", "gpu", "a", "\xa6"]), st.text(max_size=8)
        ),
        tail=st.sampled_from([b"", b"\xc0", b"\xa6labels"]),
    )
    def test_the_fast_path_agrees_with_msgpack(self, labels, tail):
        data = encode_sample(EXAMPLE._replace(labels=labels)) + tail
        try:
            expected = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except ValueError:
            expected = None
        for _ in range(2):
            if expected is None:
                with pytest.raises(InvalidSample):
                    decode_sample(data)
            else:
                assert decode_sample(data).labels == expected["labels"]
