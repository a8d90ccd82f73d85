"""``tmq topics``, ``tmq groups``, ``tmq produce`` and ``tmq consume``: the bundled client
from a shell.

Each talks to brokers given by ``--bootstrap HOST:PORT[,HOST:PORT...]`` (or ``TMQ_BOOTSTRAP``;
default ``localhost:9092``) through ``tmq.client.sync``. Broker errors and unreachable
brokers exit 1 with a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tmq.protocol.compression import Codec

from .errors import CommandError

if TYPE_CHECKING:
    from tmq.client.admin import (
        GroupDescription,
        GroupList,
        GroupMember,
        GroupOffset,
        PartitionOffsets,
    )

__all__ = [
    "add_parsers",
    "bootstrap_option",
    "describe_json",
    "describe_lines",
    "group_describe_json",
    "group_describe_lines",
    "group_list_json",
    "group_list_lines",
]

_DEFAULT_BOOTSTRAP = "localhost:9092"
_ACKS = {"all": -1, "-1": -1, "1": 1, "0": 0}


def bootstrap_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--bootstrap`` (env ``TMQ_BOOTSTRAP``) to a subcommand that talks to brokers."""
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("TMQ_BOOTSTRAP", _DEFAULT_BOOTSTRAP),
        metavar="HOST:PORT[,...]",
        help="brokers to start from (env TMQ_BOOTSTRAP; default %(default)s)",
    )


def add_parsers(commands) -> None:
    topics = commands.add_parser("topics", help="create, list, describe and delete topics")
    actions = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a topic")
    create.add_argument("name")
    create.add_argument("--partitions", type=int, default=1, help="default %(default)s")
    create.add_argument("--replication-factor", type=int, default=1, help="default %(default)s")
    create.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="topic config with Kafka's names (retention.ms, segment.bytes, flush.policy...)",
    )
    bootstrap_option(create)
    create.set_defaults(run=_create)
    listing = actions.add_parser("list", help="list the topics")
    bootstrap_option(listing)
    listing.set_defaults(run=_list)
    describe = actions.add_parser(
        "describe",
        help="partitions: leader, epoch, replicas, ISR, high watermark, log end offsets",
        description=(
            "One line per partition: its leader (none when offline), leader epoch, replicas, "
            "in-sync replicas, the leader's high watermark (hw) and each replica's log end "
            "offset (leo, by broker id). A value a broker could not give (unreachable, not "
            "live, or answering an error) is shown as ?, null with --json."
        ),
    )
    describe.add_argument("name", nargs="?", help="one topic (default: all)")
    describe.add_argument("--json", action="store_true", help="print one JSON document")
    bootstrap_option(describe)
    describe.set_defaults(run=_describe)
    delete = actions.add_parser("delete", help="delete a topic and its data")
    delete.add_argument("name")
    bootstrap_option(delete)
    delete.set_defaults(run=_delete)

    groups = commands.add_parser("groups", help="list and describe consumer groups")
    group_actions = groups.add_subparsers(dest="groups_command", metavar="ACTION", required=True)
    group_list = group_actions.add_parser(
        "list",
        help="every group: protocol type, state, coordinator",
        description=(
            "One line per group of the cluster: its protocol type (- for a group that only "
            "commits offsets), state (? when its coordinator did not tell) and coordinator. "
            "Every broker is asked for the groups it coordinates; if one cannot answer, the "
            "groups found are printed and the command fails."
        ),
    )
    group_list.add_argument("--json", action="store_true", help="print one JSON document")
    bootstrap_option(group_list)
    group_list.set_defaults(run=_groups_list)
    group_describe = group_actions.add_parser(
        "describe",
        help="members, their assignments, committed offsets and lag",
        description=(
            "The group's state, protocol and coordinator; one line per member with its client "
            "id, host and assigned partitions (the raw assignment in hex when it is not a "
            "consumer assignment); one line per partition committed or assigned, with the "
            "committed offset (- when none), the partition's end offset (its high watermark), "
            "the lag and the member it is assigned to (- when none). An end offset or lag "
            "that cannot be known is shown as ?, null with --json."
        ),
    )
    group_describe.add_argument("group")
    group_describe.add_argument("--json", action="store_true", help="print one JSON document")
    bootstrap_option(group_describe)
    group_describe.set_defaults(run=_groups_describe)

    produce = commands.add_parser(
        "produce",
        help="produce stdin lines as records",
        description="Send each line of stdin (without its newline) as one record.",
    )
    produce.add_argument("topic")
    produce.add_argument("--acks", choices=["all", "1", "0"], default="all")
    produce.add_argument("--key", help="key of every record (default: none)")
    produce.add_argument("--compression", choices=[c.name.lower() for c in Codec], default="none")
    bootstrap_option(produce)
    produce.set_defaults(run=_produce)

    consume = commands.add_parser(
        "consume",
        help="print records as lines",
        description="Print the value of each record on its own line.",
    )
    consume.add_argument("topic")
    consume.add_argument("--from-beginning", action="store_true", help="not just new records")
    consume.add_argument("--partition", type=int, help="one partition (default: all)")
    consume.add_argument("--max-messages", type=int, help="stop after N records")
    consume.add_argument(
        "--group", help="resume from, and commit to, this group's offsets (simple commits)"
    )
    bootstrap_option(consume)
    consume.set_defaults(run=_consume)


def _client_errors(function):
    """Turn client errors into a one-line CommandError."""

    def run(args):
        from tmq.client.errors import KafkaError

        try:
            return function(args)
        except KafkaError as error:
            raise CommandError(str(error)) from None

    return run


def _configs(pairs: list[str]) -> dict[str, str]:
    configs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CommandError(f"--set takes KEY=VALUE, not {pair!r}")
        configs[key] = value
    return configs


@_client_errors
def _create(args) -> int:
    from tmq.client.sync import SyncAdmin

    with SyncAdmin(args.bootstrap) as admin:
        admin.create_topic(args.name, args.partitions, args.replication_factor, _configs(args.set))
    print(f"created topic {args.name} with {args.partitions} partitions")
    return 0


@_client_errors
def _list(args) -> int:
    from tmq.client.sync import SyncAdmin

    with SyncAdmin(args.bootstrap) as admin:
        for name in admin.list_topics():
            print(name)
    return 0


@_client_errors
def _describe(args) -> int:
    from tmq.client.admin import Admin
    from tmq.client.cluster import Cluster
    from tmq.client.sync import shared_reactor_thread

    # Admin.describe_offsets has no blocking wrapper in SyncAdmin: run it on the shared
    # reactor thread as SyncAdmin would.
    runner = shared_reactor_thread()
    cluster = runner.call(Cluster, runner.reactor, args.bootstrap)
    try:
        admin = runner.call(Admin, cluster)
        topics = runner.call(admin.describe_offsets, None if args.name is None else [args.name])
    finally:
        runner.call(cluster.close)
    if args.json:
        print(json.dumps(describe_json(topics), indent=2))
    else:
        for line in describe_lines(topics):
            print(line)
    return 0


def describe_lines(topics: Mapping[str, Mapping[int, PartitionOffsets]]) -> list[str]:
    """``tmq topics describe`` as text: per topic ``topic NAME: N partitions``, then per
    partition ``  partition I: leader L epoch E replicas [..] isr [..] hw H leo {B: O, ..}``
    (``leader none`` when offline; ``?`` for an unknown offset), topics by name."""
    lines = []
    for name in sorted(topics):
        partitions = topics[name]
        lines.append(f"topic {name}: {len(partitions)} partitions")
        for index in sorted(partitions):
            offsets = partitions[index]
            p = offsets.info
            leader = p.leader if p.leader >= 0 else "none"
            ends = ", ".join(
                f"{replica}: {_known(end)}" for replica, end in offsets.log_end_offsets.items()
            )
            lines.append(
                f"  partition {index}: leader {leader} epoch {p.leader_epoch} "
                f"replicas {list(p.replicas)} isr {list(p.isr)} "
                f"hw {_known(offsets.high_watermark)} leo {{{ends}}}"
            )
    return lines


def describe_json(topics: Mapping[str, Mapping[int, PartitionOffsets]]) -> dict:
    """``tmq topics describe --json``: ``{"topics": [{"name", "partitions": [{"partition",
    "leader" (null when offline), "leader_epoch", "replicas", "isr", "offline_replicas",
    "high_watermark", "log_end_offsets": {"<broker id>": offset}}]}]}``, unknown offsets
    null, topics by name and partitions by index."""
    described = []
    for name in sorted(topics):
        partitions = []
        for index in sorted(topics[name]):
            offsets = topics[name][index]
            p = offsets.info
            partitions.append(
                {
                    "partition": index,
                    "leader": p.leader if p.leader >= 0 else None,
                    "leader_epoch": p.leader_epoch,
                    "replicas": list(p.replicas),
                    "isr": list(p.isr),
                    "offline_replicas": list(p.offline_replicas),
                    "high_watermark": offsets.high_watermark,
                    "log_end_offsets": {
                        str(replica): end for replica, end in offsets.log_end_offsets.items()
                    },
                }
            )
        described.append({"name": name, "partitions": partitions})
    return {"topics": described}


def _known(offset: int | None) -> str:
    return "?" if offset is None else str(offset)


@_client_errors
def _groups_list(args) -> int:
    from tmq.client.sync import SyncAdmin

    with SyncAdmin(args.bootstrap) as admin:
        listing = admin.list_groups()
    if args.json:
        print(json.dumps(group_list_json(listing), indent=2))
    else:
        for line in group_list_lines(listing):
            print(line)
    if listing.errors:
        node, error = min(listing.errors.items())
        raise CommandError(
            f"{len(listing.errors)} broker(s) could not list their groups; broker {node}: {error}"
        )
    return 0


@_client_errors
def _groups_describe(args) -> int:
    from tmq.client.sync import SyncAdmin

    with SyncAdmin(args.bootstrap) as admin:
        group = admin.describe_group(args.group)
        assigned = [
            tp
            for member in group.members
            if member.assignment is not None
            for tp in member.assignment.partitions()
        ]
        offsets = admin.group_offsets(args.group, include=assigned)
    if group.state == "Dead" and not group.members and not offsets:
        raise CommandError(f"group {args.group!r} does not exist")
    if args.json:
        print(json.dumps(group_describe_json(group, offsets), indent=2))
    else:
        for line in group_describe_lines(group, offsets):
            print(line)
    return 0


def group_list_lines(listing: GroupList) -> list[str]:
    """``tmq groups list`` as text: ``group ID: type T state S coordinator N`` per group, by
    group id (``-`` for an empty protocol type, ``?`` for an unknown state); brokers that
    could not list their groups are not mentioned (the command fails after printing)."""
    return [
        f"group {group.group_id}: type {group.protocol_type or '-'} "
        f"state {group.state if group.state is not None else '?'} coordinator {group.coordinator}"
        for group in listing.groups
    ]


def group_list_json(listing: GroupList) -> dict:
    """``tmq groups list --json``: ``{"groups": [{"group_id", "protocol_type", "state" (null
    when unknown), "coordinator"}], "errors": {"<broker id>": "reason"}}``, groups by id."""
    return {
        "groups": [
            {
                "group_id": group.group_id,
                "protocol_type": group.protocol_type,
                "state": group.state,
                "coordinator": group.coordinator,
            }
            for group in listing.groups
        ],
        "errors": {str(node): str(error) for node, error in sorted(listing.errors.items())},
    }


def group_describe_lines(
    group: GroupDescription, offsets: Mapping[tuple[str, int], GroupOffset]
) -> list[str]:
    """``tmq groups describe`` as text: ``group ID: state S type T protocol P coordinator N
    members M``; per member (by member id) ``  member ID: client C host H [instance I]``
    followed by ``assigned {topic: [partitions], ..}``, ``assigned -`` (no assignment) or
    ``assignment <hex>`` (not decoded, with `` (undecodable: reason)`` when it should have
    been); then per partition (by topic and index) ``  partition TOPIC-I: committed C end E lag
    L member ID`` (``-`` for nothing committed or no member, ``?`` for unknown)."""
    owners = _owners(group)
    lines = [
        f"group {group.group_id}: state {group.state or '-'} "
        f"type {group.protocol_type or '-'} protocol {group.protocol or '-'} "
        f"coordinator {group.coordinator} members {len(group.members)}"
    ]
    for member in sorted(group.members, key=lambda m: m.member_id):
        instance = (
            f" instance {member.group_instance_id}" if member.group_instance_id is not None else ""
        )
        lines.append(
            f"  member {member.member_id}: client {member.client_id} "
            f"host {member.client_host}{instance} {_assignment_text(member)}"
        )
    for (topic, index), offset in sorted(offsets.items()):
        committed = "-" if offset.committed is None else str(offset.committed)
        lines.append(
            f"  partition {topic}-{index}: committed {committed} "
            f"end {_known(offset.end_offset)} lag {_known(offset.lag)} "
            f"member {owners.get((topic, index), '-')}"
        )
    return lines


def group_describe_json(
    group: GroupDescription, offsets: Mapping[tuple[str, int], GroupOffset]
) -> dict:
    """``tmq groups describe --json``: ``{"group_id", "state", "protocol_type", "protocol",
    "coordinator", "members": [{"member_id", "group_instance_id", "client_id", "client_host",
    "assignment": {"version", "partitions": [{"topic", "partitions"}], "user_data" (hex or
    null)} or null, "assignment_hex" (the raw bytes when not decoded, else null),
    "assignment_error"}], "offsets": [{"topic", "partition", "committed", "metadata",
    "end_offset", "lag", "member"}]}``; unknown values and absent ones are null, members by
    member id, offsets by topic and partition."""
    owners = _owners(group)
    members = []
    for member in sorted(group.members, key=lambda m: m.member_id):
        decoded = member.assignment
        members.append(
            {
                "member_id": member.member_id,
                "group_instance_id": member.group_instance_id,
                "client_id": member.client_id,
                "client_host": member.client_host,
                "assignment": None
                if decoded is None
                else {
                    "version": decoded.version,
                    "partitions": [
                        {"topic": topic, "partitions": list(indexes)}
                        for topic, indexes in decoded.assigned
                    ],
                    "user_data": None if decoded.user_data is None else decoded.user_data.hex(),
                },
                "assignment_hex": (
                    member.raw_assignment.hex()
                    if decoded is None and member.raw_assignment
                    else None
                ),
                "assignment_error": member.assignment_error,
            }
        )
    return {
        "group_id": group.group_id,
        "state": group.state,
        "protocol_type": group.protocol_type,
        "protocol": group.protocol,
        "coordinator": group.coordinator,
        "members": members,
        "offsets": [
            {
                "topic": topic,
                "partition": index,
                "committed": offset.committed,
                "metadata": offset.metadata,
                "end_offset": offset.end_offset,
                "lag": offset.lag,
                "member": owners.get((topic, index)),
            }
            for (topic, index), offset in sorted(offsets.items())
        ],
    }


def _owners(group: GroupDescription) -> dict[tuple[str, int], str]:
    """``{(topic, partition): member id}`` from the decoded assignments."""
    return {
        tp: member.member_id
        for member in group.members
        if member.assignment is not None
        for tp in member.assignment.partitions()
    }


def _assignment_text(member: GroupMember) -> str:
    """A member's assignment as ``describe`` prints it (see ``group_describe_lines``)."""
    if member.assignment is not None:
        topics = ", ".join(
            f"{topic}: {list(indexes)}" for topic, indexes in member.assignment.assigned
        )
        return f"assigned {{{topics}}}"
    if not member.raw_assignment:
        return "assigned -"
    text = f"assignment {member.raw_assignment.hex()}"
    if member.assignment_error is not None:
        text += f" (undecodable: {member.assignment_error})"
    return text


@_client_errors
def _delete(args) -> int:
    from tmq.client.sync import SyncAdmin

    with SyncAdmin(args.bootstrap) as admin:
        admin.delete_topic(args.name)
    print(f"deleted topic {args.name}")
    return 0


@_client_errors
def _produce(args) -> int:
    from tmq.client.errors import BrokerResponseError
    from tmq.client.sync import SyncAdmin, SyncProducer
    from tmq.protocol.errors import ErrorCode

    acks = _ACKS[args.acks]
    key = args.key.encode() if args.key is not None else None
    options = {"acks": acks, "compression": Codec[args.compression.upper()]}
    if acks != -1:
        options["idempotent"] = False
        print("tmq produce: acks other than all turn idempotence off", file=sys.stderr)
    with SyncAdmin(args.bootstrap) as admin:
        try:  # at once, rather than after the producer's delivery timeout
            admin.describe_topics([args.topic])
        except BrokerResponseError as error:
            if error.error_code != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                raise
            raise CommandError(
                f"topic {args.topic!r} does not exist: create it first "
                f"(tmq topics create {args.topic} --partitions N)"
            ) from None
    futures = []
    with SyncProducer(args.bootstrap, **options) as producer:
        for line in sys.stdin.buffer:
            futures.append(producer.send(args.topic, line.rstrip(b"\n"), key=key))
        producer.flush()
        failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        raise CommandError(f"{len(failed)} of {len(futures)} records failed: {failed[0]}")
    print(f"produced {len(futures)} records to {args.topic}", file=sys.stderr)
    return 0


@_client_errors
def _consume(args) -> int:
    from tmq.client.sync import SyncAdmin, SyncConsumer

    with SyncAdmin(args.bootstrap) as admin:
        topic = admin.describe_topics([args.topic])[args.topic]
    partitions = sorted(topic.partitions) if args.partition is None else [args.partition]
    assigned = [(args.topic, p) for p in partitions]
    reset = "earliest" if args.from_beginning else "latest"
    count = 0
    out = sys.stdout.buffer
    printed: dict[tuple[str, int], int] = {}  # next offset after what was printed
    with SyncConsumer(args.bootstrap, auto_offset_reset=reset) as consumer:
        consumer.assign(assigned)
        if args.group:
            for tp, offset in consumer.committed(args.group, assigned).items():
                if offset is not None and offset >= 0:
                    consumer.seek(tuple(tp), offset)
        try:
            while args.max_messages is None or count < args.max_messages:
                for record in consumer.poll(timeout_ms=1000):
                    out.write((record.value or b"") + b"\n")
                    printed[record.topic, record.partition] = record.offset + 1
                    count += 1
                    if args.max_messages is not None and count >= args.max_messages:
                        break
                out.flush()
        except KeyboardInterrupt:
            pass
        if args.group and printed:
            consumer.commit(printed, args.group)
    return 0
