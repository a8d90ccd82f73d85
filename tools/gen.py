"""``tmq gen``: synthetic DCGM telemetry for demos, tests and benchmarks.

Simulates ``--hosts`` x ``--gpus-per-host`` H100 GPUs scraped ``--scrapes`` times
(``tmq.telemetry.gen``) and writes the samples as a DCGM CSV capture in the real capture's
format (the default), or as a dcgm-exporter ``/metrics`` page. Output goes to stdout unless
``--output`` names a file. The output is a function of the options alone.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import TextIO

from tmq.telemetry.csv_source import format_rfc3339, parse_rfc3339
from tmq.telemetry.exposition import render_exposition
from tmq.telemetry.gen import DEFAULT_START_US, HOST_PREFIX, generate, write_csv
from tmq.telemetry.model import MAX_GPU_INDEX

from .errors import CommandError

__all__ = ["add_parser"]


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "gen",
        help="synthetic DCGM telemetry (CSV or Prometheus text)",
        description=(
            "Simulate a fleet of NVIDIA H100 GPUs and write every DCGM field of every GPU at "
            "every scrape: the real capture's ten fields (or more with --extra-metrics), values "
            "shaped like the capture's (busy and idle GPUs, power following utilisation, "
            f"temperatures, clocks, frame buffer), hosts named {HOST_PREFIX}-001 and on. The "
            "same options always give the same output."
        ),
    )
    parser.add_argument(
        "--hosts",
        type=_at_least_one,
        required=True,
        metavar="H",
        help="number of hosts (at least 1)",
    )
    parser.add_argument(
        "--gpus-per-host",
        type=_gpus_per_host,
        required=True,
        metavar="G",
        help=f"GPUs on each host, indexes 0..G-1 (1 to {MAX_GPU_INDEX + 1})",
    )
    parser.add_argument(
        "--scrapes",
        type=_at_least_one,
        required=True,
        metavar="S",
        help="number of scrapes; each gives one sample per GPU and field (at least 1)",
    )
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="time between scrapes in seconds, fractions allowed (default 1)",
    )
    parser.add_argument(
        "--start",
        type=_rfc3339,
        default=DEFAULT_START_US,
        metavar="RFC3339",
        help=(
            "time of the first scrape, e.g. 2025-07-18T20:42:34Z or with an offset "
            f"(default {format_rfc3339(DEFAULT_START_US)}, the real capture's first time)"
        ),
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="random seed: GPU UUIDs and values depend on it (default 0)",
    )
    parser.add_argument(
        "--extra-metrics",
        action="store_true",
        help=(
            "also write memory temperature, total energy, PCIe replays, XID errors, FB "
            "reserved and three profiling ratios"
        ),
    )
    parser.add_argument(
        "--format",
        choices=("csv", "prometheus"),
        default="csv",
        help=(
            "csv: a DCGM CSV capture, header first (default); prometheus: one dcgm-exporter "
            "/metrics page, fields grouped, built in memory; with more than one scrape each "
            "line carries its time in milliseconds"
        ),
    )
    parser.add_argument(
        "--output", metavar="PATH", help="write to PATH (replaced if it exists) instead of stdout"
    )
    parser.set_defaults(run=_run)


def _at_least_one(text: str) -> int:
    number = _integer(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _gpus_per_host(text: str) -> int:
    number = _at_least_one(text)
    if number > MAX_GPU_INDEX + 1:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_GPU_INDEX + 1}, not {number}")
    return number


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(seconds) and seconds >= 1e-6):
        raise argparse.ArgumentTypeError(f"must be at least 0.000001 seconds, not {text}")
    return seconds


def _rfc3339(text: str) -> int:
    try:
        return parse_rfc3339(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def _run(args: argparse.Namespace) -> int:
    samples = generate(
        hosts=args.hosts,
        gpus_per_host=args.gpus_per_host,
        scrapes=args.scrapes,
        interval_s=args.interval,
        start_us=args.start,
        seed=args.seed,
        extra_metrics=args.extra_metrics,
    )
    if args.output is None:
        try:
            _write(args, samples, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (``tmq gen … | head``): say so once, without a traceback
            # now or a second one when the interpreter flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise CommandError("the output was closed before everything was written") from None
        return 0
    try:
        with open(args.output, "w", encoding="utf-8", newline="") as output:
            _write(args, samples, output)
    except OSError as error:
        raise CommandError(f"cannot write {args.output}: {error.strerror}") from None
    return 0


def _write(args: argparse.Namespace, samples, output: TextIO) -> None:
    if args.format == "csv":
        write_csv(samples, output)
    else:
        output.write(render_exposition(samples, timestamps=args.scrapes > 1))
