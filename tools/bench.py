"""``tmq bench``: benchmarks that print JSON.

``tmq bench codec`` measures the protocol hot paths, each next to a baseline measured in the
same run: the interpreted ``construct`` rate of the same message (the declaration the fast
path is held to) and, for the CRC, the raw CRC32C rate of the same bytes. Rates are the best
of ``--rounds`` rounds of ``--seconds`` each.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

from construct import (
    Array,
    Bytes,
    If,
    Int8sb,
    Int16sb,
    Int32sb,
    Int32ub,
    Int64sb,
    Struct,
    ZigZag,
    this,
)

from tmq.protocol.apis import ApiKey
from tmq.protocol.crc32c import crc32c
from tmq.protocol.headers import (
    RequestHeaderSchema,
    encode_request_header,
    encode_response_header,
    read_request_header,
)
from tmq.protocol.messages.fetch import FetchResponse, encode_fetch_response
from tmq.protocol.messages.produce import ProduceRequest, decode_produce_request
from tmq.protocol.records import (
    Record,
    batch_crc_ok,
    build_batch,
    decode_records,
    encode_records,
    read_batch_header,
)

from . import bench_api, bench_clients, bench_e2e, bench_failover, bench_log, bench_sink

__all__ = ["add_parser", "run_codec_bench"]

#: Floors set by the issue for Python 3.11 on a 2-core machine.
FLOORS = {
    "produce_v8_request_decode": 20_000,
    "fetch_v11_response_envelope_encode": 20_000,
    "record_decode": 600_000,
}

_KEY_BYTES = 40
_VALUE_BYTES = 175
_RECORDS_PER_BATCH = 1000
_PRODUCE_BATCH_BYTES = 16 * 1024
_FETCH_RECORDS_BYTES = 1024 * 1024

# Interpreted construct declarations of the RecordBatch header and of a record, the baseline
# the struct-based codec in tmq.protocol.records is measured against.
_BATCH_HEADER_CONSTRUCT = Struct(
    "base_offset" / Int64sb,
    "batch_length" / Int32sb,
    "partition_leader_epoch" / Int32sb,
    "magic" / Int8sb,
    "crc" / Int32ub,
    "attributes" / Int16sb,
    "last_offset_delta" / Int32sb,
    "base_timestamp" / Int64sb,
    "max_timestamp" / Int64sb,
    "producer_id" / Int64sb,
    "producer_epoch" / Int16sb,
    "base_sequence" / Int32sb,
    "records_count" / Int32sb,
)
_RECORD_CONSTRUCT = Struct(
    "length" / ZigZag,
    "attributes" / Int8sb,
    "timestamp_delta" / ZigZag,
    "offset_delta" / ZigZag,
    "key_length" / ZigZag,
    "key" / If(this.key_length >= 0, Bytes(this.key_length)),
    "value_length" / ZigZag,
    "value" / If(this.value_length >= 0, Bytes(this.value_length)),
    "headers_count" / ZigZag,
)


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "bench",
        help="run benchmarks (JSON results on stdout)",
        description="Run a benchmark and print its results as JSON on stdout.",
    )
    kinds = parser.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    codec = kinds.add_parser(
        "codec",
        help="protocol codec rates next to interpreted construct",
        description=(
            "Measure the Kafka codec hot paths (Produce v8 request decode, Fetch v11 response "
            "envelope encode, RecordBatch header parse + CRC, record decode and encode), each "
            "next to the interpreted construct rate of the same message in the same run."
        ),
    )
    codec.add_argument(
        "--seconds",
        type=float,
        default=0.5,
        help="duration of one measuring round (default %(default)s)",
    )
    codec.add_argument(
        "--rounds", type=int, default=3, help="rounds per figure; the best counts (default 3)"
    )
    codec.set_defaults(run=_run_codec, codec_parser=codec)
    bench_log.add_parser(kinds)
    bench_clients.add_parsers(kinds)
    bench_failover.add_parser(kinds)
    bench_sink.add_parser(kinds)
    bench_e2e.add_parser(kinds)
    bench_api.add_parser(kinds)


def _run_codec(args: argparse.Namespace) -> int:
    if args.seconds <= 0 or args.rounds < 1:
        args.codec_parser.error("--seconds must be > 0 and --rounds >= 1")
    results = run_codec_bench(seconds=args.seconds, rounds=args.rounds, progress=sys.stderr)
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _rate(operation: Callable[[], object], *, seconds: float, rounds: int) -> float:
    """Best calls-per-second of ``operation`` over ``rounds`` rounds of about ``seconds``."""
    calls = 1
    while True:  # calibrate: enough calls per timing to dwarf the clock's overhead
        start = time.perf_counter()
        for _ in range(calls):
            operation()
        elapsed = time.perf_counter() - start
        if elapsed >= 0.02:
            break
        calls *= 4
    per_round = max(1, int(calls * seconds / elapsed))
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            operation()
        best = max(best, per_round / (time.perf_counter() - start))
    return best


def _records(count: int) -> list[Record]:
    return [
        Record(
            offset_delta=i,
            timestamp_delta=i * 3,
            key=(b"GPU-%036d" % i)[:_KEY_BYTES].ljust(_KEY_BYTES, b"k"),
            value=bytes((i + j) & 0xFF for j in range(_VALUE_BYTES)),
        )
        for i in range(count)
    ]


def _produce_frame() -> bytes:
    per_record = _KEY_BYTES + _VALUE_BYTES + 10
    batch = build_batch(
        _records(_PRODUCE_BATCH_BYTES // per_record), base_timestamp=1_700_000_000_000
    )
    partition = {"index": 0, "records": batch}
    body = ProduceRequest.build(
        {
            "transactional_id": None,
            "acks": -1,
            "timeout_ms": 30000,
            "topic_data": [{"name": "telemetry", "partition_data": [partition]}],
        },
        8,
    )
    return encode_request_header(ApiKey.PRODUCE, 8, 42, "bench") + body


def _entry(unit: str, tmq: float, baseline_name: str, baseline: float, name: str, **extra):
    entry = {
        "unit": unit,
        "tmq": round(tmq),
        baseline_name: round(baseline),
        "ratio": round(tmq / baseline, 1),
        **extra,
    }
    if name in FLOORS:
        entry["floor"] = FLOORS[name]
        entry["meets_floor"] = tmq >= FLOORS[name]
    return entry


def run_codec_bench(*, seconds: float, rounds: int, progress=None) -> dict:
    """Run every codec measurement; return the JSON-ready results."""

    def say(name: str) -> None:
        if progress is not None:
            print(f"measuring {name} ...", file=progress, flush=True)

    measure = {"seconds": seconds, "rounds": rounds}
    results = {}

    say("produce_v8_request_decode")
    frame = _produce_frame()
    header_v1 = RequestHeaderSchema.struct(1)
    header_size = read_request_header(frame)[1]

    def produce_fast():
        header, offset = read_request_header(frame)
        return decode_produce_request(memoryview(frame)[offset:], header.api_version)

    def produce_construct():
        header = header_v1.parse(frame[:header_size])
        return ProduceRequest.parse(frame[header_size:], header.api_version)

    results["produce_v8_request_decode"] = _entry(
        "requests/s",
        _rate(produce_fast, **measure),
        "construct_interpreted",
        _rate(produce_construct, **measure),
        "produce_v8_request_decode",
        frame_bytes=len(frame),
    )

    say("fetch_v11_response_envelope_encode")
    records = memoryview(bytes(_FETCH_RECORDS_BYTES))
    response = {
        "responses": [
            {
                "topic": "telemetry",
                "partitions": [
                    {
                        "partition_index": 0,
                        "high_watermark": 1_000_000,
                        "last_stable_offset": 1_000_000,
                        "log_start_offset": 0,
                        "records": records,
                    }
                ],
            }
        ]
    }

    def fetch_fast():
        return [encode_response_header(ApiKey.FETCH, 11, 7), *encode_fetch_response(response, 11)]

    def fetch_construct():
        return encode_response_header(ApiKey.FETCH, 11, 7) + FetchResponse.build(response, 11)

    results["fetch_v11_response_envelope_encode"] = _entry(
        "responses/s",
        _rate(fetch_fast, **measure),
        "construct_interpreted",
        _rate(fetch_construct, **measure),
        "fetch_v11_response_envelope_encode",
        records_bytes=_FETCH_RECORDS_BYTES,
        records_copied=False,
    )

    say("record_batch_header_parse_crc")
    batch = build_batch(_records(70), base_timestamp=1_700_000_000_000)

    def header_fast():
        header = read_batch_header(batch)
        return batch_crc_ok(batch, 0, header)

    def header_construct():
        header = _BATCH_HEADER_CONSTRUCT.parse(batch)
        return crc32c(memoryview(batch)[21 : 12 + header.batch_length]) == header.crc

    crc_only = _rate(lambda: crc32c(memoryview(batch)[21:]), **measure)
    results["record_batch_header_parse_crc"] = _entry(
        "batches/s",
        _rate(header_fast, **measure),
        "construct_interpreted",
        _rate(header_construct, **measure),
        "record_batch_header_parse_crc",
        batch_bytes=len(batch),
        raw_crc32c_only=round(crc_only),
    )

    say("record_decode")
    many = _records(_RECORDS_PER_BATCH)
    section = encode_records(many)
    record_array = Array(_RECORDS_PER_BATCH, _RECORD_CONSTRUCT)
    results["record_decode"] = _entry(
        "records/s",
        _rate(lambda: decode_records(section, _RECORDS_PER_BATCH), **measure) * _RECORDS_PER_BATCH,
        "construct_interpreted",
        _rate(lambda: record_array.parse(section), **measure) * _RECORDS_PER_BATCH,
        "record_decode",
        key_bytes=_KEY_BYTES,
        value_bytes=_VALUE_BYTES,
    )

    say("record_encode")
    construct_values = record_array.parse(section)
    results["record_encode"] = _entry(
        "records/s",
        _rate(lambda: encode_records(many), **measure) * _RECORDS_PER_BATCH,
        "construct_interpreted",
        _rate(lambda: record_array.build(construct_values), **measure) * _RECORDS_PER_BATCH,
        "record_encode",
        key_bytes=_KEY_BYTES,
        value_bytes=_VALUE_BYTES,
    )

    return {
        "benchmark": "codec",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "results": results,
    }
