"""The one interface the relay uses to reach a backend, and each instance's health state.

A backend connector turns an :class:`UpstreamRequest` into an
:class:`UpstreamResponse` whose body is an async iterator of raw body bytes (after HTTP
framing, before content decoding). ``open`` is an async context manager: the response,
and the connection under it, is closed when the block exits, however it exits —
completion, exception or cancellation. Errors surface as :class:`trioproxy.errors.UpstreamError`
subclasses; no transport exception escapes a connector.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from ..headers import Headers
from ..routes import Endpoint


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What to send upstream: a POST of ``body`` to ``path`` under the instance's base URL.

    ``path`` is the upstream path for the instance's dialect, with the client's query
    string; ``endpoint`` says what is asked for (the mock answers by it).
    """

    endpoint: Endpoint
    path: str
    body: bytes
    headers: Headers
    streaming: bool


class UpstreamResponse(Protocol):
    """Status, headers and the raw body stream of a backend's answer."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; raises ``UpstreamError`` on a cut or timeout.

        The iterator holds nothing that needs closing: one abandoned mid-body is released
        with the response's block.
        """
        ...


class Connector(Protocol):
    """A backend instance as the relay sees it."""

    def open(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamResponse]:
        """Send ``request``; the response is usable inside the block and closed after it."""
        ...
