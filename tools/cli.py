"""The ``tmq`` command: one console script, one subcommand per tool.

Exit status: 0 on success, 2 on bad usage (argparse), 1 on failure with a one-line reason on
stderr. Every option can also be set through a ``TMQ_*`` environment variable where noted in
its help.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import bench, broker, clients, debug, gen, producer, sink
from .errors import CommandError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The full ``tmq`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="tmq",
        description=(
            "tmq: a GPU telemetry pipeline around a replicated, Kafka-compatible log broker."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    broker.add_parser(commands)
    clients.add_parsers(commands)
    debug.add_parser(commands)
    bench.add_parser(commands)
    gen.add_parser(commands)
    producer.add_parser(commands)
    sink.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tmq`` with ``argv`` (default: the process arguments); return the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "pass_through", False):
        args.arguments = extra  # the subcommand parses its own options (``tmq broker``)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args) or 0
    except CommandError as error:
        print(f"tmq {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tmq {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
