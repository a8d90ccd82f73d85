"""``tmq sink``: consume a telemetry topic into PostgreSQL, exactly once.

Migrates the schema first (idempotent; safe with several sinks starting together), then runs
``tmq.sink.SinkService`` until SIGTERM or Ctrl-C, which finish the write in progress before
leaving. A status line goes to stderr every ``--status-interval`` seconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from .clients import bootstrap_option
from .errors import CommandError
from .ops import add_log_format_option, add_metrics_listen_option

__all__ = ["WRITERS", "add_parser"]

#: The bulk writers, the default first (the faster one in ``tmq bench sink``).
WRITERS = ("copy", "txpostgres")


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "sink",
        help="write a telemetry topic to PostgreSQL exactly once",
        description=(
            "Consume DCGM telemetry records from TOPIC and write them to PostgreSQL, each "
            "batch in one transaction with its partition's next offset, so restarts and "
            "crashes neither lose nor repeat a row. Several sinks with the same --group "
            "share the partitions (each at most ceil(partitions / sinks)). Records that are "
            "not telemetry go to the dead_letters table."
        ),
    )
    parser.add_argument("--topic", required=True, help="the telemetry topic")
    parser.add_argument(
        "--group",
        default=os.environ.get("TMQ_GROUP", "tmq-sink"),
        help="consumer group: sinks sharing it share the partitions and the committed "
        "offsets (env TMQ_GROUP; default %(default)s)",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("TMQ_DSN"),
        help="PostgreSQL connection string, e.g. postgresql://user@host:5432/telemetry "
        "(env TMQ_DSN; required)",
    )
    parser.add_argument(
        "--retention-days",
        type=float,
        default=None,
        help="delete telemetry older than this many days (default: keep all)",
    )
    parser.add_argument(
        "--retention-interval",
        type=float,
        default=300,
        help="seconds between retention runs (default %(default)s)",
    )
    parser.add_argument(
        "--writer",
        choices=WRITERS,
        default=os.environ.get("TMQ_SINK_WRITER", WRITERS[0]),
        help="bulk writer: binary COPY through psycopg 3 in a thread, or txpostgres on the "
        "reactor (env TMQ_SINK_WRITER; default %(default)s, the faster in tmq bench sink)",
    )
    parser.add_argument(
        "--instance-id",
        default=os.environ.get("TMQ_INSTANCE_ID"),
        help="this sink's name within the group (env TMQ_INSTANCE_ID; default HOST-PID)",
    )
    parser.add_argument(
        "--batch-records",
        type=int,
        default=10_000,
        help="write once this many records wait (default %(default)s)",
    )
    parser.add_argument(
        "--linger-ms",
        type=float,
        default=200,
        help="or once the oldest waited this long (default %(default)s)",
    )
    parser.add_argument(
        "--status-interval",
        type=float,
        default=10,
        help="seconds between status lines on stderr, 0 for none (default %(default)s)",
    )
    add_metrics_listen_option(parser)
    add_log_format_option(parser)
    bootstrap_option(parser)
    parser.set_defaults(run=_run, sink_parser=parser)


def _run(args: argparse.Namespace) -> int:
    if not args.dsn:
        args.sink_parser.error("--dsn (or TMQ_DSN) is required")
    if args.batch_records < 1 or args.linger_ms < 0 or args.status_interval < 0:
        args.sink_parser.error(
            "--batch-records must be >= 1, --linger-ms and --status-interval >= 0"
        )
    if args.retention_days is not None and args.retention_days <= 0:
        args.sink_parser.error("--retention-days must be > 0")
    if args.retention_interval <= 0:
        args.sink_parser.error("--retention-interval must be > 0")
    instance_id = args.instance_id or f"{socket.gethostname()}-{os.getpid()}"
    _migrate(args.dsn)
    return _serve(args, instance_id)


def _migrate(dsn: str) -> None:
    import psycopg

    from tmq.sink.schema import migrate

    try:
        with psycopg.connect(dsn, connect_timeout=10) as connection:
            applied = migrate(connection)
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise CommandError(f"cannot prepare the database: {reason}") from None
    if applied:
        print(f"tmq sink: applied schema migrations {applied}", file=sys.stderr)


def _serve(args: argparse.Namespace, instance_id: str) -> int:
    from twisted.internet import reactor, task
    from twisted.internet.error import CannotListenError
    from twisted.python.threadpool import ThreadPool

    from tmq.client import Cluster
    from tmq.ops.http import listen
    from tmq.ops.logs import begin_logging
    from tmq.sink.membership import Membership
    from tmq.sink.service import SinkService
    from tmq.sink.writer import CopyWriter, TxPostgresWriter

    begin_logging(args.log_format)
    pools = [ThreadPool(1, 1, "tmq-sink-membership")]
    if args.writer == "copy":
        pools.append(ThreadPool(1, 1, "tmq-sink-writer"))
        writer = CopyWriter(reactor, pools[1], args.dsn)
    else:
        writer = TxPostgresWriter(reactor, args.dsn)
    membership = Membership(
        reactor, pools[0], args.dsn, group=args.group, topic=args.topic, instance_id=instance_id
    )
    cluster = Cluster(reactor, args.bootstrap)
    service = SinkService(
        reactor,
        cluster,
        writer,
        membership,
        batch_records=args.batch_records,
        linger_ms=args.linger_ms,
        retention_days=args.retention_days,
        retention_interval_s=args.retention_interval,
    )
    if args.metrics_listen is not None:
        # served until the reactor stops (which closes every listening port)
        try:
            listen(reactor, args.metrics_listen, service.metrics.registry, service.readiness)
        except CannotListenError as error:
            raise CommandError(f"--metrics-listen {args.metrics_listen}: {error}") from None
    for pool in pools:
        pool.start()
    failures = []

    def start():
        started = service.startService()

        def failed(failure):
            failures.append(failure.getErrorMessage())
            reactor.stop()

        started.addErrback(failed)

    def stop():
        def stop_pools(result):
            for pool in pools:
                pool.stop()
            return result

        return service.stopService().addBoth(stop_pools)

    status = task.LoopingCall(_status, service, instance_id)
    status.clock = reactor
    if args.status_interval:
        reactor.callWhenRunning(status.start, args.status_interval, now=False)
    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    if failures:
        raise CommandError(failures[0])
    return 0


def _status(service, instance_id: str) -> None:
    stats = service.stats
    lag = service.lag()
    print(
        f"tmq sink {instance_id}: partitions {service.owned}, records {stats.records}, "
        f"rows {stats.inserted} (+{stats.duplicates} duplicates), dead letters "
        f"{stats.dead_letters}, lag {'?' if lag is None else lag}",
        file=sys.stderr,
        flush=True,
    )
