"""``tmq broker``: run a broker in the foreground (the same options as ``twistd tmq-broker``).

SIGTERM or SIGINT stops it gracefully: no new connections, logs flushed, checkpoints and the
clean-shutdown marker written; another signal during that shutdown changes nothing. A broker
that cannot start (port taken, data directory not writable, ...) exits 1 with the reason on
stderr.
"""

from __future__ import annotations

import argparse
import signal
import sys

from twisted.python import usage

from .errors import CommandError

__all__ = ["add_parser"]


def add_parser(commands) -> None:
    from tmq.tap import Options

    parser = commands.add_parser(
        "broker",
        help="run a broker",
        description="Run a tmq broker in the foreground. Options: see `tmq broker --help`.",
        add_help=False,
        usage=f"tmq broker {Options.synopsis}",
    )
    parser.set_defaults(run=_run, pass_through=True)


def _run(args: argparse.Namespace) -> int:
    from tmq.tap import Options

    options = Options()
    try:
        options.parseOptions(args.arguments)
    except usage.UsageError as error:
        print(f"tmq broker: {error}\n\n{options}", file=sys.stderr)
        return 2
    if options.get("help"):  # pragma: no cover - parseOptions exits for --help
        return 0
    return _serve(options["config"], options["log-format"])


def _serve(config, log_format: str) -> int:
    from twisted.internet import reactor

    from tmq.ops.logs import begin_logging
    from tmq.service import BrokerService

    begin_logging(log_format)
    failures = []

    def failed(failure):
        failures.append(failure)
        if reactor.running:
            reactor.stop()

    def stop_once() -> None:
        if reactor.running and not stopping:
            stopping.append(True)
            reactor.stop()

    stopping: list[bool] = []
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: reactor.callFromThread(stop_once))
    service = BrokerService(config, reactor, on_failure=failed)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run(installSignalHandlers=False)
    if failures:
        raise CommandError(failures[0].getErrorMessage())
    return 0
