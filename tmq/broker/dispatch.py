"""From (API key, version) to a handler, and from its result to response bytes.

A handler takes the request header and the decoded request and returns the response as a
dict (or a Deferred of one, or ``None`` when no response is due, as for acks=0). The
dispatcher owns the codec: it decodes with the declarations (the Produce fast path for
Produce), encodes the response (the Fetch fast path for Fetch, records passed through), and
answers an ApiVersions request above the highest version with the v0 fallback (KIP-511).

Kafka's JoinGroup records each member's client address ("/127.0.0.1"), which DescribeGroups
reports; handlers of the keys in ``with_client_host`` are called with it as the keyword
``client_host``. Every other handler sees only the header and the request.

A request for an API this broker does not serve, or a version it does not support, or a body
that does not decode is refused: the connection is closed, as Kafka does.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer

from tmq.protocol.apis import API_BY_KEY, Api, ApiKey, api_versions_fallback
from tmq.protocol.errors import ProtocolError
from tmq.protocol.headers import RequestHeader
from tmq.protocol.messages.api_versions import ApiVersionsResponse
from tmq.protocol.messages.fetch import encode_fetch_response
from tmq.protocol.messages.produce import decode_produce_request

__all__ = ["Dispatcher", "Handler", "RequestRefused"]

Handler = Callable[[RequestHeader, dict], "dict | defer.Deferred | None"]


class RequestRefused(Exception):
    """The request cannot be answered: the connection is closed."""


class Dispatcher:
    """Routes requests to ``handlers`` (one per served API key).

    :param with_client_host: the keys whose handlers also take ``client_host=``.
    """

    def __init__(
        self, handlers: dict[ApiKey, Handler], *, with_client_host: frozenset[ApiKey] = frozenset()
    ):
        self.handlers = handlers
        self.with_client_host = with_client_host

    def served_apis(self) -> list[Api]:
        """The APIs advertised in ApiVersions: those with a handler."""
        return [API_BY_KEY[key] for key in sorted(self.handlers)]

    def dispatch(self, header: RequestHeader, body: memoryview, client_host: str = ""):
        """The response body chunks, a Deferred of them, or ``None`` (no response).

        :param client_host: the client's address as Kafka shows it ("/127.0.0.1").

        :raises RequestRefused: unknown API, unsupported version, malformed body.
        """
        api = API_BY_KEY.get(header.api_key)
        if api is None or api.key not in self.handlers:
            raise RequestRefused(f"API key {header.api_key} is not served")
        version = header.api_version
        if api.key == ApiKey.API_VERSIONS and version > api.max_version:
            return [ApiVersionsResponse.build(api_versions_fallback(), 0)]
        if not api.supports(version):
            raise RequestRefused(f"{api.name} v{version} is not supported")
        try:
            if api.key == ApiKey.PRODUCE:
                request = decode_produce_request(body, version)
            else:
                request = api.request.parse(body, version)
        except ProtocolError as error:
            raise RequestRefused(str(error)) from None
        if api.key in self.with_client_host:
            result = self.handlers[api.key](header, request, client_host=client_host)
        else:
            result = self.handlers[api.key](header, request)
        if result is None:
            return None
        if isinstance(result, defer.Deferred):
            return result.addCallback(_encode, api, version)
        return _encode(result, api, version)


def _encode(response, api: Api, version: int) -> list:
    if response is None:
        raise RequestRefused(f"{api.name} handler gave no response")
    if api.key == ApiKey.FETCH:
        return encode_fetch_response(response, version)
    return [api.response.build(response, version)]
