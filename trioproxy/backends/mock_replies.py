"""The mock backend's answers, one per endpoint, in each API's real shape (pure).

Every function returns the body bytes (a JSON document) or the list of Server-Sent Events
a real backend would send for the same request, with the deterministic reply cut into
``pieces``. The shapes follow the official SDKs' types, so ``openai`` and ``anthropic``
clients — and the tools built on them, the Codex CLI among them — accept them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from typing import Any

#: Dimension of the mock's embedding vectors (unless the request asks for ``dimensions``).
EMBEDDING_DIMENSIONS = 16
_CREATED = 0


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def sse(data: Any, event: str | None = None) -> bytes:
    """One Server-Sent Event: an optional ``event:`` line and a compact JSON ``data:``."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def estimate_tokens(payload: Any) -> int:
    """A deterministic token estimate of a request: a quarter of its JSON size, at least 1."""
    return max(1, math.ceil(len(_json(payload)) / 4))


def output_tokens(text: str) -> int:
    """The mock's count of tokens in ``text``: one per four characters, at least 1."""
    return max(1, math.ceil(len(text) / 4))


# -- OpenAI Chat Completions --------------------------------------------------------------


def chat_events(model: str, pieces: list[str], input_tokens: int | None = None) -> list[bytes]:
    """The SSE events of an OpenAI chat completion stream of ``pieces``.

    With ``input_tokens`` (the request asked for ``stream_options.include_usage``), every
    chunk carries ``"usage": null`` and a last chunk with no choices carries the usage,
    as OpenAI sends them.
    """
    base: dict[str, Any] = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
    }
    if input_tokens is not None:
        base["usage"] = None
    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    events = [sse({**base, "choices": [first]})]
    events += [
        sse({**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]})
        for p in pieces
    ]
    events.append(sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if input_tokens is not None:
        out = output_tokens("".join(pieces))
        usage = {
            "prompt_tokens": input_tokens,
            "completion_tokens": out,
            "total_tokens": input_tokens + out,
        }
        events.append(sse({**base, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return events


def chat_message(model: str, text: str) -> bytes:
    """An OpenAI chat completion answering ``text``."""
    return _json(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": _CREATED,
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
    )


# -- OpenAI Responses -----------------------------------------------------------------------

_RESPONSE_ID = "resp_mock"
_ITEM_ID = "msg_mock"


def _response(model: str, status: str, output: list[Any], usage: Any) -> dict[str, Any]:
    return {
        "id": _RESPONSE_ID,
        "object": "response",
        "created_at": _CREATED,
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
    }


def _response_usage(input_tokens: int, text: str) -> dict[str, Any]:
    out = output_tokens(text)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + out,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def _message_item(status: str, content: list[Any]) -> dict[str, Any]:
    return {
        "type": "message",
        "id": _ITEM_ID,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def responses_message(model: str, text: str, input_tokens: int = 1) -> bytes:
    """A completed OpenAI Responses API ``response`` object answering ``text``."""
    output = [_message_item("completed", [_text_part(text)])]
    return _json(_response(model, "completed", output, _response_usage(input_tokens, text)))


def responses_events(model: str, pieces: list[str], input_tokens: int = 1) -> list[bytes]:
    """The event sequence of a streamed Responses API answer of ``pieces``.

    ``response.created``, ``response.in_progress``, ``response.output_item.added``,
    ``response.content_part.added``, one ``response.output_text.delta`` per piece,
    ``response.output_text.done``, ``response.content_part.done``,
    ``response.output_item.done`` and ``response.completed``, each an ``event:`` line and
    its ``data:`` with a ``sequence_number``.
    """
    text = "".join(pieces)
    where = {"item_id": _ITEM_ID, "output_index": 0, "content_index": 0}
    done_item = _message_item("completed", [_text_part(text)])
    bodies: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(model, "in_progress", [], None)},
        {"type": "response.in_progress", "response": _response(model, "in_progress", [], None)},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": _message_item("in_progress", []),
        },
        {"type": "response.content_part.added", **where, "part": _text_part("")},
        *(
            {"type": "response.output_text.delta", **where, "delta": p, "logprobs": []}
            for p in pieces
        ),
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": _text_part(text)},
        {"type": "response.output_item.done", "output_index": 0, "item": done_item},
        {
            "type": "response.completed",
            "response": _response(
                model, "completed", [done_item], _response_usage(input_tokens, text)
            ),
        },
    ]
    return [
        sse({**body, "sequence_number": number}, body["type"]) for number, body in enumerate(bodies)
    ]


# -- OpenAI legacy completions and embeddings -----------------------------------------------


def completion_text(model: str, text: str) -> bytes:
    """A legacy ``text_completion`` answering ``text``."""
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
    tokens = output_tokens(text)
    return _json(
        {
            "id": "cmpl-mock",
            "object": "text_completion",
            "created": _CREATED,
            "model": model,
            "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1},
        }
    )


def completion_events(model: str, pieces: list[str]) -> list[bytes]:
    """The SSE events of a streamed legacy completion of ``pieces``, ending ``[DONE]``."""
    base = {"id": "cmpl-mock", "object": "text_completion", "created": _CREATED, "model": model}
    events = [
        sse(
            {
                **base,
                "choices": [{"text": p, "index": 0, "logprobs": None, "finish_reason": None}],
            }
        )
        for p in pieces
    ]
    last = {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}
    events.append(sse({**base, "choices": [last]}))
    events.append(b"data: [DONE]\n\n")
    return events


def embedding_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector for ``text``: the same text always gives the same vector."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw.extend((byte - 127.5) / 127.5 for byte in digest)
        counter += 1
    vector = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _embedding_inputs(value: Any) -> list[str]:
    """The inputs of an embeddings request, each as text (token arrays by their JSON)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [_json(value).decode()]  # one input given as token ids
    if isinstance(value, list):
        return [v if isinstance(v, str) else _json(v).decode() for v in value]
    return [_json(value).decode()]


def embeddings(payload: dict[str, Any]) -> bytes:
    """The ``list`` of embeddings for the request ``payload``, one per input.

    ``encoding_format: "base64"`` (what the openai SDK asks for by default) gives each
    vector as base64 of little-endian float32s, as OpenAI does.
    """
    dimensions = payload.get("dimensions")
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        dimensions = EMBEDDING_DIMENSIONS
    as_base64 = payload.get("encoding_format") == "base64"
    inputs = _embedding_inputs(payload.get("input", ""))
    data = []
    for index, text in enumerate(inputs):
        vector = embedding_vector(text, dimensions)
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(output_tokens(text) for text in inputs)
    return _json(
        {
            "object": "list",
            "data": data,
            "model": str(payload.get("model", "")),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


# -- Anthropic Messages --------------------------------------------------------------------


def messages_events(model: str, pieces: list[str]) -> list[bytes]:
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
    block_start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    events = [
        sse({"type": "message_start", "message": message}, "message_start"),
        sse(block_start, "content_block_start"),
    ]
    events += [
        sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
            "content_block_delta",
        )
        for p in pieces
    ]
    events += [
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": usage,
            },
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return events


def messages_message(model: str, text: str) -> bytes:
    """An Anthropic message answering ``text``."""
    return _json(
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
    )


def count_tokens(payload: dict[str, Any]) -> bytes:
    """``{"input_tokens": N}``: the deterministic estimate of what the request would cost."""
    counted = {k: payload[k] for k in ("system", "messages", "tools") if k in payload}
    return _json({"input_tokens": estimate_tokens(counted)})
