"""The HTTP connector shared by the OpenAI and Anthropic dialects.

The relay's requests go through :class:`~.h11pool.H11Pool`, a lean HTTP/1.1 keep-alive
pool speaking h11 over Trio streams (the benchmark showed httpx's pool costs several
times more per request; see docs/performance.md). Model discovery and health checks use
one ``httpx.AsyncClient`` per instance. Both have connect and per-read timeouts and no
total deadline, so long streams are never cut by the proxy; transport exceptions are
mapped to :mod:`trioproxy.errors` here and in the pool, nowhere above.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
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
from .h11pool import H11Pool, H11Response

# Upstream connections per instance: one per stream in flight (HTTP/1.1), so this bounds
# concurrent requests to one backend; past it, requests queue for a free connection.
MAX_CONNECTIONS = 10_000
MAX_KEEPALIVE = 256
DISCOVERY_CONNECTIONS = 4


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


@asynccontextmanager
async def _fail(exc: UpstreamError) -> AsyncIterator[H11Response]:
    raise exc
    yield  # pragma: no cover - makes this a generator


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
        self.pool: H11Pool | None
        try:
            self.pool = H11Pool(
                self._base,
                max_connections=MAX_CONNECTIONS,
                max_keepalive=MAX_KEEPALIVE,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            )
        except ValueError:
            # An invalid base URL: the instance reports it (static_problems) and every
            # request to it fails as a connection failure.
            self.pool = None
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
            ),
            limits=httpx.Limits(max_connections=DISCOVERY_CONNECTIONS),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        """Close both pools' connections."""
        if self.pool is not None:
            await self.pool.aclose()
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

    def open(self, request: UpstreamRequest) -> AbstractAsyncContextManager[H11Response]:
        """POST ``request`` to the chat endpoint; see :class:`~.base.Connector`."""
        if self.pool is None:
            return _fail(UpstreamConnectFailed(f"invalid base URL {self._base!r}"))
        return self.pool.stream(
            "POST",
            self.dialect.chat_path,
            headers=self._headers(request.headers),
            body=request.body,
        )

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
