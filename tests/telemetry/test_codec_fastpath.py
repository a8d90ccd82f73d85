"""decode_sample's fast paths against a plain reference decoder: for any value, seen for the
first time or with the caches warm, the same Sample or the same InvalidSample message."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.telemetry import codec
from tmq.telemetry.codec import InvalidSample, decode_sample, encode_sample
from tmq.telemetry.model import (
    DCGM_FP64_BLANK,
    DCGM_INT32_BLANK,
    DCGM_INT64_BLANK,
    MAX_GPU_INDEX,
    Sample,
    is_blank,
    is_metric_name,
)

TYPES = {
    "time_us": int,
    "metric": str,
    "gpu_index": int,
    "device": str,
    "uuid": str,
    "model": str,
    "hostname": str,
    "container": str,
    "pod": str,
    "namespace": str,
    "labels": dict,
}


def reference(data: bytes) -> Sample:
    """The value decoded as the module docstring says, without any cache: msgpack.unpackb,
    then every check in decode_sample's order and words."""
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise InvalidSample(f"not one msgpack value: {error}") from None
    if type(fields) is not dict:
        raise InvalidSample(f"not a msgpack map but {type(fields).__name__}")
    version = fields.get("version")
    if version != 1 or type(version) is not int:
        raise InvalidSample(f"version {version!r}, expected 1")
    for name in TYPES:
        if name not in fields:
            raise InvalidSample(f"{name} is missing")
    for name, kind in TYPES.items():
        if type(fields[name]) is not kind:
            raise InvalidSample(
                f"{name} is {type(fields[name]).__name__}, expected {kind.__name__}"
            )
    if not -(2**63) <= fields["time_us"] < 2**63:
        raise InvalidSample(f"time_us {fields['time_us']} is outside int64")
    if not is_metric_name(fields["metric"]):
        raise InvalidSample(f"metric {fields['metric']!r} is not a DCGM field name")
    if not 0 <= fields["gpu_index"] <= MAX_GPU_INDEX:
        raise InvalidSample(f"gpu_index {fields['gpu_index']} is outside 0..{MAX_GPU_INDEX}")
    if not fields["uuid"]:
        raise InvalidSample("uuid is empty")
    for name, label in fields["labels"].items():
        if type(name) is not str:
            raise InvalidSample(f"label {name!r} has a {type(name).__name__} name")
        if type(label) is not str:
            raise InvalidSample(f"label {name!r} is {type(label).__name__}, expected str")
    if "value" not in fields:
        raise InvalidSample("value is missing")
    value = fields["value"]
    if value is not None:
        if type(value) is int:
            value = float(value)
        elif type(value) is not float:
            raise InvalidSample(f"value is {type(value).__name__}, expected float or nil")
        if not math.isfinite(value):
            raise InvalidSample(f"value {value} is not finite")
        if is_blank(value):
            value = None
    return Sample(*(fields[name] for name in list(TYPES)[:-1]), value, fields["labels"])


def outcome(decode, data: bytes) -> object:
    """What ``decode`` makes of ``data``: the InvalidSample message, or the sample's type, its
    fields' types and its repr (which tells 1 from 1.0 and 0.0 from -0.0)."""
    try:
        sample = decode(data)
    except InvalidSample as error:
        return str(error)
    return type(sample), tuple(map(type, sample)), repr(sample)


def forget() -> None:
    """Empties decode_sample's caches: the next value is seen for the first time."""
    codec._known_middles.clear()
    codec._known_labels.clear()
    codec._known_metrics.clear()


# Text that puts the bytes of the fast paths' markers inside strings: b"\xa6labels",
# b"\xa5value", 0xcb and 0xc0 (as UTF-8 continuation bytes or lead bytes).
tricky_texts = st.sampled_from(["", "¦labels", "¥value", "ˀ", "À", "labels", "value", "\x00"])
texts = st.text(max_size=10) | tricky_texts
blanks = st.sampled_from(
    [
        float(DCGM_INT32_BLANK),
        float(DCGM_INT32_BLANK + 15),
        DCGM_FP64_BLANK,
        DCGM_FP64_BLANK + 15,
        float(DCGM_INT64_BLANK),
        DCGM_INT32_BLANK,
        DCGM_INT64_BLANK + 3,
    ]
)
samples = st.builds(
    Sample,
    time_us=st.integers(2**32, 2**63 - 1) | st.integers(-(2**63), 2**63 - 1),
    metric=st.from_regex(r"DCGM_FI_[A-Z0-9_]{1,12}", fullmatch=True),
    gpu_index=st.integers(0, MAX_GPU_INDEX),
    device=texts,
    uuid=st.text(min_size=1, max_size=10) | tricky_texts.filter(bool),
    model=texts,
    hostname=texts,
    container=texts,
    pod=texts,
    namespace=texts,
    value=st.none() | st.floats(allow_nan=False, allow_infinity=False) | blanks,
    labels=st.dictionaries(texts, texts, max_size=4),
)
# Field values another writer (or a damaged record) may send instead of the sample's.
other_fields = {
    "version": st.sampled_from([2, True, 1.0, None]),
    "time_us": st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -1, 0, 2**32, True, 1.5]),
    "metric": st.sampled_from(["gpu_util", "DCGM_FI_", b"DCGM_FI_DEV_GPU_UTIL"]),
    "gpu_index": st.sampled_from([-1, MAX_GPU_INDEX + 1, True, "0", 0.0]),
    "uuid": st.sampled_from(["", None, 7]),
    "hostname": st.sampled_from([None, b"host"]),
    "value": st.integers(-(2**63), 2**64 - 1)
    | blanks
    | st.sampled_from([math.nan, math.inf, -math.inf, -0.0, True, "42", None, [1.0]]),
    "labels": st.sampled_from([{"gpu": 0}, {b"gpu": "0"}, ["a"], {}, {"labels": "¦labels"}]),
}


@st.composite
def values(draw) -> tuple[Sample, bytes]:
    """A sample and a value derived from its encoding: itself, or the map with fields replaced,
    removed, added or reordered, or packed with single floats, then maybe damaged bytes."""
    sample = draw(samples)
    data = encode_sample(sample)
    if draw(st.booleans()):
        fields = msgpack.unpackb(data)
        for name in draw(st.lists(st.sampled_from(list(other_fields)), max_size=3)):
            fields[name] = draw(other_fields[name])
        for name in draw(st.lists(st.sampled_from(list(fields)), max_size=2)):
            fields.pop(name, None)
        if draw(st.booleans()):
            fields["extra"] = draw(texts)
        if draw(st.booleans()):
            fields = dict(draw(st.permutations(list(fields.items()))))
        try:
            data = msgpack.packb(fields, use_single_float=draw(st.booleans()))
        except OverflowError:  # a float beyond float 32
            data = msgpack.packb(fields)
    if draw(st.booleans()):
        # The fast paths' landmarks, and anywhere.
        at = data.rfind(b"\xa6labels")
        landmarks = [0, 18, 19, 26, 27, at - 15, at - 9, at - 1, at, at + 7, len(data) - 1]
        where = draw(st.sampled_from(landmarks) | st.integers(0, len(data) - 1)) % len(data)
        damage = draw(st.sampled_from(["set", "truncate", "insert", "delete", "append"]))
        if damage == "set":
            data = data[:where] + bytes([draw(st.integers(0, 255))]) + data[where + 1 :]
        elif damage == "truncate":
            data = data[:where]
        elif damage == "insert":
            data = data[:where] + draw(st.binary(min_size=1, max_size=9)) + data[where:]
        elif damage == "delete":
            data = data[:where] + data[where + 1 :]
        else:
            data += draw(st.binary(min_size=1, max_size=9))
    return sample, data


class FastPathTests:
    """decode_sample with its caches (cold or warm) is the reference decoder."""

    @given(values())
    def test_the_same_result_first_seen_and_with_warm_caches(self, value):
        sample, data = value
        expected = outcome(reference, data)
        forget()
        assert outcome(decode_sample, data) == expected  # first sight
        assert outcome(decode_sample, data) == expected  # its own pieces remembered
        for _ in range(2):  # the sample's middle and labels remembered
            decode_sample(encode_sample(sample))
        assert outcome(decode_sample, data) == expected

    @given(samples, st.lists(st.tuples(st.integers(-(2**63), 2**64 - 1), other_fields["value"])))
    def test_other_times_and_values_behind_a_known_middle(self, sample, changes):
        """Only the time and the value change, as in a fleet's records, with any time and value,
        encoded as encode_sample would or as another writer might."""
        forget()
        for _ in range(2):
            assert decode_sample(encode_sample(sample)) == reference(encode_sample(sample))
        for time_us, value in changes:
            fields = msgpack.unpackb(encode_sample(sample))
            data = msgpack.packb({**fields, "time_us": time_us, "value": value})
            assert outcome(decode_sample, data) == outcome(reference, data)

    def test_a_known_middle_is_decoded_once(self):
        """Behind a known middle, the fields are the ones decoded first, shared."""
        forget()
        sample = Sample(
            1_752_871_354_000_000, "DCGM_FI_DEV_GPU_UTIL", 3, "nvidia3", "GPU-5fd4f087", "H100",
            "host-1", "", "", "", 42.0, {"gpu": "3"},
        )  # fmt: skip
        first = decode_sample(encode_sample(sample))
        for later in (
            sample._replace(time_us=sample.time_us + 1, value=None),
            sample._replace(time_us=2**63 - 1, value=-0.0),
        ):
            again = decode_sample(encode_sample(later))
            assert repr(again) == repr(later)
            assert again.uuid is first.uuid and again.labels is first.labels
        with pytest.raises(InvalidSample, match=r"^time_us 9223372036854775808 is outside"):
            decode_sample(encode_sample(sample._replace(time_us=2**63, value=math.nan)))
        with pytest.raises(InvalidSample, match=r"^value nan is not finite"):
            decode_sample(encode_sample(sample._replace(value=math.nan)))
        assert decode_sample(encode_sample(sample._replace(value=DCGM_FP64_BLANK))).value is None

    def test_landmarks_inside_a_label_are_not_taken_for_the_layout(self):
        """A label ending in the bytes b"\\xa5value", 0xcb, 8 bytes, b"\\xa6labels" looks like
        the end of the layout encode_sample writes: the bytes before it are no middle, and
        are not remembered as one for a record that has a known labels map after them."""
        forget()
        sample = Sample(
            2**40, "DCGM_FI_DEV_GPU_UTIL", 0, "nvidia0", "GPU-0", "H100", "host", "", "", "", 1.0,
            {},
        )  # fmt: skip
        trap = sample._replace(labels={"gpu": "¥valueˀabcdef¦labels"})
        data = encode_sample(trap)
        at = data.rfind(b"\xa6labels")
        assert data[at - 15 : at - 8] == b"\xa5value\xcb"
        for known in (trap, sample, trap, sample):
            assert decode_sample(encode_sample(known)) == known
        forged = data[: at + 7] + msgpack.packb({})  # a known labels map after b"\xa6labels"
        assert outcome(decode_sample, forged) == outcome(reference, forged)

    def test_the_caches_stay_bounded(self, monkeypatch):
        monkeypatch.setattr(codec, "_KNOWN_MAX", 4)
        forget()
        sample = Sample(
            2**40, "DCGM_FI_DEV_GPU_UTIL", 0, "nvidia0", "GPU-0", "H100", "host", "", "", "", 1.0,
            {},
        )  # fmt: skip
        for index in range(10):
            later = sample._replace(gpu_index=index, labels={"gpu": str(index)})
            assert decode_sample(encode_sample(later)) == later
            assert len(codec._known_middles) <= 4 and len(codec._known_labels) <= 4

    @given(st.floats(max_value=float(DCGM_INT32_BLANK), exclude_max=True))
    def test_no_blank_below_the_least_sentinel(self, value):
        """decode_sample skips is_blank below float(DCGM_INT32_BLANK), the least sentinel."""
        assert not is_blank(value)
        assert is_blank(float(DCGM_INT32_BLANK))
