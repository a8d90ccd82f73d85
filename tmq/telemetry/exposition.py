"""dcgm-exporter's ``/metrics`` page: the Prometheus text exposition format, parsed and written.

The format, as dcgm-exporter serves it (one metric family after another)::

    # HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
    # TYPE DCGM_FI_DEV_GPU_UTIL gauge
    DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-5fd4…",device="nvidia0",modelName="NVIDIA H100 …",
        Hostname="node-1",DCGM_FI_DRIVER_VERSION="535.129.03",container="",namespace="",pod=""} 42

(the last sample line is wrapped here; it is one line). A sample line is
``name{labels} value [timestamp]``: the label set is optional, the value a float, the timestamp
integer milliseconds since the Unix epoch. Lines are separated by ``\\n`` (a ``\\r`` before it
is ignored); ``#`` lines (``HELP``, ``TYPE``, comments) and blank lines carry no samples.

Label lists (``name="value"`` pairs joined by commas, no spaces; the same syntax as the CSV
capture's ``labels_raw`` column): a name is ``[a-zA-Z_][a-zA-Z0-9_]*`` and appears once; a value
escapes a backslash as ``\\\\``, a double quote as ``\\"`` and a line break as ``\\n``, and holds no
other backslash and no raw line break. :class:`LabelParser` reads them.

Parsing (:func:`parse_exposition`, :class:`ExpositionParser`) yields a :class:`Sample` per line
of a DCGM field family (``DCGM_FI_…``) and a :class:`RowError` per malformed line; lines of
other families (the exporter's own, or ``DCGM_EXP_…`` ones) are skipped without a look. The
labels map to the sample's fields: ``gpu`` -> ``gpu_index`` and ``UUID`` -> ``uuid``
(both required), ``device``, ``modelName`` -> ``model``, ``Hostname`` -> ``hostname``,
``container``, ``pod``, ``namespace`` (each ``""`` when absent). The sample's ``labels`` are
every label of the line plus ``__name__`` (the family name), as Prometheus stores a series.

Writing (:func:`render_exposition`) is the reverse, in dcgm-exporter's shape: ``HELP`` and
``TYPE`` lines from :data:`METRICS`, then the family's lines, labels in the exporter's order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .model import (
    MAX_GPU_INDEX,
    METRICS,
    RowError,
    Sample,
    format_value,
    is_blank,
    is_metric_name,
)

__all__ = [
    "DEFAULT_SERIES_CACHE_SIZE",
    "ExpositionParser",
    "LabelParser",
    "format_labels",
    "parse_exposition",
    "parse_gpu_index",
    "render_exposition",
]

_VALUE = r'[^"\\\n]*(?:\\[\\"n][^"\\\n]*)*'
_LABEL = re.compile(rf'([a-zA-Z_][a-zA-Z0-9_]*)="({_VALUE})"')
_ESCAPE = re.compile(r"\\(.)")
_UNESCAPED = {"\\": "\\", '"': '"', "n": "\n"}

#: How many distinct label names a :class:`LabelParser` remembers for its fast path.
_MAX_NAMES = 1024


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPE.sub(lambda match: _UNESCAPED[match.group(1)], value)


class LabelParser:
    """Reads label lists (see the module docstring) into dicts.

    Label names are few and repeat in every list, so the parser remembers the ones it has
    checked; a list made of known names and plain values (no backslash) is then split instead
    of matched, several times faster. Both paths accept and reject exactly the same lists.
    """

    def __init__(self) -> None:
        # 'name=' -> name for the first label of a list, ',name=' -> name for the others.
        self._first: dict[str, str] = {}
        self._rest: dict[str, str] = {}

    def parse(self, text: str) -> dict[str, str]:
        """The labels of ``text``, in their order, values unescaped.

        :raises ValueError: not a label list; the message says where and why.
        """
        if "\\" not in text and "\n" not in text:
            labels = self._split(text.split('"'))
            if labels is not None:
                return labels
        return self._parse_checked(text)

    def parse_doubled(self, text: str) -> dict[str, str]:
        """The labels of ``text`` written inside a CSV field, every quote doubled (the CSV
        capture's ``labels_raw`` before its CSV unquoting); as :meth:`parse` otherwise.

        :raises ValueError: a lone quote, or not a label list.
        """
        if "\\" not in text and "\n" not in text:
            parts = text.split('""')
            if text.count('"') == 2 * len(parts) - 2:  # every quote doubled
                labels = self._split(parts)
                if labels is not None:
                    return labels
        plain = text.replace('""', '"')
        if text.count('"') != 2 * plain.count('"'):
            raise ValueError("a lone double quote (quotes are doubled inside a CSV field)")
        return self._parse_checked(plain)

    def _split(self, parts: list[str]) -> dict[str, str] | None:
        """The labels of a list of known names and plain values, split at its quotes
        (``'name='``, value, ``',name='``, value, …, ``''``); ``None`` when it is not one."""
        count = len(parts)
        if count > 1 and count & 1 and not parts[-1]:
            try:
                labels = {self._first[parts[0]]: parts[1]}
                names = map(self._rest.__getitem__, parts[2:-1:2])
                labels.update(zip(names, parts[3::2], strict=True))
            except KeyError:
                return None  # a name not seen yet, or not a name: the full check says which
            if len(labels) == count >> 1:
                return labels
        return None

    def _parse_checked(self, text: str) -> dict[str, str]:
        labels: dict[str, str] = {}
        position = 0
        end = len(text)
        while position < end:
            match = _LABEL.match(text, position)
            if match is None:
                raise ValueError(f'expected name="value" at character {position + 1}')
            name, value = match.groups()
            if name in labels:
                raise ValueError(f"label {name} appears twice")
            labels[name] = _unescape(value)
            position = match.end()
            if position < end:
                if text[position] != ",":
                    raise ValueError(f"expected ',' at character {position + 1}")
                position += 1
                if position == end:
                    raise ValueError("a comma ends the list")
        self._learn(labels)
        return labels

    def _learn(self, names: Iterable[str]) -> None:
        for name in names:
            if f"{name}=" not in self._first:
                if len(self._first) >= _MAX_NAMES:
                    self._first.clear()
                    self._rest.clear()
                self._first[f"{name}="] = name
                self._rest[f",{name}="] = name


def format_labels(labels: Iterable[tuple[str, str]]) -> str:
    """``name="value"`` pairs joined by commas, values escaped: what :class:`LabelParser`
    reads back. Names are written as given (they must be valid label names)."""
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels)


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def parse_gpu_index(text: str) -> int:
    """A GPU index label or column (ASCII digits, 0 to ``MAX_GPU_INDEX``) as an int.

    :raises ValueError: anything else.
    """
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or int(text) > MAX_GPU_INDEX:
        raise ValueError(f"bad GPU index {text!r}: expected 0..{MAX_GPU_INDEX}")
    return int(text)


# name, optional {labels}, value, optional integer timestamp; spaces or tabs between.
_SAMPLE_LINE = re.compile(
    r"(?P<series>(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?)"
    r"[ \t]+(?P<value>[^ \t]+)(?:[ \t]+(?P<timestamp>-?[0-9]+))?[ \t]*"
)
# Times in microseconds must fit a signed 64-bit integer.
_MAX_TIMESTAMP_MS = (2**63 - 1) // 1000

#: How many distinct series (name and label set) an :class:`ExpositionParser` remembers.
DEFAULT_SERIES_CACHE_SIZE = 65536


class ExpositionParser:
    """Parses dcgm-exporter scrapes into samples; one parser serves every scrape of a target.

    A fleet repeats the same series in every scrape, so the parser remembers what each series
    (name and label set, as written) parsed to — at most ``cache_size`` of them; past that it
    forgets them all and starts over.
    """

    def __init__(self, *, cache_size: int = DEFAULT_SERIES_CACHE_SIZE) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, not {cache_size}")
        self._cache_size = cache_size
        self._series: dict[str, tuple] = {}
        self._labels = LabelParser()

    def parse(self, text: str, default_time_us: int) -> Iterator[Sample | RowError]:
        """The samples and malformed lines of one scrape, in line order.

        :param text: the scrape's body.
        :param default_time_us: the time of samples whose line has no timestamp (the scrape's
            time, usually).
        """
        series_cache = self._series
        for number, line in enumerate(text.split("\n"), 1):
            if not line.startswith("DCGM_FI_"):
                continue  # another family, a comment, HELP, TYPE or a blank line
            line = line.removesuffix("\r")
            match = _SAMPLE_LINE.fullmatch(line)
            if match is None:
                yield RowError(number, "not a sample line: name{labels} value [timestamp]", line)
                continue
            series = series_cache.get(match["series"])
            if series is None:
                if not is_metric_name(match["name"]):
                    continue  # DCGM_FI_ followed by something no DCGM field is called
                try:
                    series = self._parse_series(match["name"], match["labels"] or "")
                except ValueError as error:
                    yield RowError(number, str(error), line)
                    continue
                if len(series_cache) >= self._cache_size:
                    series_cache.clear()
                series_cache[match["series"]] = series
            metric, labels, gpu_index, device, uuid, model, hostname, container, pod, ns = series
            value_text = match["value"]
            try:
                value: float | None = float(value_text)
            except ValueError:
                yield RowError(number, f"value {value_text!r} is not a number", line)
                continue
            if value - value != 0:  # inf or nan
                yield RowError(number, f"value {value_text!r} is not a finite number", line)
                continue
            if is_blank(value):
                value = None
            timestamp = match["timestamp"]
            if timestamp is None:
                time_us = default_time_us
            else:
                milliseconds = int(timestamp)
                if abs(milliseconds) > _MAX_TIMESTAMP_MS:
                    yield RowError(number, f"timestamp {timestamp} is out of range", line)
                    continue
                time_us = milliseconds * 1000
            yield Sample(
                time_us, metric, gpu_index, device, uuid, model, hostname, container, pod, ns,
                value, labels,
            )  # fmt: skip

    def _parse_series(self, name: str, text: str) -> tuple:
        try:
            labels = self._labels.parse(text.removesuffix(","))
        except ValueError as error:
            raise ValueError(f"bad labels: {error}") from None
        if "UUID" not in labels or not labels["UUID"]:
            raise ValueError("no UUID label, or an empty one")
        if "gpu" not in labels:
            raise ValueError("no gpu label")
        gpu_index = parse_gpu_index(labels["gpu"])
        labels["__name__"] = name
        get = labels.get
        return (
            name, labels, gpu_index, get("device", ""), labels["UUID"], get("modelName", ""),
            get("Hostname", ""), get("container", ""), get("pod", ""), get("namespace", ""),
        )  # fmt: skip


def parse_exposition(text: str, default_time_us: int) -> Iterator[Sample | RowError]:
    """The samples and malformed lines of one scrape (see :meth:`ExpositionParser.parse`),
    with a parser of its own; keep an :class:`ExpositionParser` to parse scrape after scrape."""
    return ExpositionParser().parse(text, default_time_us)


# Labels the exporter writes from the sample's fields, in its order: first these...
_LEADING = ("gpu", "UUID", "device", "modelName", "Hostname")
# ...then the other labels, then these (written when the sample has them as labels or not empty).
_WORKLOAD = ("container", "namespace", "pod")
_FROM_FIELDS = frozenset((*_LEADING, *_WORKLOAD, "__name__"))


def render_exposition(samples: Iterable[Sample], *, timestamps: bool = False) -> str:
    """Samples as a dcgm-exporter ``/metrics`` page that :func:`parse_exposition` reads back.

    Families come in the order their first sample does, each with ``# HELP`` and ``# TYPE``
    lines (``untyped`` for a field outside the catalog) and its samples in their order. Labels:
    ``gpu``, ``UUID``, ``device``, ``modelName``, ``Hostname`` from the fields, then the
    sample's other labels (``__name__`` is the family name and not written), then
    ``container``, ``namespace``, ``pod`` from the fields when the sample carries them as
    labels or they are not empty. A ``None`` value is written as DCGM's double blank sentinel.

    :param timestamps: write each sample's time (in milliseconds, truncated) after its value;
        dcgm-exporter does not, so a parser gives such samples the scrape's time.
    """
    families: dict[str, list[str]] = {}
    for sample in samples:
        labels = sample.labels
        pairs = [
            ("gpu", str(sample.gpu_index)),
            ("UUID", sample.uuid),
            ("device", sample.device),
            ("modelName", sample.model),
            ("Hostname", sample.hostname),
        ]
        pairs.extend(item for item in labels.items() if item[0] not in _FROM_FIELDS)
        workload = (sample.container, sample.namespace, sample.pod)
        for name, value in zip(_WORKLOAD, workload, strict=True):
            if value or name in labels:
                pairs.append((name, value))
        line = f"{sample.metric}{{{format_labels(pairs)}}} {format_value(sample.value)}"
        if timestamps:
            line = f"{line} {sample.time_us // 1000}"
        families.setdefault(sample.metric, []).append(line)
    out = []
    for metric, lines in families.items():
        info = METRICS.get(metric)
        help_text = info.description if info else f"DCGM field {metric}."
        out.append(f"# HELP {metric} {help_text}")
        out.append(f"# TYPE {metric} {info.kind if info else 'untyped'}")
        out.extend(lines)
    out.append("")
    return "\n".join(out)
