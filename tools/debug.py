"""``tmq debug``: look inside Kafka frames (and, later, log segments).

``tmq debug decode --request FILE`` reads one request frame (with its 4-byte size prefix) and
prints its header and body as JSON. A response cannot be decoded alone — its header does not
name the API — so ``--response`` needs ``--api NAME --version V``. Record batches inside
``records`` fields are summarised (offsets, count, CRC check), not dumped.
"""

from __future__ import annotations

import argparse
import json
import sys

from tmq.protocol.apis import API_BY_KEY, API_BY_NAME
from tmq.protocol.errors import ProtocolError
from tmq.protocol.framing import MAX_FRAME_BYTES, FrameDecoder
from tmq.protocol.headers import read_request_header, read_response_header
from tmq.protocol.records import batch_crc_ok, iter_batches
from tmq.protocol.schema import RECORDS, Array, Field

from . import dump_log
from .errors import CommandError

__all__ = ["add_parser", "decode_request_frame", "decode_response_frame"]


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "debug",
        help="inspect Kafka frames and log segments",
        description="Inspect Kafka frames and log segments.",
    )
    tools = parser.add_subparsers(dest="debug_command", metavar="TOOL", required=True)
    decode = tools.add_parser(
        "decode",
        help="decode one Kafka frame to JSON",
        description=(
            "Decode one Kafka frame (INT32 size prefix, header, body) from FILE ('-' for "
            "stdin) and print its header and body as JSON. Record batches are summarised: "
            "offsets, record count, CRC check."
        ),
    )
    kind = decode.add_mutually_exclusive_group(required=True)
    kind.add_argument("--request", action="store_true", help="FILE holds a request frame")
    kind.add_argument(
        "--response",
        action="store_true",
        help="FILE holds a response frame (needs --api and --version)",
    )
    decode.add_argument(
        "--api",
        choices=sorted(API_BY_NAME),
        metavar="NAME",
        help="API of the response, e.g. Fetch (one of: %(choices)s)",
    )
    decode.add_argument("--version", type=int, metavar="V", help="API version of the response")
    decode.add_argument("file", metavar="FILE", help="the frame, or - for stdin")
    decode.set_defaults(run=_run_decode, decode_parser=decode)
    dump_log.add_parser(tools)


def _run_decode(args: argparse.Namespace) -> int:
    if args.response and (args.api is None or args.version is None):
        args.decode_parser.error("--response needs --api NAME and --version V")
    if args.request and (args.api is not None or args.version is not None):
        args.decode_parser.error("--api and --version go with --response only")
    frame = _read_frame(args.file)
    try:
        if args.request:
            result = decode_request_frame(frame)
        else:
            result = decode_response_frame(frame, args.api, args.version)
    except ProtocolError as error:
        raise CommandError(f"malformed frame: {error}") from None
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _read_frame(path: str) -> bytes:
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_FRAME_BYTES + 5)
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None
    decoder = FrameDecoder()
    try:
        frames = decoder.feed(data)
    except ProtocolError as error:
        raise CommandError(f"malformed frame: {error}") from None
    if not frames:
        raise CommandError(
            f"{path} holds {len(data)} bytes, less than one whole frame (size prefix included)"
        )
    if len(frames) > 1 or decoder.buffered_bytes:
        raise CommandError(f"{path} holds more than one frame; give one frame per file")
    return frames[0]


def decode_request_frame(frame: bytes) -> dict:
    """Header and body of one request frame (without its size prefix), as JSON-ready data.

    :raises ProtocolError: malformed, or an API or version tmq does not know.
    """
    header, offset = read_request_header(frame)
    api = API_BY_KEY.get(header.api_key)
    if api is None:
        raise ProtocolError(f"unknown API key {header.api_key}")
    body = api.request.parse(memoryview(frame)[offset:], header.api_version)
    return {
        "api": api.name,
        "header": {**header._asdict(), "tagged_fields": _jsonable(header.tagged_fields)},
        "body": _on_wire(body, api.request.fields, header.api_version),
    }


def decode_response_frame(frame: bytes, api_name: str, version: int) -> dict:
    """Header and body of one response frame (without its size prefix), as JSON-ready data.

    :raises ProtocolError: malformed, or a version the API does not have.
    """
    api = API_BY_NAME[api_name]
    api.response.check_version(version)
    header, offset = read_response_header(frame, api.key, version)
    body = api.response.parse(memoryview(frame)[offset:], version)
    return {
        "api": api.name,
        "header": {**header._asdict(), "tagged_fields": _jsonable(header.tagged_fields)},
        "body": _on_wire(body, api.response.fields, version),
    }


def _jsonable(value):
    """Tagged fields and other plain values as JSON-ready data (bytes as hex)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"hex": bytes(value).hex()}
    return value


def _on_wire(value: dict, fields: tuple[Field, ...], version: int) -> dict:
    """The fields of ``value`` that ``version`` carries on the wire, as JSON-ready data.

    Record batches are summarised, other bytes shown as hex.
    """
    out = {}
    for field in fields:
        if not field.present_in(version):
            continue
        item = value[field.name]
        kind = field.type
        if item is None:
            out[field.name] = None
        elif field.type is RECORDS:
            out[field.name] = _summarise_batches(bytes(item))
        elif isinstance(kind, Array) and isinstance(kind.element, tuple):
            out[field.name] = [_on_wire(element, kind.element, version) for element in item]
        else:
            out[field.name] = _jsonable(item)
    if "tagged_fields" in value:
        out["tagged_fields"] = _jsonable(value["tagged_fields"])
    return out


def _summarise_batches(data: bytes) -> dict:
    """Offsets, counts and CRC checks of the RecordBatch v2 batches in a records field."""
    batches = []
    position = 0
    try:
        for position, header in iter_batches(data):
            batches.append(
                {
                    "position": position,
                    "base_offset": header.base_offset,
                    "last_offset": header.last_offset,
                    "count": header.records_count,
                    "size": header.size,
                    "partition_leader_epoch": header.partition_leader_epoch,
                    "compression": header.compression.name.lower(),
                    "producer_id": header.producer_id,
                    "base_sequence": header.base_sequence,
                    "max_timestamp": header.max_timestamp,
                    "crc_ok": batch_crc_ok(data, position, header),
                }
            )
            position += header.size
    except ProtocolError as error:
        return {"bytes": len(data), "batches": batches, "error": str(error), "at": position}
    summary = {"bytes": len(data), "batches": batches}
    if position < len(data):
        summary["partial_tail_bytes"] = len(data) - position
    return summary
