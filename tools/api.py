"""``tmq api``: the REST API over the telemetry database (DESIGN §7).

Serves until SIGTERM or Ctrl-C. Once listening it prints ``tmq api: listening on
http://HOST:PORT`` to stderr (with the real port when ``--listen`` asks for port 0). It starts
whether or not PostgreSQL is up: the data routes and ``/readyz`` answer 503 until the database
answers, and again whenever it goes away, without a restart.
"""

from __future__ import annotations

import argparse
import sys

from .errors import CommandError

__all__ = ["add_parser"]


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "api",
        help="serve the telemetry REST API (JSON, OpenAPI, Swagger UI)",
        description=(
            "Serve GPUs, samples and aggregates from the database tmq sink writes, as JSON "
            "over HTTP: /api/v1/gpus, /api/v1/gpus/{uuid}/telemetry|metrics|latest, "
            "/healthz, /readyz, the OpenAPI document at /openapi.json and Swagger UI at "
            "/swagger/index.html (served locally, no internet needed)."
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
        "--access-log",
        action="store_true",
        help="log every request to stderr (combined log format)",
    )
    parser.set_defaults(run=_run, api_parser=parser)


def _listen_address(parser: argparse.ArgumentParser, text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        parser.error(f"--listen takes HOST:PORT, not {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _run(args: argparse.Namespace) -> int:
    parser = args.api_parser
    if not args.dsn:
        parser.error("--dsn (or TMQ_DSN) is required")
    if args.pool_size < 1 or args.statement_timeout_ms < 1:
        parser.error("--pool-size and --statement-timeout-ms must be >= 1")
    host, port = _listen_address(parser, args.listen)

    from tmq.api.database import check_dsn

    try:
        check_dsn(args.dsn)
    except ValueError as error:
        parser.error(f"--dsn: {error}")
    return _serve(args, host, port)


def _serve(args: argparse.Namespace, host: str, port: int) -> int:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.web.server import Site

    from tmq.api.app import TelemetryApi
    from tmq.api.database import Database
    from tmq.api.store import PostgresStore

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    database = Database(
        reactor, args.dsn, size=args.pool_size, statement_timeout_ms=args.statement_timeout_ms
    )
    site = Site(TelemetryApi(PostgresStore(database)).resource())
    if not args.access_log:
        site.log = lambda request: None
    endpoint_type = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
    endpoint = endpoint_type(reactor, port, interface=host)
    failures: list[str] = []

    def listening(port_object) -> None:
        address = port_object.getHost()
        shown = f"[{address.host}]" if ":" in address.host else address.host
        print(f"tmq api: listening on http://{shown}:{address.port}", file=sys.stderr, flush=True)

    def failed(failure) -> None:
        reason = getattr(failure.value, "socketError", None) or failure.getErrorMessage()
        failures.append(f"cannot listen on {args.listen}: {reason}")
        reactor.stop()

    def start() -> None:
        database.start()
        endpoint.listen(site).addCallbacks(listening, failed)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", database.close)
    reactor.run()
    if failures:
        raise CommandError(failures[0])
    return 0
