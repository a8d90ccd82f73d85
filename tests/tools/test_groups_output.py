"""``tmq groups list`` and ``tmq groups describe``: the text lines and ``--json`` documents built
from ``Admin`` results, and the commands run against a stand-in ``SyncAdmin`` (no broker)."""

from __future__ import annotations

import json

import pytest

from tmq.client.admin import GroupDescription, GroupList, GroupListing, GroupMember, GroupOffset
from tmq.client.consumer import TopicPartition
from tmq.client.consumer_protocol import ConsumerAssignment
from tmq.client.errors import BrokerResponseError, ConnectionFailedError
from tmq.protocol.errors import ErrorCode
from tmq.tools.cli import build_parser, main
from tmq.tools.clients import (
    group_describe_json,
    group_describe_lines,
    group_list_json,
    group_list_lines,
)

LISTING = GroupList(
    [
        GroupListing("connect-cluster", "connect", "Stable", 1),
        GroupListing("script", "", None, 3),
        GroupListing("telemetry-sink", "consumer", "Stable", 2),
    ],
    {},
)

SINK = GroupDescription(
    group_id="telemetry-sink",
    state="Stable",
    protocol_type="consumer",
    protocol="range",
    members=[
        GroupMember(
            "sink-2-9b1c",
            None,
            "consumer-sink-2",
            "/10.0.3.8",
            b"\x00\x01...",
            None,
            "malformed assignment v1: stream read less than specified amount",
        ),
        GroupMember(
            "sink-1-3f2a",
            "sink-host-a",
            "consumer-sink-1",
            "/10.0.3.7",
            b"<raw>",
            ConsumerAssignment(1, (("gpu", (0, 1)), ("alerts", (0,))), b"\xab"),
        ),
        GroupMember("sink-3-77aa", None, "consumer-sink-3", "/10.0.3.9", b""),
    ],
    coordinator=2,
)

OFFSETS = {
    TopicPartition("gpu", 1): GroupOffset("gpu", 1, None, None, 40),
    TopicPartition("gpu", 0): GroupOffset("gpu", 0, 100, "", 120),
    TopicPartition("alerts", 0): GroupOffset("alerts", 0, 3, "note", None),
    TopicPartition("old", 0): GroupOffset("old", 0, 9, "", 9),
}


def test_list_has_one_line_per_group():
    """Groups by id with protocol type (- when empty), state (? when unknown) and
    coordinator."""
    assert group_list_lines(LISTING) == [
        "group connect-cluster: type connect state Stable coordinator 1",
        "group script: type - state ? coordinator 3",
        "group telemetry-sink: type consumer state Stable coordinator 2",
    ]


def test_list_json_has_groups_and_broker_errors():
    """The JSON document has every group (unknown state null) and each broker's error by id;
    it survives a JSON round trip."""
    listing = GroupList(LISTING.groups[:2], {3: ConnectionFailedError("refused")})
    document = json.loads(json.dumps(group_list_json(listing)))
    assert document == {
        "groups": [
            {
                "group_id": "connect-cluster",
                "protocol_type": "connect",
                "state": "Stable",
                "coordinator": 1,
            },
            {"group_id": "script", "protocol_type": "", "state": None, "coordinator": 3},
        ],
        "errors": {"3": "refused"},
    }


def test_no_groups_print_nothing():
    """A cluster without groups: no lines, and empty lists in JSON."""
    assert group_list_lines(GroupList([], {})) == []
    assert group_list_json(GroupList([], {})) == {"groups": [], "errors": {}}


def test_describe_lines():
    """The group line, then members by id (decoded assignments, raw hex with the reason, or
    none), then partitions by topic and index with committed offset, end, lag and owner."""
    assert group_describe_lines(SINK, OFFSETS) == [
        "group telemetry-sink: state Stable type consumer protocol range coordinator 2 members 3",
        "  member sink-1-3f2a: client consumer-sink-1 host /10.0.3.7 instance sink-host-a "
        "assigned {gpu: [0, 1], alerts: [0]}",
        "  member sink-2-9b1c: client consumer-sink-2 host /10.0.3.8 assignment 00012e2e2e "
        "(undecodable: malformed assignment v1: stream read less than specified amount)",
        "  member sink-3-77aa: client consumer-sink-3 host /10.0.3.9 assigned -",
        "  partition alerts-0: committed 3 end ? lag ? member sink-1-3f2a",
        "  partition gpu-0: committed 100 end 120 lag 20 member sink-1-3f2a",
        "  partition gpu-1: committed - end 40 lag ? member sink-1-3f2a",
        "  partition old-0: committed 9 end 9 lag 0 member -",
    ]


def test_describe_lines_of_an_other_protocol_and_empty_fields():
    """A non-consumer group's assignment is shown in hex without a reason; empty state,
    type and protocol are shown as -."""
    group = GroupDescription(
        "connect-cluster",
        "",
        "",
        "",
        [GroupMember("w1", None, "worker-1", "/10.0.4.1", b"\x00\x01w")],
        1,
    )
    assert group_describe_lines(group, {}) == [
        "group connect-cluster: state - type - protocol - coordinator 1 members 1",
        "  member w1: client worker-1 host /10.0.4.1 assignment 000177",
    ]


def test_describe_json():
    """The JSON document carries the same values: decoded assignments with user data in hex,
    raw hex only for what was not decoded, unknowns and absences null; it survives a JSON
    round trip."""
    document = json.loads(json.dumps(group_describe_json(SINK, OFFSETS)))
    assert {k: v for k, v in document.items() if k not in ("members", "offsets")} == {
        "group_id": "telemetry-sink",
        "state": "Stable",
        "protocol_type": "consumer",
        "protocol": "range",
        "coordinator": 2,
    }
    first, second, third = document["members"]
    assert first == {
        "member_id": "sink-1-3f2a",
        "group_instance_id": "sink-host-a",
        "client_id": "consumer-sink-1",
        "client_host": "/10.0.3.7",
        "assignment": {
            "version": 1,
            "partitions": [
                {"topic": "gpu", "partitions": [0, 1]},
                {"topic": "alerts", "partitions": [0]},
            ],
            "user_data": "ab",
        },
        "assignment_hex": None,
        "assignment_error": None,
    }
    assert (second["assignment"], second["assignment_hex"]) == (None, "00012e2e2e")
    assert second["assignment_error"].startswith("malformed assignment v1")
    assert (third["assignment"], third["assignment_hex"], third["assignment_error"]) == (
        None,
        None,
        None,
    )
    assert document["offsets"] == [
        {
            "topic": "alerts",
            "partition": 0,
            "committed": 3,
            "metadata": "note",
            "end_offset": None,
            "lag": None,
            "member": "sink-1-3f2a",
        },
        {
            "topic": "gpu",
            "partition": 0,
            "committed": 100,
            "metadata": "",
            "end_offset": 120,
            "lag": 20,
            "member": "sink-1-3f2a",
        },
        {
            "topic": "gpu",
            "partition": 1,
            "committed": None,
            "metadata": None,
            "end_offset": 40,
            "lag": None,
            "member": "sink-1-3f2a",
        },
        {
            "topic": "old",
            "partition": 0,
            "committed": 9,
            "metadata": "",
            "end_offset": 9,
            "lag": 0,
            "member": None,
        },
    ]


def test_groups_commands_parse():
    """``groups list [--json]`` and ``groups describe GROUP [--json]`` take --bootstrap; a
    group is required to describe."""
    parser = build_parser()
    args = parser.parse_args(["groups", "list", "--json", "--bootstrap", "h:1"])
    assert (args.groups_command, args.json, args.bootstrap) == ("list", True, "h:1")
    args = parser.parse_args(["groups", "describe", "sink"])
    assert (args.groups_command, args.group, args.json) == ("describe", "sink", False)
    with pytest.raises(SystemExit):
        parser.parse_args(["groups", "describe"])


class StubAdmin:
    """Stands in for ``SyncAdmin``: canned answers, and the calls made."""

    listing = LISTING
    description: GroupDescription | Exception = SINK
    offsets = OFFSETS
    calls: list

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        StubAdmin.calls = [("bootstrap", bootstrap)]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        StubAdmin.calls.append(("closed",))

    def list_groups(self):
        return self.listing

    def describe_group(self, group_id):
        StubAdmin.calls.append(("describe_group", group_id))
        if isinstance(self.description, Exception):
            raise self.description
        return self.description

    def group_offsets(self, group_id, include=()):
        StubAdmin.calls.append(("group_offsets", group_id, sorted(include)))
        return self.offsets


class GroupsCommandTests:
    """The commands run with ``StubAdmin`` in place of ``SyncAdmin``."""

    @pytest.fixture(autouse=True)
    def stub(self, monkeypatch):
        monkeypatch.setattr("tmq.client.sync.SyncAdmin", StubAdmin)
        for name in ("listing", "description", "offsets"):
            monkeypatch.setattr(StubAdmin, name, getattr(StubAdmin, name))

    def test_list_prints_the_groups(self, capsys):
        """``groups list`` prints one line per group and exits 0."""
        assert main(["groups", "list", "--bootstrap", "h:1"]) == 0
        assert capsys.readouterr().out.splitlines() == group_list_lines(LISTING)
        assert StubAdmin.calls == [("bootstrap", "h:1"), ("closed",)]

    def test_list_with_a_broker_error_prints_then_fails(self, capsys):
        """When a broker could not list its groups, the groups found are printed (JSON with
        the error) and the command exits 1 naming the broker."""
        StubAdmin.listing = GroupList(LISTING.groups, {3: ConnectionFailedError("refused")})
        assert main(["groups", "list", "--json"]) == 1
        out, err = capsys.readouterr()
        assert json.loads(out)["errors"] == {"3": "refused"}
        assert err == (
            "tmq groups: error: 1 broker(s) could not list their groups; broker 3: refused\n"
        )

    def test_describe_prints_members_and_offsets(self, capsys):
        """``groups describe`` asks for the group, then its offsets including every assigned
        partition, and prints the description."""
        assert main(["groups", "describe", "telemetry-sink"]) == 0
        assert capsys.readouterr().out.splitlines() == group_describe_lines(SINK, OFFSETS)
        assert StubAdmin.calls[1:] == [
            ("describe_group", "telemetry-sink"),
            ("group_offsets", "telemetry-sink", [("alerts", 0), ("gpu", 0), ("gpu", 1)]),
            ("closed",),
        ]

    def test_describe_json(self, capsys):
        """``groups describe --json`` prints the JSON document."""
        assert main(["groups", "describe", "telemetry-sink", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == json.loads(
            json.dumps(group_describe_json(SINK, OFFSETS))
        )

    def test_a_dead_group_without_offsets_does_not_exist(self, capsys):
        """A group described as Dead, without members or offsets, is reported missing (exit
        1), as Kafka's tool does."""
        StubAdmin.description = GroupDescription("nobody", "Dead", "", "", [], 1)
        StubAdmin.offsets = {}
        assert main(["groups", "describe", "nobody"]) == 1
        assert capsys.readouterr().err == "tmq groups: error: group 'nobody' does not exist\n"

    def test_a_dead_group_with_offsets_is_described(self, capsys):
        """A Dead group that still has committed offsets is described."""
        StubAdmin.description = GroupDescription("old", "Dead", "", "", [], 1)
        StubAdmin.offsets = {TopicPartition("gpu", 0): GroupOffset("gpu", 0, 4, "", 9)}
        assert main(["groups", "describe", "old"]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == (
            "  partition gpu-0: committed 4 end 9 lag 5 member -"
        )

    def test_a_broker_error_is_one_line(self, capsys):
        """A group error from the coordinator exits 1 with its one-line message."""
        StubAdmin.description = BrokerResponseError(
            ErrorCode.GROUP_AUTHORIZATION_FAILED, "DescribeGroups 'secret'"
        )
        assert main(["groups", "describe", "secret"]) == 1
        assert capsys.readouterr().err == (
            "tmq groups: error: DescribeGroups 'secret': GROUP_AUTHORIZATION_FAILED (30)\n"
        )
