"""What both directions share: checked access to the client's JSON, ids, stop reasons,
usage and the reasoning-effort scale.

Malformed client input raises :class:`~trioproxy.errors.BadRequest` naming the path of
the bad value (``messages[2].content[0].type``); a value that is well formed but has no
faithful counterpart raises :class:`UntranslatableField`; a backend answer that cannot be
read raises :class:`~trioproxy.errors.UpstreamProtocolError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import BadRequest, UpstreamProtocolError

# Claude Code puts this line first in its system prompt; only Anthropic's billing reads it,
# and its per-request hash would defeat an OpenAI-compatible backend's prefix cache.
BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"


class UntranslatableField(BadRequest):
    """400: a field of the request has no faithful counterpart in the backend's API."""

    code = "untranslatable_field"


def as_dict(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{path}: expected an object")
    return value


def as_list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"{path}: expected an array")
    return value


def as_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{path}: expected a string")
    return value


def untranslatable(path: str, what: object, target: str) -> UntranslatableField:
    """The 400 for ``what`` at ``path``, which the ``target`` API has no counterpart for."""
    return UntranslatableField(f"{path}: {what} has no counterpart in the {target} API")


def dumps_text(value: object) -> str:
    return orjson.dumps(value).decode()


def loads_upstream(body: bytes, what: str) -> Any:
    """The backend's JSON ``body``; UpstreamProtocolError if it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(f"the backend's {what} is not JSON") from None


def new_suffix() -> str:
    return uuid.uuid4().hex[:24]


def message_id(chat_id: object) -> str:
    """``msg_…`` for a chat completion's ``chatcmpl-…`` (a fresh one if it has none)."""
    if isinstance(chat_id, str) and chat_id:
        return "msg_" + chat_id.removeprefix("chatcmpl-")
    return "msg_" + new_suffix()


def chat_id(msg_id: object) -> str:
    """``chatcmpl-…`` for a message's ``msg_…`` (a fresh one if it has none)."""
    if isinstance(msg_id, str) and msg_id:
        return "chatcmpl-" + msg_id.removeprefix("msg_")
    return "chatcmpl-" + new_suffix()


STOP_REASON_FOR_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
FINISH_FOR_STOP_REASON = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def stop_reason(finish_reason: object, *, tool_calls: bool) -> str:
    """The Messages ``stop_reason`` for a chat ``finish_reason``.

    Some OpenAI-compatible servers say ``stop`` after a tool call; Anthropic clients wait
    for ``tool_use`` before they run the tools, so a tool call makes it ``tool_use``.
    """
    if tool_calls and finish_reason in (None, "stop"):
        return "tool_use"
    if isinstance(finish_reason, str):
        return STOP_REASON_FOR_FINISH.get(finish_reason, "end_turn")
    return "end_turn"


def finish_reason(stop: object) -> str:
    """The chat ``finish_reason`` for a Messages ``stop_reason``."""
    if isinstance(stop, str):
        return FINISH_FOR_STOP_REASON.get(stop, "stop")
    return "stop"


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def messages_usage(usage: object) -> dict[str, Any]:
    """Messages ``usage`` for a chat ``usage``.

    ``prompt_tokens`` counts cached tokens too; Anthropic's ``input_tokens`` does not,
    so the cached ones move to ``cache_read_input_tokens``.
    """
    if not isinstance(usage, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    prompt = _count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    out: dict[str, Any] = {
        "input_tokens": max(0, prompt - _count(cached)),
        "output_tokens": _count(usage.get("completion_tokens")),
    }
    if isinstance(cached, int):
        out["cache_read_input_tokens"] = cached
    completion = usage.get("completion_tokens_details")
    reasoning = completion.get("reasoning_tokens") if isinstance(completion, dict) else None
    if isinstance(reasoning, int):
        out["output_tokens_details"] = {"thinking_tokens": reasoning}
    return out


def chat_usage(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Chat ``usage`` for a Messages ``usage`` (cache reads and writes are prompt tokens)."""
    usage = usage or {}
    cache_read = usage.get("cache_read_input_tokens")
    prompt = (
        _count(usage.get("input_tokens"))
        + _count(cache_read)
        + _count(usage.get("cache_creation_input_tokens"))
    )
    completion = _count(usage.get("output_tokens"))
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if isinstance(cache_read, int):
        out["prompt_tokens_details"] = {"cached_tokens": cache_read}
    details = usage.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
    if isinstance(thinking, int):
        out["completion_tokens_details"] = {"reasoning_tokens": thinking}
    return out


def reasoning_text(message: Mapping[str, Any]) -> str:
    """The reasoning an OpenAI-compatible server sent (vLLM, DeepSeek, llama.cpp:
    ``reasoning_content``; OpenRouter, Ollama: ``reasoning``), or ``""``."""
    text = message.get("reasoning_content")
    if isinstance(text, str) and text:
        return text
    text = message.get("reasoning")
    return text if isinstance(text, str) else ""


# Anthropic's effort scale has two steps above `high`; OpenAI-compatible servers take at
# most `high` (OpenAI's own newest models take more, but vLLM rejects anything else).
EFFORT_FOR_OPENAI = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}
# budget_tokens below the first bound is `low`, below the second `medium`, else `high`.
EFFORT_BUDGET_BOUNDS = (4096, 16384)
# The thinking budget an OpenAI `reasoning_effort` asks of an Anthropic backend.
THINKING_BUDGET = {"low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768, "max": 32768}
MIN_THINKING_BUDGET = 1024


def effort_for_budget(budget: int) -> str:
    low, medium = EFFORT_BUDGET_BOUNDS
    if budget < low:
        return "low"
    return "medium" if budget < medium else "high"
