"""The operations options of the long-running commands (sink, producer, api):
``--metrics-listen HOST:PORT`` and ``--log-format text|json`` (envs ``TMQ_METRICS_LISTEN``,
``TMQ_LOG_FORMAT``, added by ``tmq.tools.cli``)."""

from __future__ import annotations

import argparse

from tmq.ops.http import parse_address
from tmq.ops.logs import LOG_FORMATS

__all__ = ["add_log_format_option", "add_metrics_listen_option"]


def _address(text: str) -> str:
    try:
        parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_metrics_listen_option(parser: argparse.ArgumentParser) -> None:
    """``--metrics-listen HOST:PORT``: where to serve /metrics, /healthz and /readyz (default
    none); a value that is not HOST:PORT is a usage error."""
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        type=_address,
        default=None,
        help="serve /metrics (Prometheus), /healthz and /readyz over HTTP here (default: none)",
    )


def add_log_format_option(parser: argparse.ArgumentParser) -> None:
    """``--log-format text|json`` (default text)."""
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=LOG_FORMATS[0],
        help="log lines on stderr: text, or json (one object per line with time, level, "
        "namespace, message) (default %(default)s)",
    )
