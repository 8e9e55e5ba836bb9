"""The proxy's route table: every client path it relays, declared once (pure).

Each row says, for one client path: the API it speaks (which also decides the shape of
every error answered on it), the endpoint name the activity view reports, the upstream
path for each backend dialect (relative to the instance's ``base_url``; absent: that
dialect does not serve it), and whether ``"stream": true`` is honoured. The lean ASGI
dispatcher (:mod:`trioproxy.app`), the proxy handler (:mod:`trioproxy.proxy`), routing's
error messages (:mod:`trioproxy.routing`) and the connectors all read this table; a new
route is one row.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .errors import Api, StreamShape


class Endpoint(enum.Enum):
    """What a proxied request asks for; reported per connection as ``endpoint``."""

    CHAT_COMPLETIONS = "chat.completions"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    COMPLETIONS = "completions"
    MESSAGES = "messages"
    COUNT_TOKENS = "count_tokens"


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """One client path the proxy relays (a row of :data:`ROUTES`).

    Attributes:
        path: the client's path, e.g. ``/v1/chat/completions``.
        api: the API the client speaks on it, and the shape of its errors.
        endpoint: the endpoint name in the diagnostics.
        upstream: the upstream path per backend API, appended to ``base_url`` (which
            includes ``/v1`` for OpenAI-style backends and not for Anthropic-style ones).
        streams: whether a request may ask for a Server-Sent Events stream.
        stream_errors: the shape of the error event that ends a started stream.
    """

    path: str
    api: Api
    endpoint: Endpoint
    upstream: Mapping[Api, str]
    streams: bool
    stream_errors: StreamShape

    def upstream_path(self, backend_api: Api) -> str | None:
        """The path to POST to on a backend speaking ``backend_api``; None if none."""
        return self.upstream.get(backend_api)


def _route(
    path: str,
    api: Api,
    endpoint: Endpoint,
    *,
    streams: bool,
    stream_errors: StreamShape,
    openai: str | None = None,
    anthropic: str | None = None,
) -> ProxyRoute:
    upstream = {Api.OPENAI: openai, Api.ANTHROPIC: anthropic}
    paths = MappingProxyType({k: v for k, v in upstream.items() if v is not None})
    return ProxyRoute(path, api, endpoint, paths, streams, stream_errors)


_OPENAI, _RESPONSES, _ANTHROPIC = StreamShape.OPENAI, StreamShape.RESPONSES, StreamShape.ANTHROPIC

ROUTES: tuple[ProxyRoute, ...] = (
    _route(
        "/v1/chat/completions",
        Api.OPENAI,
        Endpoint.CHAT_COMPLETIONS,
        streams=True,
        stream_errors=_OPENAI,
        openai="/chat/completions",
    ),
    _route(
        "/v1/responses",
        Api.OPENAI,
        Endpoint.RESPONSES,
        streams=True,
        stream_errors=_RESPONSES,
        openai="/responses",
    ),
    _route(
        "/v1/embeddings",
        Api.OPENAI,
        Endpoint.EMBEDDINGS,
        streams=False,
        stream_errors=_OPENAI,
        openai="/embeddings",
    ),
    _route(
        "/v1/completions",
        Api.OPENAI,
        Endpoint.COMPLETIONS,
        streams=True,
        stream_errors=_OPENAI,
        openai="/completions",
    ),
    _route(
        "/v1/messages",
        Api.ANTHROPIC,
        Endpoint.MESSAGES,
        streams=True,
        stream_errors=_ANTHROPIC,
        anthropic="/v1/messages",
    ),
    _route(
        "/v1/messages/count_tokens",
        Api.ANTHROPIC,
        Endpoint.COUNT_TOKENS,
        streams=False,
        stream_errors=_ANTHROPIC,
        anthropic="/v1/messages/count_tokens",
    ),
)

#: The table by client path.
BY_PATH: Mapping[str, ProxyRoute] = MappingProxyType({r.path: r for r in ROUTES})
#: Endpoints whose meaning both APIs share, for pointing a client at the other path.
_COUNTERPARTS = {
    Endpoint.CHAT_COMPLETIONS: Endpoint.MESSAGES,
    Endpoint.MESSAGES: Endpoint.CHAT_COMPLETIONS,
}
#: The table by endpoint.
BY_ENDPOINT: Mapping[Endpoint, ProxyRoute] = MappingProxyType({r.endpoint: r for r in ROUTES})


def counterpart(route: ProxyRoute) -> ProxyRoute | None:
    """The route of the other API that serves the same purpose, if there is one."""
    other = _COUNTERPARTS.get(route.endpoint)
    return BY_ENDPOINT[other] if other is not None else None


def upstream_route(route: ProxyRoute, backend_api: Api) -> ProxyRoute | None:
    """The route a backend speaking ``backend_api`` is called on for a ``route`` request.

    ``route`` itself when the backend speaks it; else the counterpart of the other API,
    which the request is translated to (Messages ⇄ Chat Completions); else None.
    """
    if route.upstream_path(backend_api) is not None:
        return route
    other = counterpart(route)
    if other is not None and other.upstream_path(backend_api) is not None:
        return other
    return None


def api_of_path(path: str) -> Api:
    """The API whose error shape answers ``path``: Anthropic's under ``/v1/messages``.

    For paths no route serves (404, 405): clients of the Messages API parse Anthropic's
    error shape, everyone else OpenAI's.
    """
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return Api.ANTHROPIC
    route = BY_PATH.get(path)
    return route.api if route is not None else Api.OPENAI
