"""The HTTP connector shared by the OpenAI and Anthropic dialects, on httpx.

One ``httpx.AsyncClient`` per instance, with explicit pool limits and connect / per-read
timeouts and no total deadline, so long streams are never cut by the proxy. httpx
exceptions are mapped to :mod:`trioproxy.errors` here and nowhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import (
    Api,
    UpstreamConnectFailed,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from ..settings import BackendSpec
from .base import Headers, UpstreamRequest

MAX_CONNECTIONS = 1000
MAX_KEEPALIVE = 100


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between OpenAI-style and Anthropic-style backends."""

    api: Api
    chat_path: str
    models_path: str
    auth_headers: Callable[[str | None], list[tuple[bytes, bytes]]]
    default_headers: tuple[tuple[bytes, bytes], ...]
    parse_models: Callable[[Any], list[str]]


def model_ids(payload: Any) -> list[str]:
    """The ids of a ``{"data": [{"id": ...}, ...]}`` model list (both APIs use it)."""
    return [str(item["id"]) for item in payload["data"]]


def map_error(exc: httpx.HTTPError, *, started: bool, name: str) -> UpstreamError:
    """The proxy error for an httpx failure; ``started``: a response had begun."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return UpstreamConnectTimeout(f"Timed out trying to connect to backend '{name}'.")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"Timed out waiting for backend '{name}' to answer.")
    if started:
        return UpstreamProtocolError(f"Backend '{name}' broke off its response.")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return UpstreamUnreachable(f"Backend '{name}' closed the connection without answering.")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return UpstreamUnreachable(f"Backend '{name}' has an invalid URL.")
    return UpstreamConnectFailed(f"Cannot connect to backend '{name}'.")


class _Response:
    __slots__ = ("_name", "_response", "headers", "status")

    def __init__(self, response: httpx.Response, name: str) -> None:
        self._response = response
        self._name = name
        self.status = response.status_code
        self.headers: Headers = [(k.lower(), v) for k, v in response.headers.raw]

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise map_error(exc, started=True, name=self._name) from exc


class HttpConnector:
    """An OpenAI- or Anthropic-style backend reached over HTTP with httpx."""

    def __init__(
        self,
        spec: BackendSpec,
        dialect: Dialect,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.spec = spec
        self.dialect = dialect
        self._base = spec.base_url.rstrip("/")
        self._auth = dialect.auth_headers(spec.api_key.value if spec.api_key else None)
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
            ),
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE
            ),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        """Close the pool's connections."""
        await self.client.aclose()

    def _headers(self, extra: Headers) -> list[tuple[bytes, bytes]]:
        headers = list(extra)
        present = {k for k, _ in headers}
        headers.extend(h for h in self.dialect.default_headers if h[0] not in present)
        headers.extend(self._auth)
        if b"accept-encoding" not in present:
            # Bodies are relayed undecoded, so never ask for an encoding the client did not.
            headers.append((b"accept-encoding", b"identity"))
        return headers

    @asynccontextmanager
    async def open(self, request: UpstreamRequest) -> AsyncIterator[_Response]:
        """POST ``request`` to the chat endpoint; see :class:`~.base.Connector`."""
        http_request = self.client.build_request(
            "POST",
            self._base + self.dialect.chat_path,
            headers=self._headers(request.headers),
            content=request.body,
        )
        try:
            response = await self.client.send(http_request, stream=True)
        except httpx.HTTPError as exc:
            raise map_error(exc, started=False, name=self.spec.name) from exc
        try:
            yield _Response(response, self.spec.name)
        finally:
            await response.aclose()

    async def list_models(self) -> list[str]:
        """The models the backend lists.

        Raises:
            UpstreamError: unreachable, timed out, a non-2xx answer or an unreadable list.
        """
        try:
            response = await self.client.get(
                self._base + self.dialect.models_path,
                headers=self._headers([]),
            )
        except httpx.HTTPError as exc:
            raise map_error(exc, started=False, name=self.spec.name) from exc
        if response.status_code != 200:
            raise UpstreamProtocolError(
                f"GET {self.dialect.models_path} answered HTTP {response.status_code}"
            )
        try:
            return self.dialect.parse_models(response.json())
        except (ValueError, KeyError, TypeError):
            raise UpstreamProtocolError(
                f"GET {self.dialect.models_path} did not answer a model list"
            ) from None
