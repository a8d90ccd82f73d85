"""Produce (API key 0), versions 0-8.

Versions 0-2 carry the legacy message format: they are declared so that a request can be read
far enough to be refused with UNSUPPORTED_VERSION. Version 3 brings RecordBatch v2 and
``transactional_id``; 5 adds ``log_start_offset`` to the response; 7 allows zstd; 8 adds
``record_errors`` and ``error_message``. ``records`` holds one RecordBatch per partition.
"""

from __future__ import annotations

import struct

from construct import Container

from ..errors import ProtocolError
from ..fastwire import I32, pack_string, read_array, read_records, read_string, read_topics
from ..schema import INT16, INT32, INT64, RECORDS, STRING, Array, Field, Message

__all__ = [
    "ProduceRequest",
    "ProduceResponse",
    "decode_produce_request",
    "decode_produce_response",
    "encode_produce_request",
]

ProduceRequest = Message(
    "ProduceRequest",
    versions="0-8",
    fields=(
        Field("transactional_id", STRING, versions="3+", nullable="3+"),
        Field("acks", INT16),
        Field("timeout_ms", INT32),
        Field(
            "topic_data",
            Array(
                Field("name", STRING),
                Field(
                    "partition_data",
                    Array(
                        Field("index", INT32),
                        Field("records", RECORDS, nullable="0+"),
                    ),
                ),
            ),
        ),
    ),
)

ProduceResponse = Message(
    "ProduceResponse",
    versions="0-8",
    fields=(
        Field(
            "responses",
            Array(
                Field("name", STRING),
                Field(
                    "partition_responses",
                    Array(
                        Field("index", INT32),
                        Field("error_code", INT16),
                        Field("base_offset", INT64),
                        Field("log_append_time_ms", INT64, versions="2+", default=-1),
                        Field("log_start_offset", INT64, versions="5+", default=-1),
                        Field(
                            "record_errors",
                            Array(
                                Field("batch_index", INT32),
                                Field("batch_index_error_message", STRING, nullable="8+"),
                            ),
                            versions="8+",
                        ),
                        Field("error_message", STRING, versions="8+", nullable="8+"),
                    ),
                ),
            ),
        ),
        Field("throttle_time_ms", INT32, versions="1+"),
    ),
)


# Fast path. A Produce request is decoded on every produce; construct's interpreted parse is far
# too slow for that, so v3-8 are read here with struct, and the records stay memoryview slices
# of the request body (never copied). tests/protocol/test_fastpaths.py holds it to the
# declaration above.

_ACKS_TIMEOUT = struct.Struct(">hi")
_INDEX_SIZE = struct.Struct(">ii")


def decode_produce_request(body: bytes | memoryview, version: int) -> dict:
    """Decode a Produce request body; the same value as ``ProduceRequest.parse``.

    ``records`` fields are ``memoryview`` slices of ``body`` (v3+), so ``body`` must stay
    unchanged while they are in use.

    :raises ProtocolError: malformed body or an unknown version.
    """
    if version < 3:
        return ProduceRequest.parse(body, version)
    ProduceRequest.check_version(version)
    view = memoryview(body)
    size = len(view)
    transactional_id, position = read_string(view, 0, nullable=True)
    if position + 6 > size:
        raise ProtocolError("truncated Produce request")
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(view, position)
    position += 6

    def read_partition(view: memoryview, position: int) -> tuple[dict, int]:
        if position + 4 > size:
            raise ProtocolError("truncated Produce request")
        (index,) = I32.unpack_from(view, position)
        records, position = read_records(view, position + 4)
        return {"index": index, "records": records}, position

    topics, position = read_topics(view, position, read_partition)
    topics = [{"name": name, "partition_data": partitions} for name, partitions in topics]
    if position != size:
        left = size - position
        raise ProtocolError(f"malformed ProduceRequest v{version}: {left} bytes left over")
    return {
        "transactional_id": transactional_id,
        "acks": acks,
        "timeout_ms": timeout_ms,
        "topic_data": topics,
    }


# Fast path. A producer sends one Produce request per leader and round of batches, each batch
# up to hundreds of kilobytes; construct's build would copy every batch twice.
# ``encode_produce_request`` packs the envelope with struct and passes the batches through.
# tests/protocol/test_fastpaths.py holds it to the declaration above.

_ACKS_TIMEOUT = struct.Struct(">hi")


def encode_produce_request(request: dict, version: int) -> list[bytes | memoryview]:
    """Encode a Produce request body as a list of chunks whose concatenation equals
    ``ProduceRequest.build(request, version)``; from v3 the ``records`` blobs are chunks of
    their own, passed through uncopied.

    Fields may be left out, as with ``Message.build``: they are built with their defaults.

    :raises ProtocolError: an unknown version, or a value that does not fit its wire type.
    """
    if version < 3:
        return [ProduceRequest.build(request, version)]
    ProduceRequest.check_version(version)
    chunks: list[bytes | memoryview] = []
    out = bytearray()
    try:
        pack_string(out, request.get("transactional_id"))
        out += _ACKS_TIMEOUT.pack(request.get("acks", 0), request.get("timeout_ms", 0))
        topics = request.get("topic_data", [])
        out += I32.pack(len(topics))
        for topic in topics:
            pack_string(out, topic.get("name", ""))
            partitions = topic.get("partition_data", [])
            out += I32.pack(len(partitions))
            for partition in partitions:
                records = partition.get("records")
                if records is None:
                    out += _INDEX_SIZE.pack(partition.get("index", 0), -1)
                    continue
                size = memoryview(records).nbytes
                out += _INDEX_SIZE.pack(partition.get("index", 0), size)
                if size:
                    chunks.append(bytes(out))
                    chunks.append(records)
                    out = bytearray()
    except (AttributeError, TypeError, ValueError, struct.error) as e:
        raise ProtocolError(f"cannot build ProduceRequest v{version}: {e!r}") from None
    if out:
        chunks.append(bytes(out))
    return chunks


# Fast path. A producer decodes a Produce response for every request; construct's interpreted
# parse costs more than the rest of the answer's handling. ``decode_produce_response`` reads it
# with struct. tests/protocol/test_fastpaths.py holds it to the declaration above.

_PARTITION_ANSWER = struct.Struct(">ihq")  # index, error code, base offset
_I64 = struct.Struct(">q")


def decode_produce_response(body: bytes | memoryview, version: int) -> Container:
    """Decode a Produce response body; the same value as ``ProduceResponse.parse``.

    :raises ProtocolError: malformed body or an unknown version.
    """
    ProduceResponse.check_version(version)
    view = memoryview(body)
    size = len(view)

    def read_record_error(view: memoryview, position: int) -> tuple[Container, int]:
        (batch_index,) = I32.unpack_from(view, position)
        text, position = read_string(view, position + 4, nullable=True)
        return Container(batch_index=batch_index, batch_index_error_message=text), position

    def read_partition(view: memoryview, position: int) -> tuple[Container, int]:
        index, code, base_offset = _PARTITION_ANSWER.unpack_from(view, position)
        position += _PARTITION_ANSWER.size
        log_append_time = log_start = -1
        if version >= 2:
            (log_append_time,) = _I64.unpack_from(view, position)
            position += 8
        if version >= 5:
            (log_start,) = _I64.unpack_from(view, position)
            position += 8
        record_errors = []
        message = None
        if version >= 8:
            record_errors, position = read_array(view, position, "record error", read_record_error)
            message, position = read_string(view, position, nullable=True)
        partition = Container(
            index=index,
            error_code=code,
            base_offset=base_offset,
            log_append_time_ms=log_append_time,
            log_start_offset=log_start,
            record_errors=record_errors,
            error_message=message,
        )
        return partition, position

    try:
        topics, position = read_topics(view, 0, read_partition)
        topics = [
            Container(name=name, partition_responses=partitions) for name, partitions in topics
        ]
        throttle_time_ms = 0
        if version >= 1:
            (throttle_time_ms,) = I32.unpack_from(view, position)
            position += 4
    except struct.error:
        raise ProtocolError(f"truncated ProduceResponse v{version}") from None
    if position != size:
        left = size - position
        raise ProtocolError(f"malformed ProduceResponse v{version}: {left} bytes left over")
    return Container(responses=topics, throttle_time_ms=throttle_time_ms)
