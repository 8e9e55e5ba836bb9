"""The embedded mock backend: every route of both APIs, no network, a deterministic reply.

Streams come in ``mock_chunks`` pieces with ``mock_chunk_delay`` seconds between events
(Trio's clock, so tests drive it with ``MockClock``), which makes demos, the activity
view and benchmarks show real in-flight requests without any upstream. The answers'
shapes are in :mod:`trioproxy.backends.mock_replies`. Like a real backend it answers a
body it cannot read with a 400 in the API's error shape; it never raises.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ..errors import BadRequest, error_body
from ..headers import Headers
from ..routes import BY_ENDPOINT, Endpoint, ProxyRoute
from ..settings import BackendSpec
from . import mock_replies as replies
from .base import UpstreamRequest

MOCK_MODELS = ("mock-model",)
REPLY = "Hello from trioproxy's mock backend: this deterministic reply is streamed in pieces."
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


def split_reply(text: str, pieces: int) -> list[str]:
    """``text`` cut into ``pieces`` parts (at least one) that join back to it."""
    pieces = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), pieces)
    out, start = [], 0
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


class _Chunks:
    """The body of a mock answer: ``chunks`` with ``delay`` seconds between them."""

    __slots__ = ("_chunks", "_delay", "_next")

    def __init__(self, chunks: list[bytes], delay: float) -> None:
        self._chunks = chunks
        self._delay = delay
        self._next = 0

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        index = self._next
        if index >= len(self._chunks):
            raise StopAsyncIteration
        if index and self._delay:
            await trio.sleep(self._delay)
        self._next = index + 1
        return self._chunks[index]


class _MockResponse:
    __slots__ = ("_chunks", "_delay", "headers", "status")

    def __init__(self, status: int, headers: Headers, chunks: list[bytes], delay: float) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._delay = delay

    def aiter_raw(self) -> _Chunks:
        return _Chunks(self._chunks, self._delay)


def _answer(
    route: ProxyRoute, payload: dict[str, Any], streaming: bool, pieces: list[str]
) -> list[bytes]:
    """The body chunks answering ``payload`` on ``route``: JSON, or the stream's events."""
    model = str(payload.get("model", MOCK_MODELS[0]))
    endpoint = route.endpoint
    if endpoint is Endpoint.CHAT_COMPLETIONS:
        if not streaming:
            return [replies.chat_message(model, REPLY)]
        options = payload.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            tokens = replies.estimate_tokens(payload.get("messages", []))
            return replies.chat_events(model, pieces, tokens)
        return replies.chat_events(model, pieces)
    if endpoint is Endpoint.RESPONSES:
        tokens = replies.estimate_tokens(payload.get("input", ""))
        if streaming:
            return replies.responses_events(model, pieces, tokens)
        return [replies.responses_message(model, REPLY, tokens)]
    if endpoint is Endpoint.COMPLETIONS:
        if streaming:
            return replies.completion_events(model, pieces)
        return [replies.completion_text(model, REPLY)]
    if endpoint is Endpoint.EMBEDDINGS:
        return [replies.embeddings(payload)]
    if endpoint is Endpoint.COUNT_TOKENS:
        return [replies.count_tokens(payload)]
    if streaming:
        return replies.messages_events(model, pieces)
    return [replies.messages_message(model, REPLY)]


class MockConnector:
    """Answers every route in-process; see the module docstring."""

    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec

    async def aclose(self) -> None:
        """Nothing to close; present for symmetry with the HTTP connectors."""

    async def list_models(self) -> list[str]:
        """The configured models, else ``mock-model``."""
        return list(self.spec.models or MOCK_MODELS)

    @asynccontextmanager
    async def open(self, request: UpstreamRequest) -> AsyncIterator[_MockResponse]:
        """Answer ``request``: 200 in the endpoint's shape, or 400 for an unreadable body."""
        route = BY_ENDPOINT[request.endpoint]
        try:
            payload = json.loads(request.body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            error = BadRequest("The mock backend needs a JSON object body.")
            yield _MockResponse(400, _JSON, [error_body(route.api, error)], 0.0)
            return
        pieces = split_reply(REPLY, self.spec.mock_chunks)
        chunks = _answer(route, payload, request.streaming, pieces)
        if request.streaming:
            yield _MockResponse(200, _SSE, chunks, self.spec.mock_chunk_delay)
        else:
            yield _MockResponse(200, _JSON, chunks, 0.0)
