"""dcgm-exporter's /metrics page: parsing scrapes, label lists, and writing pages back."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmq.telemetry.csv_source import parse_csv, real_capture_path
from tmq.telemetry.exposition import (
    ExpositionParser,
    LabelParser,
    format_labels,
    parse_exposition,
    render_exposition,
)
from tmq.telemetry.model import RowError, Sample

SCRAPE_TIME = 1_752_871_400_000_000
UUID0 = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
UUID1 = "GPU-bc7a12ab-4998-fdc5-0785-2678a929a142"


def series(gpu: str = "0", uuid: str = UUID0, extra: str = "") -> str:
    """The label set dcgm-exporter writes for one GPU, in its order."""
    return (
        f'{{gpu="{gpu}",UUID="{uuid}",device="nvidia{gpu}",modelName="NVIDIA H100 80GB HBM3",'
        f'Hostname="node-1",DCGM_FI_DRIVER_VERSION="535.129.03",{extra}'
        'container="",namespace="",pod=""}'
    )


# A scrape as dcgm-exporter serves it, with a family of another exporter and a DCGM_EXP one.
PAGE = f"""\
# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).
# TYPE DCGM_FI_DEV_SM_CLOCK gauge
DCGM_FI_DEV_SM_CLOCK{series("0")} 1980
DCGM_FI_DEV_SM_CLOCK{series("1", UUID1)} 345
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{series("0")} 156.596

# HELP go_gc_duration_seconds A summary of the GC invocation durations.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{{quantile="0"}} 3.1e-05
DCGM_EXP_XID_ERRORS_COUNT{series("0")} 0
"""

LABELS0 = {
    "gpu": "0",
    "UUID": UUID0,
    "device": "nvidia0",
    "modelName": "NVIDIA H100 80GB HBM3",
    "Hostname": "node-1",
    "DCGM_FI_DRIVER_VERSION": "535.129.03",
    "container": "",
    "namespace": "",
    "pod": "",
}


def sample0(metric: str, value: float | None, time_us: int = SCRAPE_TIME) -> Sample:
    return Sample(
        time_us, metric, 0, "nvidia0", UUID0, "NVIDIA H100 80GB HBM3", "node-1", "", "", "",
        value, {**LABELS0, "__name__": metric},
    )  # fmt: skip


def parse(text: str) -> list[Sample | RowError]:
    return list(parse_exposition(text, SCRAPE_TIME))


@pytest.fixture(scope="module")
def real_samples() -> list[Sample]:
    with real_capture_path().open(newline="") as stream:
        return list(parse_csv(stream))


class ParseTests:
    """A scrape becomes samples; other families and comments are skipped."""

    def test_exporter_page(self):
        """DCGM field lines become samples at the scrape's time, labels mapped to fields and
        kept (with __name__); HELP, TYPE, blank lines and other families yield nothing."""
        items = parse(PAGE)
        assert items[0] == sample0("DCGM_FI_DEV_SM_CLOCK", 1980.0)
        assert items[2] == sample0("DCGM_FI_DEV_POWER_USAGE", 156.596)
        assert (items[1].gpu_index, items[1].uuid, items[1].device, items[1].value) == (
            1, UUID1, "nvidia1", 345.0,
        )  # fmt: skip
        assert len(items) == 3

    def test_timestamp(self):
        """A timestamp after the value (milliseconds) is the sample's time."""
        (item,) = parse(f"DCGM_FI_DEV_GPU_UTIL{series()} 42 1752871354123\n")
        assert item.time_us == 1_752_871_354_123_000

    def test_workload_labels(self):
        """container, pod and namespace labels become the sample's workload fields."""
        line = (
            f'DCGM_FI_DEV_GPU_UTIL{{gpu="3",UUID="{UUID0}",container="trainer",pod="job-7",'
            'namespace="ml"} 99'
        )
        (item,) = parse(line)
        assert (item.container, item.pod, item.namespace) == ("trainer", "job-7", "ml")
        assert (item.device, item.model, item.hostname, item.gpu_index) == ("", "", "", 3)

    def test_escapes_crlf_and_trailing_comma(self):
        """Escaped backslash, quote and line break in a value are unescaped; a comma may end
        the label set; \\r\\n line ends work; spaces and tabs separate fields."""
        text = (
            f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="{UUID0}",modelName="A \\"B\\" \\\\ C\\nD",}}'
            " \t 7 \r\n"
        )
        (item,) = parse(text)
        assert item.model == 'A "B" \\ C\nD'
        assert item.value == 7.0

    @pytest.mark.parametrize("text", ["140737488355328", "9223372036854775794", "2147483632"])
    def test_blank_sentinels_are_none(self, text):
        """A DCGM blank sentinel is a sample without a value."""
        (item,) = parse(f"DCGM_FI_DEV_GPU_UTIL{series()} {text}")
        assert item.value is None

    @pytest.mark.parametrize(
        ("line", "reason"),
        [
            (f"DCGM_FI_DEV_GPU_UTIL{series()}", "not a sample line"),
            (f"DCGM_FI_DEV_GPU_UTIL{series()} 1 2 3", "not a sample line"),
            (f"DCGM_FI_DEV_GPU_UTIL{series()} 1 12.5", "not a sample line"),
            (f"DCGM_FI_DEV_GPU_UTIL{series()} abc", "value 'abc' is not a number"),
            (f"DCGM_FI_DEV_GPU_UTIL{series()} NaN", "value 'NaN' is not a finite number"),
            (f"DCGM_FI_DEV_GPU_UTIL{series()} +Inf", "value '+Inf' is not a finite number"),
            (f"DCGM_FI_DEV_GPU_UTIL{series()} 1 99999999999999999", "timestamp 9999"),
            ('DCGM_FI_DEV_GPU_UTIL{gpu="0"} 1', "no UUID label"),
            ('DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID=""} 1', "no UUID label"),
            ("DCGM_FI_DEV_GPU_UTIL 1", "no UUID label"),
            (f'DCGM_FI_DEV_GPU_UTIL{{UUID="{UUID0}"}} 1', "no gpu label"),
            (f'DCGM_FI_DEV_GPU_UTIL{{UUID="{UUID0}",gpu="x"}} 1', "bad GPU index 'x'"),
            (f'DCGM_FI_DEV_GPU_UTIL{{UUID="{UUID0}",gpu="0}} 1', "bad labels: expected"),
            (f'DCGM_FI_DEV_GPU_UTIL{{UUID="{UUID0}",gpu="0",gpu="1"}} 1', "bad labels: label"),
            (f'DCGM_FI_DEV_GPU_UTIL{{UUID="{UUID0}" ,gpu="0"}} 1', "bad labels: expected ','"),
            (f'DCGM_FI_DEV_GPU_UTIL{{UUID="{UUID0}",gpu="0",,}} 1', "bad labels: a comma ends"),
        ],
    )
    def test_malformed_lines(self, line, reason):
        """A malformed DCGM line is a RowError with its line number and text; the lines
        around it still parse."""
        good = f"DCGM_FI_DEV_GPU_UTIL{series()} 5"
        items = parse(f"# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n{good}\n{line}\n{good}\n")
        assert items[0] == items[2] == sample0("DCGM_FI_DEV_GPU_UTIL", 5.0)
        assert items[1] == RowError(3, items[1].reason, line)
        assert items[1].reason.startswith(reason), items[1].reason

    def test_names_that_only_look_like_dcgm_fields_are_skipped(self):
        """A family starting DCGM_FI_ that is no DCGM field name (lower case) is skipped."""
        assert parse(f"DCGM_FI_dev_util{series()} 1\n") == []

    def test_parser_remembers_series_across_scrapes(self):
        """One parser gives equal samples for equal scrapes, sharing their label dicts."""
        parser = ExpositionParser()
        first = list(parser.parse(PAGE, SCRAPE_TIME))
        second = list(parser.parse(PAGE, SCRAPE_TIME + 15_000_000))
        assert [s._replace(time_us=SCRAPE_TIME) for s in second] == first
        assert all(a.labels is b.labels for a, b in zip(first, second, strict=True))

    def test_tiny_series_cache(self):
        """With room for one series, a page of several still parses right."""
        parser = ExpositionParser(cache_size=1)
        assert list(parser.parse(PAGE, SCRAPE_TIME)) == parse(PAGE)
        with pytest.raises(ValueError):
            ExpositionParser(cache_size=0)


class RenderTests:
    """Samples written as a dcgm-exporter page read back as the same samples."""

    def test_real_capture_round_trip(self, real_samples):
        """The real capture's samples, rendered without times, parse back to the same samples
        at the scrape's time; rendered with times, to exactly the same samples."""
        text = render_exposition(real_samples)
        at_scrape_time = [s._replace(time_us=SCRAPE_TIME) for s in real_samples]
        assert _by_family(parse(text)) == _by_family(at_scrape_time)
        timed = render_exposition(real_samples, timestamps=True)
        assert _by_family(parse(timed)) == _by_family(real_samples)

    def test_exporter_shape(self, real_samples):
        """Each family once, HELP and TYPE from the catalog first, labels in the exporter's
        order (gpu, UUID, device, modelName, Hostname, then the others)."""
        text = render_exposition(real_samples[:1] + real_samples[247:248])
        assert text == (
            "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n"
            "# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n"
            f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="{UUID0}",device="nvidia0",'
            'modelName="NVIDIA H100 80GB HBM3",Hostname="mtv5-dgx1-hgpu-031",'
            'DCGM_FI_DRIVER_VERSION="535.129.03",instance="mtv5-dgx1-hgpu-031:9400",'
            'job="dgx_dcgm_exporter"} 0\n'
            "# HELP DCGM_FI_DEV_MEM_COPY_UTIL Memory utilization (in %).\n"
            "# TYPE DCGM_FI_DEV_MEM_COPY_UTIL gauge\n"
            f'DCGM_FI_DEV_MEM_COPY_UTIL{{gpu="0",UUID="{UUID0}",device="nvidia0",'
            'modelName="NVIDIA H100 80GB HBM3",Hostname="mtv5-dgx1-hgpu-031",'
            'DCGM_FI_DRIVER_VERSION="535.129.03",instance="mtv5-dgx1-hgpu-031:9400",'
            'job="dgx_dcgm_exporter"} 0\n'
        )

    def test_families_are_contiguous(self):
        """Interleaved samples are grouped by family, each family's samples in order."""
        a1, b1, a2 = (
            sample0("DCGM_FI_DEV_GPU_UTIL", 1.0),
            sample0("DCGM_FI_DEV_SM_CLOCK", 2.0),
            sample0("DCGM_FI_DEV_GPU_UTIL", 3.0),
        )
        text = render_exposition([a1, b1, a2])
        names = [line.split("{")[0] for line in text.splitlines() if not line.startswith("#")]
        assert names == ["DCGM_FI_DEV_GPU_UTIL"] * 2 + ["DCGM_FI_DEV_SM_CLOCK"]
        assert parse(text) == [a1, a2, b1]

    def test_workload_and_blank_and_unknown_field(self):
        """Workload fields are written when set or carried as labels; None is written as the
        blank sentinel and read back as None; a field outside the catalog is untyped."""
        sample = sample0("DCGM_FI_DEV_SOMETHING_NEW", None)._replace(
            pod="job-7",
            labels={"__name__": "DCGM_FI_DEV_SOMETHING_NEW", "namespace": ""},
        )
        text = render_exposition([sample])
        assert "# TYPE DCGM_FI_DEV_SOMETHING_NEW untyped\n" in text
        assert text.endswith(',namespace="",pod="job-7"} 140737488355328\n')
        (back,) = parse(text)
        assert back.value is None and back.pod == "job-7"

    def test_escaped_values_round_trip(self):
        """Quotes, backslashes and line breaks in label values and fields survive."""
        sample = sample0("DCGM_FI_DEV_GPU_UTIL", 1.5)._replace(
            model='say "hi"\\\n',
            labels={**LABELS0, "modelName": 'say "hi"\\\n', "__name__": "DCGM_FI_DEV_GPU_UTIL"},
        )
        assert parse(render_exposition([sample])) == [sample]

    def test_nothing(self):
        """No samples, no text."""
        assert render_exposition([]) == ""


def _by_family(samples):
    """Samples ordered as a page lists them: family by family, in first-seen order."""
    order = {}
    for sample in samples:
        order.setdefault(sample.metric, len(order))
    return sorted(samples, key=lambda sample: order[sample.metric])


label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True)
label_sets = st.dictionaries(label_names, st.text(max_size=12), max_size=8)
LABEL_LIST = re.compile(
    r'(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)?'
)


class LabelParserTests:
    """Label lists: the fast path and the full check agree; escapes round-trip."""

    @given(label_sets)
    def test_format_then_parse(self, labels):
        """parse(format_labels(x)) == x, also in CSV form (quotes doubled), with a parser that
        knows the names (fast path) and one that does not (full check)."""
        text = format_labels(labels.items())
        assert LabelParser().parse(text) == labels
        warm = LabelParser()
        warm.parse(text)
        assert warm.parse(text) == labels
        assert warm.parse_doubled(text.replace('"', '""')) == labels

    @given(st.text(alphabet='ab_=",\\n1 ', max_size=30))
    def test_paths_agree_on_any_text(self, text):
        """On any text, a parser that has seen every name and a fresh one accept the same
        lists and give the same labels, and accept exactly the documented grammar with
        unique names."""
        warm = LabelParser()
        warm.parse('a="",b="",_="",ab="",a_b="",b1=""')
        results = []
        for parser in (warm, LabelParser()):
            try:
                results.append(parser.parse(text))
            except ValueError:
                results.append(None)
        assert results[0] == results[1]
        if results[0] is not None:
            assert LABEL_LIST.fullmatch(text)
        elif LABEL_LIST.fullmatch(text):
            names = re.findall(r'(?:^|,)([a-zA-Z_][a-zA-Z0-9_]*)="', text)
            assert len(names) != len(set(names))  # refused only for a repeated name

    @given(st.text(alphabet='ab=",\\', max_size=30))
    def test_doubled_form_agrees_with_plain(self, text):
        """parse_doubled(text with quotes doubled) == parse(text), errors included; a lone
        quote in the doubled form is refused."""
        parser = LabelParser()
        try:
            expected = parser.parse(text)
        except ValueError:
            expected = None
        try:
            actual = parser.parse_doubled(text.replace('"', '""'))
        except ValueError:
            actual = None
        assert actual == expected
        with pytest.raises(ValueError):  # an odd number of quotes leaves one alone
            parser.parse_doubled(text.replace('"', '""') + '"')
