"""``tmq topics``, ``tmq produce`` and ``tmq consume``: the bundled client from a shell.

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
    from tmq.client.admin import PartitionOffsets

__all__ = ["add_parsers", "bootstrap_option", "describe_json", "describe_lines"]

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
def _delete(args) -> int:
    from tmq.client.sync import SyncAdmin

    with SyncAdmin(args.bootstrap) as admin:
        admin.delete_topic(args.name)
    print(f"deleted topic {args.name}")
    return 0


@_client_errors
def _produce(args) -> int:
    from tmq.client.sync import SyncProducer

    acks = _ACKS[args.acks]
    key = args.key.encode() if args.key is not None else None
    options = {"acks": acks, "compression": Codec[args.compression.upper()]}
    if acks != -1:
        options["idempotent"] = False
        print("tmq produce: acks other than all turn idempotence off", file=sys.stderr)
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
