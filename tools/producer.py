"""``tmq producer``: stream DCGM telemetry into a topic, from a CSV capture or a live
dcgm-exporter.

``--csv PATH|-`` reads a capture (``--loop`` replays it every ``--interval`` seconds);
``--scrape URL`` reads a dcgm-exporter ``/metrics`` page every ``--interval`` seconds until
stopped. Every row is validated: a bad one is counted, reported with its line number (all of
them to ``--rejects FILE``, the first few on stderr) and skipped, never fatal. Samples are
produced keyed by GPU UUID, idempotently with ``--acks all`` (the default). A progress line
is drawn on stderr when it is a terminal; a summary is printed at the end. Exit status 1 when
some sample could not be delivered.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

from .clients import bootstrap_option
from .errors import CommandError
from .ops import add_log_format_option, add_metrics_listen_option

__all__ = ["add_parser"]

_ACKS = {"all": -1, "1": 1, "0": 0}
_CHUNK_ROWS = 2000
_SHOWN_REJECTS = 5


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "producer",
        help="stream DCGM telemetry (CSV or dcgm-exporter) into a topic",
        description=(
            "Read DCGM samples from a CSV capture or a dcgm-exporter /metrics endpoint and "
            "produce each as a record keyed by its GPU UUID (msgpack value). Bad rows are "
            "reported with their line numbers and skipped."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", metavar="PATH|-", help="a DCGM CSV capture, - for stdin")
    source.add_argument(
        "--scrape", metavar="URL", help="a dcgm-exporter endpoint, e.g. http://host:9400/metrics"
    )
    parser.add_argument("--topic", required=True, help="the topic to produce to")
    parser.add_argument(
        "--loop", action="store_true", help="replay the CSV file forever (not with stdin)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between CSV replays (with --loop; default 0) or between scrapes (default 10)",
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="samples per second at most (default: no limit)"
    )
    parser.add_argument(
        "--timestamps",
        choices=("now", "source"),
        default="now",
        help="stamp samples with the time they are sent (now, the default: a capture replays "
        "as live data) or keep the capture's times (source: replays add no rows)",
    )
    parser.add_argument(
        "--acks",
        choices=tuple(_ACKS),
        default="all",
        help="all: every in-sync replica, idempotent (default); 1 or 0 turn idempotence off",
    )
    parser.add_argument("--rejects", metavar="FILE", help="write every bad row here")
    parser.add_argument(
        "--linger-ms", type=float, default=20, help="batching delay (default %(default)s)"
    )
    parser.add_argument(
        "--batch-bytes",
        type=int,
        default=256 * 1024,
        help="batch size per partition (default %(default)s)",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress line on stderr: auto draws it on a terminal (default)",
    )
    add_metrics_listen_option(parser)
    add_log_format_option(parser)
    bootstrap_option(parser)
    parser.set_defaults(run=_run, producer_parser=parser)


def _run(args: argparse.Namespace) -> int:
    error = args.producer_parser.error
    if args.loop and (args.scrape or args.csv == "-"):
        error("--loop replays a CSV file: not with stdin or --scrape")
    if args.interval is not None and args.interval < 0:
        error("--interval must be >= 0")
    if args.rate is not None and args.rate <= 0:
        error("--rate must be > 0")
    if args.linger_ms < 0 or args.batch_bytes < 1024:
        error("--linger-ms must be >= 0 and --batch-bytes >= 1024")
    if args.csv not in (None, "-") and not os.path.isfile(args.csv):
        raise CommandError(f"no such file: {args.csv}")
    if args.scrape and not args.scrape.startswith(("http://", "https://")):
        error("--scrape needs an http:// or https:// URL")
    if args.acks != "all":
        print(
            f"tmq producer: --acks {args.acks}: idempotence is off, a retried batch may be "
            "written twice",
            file=sys.stderr,
        )
    rejects = open(args.rejects, "w", encoding="utf-8") if args.rejects else None  # noqa: SIM115
    try:
        return _serve(args, rejects)
    finally:
        if rejects is not None:
            rejects.close()


def _serve(args: argparse.Namespace, rejects) -> int:
    from twisted.internet import defer, reactor
    from twisted.internet.error import CannotListenError

    from tmq.client import Cluster, Producer
    from tmq.ops.http import listen
    from tmq.ops.logs import begin_logging
    from tmq.telemetry.metrics import PublisherMetrics, cluster_readiness
    from tmq.telemetry.publisher import Publisher

    begin_logging(args.log_format)
    cluster = Cluster(reactor, args.bootstrap)
    producer = Producer(
        cluster,
        acks=_ACKS[args.acks],
        linger_ms=args.linger_ms,
        batch_bytes=args.batch_bytes,
        max_buffered_bytes=64 << 20,
    )
    shown = []

    def reject(row) -> None:
        if rejects is not None:
            rejects.write(f"{row.line_number}\t{row.reason}\t{row.raw_line}\n")
        if len(shown) < _SHOWN_REJECTS:
            shown.append(row)
            print(f"tmq producer: line {row.line_number}: {row.reason}", file=sys.stderr)

    publisher = Publisher(
        reactor, producer, args.topic, timestamps=args.timestamps, rate=args.rate,
        on_reject=reject,
    )  # fmt: skip
    progress = _Progress(publisher, args.progress)
    outcome: dict = {}
    stopping = [False]
    if args.metrics_listen is not None:
        # served until the reactor stops (which closes every listening port)
        try:
            listen(
                reactor,
                args.metrics_listen,
                PublisherMetrics(publisher).registry,
                functools.partial(cluster_readiness, cluster),
            )
        except CannotListenError as error:
            raise CommandError(f"--metrics-listen {args.metrics_listen}: {error}") from None

    async def main() -> None:
        try:
            if args.scrape:
                await _scrape_loop(reactor, args, publisher, progress, stopping)
            else:
                await _csv_loop(reactor, args, publisher, progress, stopping)
        finally:
            await publisher.finish()
            await producer.close()
            cluster.close()

    def run() -> None:
        running = defer.ensureDeferred(main())
        running.addErrback(lambda failure: outcome.setdefault("error", failure))
        running.addBoth(lambda _: reactor.stop() if reactor.running else None)

    def interrupted() -> None:
        stopping[0] = True

    reactor.callWhenRunning(run)
    # Ctrl-C / SIGTERM: stop reading, deliver what was read, then exit.
    reactor.callWhenRunning(_install_stop_signals, reactor, interrupted)
    reactor.run(installSignalHandlers=False)
    progress.done()
    stats = publisher.stats
    print(
        f"tmq producer: {stats.read} rows read, {stats.delivered} samples sent, "
        f"{stats.rejected} rejected, {stats.failed} failed; {stats.rate():,.0f} samples/s",
        file=sys.stderr,
    )
    if "error" in outcome:
        raise CommandError(outcome["error"].getErrorMessage())
    if stats.failed:
        raise CommandError(f"{stats.failed} samples not delivered, e.g. {stats.first_error}")
    return 0


def _install_stop_signals(reactor, interrupted) -> None:
    import signal

    def handler(signum, frame):
        reactor.callFromThread(interrupted)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


async def _csv_loop(reactor, args, publisher, progress, stopping) -> None:
    from twisted.internet.task import deferLater
    from twisted.internet.threads import deferToThread

    from tmq.telemetry.csv_source import CsvParser

    parser = CsvParser()
    chunk_rows = _chunk_rows(args.rate)
    while True:
        stream = _open_csv(args.csv)
        try:
            rows = parser.parse(stream)
            # stdin may block: it is read and parsed off the reactor thread, the next chunk
            # while the current one is published. A file is read on the reactor thread, a chunk
            # per turn of the reactor (in between, the reactor sends what was produced): a
            # thread would gain nothing but contend for the GIL, and its handoffs cost CPU.
            if stream is sys.stdin:
                read = deferToThread
            else:
                read = functools.partial(deferLater, reactor, 0)
            reading = read(_take, rows, chunk_rows)
            while not stopping[0]:
                chunk = await reading
                if not chunk:
                    break
                reading = read(_take, rows, chunk_rows)
                await publisher.publish(chunk)
                progress.show()
            else:
                await reading  # done with the stream before it closes
        finally:
            if stream is not sys.stdin:
                stream.close()
        if not args.loop or stopping[0]:
            return
        await _sleep(reactor, args.interval or 0, stopping)


async def _scrape_loop(reactor, args, publisher, progress, stopping) -> None:
    from twisted.web.client import Agent, readBody

    from tmq.telemetry.exposition import ExpositionParser

    agent = Agent(reactor, connectTimeout=10)
    parser = ExpositionParser()
    interval = 10.0 if args.interval is None else args.interval
    failures = 0
    while not stopping[0]:
        started = reactor.seconds()
        try:
            response = await agent.request(b"GET", args.scrape.encode())
            body = await readBody(response)
            if response.code != 200:
                raise OSError(f"HTTP {response.code}")
        except Exception as error:
            failures += 1
            print(f"tmq producer: scrape of {args.scrape} failed: {error}", file=sys.stderr)
        else:
            failures = 0
            text = body.decode("utf-8", errors="replace")
            await publisher.publish(list(parser.parse(text, int(started * 1_000_000))))
            progress.show()
        wait = max(0.0, interval - (reactor.seconds() - started))
        await _sleep(reactor, wait, stopping)


async def _sleep(reactor, seconds: float, stopping) -> None:
    """Sleep ``seconds`` in short steps, returning early once stopping."""
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + seconds
    while not stopping[0] and reactor.seconds() < deadline:
        await deferLater(reactor, min(0.2, deadline - reactor.seconds()), lambda: None)


def _open_csv(path: str):
    if path == "-":
        return sys.stdin
    # Universal newlines translated (the default): readline then finds line ends with memchr,
    # ~0.3 µs a row less than with newline="" (CsvParser reads both the same).
    return open(path, encoding="utf-8")  # the caller closes it


def _chunk_rows(rate: float | None) -> int:
    if rate is None:
        return _CHUNK_ROWS
    return max(1, min(_CHUNK_ROWS, int(rate / 10)))


def _take(rows, count: int) -> list:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == count:
            break
    return chunk


class _Progress:
    """A progress line on stderr, redrawn at most twice a second."""

    def __init__(self, publisher, mode: str):
        self._publisher = publisher
        self._on = mode == "always" or (mode == "auto" and sys.stderr.isatty())
        self._drawn = 0.0

    def show(self) -> None:
        now = time.monotonic()
        if not self._on or now - self._drawn < 0.5:
            return
        self._drawn = now
        stats = self._publisher.update()
        sys.stderr.write(
            f"\r{stats.read:,} rows read, {stats.delivered:,} sent, {stats.rejected:,} "
            f"rejected, {stats.rate():,.0f} samples/s   "
        )
        sys.stderr.flush()

    def done(self) -> None:
        if self._on and self._drawn:
            sys.stderr.write("\n")
