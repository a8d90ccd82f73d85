"""ApiVersions (API key 18), versions 0-3; v3 is flexible.

v1 adds ``throttle_time_ms``; v3 adds the client software name and version and uses compact
encodings and tagged fields. Whatever the version, the response header is v0 (KIP-511).
A request above the highest version is not parsed: it is answered with the v0 body, error
UNSUPPORTED_VERSION and only the ApiVersions entry (see ``tmq.protocol.apis``).
"""

from __future__ import annotations

from ..schema import INT16, INT32, STRING, Array, Field, Message

__all__ = ["ApiVersionsRequest", "ApiVersionsResponse"]

ApiVersionsRequest = Message(
    "ApiVersionsRequest",
    versions="0-3",
    flexible="3+",
    fields=(
        Field("client_software_name", STRING, versions="3+"),
        Field("client_software_version", STRING, versions="3+"),
    ),
)

ApiVersionsResponse = Message(
    "ApiVersionsResponse",
    versions="0-3",
    flexible="3+",
    fields=(
        Field("error_code", INT16),
        Field(
            "api_keys",
            Array(
                Field("api_key", INT16),
                Field("min_version", INT16),
                Field("max_version", INT16),
            ),
        ),
        Field("throttle_time_ms", INT32, versions="1+"),
    ),
)
