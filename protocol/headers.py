"""Request and response headers.

=================  ==========================================================================
request header v1  api_key INT16, api_version INT16, correlation_id INT32,
                   client_id NULLABLE_STRING (classic INT16 length, even in flexible versions)
request header v2  v1 then TAG_BUFFER (flexible API versions)
response header v0 correlation_id INT32
response header v1 correlation_id INT32, TAG_BUFFER (flexible versions, never ApiVersions)
=================  ==========================================================================

``RequestHeaderSchema`` and ``ResponseHeaderSchema`` are the declarations. Every request passes
through ``read_request_header``, a ``struct`` fast path that must agree with the declaration
(the tests check it on generated headers and on fuzzed bytes).
"""

from __future__ import annotations

import io
import struct
from typing import NamedTuple

from construct import ConstructError

from .apis import request_header_version, response_header_version
from .errors import ProtocolError
from .schema import INT16, INT32, STRING, Field, Message
from .types import TaggedFields

__all__ = [
    "RequestHeader",
    "RequestHeaderSchema",
    "ResponseHeader",
    "ResponseHeaderSchema",
    "encode_request_header",
    "encode_response_header",
    "read_request_header",
    "read_response_header",
]

RequestHeaderSchema = Message(
    "RequestHeader",
    versions="1-2",
    flexible="2+",
    fields=(
        Field("api_key", INT16),
        Field("api_version", INT16),
        Field("correlation_id", INT32),
        Field("client_id", STRING, nullable="1+", flexible=False),
    ),
)

ResponseHeaderSchema = Message(
    "ResponseHeader",
    versions="0-1",
    flexible="1+",
    fields=(Field("correlation_id", INT32),),
)

_FIXED = struct.Struct(">hhih")
_CORRELATION = struct.Struct(">i")
_EMPTY_TAGS = b"\x00"


class RequestHeader(NamedTuple):
    """A decoded request header; ``tagged_fields`` is empty for header v1."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    tagged_fields: dict


def read_request_header(frame: bytes | memoryview) -> tuple[RequestHeader, int]:
    """Decode the request header at the start of ``frame`` (a frame without its size prefix).

    :returns: the header and the offset of the request body in ``frame``.
    :raises ProtocolError: the frame is too short or the header malformed.
    """
    if len(frame) < _FIXED.size:
        raise ProtocolError(f"request header needs {_FIXED.size} bytes, frame has {len(frame)}")
    api_key, api_version, correlation_id, length = _FIXED.unpack_from(frame)
    position = _FIXED.size
    if length == -1:
        client_id = None
    elif length < 0:
        raise ProtocolError(f"request header client_id has negative length {length}")
    else:
        end = position + length
        if end > len(frame):
            raise ProtocolError("request header client_id runs past the end of the frame")
        try:
            client_id = str(frame[position:end], "utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("request header client_id is not UTF-8") from None
        position = end
    tagged_fields = {}
    if request_header_version(api_key, api_version) >= 2:
        tagged_fields, position = _read_tags(frame, position)
    return RequestHeader(api_key, api_version, correlation_id, client_id, tagged_fields), position


class ResponseHeader(NamedTuple):
    """A decoded response header; ``tagged_fields`` is empty for header v0."""

    correlation_id: int
    tagged_fields: dict


def read_response_header(
    frame: bytes | memoryview, api_key: int, api_version: int
) -> tuple[ResponseHeader, int]:
    """Decode the header of a response to ``api_key`` at ``api_version``.

    :returns: the header and the offset of the response body in ``frame``.
    :raises ProtocolError: the frame is too short or the header malformed.
    """
    if len(frame) < 4:
        raise ProtocolError(f"response header needs 4 bytes, frame has {len(frame)}")
    (correlation_id,) = _CORRELATION.unpack_from(frame)
    tagged_fields, position = {}, 4
    if response_header_version(api_key, api_version) >= 1:
        tagged_fields, position = _read_tags(frame, position)
    return ResponseHeader(correlation_id, tagged_fields), position


def _read_tags(frame, position: int) -> tuple[dict, int]:
    if position < len(frame) and frame[position] == 0:
        return {}, position + 1
    stream = io.BytesIO(bytes(frame))
    stream.seek(position)
    try:
        tags = TaggedFields.parse_stream(stream)
    except ConstructError as e:
        raise ProtocolError(f"malformed request header tagged fields: {e}") from None
    return tags, stream.tell()


def encode_request_header(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None
) -> bytes:
    """Encode a request header in the version the API version calls for."""
    version = request_header_version(api_key, api_version)
    return RequestHeaderSchema.build(
        {
            "api_key": api_key,
            "api_version": api_version,
            "correlation_id": correlation_id,
            "client_id": client_id,
        },
        version,
    )


def encode_response_header(api_key: int, api_version: int, correlation_id: int) -> bytes:
    """Encode the response header for a response to ``api_key`` at ``api_version``."""
    head = _CORRELATION.pack(correlation_id)
    if response_header_version(api_key, api_version) >= 1:
        return head + _EMPTY_TAGS
    return head
