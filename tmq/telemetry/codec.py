"""The telemetry record: a ``Sample`` as a Kafka record key and a msgpack value.

Key: the GPU UUID in UTF-8 (:func:`record_key`), so each GPU's samples stay in order within
one partition.

Value (:func:`encode_sample`): one msgpack map, string keys, version 1::

    {
      "version":   1,               # int; a change that breaks readers bumps it
      "time_us":   1752871354000000, # int: microseconds since the Unix epoch, UTC (int64)
      "metric":    "DCGM_FI_DEV_GPU_UTIL",   # str: DCGM_FI_[A-Z0-9_]+
      "gpu_index": 0,               # int: 0..65535
      "device":    "nvidia0",       # str
      "uuid":      "GPU-5fd4f087-86f3-7a43-b711-4771313afc50",   # str, never empty
      "model":     "NVIDIA H100 80GB HBM3",   # str
      "hostname":  "mtv5-dgx1-hgpu-031",      # str
      "container": "",              # str, "" when none
      "pod":       "",              # str, "" when none
      "namespace": "",              # str, "" when none
      "value":     42.0,            # float 64, or nil when DCGM reported a blank
      "labels":    {"DCGM_FI_DRIVER_VERSION": "535.129.03", ...}   # map str -> str
    }

Strings are msgpack str (UTF-8), never bin. Readers ignore keys they do not know, so version 1
may gain keys; removing or retyping one makes version 2. :func:`decode_sample` accepts an
integer ``value`` as well (other writers may send one), reads a DCGM blank sentinel as nil,
and rejects anything else that does not match the table with :class:`InvalidSample`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache
from operator import itemgetter

import msgpack

from .model import DCGM_INT32_BLANK, MAX_GPU_INDEX, Sample, is_blank, is_metric_name

__all__ = ["VERSION", "InvalidSample", "decode_sample", "encode_sample", "record_key"]

#: The version of the value format this module writes and reads.
VERSION = 1

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# Every field but the value (float, int or nil) and its type.
_TYPES = {
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
_get_fields = itemgetter(*_TYPES)
_FIELD_TYPES = tuple(_TYPES.values())


class InvalidSample(ValueError):
    """A record value that is not a valid version-1 sample; the message says why."""


def record_key(sample: Sample) -> bytes:
    """The record key of ``sample``: its GPU UUID, UTF-8."""
    return sample.uuid.encode()


# One Packer: msgpack.packb makes a new one per call. Its C pack() holds the GIL throughout
# for the plain types given here, so threads may share it.
_pack = msgpack.Packer().pack

# encode_sample writes the map of the module docstring piece by piece, byte for byte what
# packing the dict would give: a fleet repeats a GPU's descriptive fields and its label map
# sample after sample, and a scrape's samples share their time, so those pieces are packed once
# and kept (bounded caches; the last time only).
_HEAD = _pack(VERSION).join((b"\x8d" + _pack("version"), _pack("time_us")))
_VALUE_KEY = _pack("value")
_LABELS_KEY = _pack("labels")
# (metric .. namespace) -> their packed entries + _VALUE_KEY (decode_sample's middle)
_packed_middles: dict[tuple, bytes] = {}
_packed_labels: dict[int, tuple[object, bytes]] = {}  # id(labels) -> (labels, key + packed)
# (time_us, _HEAD + the packed time) of the last sample: one tuple, read and replaced whole,
# so threads may share it too.
_packed_head = (None, b"")


def encode_sample(sample: Sample) -> bytes:
    """``sample`` as the msgpack map of the module docstring.

    The sample is not checked again: the sources only make valid ones. A label map is
    packed once per map object: it must not change once a sample holding it was encoded
    (the sources never change one).
    """
    global _packed_head
    (time_us, metric, gpu_index, device, uuid, model, hostname, container, pod, namespace,
     value, labels) = sample  # fmt: skip
    head = _packed_head
    if head[0] != time_us:
        head = _packed_head = (time_us, _HEAD + _pack(time_us))
    middle_key = (metric, gpu_index, device, uuid, model, hostname, container, pod, namespace)
    middle = _packed_middles.get(middle_key)
    if middle is None:
        if len(_packed_middles) >= _CACHE_MAX:
            _packed_middles.clear()
        middle = _packed_middles[middle_key] = (
            b"".join(
                _pack(name) + _pack(field) for name, field in zip(_MIDDLE, middle_key, strict=True)
            )
            + _VALUE_KEY
        )
    known = _packed_labels.get(id(labels))
    if known is None or known[0] is not labels:
        if len(_packed_labels) >= _CACHE_MAX:
            _packed_labels.clear()
        known = _packed_labels[id(labels)] = (labels, _LABELS_KEY + _pack(labels))
    return b"".join((head[1], middle, _pack(value), known[1]))


_MIDDLE = (
    "metric", "gpu_index", "device", "uuid", "model", "hostname", "container", "pod",
    "namespace",
)  # fmt: skip
_CACHE_MAX = 65536


def decode_sample(data: bytes) -> Sample:
    """The sample in a record value.

    :raises InvalidSample: not msgpack, not one map, another version, or a field missing, of
        the wrong type or out of range (empty uuid, metric not a DCGM field name, GPU index
        outside 0..65535, value not finite, time outside int64, a label not str -> str).
    """
    # The first fast path (see below); the value 0xcb + 8 bytes or 0xc0 ends where the last
    # b"\xa6labels" starts.
    if type(data) is not bytes or not data.startswith(_HEAD_UINT64):
        return _decode(data, None)
    at = data.rfind(_LABELS_KEY)
    if data[at - 9] == _FLOAT64:
        value_at = at - 9
    elif data[at - 1] == _NIL:
        value_at = at - 1
    else:
        return _decode(data, None)
    middle = data[_MIDDLE_AT:value_at] if value_at > _MIDDLE_AT else None
    known = _known_middles.get(middle)
    labels = _known_labels.get(data[at + len(_LABELS_KEY) :])
    if known is None or labels is None:
        return _decode(data, middle)
    fields, unpack_time_and_float64 = known
    if value_at == at - 1:
        time_us, value = _unpack_uint64(data, _TIME_AT)[0], None
    else:
        time_us, value = unpack_time_and_float64(data)
    if time_us > _INT64_MAX:
        raise InvalidSample(f"time_us {time_us} is outside int64")
    if value is not None and (value - value != 0 or value >= _LEAST_BLANK):
        value = _finite(value)
    return _new_sample(Sample, (time_us, *fields, value, labels))


def _decode(data: bytes, middle: bytes | None) -> Sample:
    """decode_sample by the second fast path or the plain path. ``middle`` is what the first
    fast path took for the middle of ``data`` (None when ``data`` is not laid out for it); it is
    remembered when the sample is valid and those bytes prove to be its middle."""
    fields, labels_raw = _split(data)
    if fields is None:
        try:
            fields = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except (ValueError, TypeError, msgpack.UnpackException) as error:
            # ExtraData, FormatError, StackError and UnicodeDecodeError are ValueErrors.
            raise InvalidSample(f"not one msgpack value: {error}") from None
        if type(fields) is not dict:
            raise InvalidSample(f"not a msgpack map but {type(fields).__name__}")
    version = fields.get("version")
    if version != VERSION or type(version) is not int:
        raise InvalidSample(f"version {version!r}, expected {VERSION}")
    try:
        values = _get_fields(fields)
    except KeyError as error:
        raise InvalidSample(f"{error.args[0]} is missing") from None
    if tuple(map(type, values)) != _FIELD_TYPES:
        for (name, kind), value in zip(_TYPES.items(), values, strict=True):
            if type(value) is not kind:  # bool is not an int here
                raise InvalidSample(f"{name} is {type(value).__name__}, expected {kind.__name__}")
    time_us, metric, gpu_index, device, uuid, model, hostname, container, pod, namespace, labels = (
        values
    )
    if not _INT64_MIN <= time_us <= _INT64_MAX:
        raise InvalidSample(f"time_us {time_us} is outside int64")
    if metric not in _known_metrics:
        if not is_metric_name(metric):
            raise InvalidSample(f"metric {metric!r} is not a DCGM field name")
        if len(_known_metrics) >= _KNOWN_MAX:
            _known_metrics.clear()
        _known_metrics.add(metric)
    if not 0 <= gpu_index <= MAX_GPU_INDEX:
        raise InvalidSample(f"gpu_index {gpu_index} is outside 0..{MAX_GPU_INDEX}")
    if not uuid:
        raise InvalidSample("uuid is empty")
    if labels_raw is None or _known_labels.get(labels_raw) is not labels:
        _check_labels(labels)
        if labels_raw is not None:
            _remember_labels(labels_raw, labels)
    value = _value(fields)
    if middle is not None and middle not in _known_middles:
        _remember_middle(middle, values[1:10])
    return Sample(
        time_us, metric, gpu_index, device, uuid, model, hostname, container, pod, namespace,
        value, labels,
    )  # fmt: skip


# The fast paths. A fleet repeats the same descriptive fields (metric .. namespace) and the same
# label maps record after record; only the time and the value change.
#
# The first (decode_sample) takes a value laid out as encode_sample writes it, with a uint64
# time and a float 64 or nil value: the bytes
#
#     _HEAD, 0xcf + 8 bytes (time_us), middle, 0xcb + 8 bytes or 0xc0, b"\xa6labels", labels map
#
# where the middle (the key of _known_middles) is the 9 entries metric .. namespace followed by
# the key b"\xa5value", and both the middle and the labels map bytes are known. Each is
# remembered only once those bytes were seen to decode, on their own, to exactly what the plain
# path accepted: the middle to 18 complete msgpack objects, the entries metric .. namespace in
# that order, then "value"; the labels to one complete map. msgpack objects are prefix-free (an
# object's bytes say where it ends), so a parser reading such a value from its first byte
# consumes exactly these pieces one after the other and stops at its last byte: this split is
# the value's only reading, a map of 13 distinct keys that the plain path decodes to the same
# fields. Of the plain path's checks only the time's range and the value's can then fail, in
# that order, as here.
#
# The second (_split) takes a map of 13 entries whose last key is "labels", its labels map known:
# the 12 other entries are unpacked on their own (the same bytes behind a 12-entry map header)
# and checked as usual. When they use up exactly the bytes before the last b"\xa6labels" and do
# not hold "labels", that split is, again, the value's only reading; anything else (another key
# order, another writer) takes the plain path, with the same checks and errors.
_MAP_OF_13 = b"\x8d"
_MAP_OF_12 = b"\x8c"
_MAP_OF_9 = b"\x89"
_HEAD_UINT64 = _HEAD + b"\xcf"
_TIME_AT = len(_HEAD_UINT64)
_MIDDLE_AT = _TIME_AT + 8
_FLOAT64 = 0xCB
_NIL = 0xC0
_unpack_uint64 = struct.Struct(">Q").unpack_from
# The least of DCGM's blank sentinels: the model's is_blank is False below it.
_LEAST_BLANK = float(DCGM_INT32_BLANK)
_new_sample = tuple.__new__  # _new_sample(Sample, fields): Sample(*fields) minus a Python call
_KNOWN_MAX = 65536
_known_labels: dict[bytes, dict] = {}  # labels map bytes -> the map, checked
# middle bytes -> ((metric .. namespace), checked; _time_and_float64 of its size)
_known_middles: dict[bytes, tuple[tuple, Callable[[bytes], tuple[int, float]]]] = {}
_known_metrics: set[str] = set()


def _split(data: bytes) -> tuple[dict | None, bytes | None]:
    """``(the fields, the labels map bytes)`` by the second fast path, ``(None, labels bytes or
    None)`` when the plain path must decode the value."""
    if type(data) is not bytes or data[:1] != _MAP_OF_13:
        return None, None
    at = data.rfind(_LABELS_KEY)
    if at < 1:
        return None, None
    labels_raw = data[at + len(_LABELS_KEY) :]
    labels = _known_labels.get(labels_raw)
    if labels is None:
        return None, labels_raw
    try:
        fields = msgpack.unpackb(_MAP_OF_12 + data[1:at], raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None, None
    if type(fields) is not dict or "labels" in fields:
        return None, None
    fields["labels"] = labels
    return fields, labels_raw


def _remember_middle(middle: bytes, fields: tuple) -> None:
    """Remember ``fields`` (metric .. namespace, accepted by the plain path) under ``middle``
    if those bytes are exactly these 9 entries, keys in _MIDDLE order, then the key "value" (the
    split was a guess until now)."""
    if not middle.endswith(_VALUE_KEY):
        return
    try:
        entries = msgpack.unpackb(
            _MAP_OF_9 + middle[: -len(_VALUE_KEY)], raw=False, strict_map_key=True
        )
    except (ValueError, TypeError, msgpack.UnpackException):
        return
    # 9 distinct keys in order (a repeated key leaves fewer); the values are those of the same
    # bytes as the plain path read them, hence of the same types.
    if tuple(entries) == _MIDDLE and tuple(entries.values()) == fields:
        if len(_known_middles) >= _KNOWN_MAX:
            _known_middles.clear()
        _known_middles[middle] = fields, _time_and_float64(len(middle))


@lru_cache(maxsize=1024)
def _time_and_float64(middle_size: int) -> Callable[[bytes], tuple[int, float]]:
    """A function of a value with the first fast path's layout, a middle of ``middle_size``
    bytes and a float 64 value: ``(time_us, value)``."""
    return struct.Struct(f">{_TIME_AT}xQ{middle_size + 1}xd").unpack_from


def _remember_labels(labels_raw: bytes, labels: dict) -> None:
    """Cache ``labels`` under ``labels_raw`` if those bytes are exactly that map (the split
    was a guess until now)."""
    try:
        exact = msgpack.unpackb(labels_raw, raw=False, strict_map_key=True) == labels
    except (ValueError, TypeError, msgpack.UnpackException):
        exact = False
    if exact:
        if len(_known_labels) >= _KNOWN_MAX:
            _known_labels.clear()
        _known_labels[labels_raw] = labels


def _check_labels(labels: object) -> None:
    if type(labels) is not dict:
        raise InvalidSample(f"labels is {type(labels).__name__}, expected dict")
    if not {*map(type, labels), *map(type, labels.values())} <= {str}:
        for name, label in labels.items():
            if type(name) is not str:
                raise InvalidSample(f"label {name!r} has a {type(name).__name__} name")
            if type(label) is not str:
                raise InvalidSample(f"label {name!r} is {type(label).__name__}, expected str")


def _value(fields: dict) -> float | None:
    if "value" not in fields:
        raise InvalidSample("value is missing")
    value = fields["value"]
    if value is None:
        return None
    if type(value) is int:
        value = float(value)
    elif type(value) is not float:
        raise InvalidSample(f"value is {type(value).__name__}, expected float or nil")
    return _finite(value)


def _finite(value: float) -> float | None:
    """``value`` if finite, ``None`` for a blank sentinel.

    :raises InvalidSample: ``value`` is infinite or nan.
    """
    if value - value != 0:
        raise InvalidSample(f"value {value} is not finite")
    return value if value < _LEAST_BLANK or not is_blank(value) else None
