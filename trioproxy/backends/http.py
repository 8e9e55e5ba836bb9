"""The HTTP connector shared by the OpenAI and Anthropic dialects.

Every request to the backend — the relay's, model discovery's and the health checks' —
goes through one :class:`~.h11pool.H11Pool` per instance, a lean HTTP/1.1 keep-alive
pool speaking h11 over Trio streams (the benchmark showed httpx's pool costs several
times more per request; see docs/performance.md). It has connect and per-read timeouts
and no total deadline, so long streams are never cut by the proxy, and it raises
:mod:`trioproxy.errors` only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from ..errors import Api, UpstreamConnectFailed, UpstreamProtocolError
from ..headers import Headers
from ..settings import BackendSpec
from ..urls import shown_url
from .base import UpstreamRequest
from .h11pool import H11Pool, H11Response

# Upstream connections per instance: one per stream in flight (HTTP/1.1), so this bounds
# concurrent requests to one backend; past it, requests queue for a free connection.
MAX_CONNECTIONS = 10_000
MAX_KEEPALIVE = 256


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between OpenAI-style and Anthropic-style backends.

    The path of each proxied endpoint is in the route table (:mod:`trioproxy.routes`),
    keyed by ``api``.
    """

    api: Api
    models_path: str
    auth_headers: Callable[[str | None], list[tuple[bytes, bytes]]]
    default_headers: tuple[tuple[bytes, bytes], ...]
    parse_models: Callable[[Any], list[str]]


def model_ids(payload: Any) -> list[str]:
    """The ids of a ``{"data": [{"id": ...}, ...]}`` model list (both APIs use it)."""
    return [str(item["id"]) for item in payload["data"]]


class HttpConnector:
    """An OpenAI- or Anthropic-style backend reached over HTTP/1.1."""

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
                name=spec.name,
            )
        except ValueError:
            # An invalid base URL: the instance reports it (static_problems) and every
            # request to it fails as a connection failure.
            self.pool = None

    async def aclose(self) -> None:
        """Close the pool's connections."""
        if self.pool is not None:
            await self.pool.aclose()

    def _stream(
        self,
        method: str,
        path: str,
        headers: Headers,
        body: bytes = b"",
    ) -> AbstractAsyncContextManager[H11Response]:
        if self.pool is None:
            raise UpstreamConnectFailed(
                f"invalid base URL {shown_url(self._base)!r}", backend=self.spec.name
            )
        present = {k for k, _ in headers}
        out = list(headers)
        out.extend(h for h in self.dialect.default_headers if h[0] not in present)
        out.extend(self._auth)
        if b"accept-encoding" not in present:
            # Bodies are relayed undecoded, so never ask for an encoding the client did not.
            out.append((b"accept-encoding", b"identity"))
        return self.pool.stream(method, path, headers=out, body=body)

    def open(self, request: UpstreamRequest) -> AbstractAsyncContextManager[H11Response]:
        """POST ``request`` to its path; see :class:`~.base.Connector`.

        Raises:
            UpstreamError: here for an invalid base URL, else when the block is entered;
                its ``backend`` is this instance's name.
        """
        return self._stream("POST", request.path, request.headers, request.body)

    async def list_models(self) -> list[str]:
        """The models the backend lists.

        Raises:
            UpstreamError: unreachable, timed out, a non-2xx answer or an unreadable list.
        """
        async with self._stream("GET", self.dialect.models_path, []) as response:
            body = b"".join([chunk async for chunk in response.aiter_raw()])
        # Name the request as the backend saw it: the base URL's path included.
        target = f"GET {self.pool.path_of(self.dialect.models_path) if self.pool else ''}"
        if response.status != 200:
            raise UpstreamProtocolError(
                f"{target} answered HTTP {response.status}", backend=self.spec.name
            )
        try:
            return self.dialect.parse_models(json.loads(body))
        except (ValueError, KeyError, TypeError):
            raise UpstreamProtocolError(
                f"{target} did not answer a model list", backend=self.spec.name
            ) from None
