"""The Messages stream an Anthropic client receives from a Chat Completions backend.

Chunk by chunk: the first chunk with a choice (or usage) gives ``message_start``;
reasoning deltas (``reasoning_content`` or ``reasoning``) and content deltas open a
``thinking`` or ``text`` block the first time and add ``thinking_delta`` /
``text_delta`` events; each tool call (one ``tool_calls`` index) opens a ``tool_use``
block once its name is known, and its argument fragments become ``input_json_delta``
events. A text or thinking block is closed when a block of another kind starts. Tool
blocks stay open until the choice's ``finish_reason``, since OpenAI may interleave the
argument fragments of parallel calls and a closed block cannot take more; every
fragment still goes out at once, addressed to its block's index. ``finish_reason``
closes what is open; ``message_delta`` (stop reason and usage) and ``message_stop``
follow with the usage-only chunk that ``include_usage`` makes the backend send last, or
with ``[DONE]``, or at the end of the body, whichever comes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import Api, UpstreamProtocolError
from .common import message_id, messages_usage, reasoning_text, stop_reason
from .error_shapes import anthropic_stream_error
from .sse import SSEEvent, anthropic_event
from .stream import Phase, StreamTranslator


@dataclass(slots=True)
class _Tool:
    id: str | None = None
    name: str | None = None
    block: int | None = None  # the Messages block index, once started
    pending: list[str] = field(default_factory=list)  # arguments before the name came


def _start(index: int, block: dict[str, Any]) -> bytes:
    payload = {"type": "content_block_start", "index": index, "content_block": block}
    return anthropic_event("content_block_start", payload)


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    payload = {"type": "content_block_delta", "index": index, "delta": delta}
    return anthropic_event("content_block_delta", payload)


def _stop(index: int) -> bytes:
    return anthropic_event("content_block_stop", {"type": "content_block_stop", "index": index})


class AnthropicStream(StreamTranslator):
    """Chat Completions chunks in, Messages events out (see the module docstring).

    ``model`` stands in for the model name if the backend's chunks carry none.
    """

    api = Api.ANTHROPIC

    def __init__(self, *, model: str = "") -> None:
        super().__init__()
        self._model = model
        self._id = ""
        self._blocks = 0
        self._open: tuple[str, int] | None = None  # the open text or thinking block
        self._tools: dict[int, _Tool] = {}
        self._usage: dict[str, Any] | None = None
        self._stop_reason = "end_turn"
        self._refused = False

    def _handle(self, event: SSEEvent, out: list[bytes]) -> None:
        if event.data == b"[DONE]":
            self._close(out)
            self._phase = Phase.ENDED
            return
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                "the backend's stream sent an event that is not JSON"
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("the backend's stream sent an event that is not a chunk")
        if "error" in chunk:
            self._upstream_error(anthropic_stream_error(chunk), out)
            return
        choices = chunk.get("choices")
        choices = choices if isinstance(choices, list) else []
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        if self._phase is Phase.FRESH:
            if not choices and usage is None:
                return  # e.g. Azure's prompt-filter chunk: nothing to say yet
            self._begin(chunk, out)
        if self._phase is Phase.STREAMING:
            for choice in choices:
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    self._choice(choice, out)
        elif not choices and isinstance(usage, dict):
            self._close(out)
            self._phase = Phase.ENDED

    def _begin(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        self._id = message_id(chunk.get("id"))
        model = chunk.get("model")
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": model if isinstance(model, str) and model else self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": messages_usage(self._usage),
        }
        out.append(anthropic_event("message_start", {"type": "message_start", "message": message}))
        self._phase = Phase.STREAMING

    def _choice(self, choice: dict[str, Any], out: list[bytes]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = reasoning_text(delta)
            if reasoning:
                self._text("thinking", reasoning, out)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text("text", content, out)
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._refused = True
                self._text("text", refusal, out)
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for position, call in enumerate(calls):
                    if isinstance(call, dict):
                        self._tool_delta(call, position, out)
        finish = choice.get("finish_reason")
        if finish is not None:
            self._end_blocks(finish, out)

    def _new_block(self) -> int:
        self._blocks += 1
        return self._blocks - 1

    def _close_open(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(_stop(self._open[1]))
            self._open = None

    def _text(self, kind: str, text: str, out: list[bytes]) -> None:
        if self._open is None or self._open[0] != kind:
            self._close_open(out)
            index = self._new_block()
            if kind == "text":
                out.append(_start(index, {"type": "text", "text": ""}))
            else:
                out.append(_start(index, {"type": "thinking", "thinking": "", "signature": ""}))
            self._open = (kind, index)
        index = self._open[1]
        if kind == "text":
            out.append(_delta(index, {"type": "text_delta", "text": text}))
        else:
            out.append(_delta(index, {"type": "thinking_delta", "thinking": text}))

    def _tool_delta(self, call: dict[str, Any], position: int, out: list[bytes]) -> None:
        key = call.get("index")
        if not isinstance(key, int) or isinstance(key, bool):
            key = position  # a few servers leave the index out
        tool = self._tools.get(key)
        if tool is None:
            tool = self._tools[key] = _Tool()
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        if tool.block is None:
            call_id, name = call.get("id"), function.get("name")
            if tool.id is None and isinstance(call_id, str) and call_id:
                tool.id = call_id
            if tool.name is None and isinstance(name, str) and name:
                tool.name = name
                self._open_tool(key, tool, out)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            if tool.block is None:
                tool.pending.append(arguments)
            else:
                out.append(
                    _delta(tool.block, {"type": "input_json_delta", "partial_json": arguments})
                )

    def _open_tool(self, key: int, tool: _Tool, out: list[bytes]) -> None:
        self._close_open(out)
        tool.block = self._new_block()
        call_id = tool.id or f"toolu_{self._id.removeprefix('msg_')}_{key}"
        block = {"type": "tool_use", "id": call_id, "name": tool.name or "", "input": {}}
        out.append(_start(tool.block, block))
        for arguments in tool.pending:
            out.append(_delta(tool.block, {"type": "input_json_delta", "partial_json": arguments}))
        tool.pending.clear()

    def _end_blocks(self, finish: object, out: list[bytes]) -> None:
        self._close_open(out)
        for key, tool in self._tools.items():
            if tool.block is None:
                self._open_tool(key, tool, out)  # a call whose name never came
        for tool in sorted(self._tools.values(), key=lambda t: t.block or 0):
            out.append(_stop(tool.block or 0))
        self._stop_reason = stop_reason(finish, tool_calls=bool(self._tools))
        if self._refused and self._stop_reason == "end_turn":
            self._stop_reason = "refusal"
        self._phase = Phase.FINISHED

    def _close(self, out: list[bytes]) -> None:
        if self._phase is Phase.FRESH:
            self._begin({}, out)
        if self._phase is Phase.STREAMING:
            self._end_blocks(None, out)
        delta = {"stop_reason": self._stop_reason, "stop_sequence": None}
        usage = messages_usage(self._usage)
        out.append(
            anthropic_event(
                "message_delta", {"type": "message_delta", "delta": delta, "usage": usage}
            )
        )
        out.append(anthropic_event("message_stop", {"type": "message_stop"}))
