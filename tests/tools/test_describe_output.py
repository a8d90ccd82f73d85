"""``tmq topics describe`` output: the text lines and the ``--json`` document built from
``Admin.describe_offsets`` results (no broker needed)."""

from __future__ import annotations

import json

from tmq.client.admin import PartitionOffsets
from tmq.client.cluster import PartitionInfo
from tmq.tools.cli import build_parser
from tmq.tools.clients import describe_json, describe_lines


def offsets(topic, index, leader, replicas, isr, hw, ends, epoch=3, offline=()):
    """One ``PartitionOffsets`` as ``describe_offsets`` returns it."""
    info = PartitionInfo(topic, index, leader, epoch, tuple(replicas), tuple(isr), tuple(offline))
    return PartitionOffsets(info, hw, dict(ends))


TOPICS = {
    "telemetry": {
        1: offsets("telemetry", 1, -1, [3, 1], [], None, {3: 40, 1: None}, offline=[3, 1]),
        0: offsets("telemetry", 0, 1, [1, 2, 3], [1, 2], 118, {1: 120, 2: 120, 3: 118}),
    },
    "alerts": {0: offsets("alerts", 0, 2, [2], [2], 0, {2: 0}, epoch=0)},
}


def test_text_has_one_line_per_partition():
    """Topics by name, partitions by index: leader, epoch, replicas, ISR, hw and each
    replica's leo by broker id, in replica order."""
    assert describe_lines(TOPICS) == [
        "topic alerts: 1 partitions",
        "  partition 0: leader 2 epoch 0 replicas [2] isr [2] hw 0 leo {2: 0}",
        "topic telemetry: 2 partitions",
        "  partition 0: leader 1 epoch 3 replicas [1, 2, 3] isr [1, 2] hw 118 "
        "leo {1: 120, 2: 120, 3: 118}",
        "  partition 1: leader none epoch 3 replicas [3, 1] isr [] hw ? leo {3: 40, 1: ?}",
    ]


def test_json_has_the_same_values_with_null_for_unknown():
    """The JSON document carries the same fields; no leader and unknown offsets are null,
    log end offsets are keyed by the broker id as a string; it survives a JSON round trip."""
    document = json.loads(json.dumps(describe_json(TOPICS)))
    assert [t["name"] for t in document["topics"]] == ["alerts", "telemetry"]
    telemetry = document["topics"][1]["partitions"]
    assert [p["partition"] for p in telemetry] == [0, 1]
    assert telemetry[0] == {
        "partition": 0,
        "leader": 1,
        "leader_epoch": 3,
        "replicas": [1, 2, 3],
        "isr": [1, 2],
        "offline_replicas": [],
        "high_watermark": 118,
        "log_end_offsets": {"1": 120, "2": 120, "3": 118},
    }
    offline = telemetry[1]
    assert (offline["leader"], offline["high_watermark"]) == (None, None)
    assert offline["offline_replicas"] == [3, 1]
    assert offline["log_end_offsets"] == {"3": 40, "1": None}


def test_no_topics_print_nothing():
    """A cluster without topics: no lines, and an empty topic list in JSON."""
    assert describe_lines({}) == []
    assert describe_json({}) == {"topics": []}


def test_describe_takes_a_name_and_json():
    """``topics describe [NAME] [--json] --bootstrap ...`` parses; --json is off by default."""
    parser = build_parser()
    args = parser.parse_args(["topics", "describe", "t", "--json", "--bootstrap", "h:1"])
    assert (args.name, args.json, args.bootstrap) == ("t", True, "h:1")
    args = parser.parse_args(["topics", "describe"])
    assert (args.name, args.json) == (None, False)
