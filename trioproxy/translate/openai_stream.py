"""The chat completion stream an OpenAI client receives from a Messages backend.

Event by event: ``message_start`` gives the first chunk (``delta.role``); a ``text``
block's deltas become ``delta.content``, a ``thinking`` block's ``delta.reasoning_content``,
and each ``tool_use`` block one ``tool_calls`` entry — its start gives the index, id and
name, its ``input_json_delta`` events the argument fragments. ``message_delta`` gives the
chunk with ``finish_reason`` and, when the client asked for ``include_usage``, the
usage-only chunk right after it; ``message_stop`` gives ``data: [DONE]``. ``ping``,
signatures, citations, redacted thinking and server-tool blocks have no counterpart and
give nothing.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import Api, UpstreamProtocolError
from .common import chat_id, chat_usage, dumps_text, finish_reason
from .error_shapes import openai_stream_error
from .sse import DONE, SSEEvent, openai_event
from .stream import Phase, StreamTranslator


class OpenAIStream(StreamTranslator):
    """Messages events in, chat completion chunks out (see the module docstring).

    ``include_usage`` is the client's ``stream_options.include_usage``; ``created`` is
    every chunk's timestamp; ``model`` stands in if the backend names none.
    """

    api = Api.OPENAI

    def __init__(self, *, include_usage: bool, created: int, model: str = "") -> None:
        super().__init__()
        self._include_usage = include_usage
        self._created = created
        self._model = model
        self._id = ""
        self._usage: dict[str, Any] = {}
        self._tool_for_block: dict[int, int] = {}

    def _handle(self, event: SSEEvent, out: list[bytes]) -> None:
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                "the backend's stream sent an event that is not JSON"
            ) from None
        if not isinstance(payload, dict):
            raise UpstreamProtocolError("the backend's stream sent an event that is not an object")
        kind = payload.get("type") or event.event
        if kind == "error":
            self._upstream_error(openai_stream_error(payload), out)
            return
        if kind == "ping" or (self._phase is Phase.FINISHED and kind != "message_stop"):
            return
        if self._phase is Phase.FRESH:
            message = payload.get("message") if kind == "message_start" else None
            self._begin(message if isinstance(message, dict) else {}, out)
            if kind == "message_start":
                return
        if kind == "content_block_start":
            self._block_start(payload, out)
        elif kind == "content_block_delta":
            self._block_delta(payload, out)
        elif kind == "message_delta":
            usage = payload.get("usage")
            self._add_usage(usage)
            delta = payload.get("delta")
            stop = delta.get("stop_reason") if isinstance(delta, dict) else None
            self._finish(finish_reason(stop), out)
        elif kind == "message_stop":
            self._close(out)
            self._phase = Phase.ENDED

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [choice],
        }
        if self._include_usage:
            chunk["usage"] = None
        return openai_event(chunk)

    def _begin(self, message: dict[str, Any], out: list[bytes]) -> None:
        self._id = chat_id(message.get("id"))
        model = message.get("model")
        if isinstance(model, str) and model:
            self._model = model
        self._add_usage(message.get("usage"))
        out.append(self._chunk({"role": "assistant"}))
        self._phase = Phase.STREAMING

    def _add_usage(self, usage: object) -> None:
        # message_delta's counts are running totals; a count it leaves out keeps
        # message_start's value.
        if isinstance(usage, dict):
            self._usage.update((k, v) for k, v in usage.items() if v is not None)

    def _block_start(self, payload: dict[str, Any], out: list[bytes]) -> None:
        index, block = payload.get("index"), payload.get("content_block")
        if not isinstance(block, dict):
            return
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str) and block["text"]:
            out.append(self._chunk({"content": block["text"]}))
        elif kind == "thinking" and isinstance(block.get("thinking"), str) and block["thinking"]:
            out.append(self._chunk({"reasoning_content": block["thinking"]}))
        elif kind == "tool_use" and isinstance(index, int):
            position = self._tool_for_block[index] = len(self._tool_for_block)
            arguments = dumps_text(block["input"]) if block.get("input") else ""
            call = {
                "index": position,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": arguments},
            }
            out.append(self._chunk({"tool_calls": [call]}))

    def _block_delta(self, payload: dict[str, Any], out: list[bytes]) -> None:
        index, delta = payload.get("index"), payload.get("delta")
        if not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            out.append(self._chunk({"content": delta["text"]}))
        elif kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            if delta["thinking"]:
                out.append(self._chunk({"reasoning_content": delta["thinking"]}))
        elif (
            kind == "input_json_delta" and isinstance(index, int) and index in self._tool_for_block
        ):
            fragment = delta.get("partial_json")
            if isinstance(fragment, str) and fragment:
                call = {"index": self._tool_for_block[index], "function": {"arguments": fragment}}
                out.append(self._chunk({"tool_calls": [call]}))

    def _finish(self, finish: str, out: list[bytes]) -> None:
        out.append(self._chunk({}, finish))
        if self._include_usage:
            chunk = {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": chat_usage(self._usage),
            }
            out.append(openai_event(chunk))
        self._phase = Phase.FINISHED

    def _close(self, out: list[bytes]) -> None:
        if self._phase is Phase.STREAMING:
            self._finish("stop", out)
        out.append(DONE)
