"""``tmq api``: the REST API over the telemetry database (DESIGN §7).

Serves until SIGTERM or Ctrl-C. Once listening it prints ``tmq api: listening on
http://HOST:PORT`` to stderr (with the real port when ``--listen`` asks for port 0). It starts
whether or not PostgreSQL is up: the data routes and ``/readyz`` answer 503 until the database
answers, and again whenever it goes away, without a restart.

``--workers N``: the process binds the socket, then forks N - 1 workers before any reactor
exists; every process accepts connections on the shared socket with its own reactor and
database connections (one CPython process is the limit of one API otherwise). A worker dies
with its parent (SIGTERM); the parent stops the workers when it stops, and stops (status 1)
when a worker dies, so whatever supervises the API restarts it whole. Each process counts
its own requests: ``/metrics`` shows those of the process that took the scrape.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys

from .errors import CommandError
from .ops import add_log_format_option
from .processes import die_with_parent_hook

__all__ = ["add_parser"]


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "api",
        help="serve the telemetry REST API (JSON, OpenAPI, Swagger UI)",
        description=(
            "Serve GPUs, samples and aggregates from the database tmq sink writes, as JSON "
            "over HTTP: /api/v1/gpus, /api/v1/gpus/{uuid}/telemetry|metrics|latest, "
            "/healthz, /readyz, Prometheus metrics at /metrics, the OpenAPI document at "
            "/openapi.json and Swagger UI at /swagger/index.html (served locally, no "
            "internet needed)."
        ),
    )
    parser.add_argument(
        "--dsn",
        help="PostgreSQL connection string, e.g. postgresql://user@host:5432/telemetry (required)",
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default="0.0.0.0:8080",
        help="HOST:PORT to serve on; port 0 picks a free one (default %(default)s)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        metavar="N",
        default=4,
        help="database connections, each running one query at a time (default %(default)s)",
    )
    parser.add_argument(
        "--statement-timeout-ms",
        type=int,
        metavar="MS",
        default=10_000,
        help="the database cancels a query running longer; the request gets a 503 "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=1,
        help="processes serving the one socket, each with --pool-size connections "
        "(default %(default)s; one per core is a good start)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every request to stderr (combined log format)",
    )
    add_log_format_option(parser)
    parser.set_defaults(run=_run, api_parser=parser)


def _listen_address(parser: argparse.ArgumentParser, text: str) -> tuple[str, int]:
    from tmq.ops.http import parse_address

    try:
        return parse_address(text)
    except ValueError as error:
        parser.error(f"--listen {error}")


def _run(args: argparse.Namespace) -> int:
    parser = args.api_parser
    if not args.dsn:
        parser.error("--dsn (or TMQ_DSN) is required")
    if args.pool_size < 1 or args.statement_timeout_ms < 1 or args.workers < 1:
        parser.error("--pool-size, --statement-timeout-ms and --workers must be >= 1")
    host, port = _listen_address(parser, args.listen)

    from tmq.api.database import check_dsn

    try:
        check_dsn(args.dsn)
    except ValueError as error:
        parser.error(f"--dsn: {error}")
    listener = _bind(args.listen, host, port)
    address = listener.getsockname()
    shown = f"[{address[0]}]" if listener.family == socket.AF_INET6 else address[0]
    print(f"tmq api: listening on http://{shown}:{address[1]}", file=sys.stderr, flush=True)
    workers = [_fork_worker(args, listener) for _ in range(args.workers - 1)]
    return _serve(args, listener, workers)


def _bind(text: str, host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1024)
    except OSError as error:
        listener.close()
        raise CommandError(f"cannot listen on {text}: {error}") from None
    listener.setblocking(False)
    return listener


def _fork_worker(args: argparse.Namespace, listener: socket.socket) -> int:
    """Fork a worker serving ``listener``; its pid. (No reactor exists yet in this process:
    each worker makes its own.)"""
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        die_with_parent_hook(signal.SIGTERM)()
        status = _serve(args, listener, [])
    except CommandError as error:
        print(f"tmq api: worker {os.getpid()}: {error}", file=sys.stderr, flush=True)
    finally:
        os._exit(status)


def _serve(args: argparse.Namespace, listener: socket.socket, workers: list[int]) -> int:
    """Serve ``listener`` until stopped; ``workers``: the pids of forked workers, which this
    process stops with it (and stops with any of them)."""
    from twisted.internet import reactor, task
    from twisted.web.server import Site

    from tmq.api.app import TelemetryApi
    from tmq.api.database import Database
    from tmq.api.store import PostgresStore
    from tmq.ops.logs import begin_logging

    begin_logging(args.log_format)
    database = Database(
        reactor, args.dsn, size=args.pool_size, statement_timeout_ms=args.statement_timeout_ms
    )
    site = Site(TelemetryApi(PostgresStore(database)).resource())
    if not args.access_log:
        site.log = lambda request: None
    failures: list[str] = []

    def start() -> None:
        # Accept once the first connection attempts are done (connections wait in the
        # socket's backlog meanwhile), so a healthy database never answers a 503 at start.
        database.start().addCallback(
            lambda _: reactor.adoptStreamPort(listener.fileno(), listener.family, site)
        )

    def check_workers() -> None:
        for pid in list(workers):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                workers.remove(pid)
                failures.append(f"worker {pid} stopped (wait status {status}); stopping all")
                reactor.stop()

    def stop_workers() -> None:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in workers:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    reactor.callWhenRunning(start)
    if workers:
        watch = task.LoopingCall(check_workers)
        watch.clock = reactor
        reactor.callWhenRunning(watch.start, 1.0, now=False)
        reactor.addSystemEventTrigger("before", "shutdown", stop_workers)
    reactor.addSystemEventTrigger("before", "shutdown", database.close)
    reactor.run()
    if failures:
        raise CommandError(failures[0])
    return 0
