"""Fetch (API key 1), versions 4-11.

4 is the first version that carries RecordBatch v2 (and ``isolation_level``); 5 adds
``log_start_offset``; 7 adds fetch sessions (tmq answers ``session_id`` 0, always a full
response); 9 adds ``current_leader_epoch`` (KIP-320); 10 allows zstd; 11 adds ``rack_id`` and
``preferred_read_replica``. ``replica_id`` is -1 for consumers.
"""

from __future__ import annotations

import struct

from construct import Container

from ..errors import ProtocolError
from ..fastwire import I32, I64, pack_string, read_array, read_records, read_topics
from ..schema import INT8, INT16, INT32, INT64, RECORDS, STRING, Array, Field, Message

__all__ = ["FetchRequest", "FetchResponse", "decode_fetch_response", "encode_fetch_response"]

FetchRequest = Message(
    "FetchRequest",
    versions="4-11",
    fields=(
        Field("replica_id", INT32, default=-1),
        Field("max_wait_ms", INT32),
        Field("min_bytes", INT32),
        Field("max_bytes", INT32, default=0x7FFFFFFF),
        Field("isolation_level", INT8),
        Field("session_id", INT32, versions="7+"),
        Field("session_epoch", INT32, versions="7+", default=-1),
        Field(
            "topics",
            Array(
                Field("topic", STRING),
                Field(
                    "partitions",
                    Array(
                        Field("partition", INT32),
                        Field("current_leader_epoch", INT32, versions="9+", default=-1),
                        Field("fetch_offset", INT64),
                        Field("log_start_offset", INT64, versions="5+", default=-1),
                        Field("partition_max_bytes", INT32),
                    ),
                ),
            ),
        ),
        Field(
            "forgotten_topics_data",
            Array(Field("topic", STRING), Field("partitions", Array(INT32))),
            versions="7+",
        ),
        Field("rack_id", STRING, versions="11+"),
    ),
)

FetchResponse = Message(
    "FetchResponse",
    versions="4-11",
    fields=(
        Field("throttle_time_ms", INT32),
        Field("error_code", INT16, versions="7+"),
        Field("session_id", INT32, versions="7+"),
        Field(
            "responses",
            Array(
                Field("topic", STRING),
                Field(
                    "partitions",
                    Array(
                        Field("partition_index", INT32),
                        Field("error_code", INT16),
                        Field("high_watermark", INT64),
                        Field("last_stable_offset", INT64, default=-1),
                        Field("log_start_offset", INT64, versions="5+", default=-1),
                        Field(
                            "aborted_transactions",
                            Array(Field("producer_id", INT64), Field("first_offset", INT64)),
                            nullable="4+",
                        ),
                        Field("preferred_read_replica", INT32, versions="11+", default=-1),
                        Field("records", RECORDS, nullable="0+"),
                    ),
                ),
            ),
        ),
    ),
)


# Fast path. A Fetch response is built for every fetch, usually around megabytes of records;
# construct's build would be slow and would copy the records. ``encode_fetch_response`` packs the
# envelope with struct and returns the records as they were given (e.g. memoryviews of file
# reads), ready for ``transport.writeSequence``. tests/protocol/test_fastpaths.py holds it to the
# declaration above.

_V4_HEAD = struct.Struct(">i")
_V7_HEAD = struct.Struct(">ihi")
_PARTITION_HEAD = struct.Struct(">ihq")
_ABORTED = struct.Struct(">qq")
_NULL_ARRAY = b"\xff\xff\xff\xff"


def encode_fetch_response(response: dict, version: int) -> list[bytes | memoryview]:
    """Encode a Fetch response body as a list of chunks whose concatenation equals
    ``FetchResponse.build(response, version)``; record blobs are passed through uncopied.

    Fields with declared defaults may be left out, as with ``Message.build``.

    :raises ProtocolError: unknown version.
    """
    FetchResponse.check_version(version)
    chunks: list[bytes | memoryview] = []
    out = bytearray()
    if version >= 7:
        out += _V7_HEAD.pack(
            response.get("throttle_time_ms", 0),
            response.get("error_code", 0),
            response.get("session_id", 0),
        )
    else:
        out += _V4_HEAD.pack(response.get("throttle_time_ms", 0))
    topics = response["responses"]
    out += I32.pack(len(topics))
    for topic in topics:
        pack_string(out, topic["topic"])
        partitions = topic["partitions"]
        out += I32.pack(len(partitions))
        for partition in partitions:
            out += _PARTITION_HEAD.pack(
                partition["partition_index"],
                partition.get("error_code", 0),
                partition["high_watermark"],
            )
            out += I64.pack(partition.get("last_stable_offset", -1))
            if version >= 5:
                out += I64.pack(partition.get("log_start_offset", -1))
            aborted = partition.get("aborted_transactions")
            if aborted is None:
                out += _NULL_ARRAY
            else:
                out += I32.pack(len(aborted))
                for transaction in aborted:
                    out += _ABORTED.pack(transaction["producer_id"], transaction["first_offset"])
            if version >= 11:
                out += I32.pack(partition.get("preferred_read_replica", -1))
            records = partition.get("records")
            if records is None:
                out += _NULL_ARRAY
                continue
            size = memoryview(records).nbytes
            out += I32.pack(size)
            if size:
                chunks.append(bytes(out))
                chunks.append(records)
                out = bytearray()
    if out:
        chunks.append(bytes(out))
    return chunks


# Fast path. A consumer decodes a Fetch response of up to megabytes of records per fetch;
# construct's parse would copy the records twice. ``decode_fetch_response`` reads the envelope
# with struct and returns the records as memoryview slices of the body.
# tests/protocol/test_fastpaths.py holds it to the declaration above.

_V7_HEAD_SIZE = _V7_HEAD.size
_PARTITION_FIXED = struct.Struct(">ihqq")  # index, error code, high watermark, last stable
_ABORTED_SIZE = _ABORTED.size


def decode_fetch_response(body: bytes | memoryview, version: int) -> Container:
    """Decode a Fetch response body; the same value as ``FetchResponse.parse``, but for the
    ``records`` fields: ``memoryview`` slices of ``body``, which must stay unchanged while they
    are in use.

    :raises ProtocolError: malformed body or an unknown version.
    """
    FetchResponse.check_version(version)
    view = memoryview(body)
    size = len(view)

    def read_aborted(view: memoryview, position: int) -> tuple[Container, int]:
        producer_id, first_offset = _ABORTED.unpack_from(view, position)
        return (
            Container(producer_id=producer_id, first_offset=first_offset),
            position + _ABORTED_SIZE,
        )

    def read_partition(view: memoryview, position: int) -> tuple[Container, int]:
        index, code, high_watermark, last_stable = _PARTITION_FIXED.unpack_from(view, position)
        position += _PARTITION_FIXED.size
        log_start = -1
        if version >= 5:
            (log_start,) = I64.unpack_from(view, position)
            position += 8
        aborted = None
        (aborted_count,) = I32.unpack_from(view, position)
        if aborted_count == -1:
            position += 4
        else:
            aborted, position = read_array(view, position, "aborted transaction", read_aborted)
        preferred = -1
        if version >= 11:
            (preferred,) = I32.unpack_from(view, position)
            position += 4
        records, position = read_records(view, position)
        partition = Container(
            partition_index=index,
            error_code=code,
            high_watermark=high_watermark,
            last_stable_offset=last_stable,
            log_start_offset=log_start,
            aborted_transactions=aborted,
            preferred_read_replica=preferred,
            records=records,
        )
        return partition, position

    try:
        if version >= 7:
            throttle_time_ms, error_code, session_id = _V7_HEAD.unpack_from(view, 0)
            position = _V7_HEAD_SIZE
        else:
            (throttle_time_ms,) = _V4_HEAD.unpack_from(view, 0)
            error_code = session_id = 0
            position = 4
        topics, position = read_topics(view, position, read_partition)
        topics = [Container(topic=name, partitions=partitions) for name, partitions in topics]
    except struct.error:
        raise ProtocolError(f"truncated FetchResponse v{version}") from None
    if position != size:
        left = size - position
        raise ProtocolError(f"malformed FetchResponse v{version}: {left} bytes left over")
    return Container(
        throttle_time_ms=throttle_time_ms,
        error_code=error_code,
        session_id=session_id,
        responses=topics,
    )
