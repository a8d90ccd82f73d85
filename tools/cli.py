"""The ``tmq`` command: one console script, one subcommand per tool.

Exit status: 0 on success, 2 on bad usage (argparse), 1 on failure with a one-line reason on
stderr. Every ``--option`` can also be set through the environment variable
``TMQ_<OPTION>`` (its help names it); the command line wins.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tmq.process import tune_gc

from . import api, bench, broker, clients, debug, demo, gen, producer, sink
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
    api.add_parser(commands)
    broker.add_parser(commands)
    clients.add_parsers(commands)
    debug.add_parser(commands)
    demo.add_parser(commands)
    bench.add_parser(commands)
    gen.add_parser(commands)
    producer.add_parser(commands)
    sink.add_parser(commands)
    _environment_defaults(parser)
    return parser


def _environment_defaults(parser: argparse.ArgumentParser) -> None:
    """Let ``TMQ_<OPTION>`` set every ``--option`` of every subcommand (``--dsn``:
    ``TMQ_DSN``, ``--retention-days``: ``TMQ_RETENTION_DAYS``); the command line wins. A
    value from the environment goes through the option's own type and checks; a flag takes
    ``1``/``true``/``yes``/``on``. (``tmq broker`` reads its own, DESIGN §10.)"""
    from_environment = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _environment_defaults(subparser)
            continue
        long_names = [o for o in action.option_strings if o.startswith("--")]
        if not long_names or long_names[0] == "--help":
            continue
        name = "TMQ_" + long_names[0][2:].replace("-", "_").upper()
        if action.help is not None and name not in action.help:
            action.help += f" (env {name})"
        value = os.environ.get(name)
        if value is None:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            action.default = value.strip().lower() in ("1", "true", "yes", "on")
        elif isinstance(action, argparse._AppendAction):
            action.default = value.split()
        else:
            action.default = value  # a string default is converted by the option's type
            action.required = False
        from_environment.add(action)
    for group in parser._mutually_exclusive_groups:
        if from_environment.intersection(group._group_actions):
            group.required = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tmq`` with ``argv`` (default: the process arguments); return the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "pass_through", False):
        args.arguments = extra  # the subcommand parses its own options (``tmq broker``)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    tune_gc()
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
