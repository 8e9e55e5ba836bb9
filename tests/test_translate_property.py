"""Properties of the stream translators, over generated streams (hypothesis).

For a generated answer the test writes both forms a backend could send: the
non-streamed JSON and the stream, each event written with arbitrary line endings
(``\\n``, ``\\r\\n``, ``\\r``), comments, ``id:`` lines, data split over several
``data:`` lines, and the whole split at arbitrary byte points. Then:

- the translated stream, accumulated by the client SDK's own accumulator, equals the
  translated non-streamed answer, validated by the same SDK's type;
- the translation does not depend on where the bytes were split;
- nothing is held back: each time a complete upstream event has been fed, what the
  client received so far shows exactly the text, reasoning and tool arguments of the
  upstream events so far.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from anthropic.types import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion

from tests.translate_helpers import (
    AnthropicReader,
    OpenAIReader,
    accumulate_anthropic,
    accumulate_openai,
    completion_view,
    message_view,
    translate_stream,
)
from trioproxy.errors import Api
from trioproxy.translate import stream_translator, translate_response

CREATED = 1700000000
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=6)
IDS = st.text(string.ascii_letters + string.digits, min_size=1, max_size=8)
NAMES = st.sampled_from(["Bash", "Read", "weather", "get_time"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
ARGUMENTS = st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4)
ENDINGS = ["\n", "\r\n", "\r"]


@st.composite
def pieces_of(draw: st.DrawFn, text: str) -> list[str]:
    """``text`` cut at arbitrary character positions (no piece empty)."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=4))))
    cuts = [c for c in cuts if 0 < c < len(text)]
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@dataclass
class Case:
    """A generated answer: its upstream events, their bytes, and the non-streamed form."""

    payloads: list[Any]  # each upstream event's data, "[DONE]" as a string
    data: bytes  # the whole upstream body
    ends: list[int]  # where each event's bytes end in ``data``
    pieces: list[bytes]  # ``data`` split at arbitrary points
    answer: bytes  # the same answer, not streamed
    request: dict[str, Any]


@st.composite
def written(draw: st.DrawFn, events: list[tuple[str | None, Any]]) -> tuple[bytes, list[int]]:
    """The bytes of ``events`` (name, data) as a server might write them: each event with
    its own line ending, and perhaps a comment, an ``id:`` line, its data over several
    ``data:`` lines, ``data:`` without the space."""
    out: list[bytes] = []
    ends: list[int] = []
    size = 0
    for name, payload in events:
        ending, flags = draw(st.tuples(st.sampled_from(ENDINGS), st.integers(0, 31)))
        lines = [": keep-alive"] if flags & 1 else []
        if name is not None:
            lines.append(f"event: {name}")
        if flags & 2:
            lines.append(f"id: {size}")
        prefix = "data:" if flags & 4 else "data: "
        if payload == "[DONE]":
            lines.append(prefix + "[DONE]")
        elif flags & 8:
            lines += [prefix + part for part in json.dumps(payload, indent=1).splitlines()]
        else:
            lines.append(prefix + json.dumps(payload, ensure_ascii=not flags & 16))
        text = "".join(line + ending for line in [*lines, ""]).encode()
        out.append(text)
        size += len(text)
        ends.append(size)
    return b"".join(out), ends


@st.composite
def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


# -- chat completion streams -------------------------------------------------------------


@st.composite
def chat_cases(draw: st.DrawFn) -> Case:
    chat_id = "chatcmpl-" + draw(IDS)
    model = draw(st.sampled_from(["qwen3-coder", "gpt-4o"]))
    reasoning = draw(st.lists(TEXT, max_size=3))
    texts = draw(st.lists(TEXT, max_size=4))
    calls = []
    for k in range(draw(st.integers(0, 3))):
        arguments = json.dumps(draw(ARGUMENTS), ensure_ascii=draw(st.booleans()))
        calls.append((f"call_{k}_{draw(IDS)}", draw(NAMES), draw(pieces_of(arguments))))
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
    usage: dict[str, Any] | None = None
    if draw(st.booleans()):
        prompt, completion = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**5))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if draw(st.booleans()):
            usage["prompt_tokens_details"] = {"cached_tokens": draw(st.integers(0, prompt))}
        if draw(st.booleans()):
            usage["completion_tokens_details"] = {
                "reasoning_tokens": draw(st.integers(0, completion))
            }

    def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None) -> dict[str, Any]:
        choices = (
            [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        )
        return {
            "id": chat_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": choices,
        }

    deltas: list[dict[str, Any]] = (
        [{"role": "assistant", "content": ""}] if draw(st.booleans()) else []
    )
    deltas += [{"reasoning_content": r} for r in reasoning]
    deltas += [{"content": t} for t in texts]
    fragments: list[list[dict[str, Any]]] = []
    for k, (call_id, name, parts) in enumerate(calls):
        first = {
            "index": k,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": parts[0]},
        }
        fragments.append([first] + [{"index": k, "function": {"arguments": p}} for p in parts[1:]])
    if draw(st.booleans()):  # interleave the calls' fragments, round robin
        order = [
            f
            for row in range(max(map(len, fragments), default=0))
            for f in (fs[row] for fs in fragments if row < len(fs))
        ]
    else:
        order = [f for fs in fragments for f in fs]
    while order:  # one or two fragments per chunk
        take = draw(st.integers(1, 2))
        deltas.append({"tool_calls": order[:take]})
        order = order[take:]
    payloads: list[Any] = [chunk(d) for d in deltas]
    payloads.append(chunk({}, finish))
    if usage is not None:
        payloads.append({**chunk(None), "usage": usage})
    payloads.append("[DONE]")

    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": "".join(p)}}
            for i, n, p in calls
        ]
    answer = {
        "id": chat_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if usage is not None:
        answer["usage"] = usage
    data, ends = draw(written([(None, p) for p in payloads]))
    return Case(
        payloads, data, ends, draw(split(data)), json.dumps(answer).encode(), {"model": model}
    )


@PROPERTY
@given(chat_cases())
def test_a_chat_stream_accumulates_to_the_translated_answer(case: Case) -> None:
    whole = translate_stream(Api.ANTHROPIC, [case.data], case.request)
    assert translate_stream(Api.ANTHROPIC, case.pieces, case.request) == whole
    expected = Message.model_validate_json(translate_response(Api.ANTHROPIC, case.answer))
    assert message_view(accumulate_anthropic(whole)) == message_view(expected)


def _chat_so_far(payloads: list[Any]) -> tuple[str, str, list[str]]:
    """The text, reasoning and tool arguments (in call order) of chat chunks."""
    text, reasoning = "", ""
    arguments: dict[Any, str] = {}
    for payload in payloads:
        for choice in payload["choices"] if isinstance(payload, dict) else []:
            delta = choice["delta"]
            text += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or []:
                arguments[call["index"]] = (
                    arguments.get(call["index"], "") + call["function"]["arguments"]
                )
    return text, reasoning, [arguments[k] for k in sorted(arguments)]


def _anthropic_so_far(reader: AnthropicReader) -> tuple[str, str, list[str]]:
    if reader.snapshot is None:
        return "", "", []
    text = "".join(b.text for b in reader.snapshot.content if b.type == "text")
    thinking = "".join(b.thinking for b in reader.snapshot.content if b.type == "thinking")
    tools = [
        reader.json_bufs.get(i, b"").decode()
        for i, b in enumerate(reader.snapshot.content)
        if b.type == "tool_use"
    ]
    return text, thinking, tools


@PROPERTY
@given(chat_cases())
def test_each_complete_chat_event_reaches_the_anthropic_client_at_once(case: Case) -> None:
    cuts = sorted({*case.ends, *accumulate(len(p) for p in case.pieces)})
    translator = stream_translator(Api.ANTHROPIC, case.request)
    reader = AnthropicReader()
    fed = 0
    for cut in cuts:
        reader.read(translator.feed(case.data[fed:cut]))
        fed = cut
        if cut in case.ends:
            complete = case.ends.index(cut) + 1
            assert _anthropic_so_far(reader) == _chat_so_far(case.payloads[:complete])
            assert reader.snapshot is not None
    assert reader.types[-1] == "message_stop"
    assert translator.done
    assert translator.finish() == b""


# -- Messages streams ---------------------------------------------------------------------


@st.composite
def message_cases(draw: st.DrawFn) -> Case:
    message_id = "msg_" + draw(IDS)
    model = draw(st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5"]))
    blocks: list[
        tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]
    ] = []  # start, deltas, whole
    if draw(st.booleans()):
        parts = draw(st.lists(TEXT, max_size=3))
        signature = draw(IDS)
        deltas = [{"type": "thinking_delta", "thinking": p} for p in parts]
        deltas.append({"type": "signature_delta", "signature": signature})
        whole = {"type": "thinking", "thinking": "".join(parts), "signature": signature}
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas, whole))
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            parts = draw(st.lists(TEXT, max_size=3))
            deltas = [{"type": "text_delta", "text": p} for p in parts]
            blocks.append(
                ({"type": "text", "text": ""}, deltas, {"type": "text", "text": "".join(parts)})
            )
        else:
            tool_id, name, arguments = "toolu_" + draw(IDS), draw(NAMES), draw(ARGUMENTS)
            ascii_only: bool = draw(st.booleans())
            empty_as_object: bool = draw(st.booleans())
            text = (
                json.dumps(arguments, ensure_ascii=ascii_only)
                if arguments or empty_as_object
                else ""
            )
            parts = draw(pieces_of(text)) if text else []
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *parts]]
            start = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
            blocks.append(
                (
                    start,
                    deltas,
                    {"type": "tool_use", "id": tool_id, "name": name, "input": arguments},
                )
            )
    stop = draw(st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]))
    usage: dict[str, Any] = {"input_tokens": draw(st.integers(0, 10**6))}
    for name in ("cache_read_input_tokens", "cache_creation_input_tokens"):
        if draw(st.booleans()):
            usage[name] = draw(st.integers(0, 10**6))
    output = draw(st.integers(1, 10**5))
    final_usage: dict[str, Any] = {"output_tokens": output}
    if draw(st.booleans()):
        final_usage["output_tokens_details"] = {"thinking_tokens": draw(st.integers(0, output))}
    include_usage = draw(st.booleans())

    start_message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start_message}]
    for index, (start, deltas, _) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        if draw(st.booleans()):
            events.append({"type": "ping"})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    sequence = "END" if stop == "stop_sequence" else None
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": sequence},
            "usage": final_usage,
        }
    )
    events.append({"type": "message_stop"})
    answer = {
        **start_message,
        "content": [whole for _, _, whole in blocks],
        "stop_reason": stop,
        "stop_sequence": sequence,
        "usage": {**usage, **final_usage},
    }
    data, ends = draw(written([(e["type"], e) for e in events]))
    request = {"model": model, "stream": True, "stream_options": {"include_usage": include_usage}}
    return Case(events, data, ends, draw(split(data)), json.dumps(answer).encode(), request)


@PROPERTY
@given(message_cases())
def test_a_messages_stream_accumulates_to_the_translated_answer(case: Case) -> None:
    whole = translate_stream(Api.OPENAI, [case.data], case.request)
    assert translate_stream(Api.OPENAI, case.pieces, case.request) == whole
    body = translate_response(Api.OPENAI, case.answer, created=CREATED)
    expected = completion_view(ChatCompletion.model_validate_json(body))
    if not case.request["stream_options"]["include_usage"]:
        del expected["usage"]
    assert completion_view(accumulate_openai(whole)) == expected


def _messages_so_far(events: list[dict[str, Any]]) -> tuple[str, str, list[str]]:
    text, reasoning = "", ""
    arguments: dict[Any, str] = {}
    for event in events:
        delta = event.get("delta", {})
        if event["type"] != "content_block_delta":
            continue
        text += delta.get("text", "")
        reasoning += delta.get("thinking", "")
        if delta["type"] == "input_json_delta":
            arguments[event["index"]] = arguments.get(event["index"], "") + delta["partial_json"]
    tools = [
        arguments.get(e["index"], "")
        for e in events
        if e.get("content_block", {}).get("type") == "tool_use"
    ]
    return text, reasoning, tools


def _openai_so_far(reader: OpenAIReader) -> tuple[str, str, list[str]]:
    if not reader.chunks:
        return "", "", []
    message = reader.state.current_completion_snapshot.choices[0].message
    reasoning = getattr(message, "reasoning_content", None) or ""
    return (
        message.content or "",
        reasoning,
        [c.function.arguments for c in message.tool_calls or []],
    )


@PROPERTY
@given(message_cases())
def test_each_complete_messages_event_reaches_the_openai_client_at_once(case: Case) -> None:
    cuts = sorted({*case.ends, *accumulate(len(p) for p in case.pieces)})
    translator = stream_translator(Api.OPENAI, case.request)
    reader = OpenAIReader()
    fed = 0
    for cut in cuts:
        reader.read(translator.feed(case.data[fed:cut]))
        fed = cut
        if cut in case.ends:
            complete = case.ends.index(cut) + 1
            assert _openai_so_far(reader) == _messages_so_far(case.payloads[:complete])
            assert reader.chunks
    assert reader.done
    assert translator.done
