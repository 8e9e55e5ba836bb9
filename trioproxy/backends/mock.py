"""The embedded mock backend: both APIs, no network, a deterministic reply.

Streams come in ``mock_chunks`` pieces with ``mock_chunk_delay`` seconds between them
(Trio's clock, so tests drive it with ``MockClock``), which makes demos, the activity
view and benchmarks show real in-flight requests without any upstream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from ..errors import Api, BadRequest
from ..settings import BackendSpec
from .base import Headers, UpstreamRequest

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


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def openai_events(model: str, pieces: list[str]) -> list[bytes]:
    """The SSE events of an OpenAI chat completion stream of ``pieces``."""
    base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model}
    events = [
        _sse(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
        )
    ]
    events += [
        _sse({**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]})
        for p in pieces
    ]
    events.append(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_events(model: str, pieces: list[str]) -> list[bytes]:
    """The SSE events of an Anthropic Messages stream of ``pieces``."""
    usage = {"input_tokens": 1, "output_tokens": len(pieces)}
    message: dict[str, Any] = {
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 0},
    }
    events = [
        _sse({"type": "message_start", "message": message}, "message_start"),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
    ]
    events += [
        _sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
            "content_block_delta",
        )
        for p in pieces
    ]
    events += [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": usage,
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return events


def openai_message(model: str, text: str) -> bytes:
    """An OpenAI chat completion answering ``text``."""
    return json.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()


def anthropic_message(model: str, text: str) -> bytes:
    """An Anthropic message answering ``text``."""
    return json.dumps(
        {
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    ).encode()


@dataclass(slots=True)
class _MockResponse:
    status: int
    headers: Headers
    chunks: list[bytes]
    delay: float

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if i and self.delay:
                await trio.sleep(self.delay)
            yield chunk


class MockConnector:
    """Answers both APIs in-process; see the module docstring."""

    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec

    async def aclose(self) -> None:
        """Nothing to close; present for symmetry with the HTTP connectors."""

    async def list_models(self) -> list[str]:
        """The configured models, else ``mock-model``."""
        return list(self.spec.models or MOCK_MODELS)

    @asynccontextmanager
    async def open(
        self, request: UpstreamRequest, *, on_wait: Callable[[], None] | None = None
    ) -> AsyncIterator[_MockResponse]:
        """Answer ``request``; raises BadRequest when its body is not a JSON object.

        A streamed answer waits between chunks, so ``on_wait`` is called at once.
        """
        if on_wait is not None and request.streaming and self.spec.mock_chunk_delay:
            on_wait()
        try:
            payload = json.loads(request.body)
            model = str(payload.get("model", MOCK_MODELS[0]))
        except (ValueError, AttributeError):
            raise BadRequest("The mock backend needs a JSON object body.") from None
        pieces = split_reply(REPLY, self.spec.mock_chunks)
        if request.streaming:
            events = (openai_events if request.api is Api.OPENAI else anthropic_events)(
                model, pieces
            )
            yield _MockResponse(200, _SSE, events, self.spec.mock_chunk_delay)
        else:
            make = openai_message if request.api is Api.OPENAI else anthropic_message
            yield _MockResponse(200, _JSON, [make(model, REPLY)], 0.0)
