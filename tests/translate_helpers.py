"""The SDKs' own readers, for checking what the translation sends clients.

Each SDK parses the translated bytes exactly as it would a real server's: its own SSE
decoder splits the events, its own types validate them (strictly, through pydantic,
rather than the SDKs' lenient ``construct``), and its own stream accumulator builds the
final message: ``accumulate_event`` for Anthropic, ``ChatCompletionStreamState`` for
OpenAI.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pydantic
from anthropic._streaming import SSEDecoder as AnthropicDecoder
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.parsed_message import ParsedMessage
from openai._streaming import SSEDecoder as OpenAIDecoder
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from trioproxy.errors import Api
from trioproxy.translate import StreamTranslator, stream_translator

ANTHROPIC_EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)


def anthropic_events(data: bytes) -> list[tuple[str | None, Any]]:
    """``(event name, parsed data)`` for each event of a Messages stream."""
    return [(sse.event, sse.json()) for sse in AnthropicDecoder().iter_bytes(iter([data]))]


def openai_events(data: bytes) -> list[Any]:
    """The data of each event of a chat completion stream (``"[DONE]"`` as a string)."""
    out: list[Any] = []
    for sse in OpenAIDecoder().iter_bytes(iter([data])):
        out.append(sse.data if sse.data.startswith("[DONE]") else sse.json())
    return out


class StreamFailed(Exception):
    """The stream ended with the API's error event, whose data this holds."""

    def __init__(self, data: Any) -> None:
        super().__init__(repr(data))
        self.data = data


@dataclass
class AnthropicReader:
    """A Messages stream read the way the anthropic SDK's MessageStream reads it."""

    snapshot: ParsedMessage[Any] | None = None
    json_bufs: dict[int, bytes] = field(default_factory=dict)
    types: list[str] = field(default_factory=list)
    _decoder: AnthropicDecoder = field(default_factory=AnthropicDecoder)

    def read(self, data: bytes) -> None:
        for sse in self._decoder.iter_bytes(iter([data])):
            assert sse.event is not None, "Anthropic SDKs skip events without an event: line"
            if sse.event == "ping":
                continue
            if sse.event == "error":
                raise StreamFailed(sse.json())
            payload = sse.json()
            assert payload["type"] == sse.event
            event = ANTHROPIC_EVENT.validate_python(payload)
            self.types.append(event.type)
            self.snapshot = accumulate_event(
                event=event, current_snapshot=self.snapshot, json_bufs=self.json_bufs
            )


def accumulate_anthropic(data: bytes) -> ParsedMessage[Any]:
    """The message the anthropic SDK accumulates from a whole Messages stream."""
    reader = AnthropicReader()
    reader.read(data)
    assert reader.types[-1] == "message_stop", reader.types
    assert reader.snapshot is not None
    return reader.snapshot


@dataclass
class OpenAIReader:
    """A chat completion stream read the way the openai SDK's ChatCompletionStream does."""

    state: ChatCompletionStreamState[Any] = field(default_factory=ChatCompletionStreamState)
    chunks: list[ChatCompletionChunk] = field(default_factory=list)
    done: bool = False

    def read(self, data: bytes) -> None:
        for payload in openai_events(data):
            assert not self.done, "an event after [DONE]"
            if payload == "[DONE]":
                self.done = True
                continue
            if payload.get("error"):
                raise StreamFailed(payload)
            chunk = ChatCompletionChunk.model_validate(payload)
            self.chunks.append(chunk)
            self.state.handle_chunk(chunk)


def accumulate_openai(data: bytes) -> ChatCompletion:
    """The completion the openai SDK accumulates from a whole chat completion stream.

    ``get_final_completion`` raises for ``length`` and ``content_filter`` endings (it
    cannot parse structured output then); for those the snapshot is validated instead.
    """
    reader = OpenAIReader()
    reader.read(data)
    assert reader.done, "the stream did not end with [DONE]"
    snapshot = reader.state.current_completion_snapshot
    if any(c.finish_reason in ("length", "content_filter") for c in snapshot.choices):
        return ChatCompletion.model_validate(snapshot.model_dump(mode="json"))
    return reader.state.get_final_completion()


def translate_stream(
    client_api: Api, pieces: Iterable[bytes], request: dict[str, Any] | None = None
) -> bytes:
    """All a fresh translator sends for the backend body ``pieces``, ``finish`` included."""
    translator = stream_translator(client_api, request or {"model": "m"}, created=1700000000)
    return feed_all(translator, pieces) + translator.finish()


def feed_all(translator: StreamTranslator, pieces: Iterable[bytes]) -> bytes:
    return b"".join(translator.feed(piece) for piece in pieces)


def message_view(message: Message) -> dict[str, Any]:
    """A Messages answer as plain data, the SDK's optional parsing fields left out."""
    view = message.model_dump(mode="json", exclude_none=True)
    for block in view["content"]:
        block.pop("parsed_output", None)
    return view


def completion_view(completion: ChatCompletion) -> dict[str, Any]:
    """A chat completion as plain data; tool arguments parsed (their spacing is free), and
    the ``index`` the SDK's accumulator leaves on streamed tool calls dropped."""
    view = completion.model_dump(mode="json", exclude_none=True)
    for choice in view["choices"]:
        message = choice["message"]
        message.pop("parsed", None)
        for call in message.get("tool_calls", []):
            call.pop("index", None)
            call["function"].pop("parsed_arguments", None)
            call["function"]["arguments"] = json.loads(call["function"]["arguments"] or "{}")
    return view


def sse(payload: Any, event: str | None = None) -> bytes:
    """One upstream event, written the plain way servers write them."""
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(payload).encode() + b"\n\n"


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
