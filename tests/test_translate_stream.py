"""Streams across the APIs, example by example, read by the SDKs' own accumulators."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.translate_helpers import (
    AnthropicReader,
    OpenAIReader,
    StreamFailed,
    accumulate_anthropic,
    accumulate_openai,
    anthropic_events,
    chunks_of,
    openai_events,
    sse,
    translate_stream,
)
from trioproxy.errors import Api, StreamShape, UpstreamTimeout, sse_error_event
from trioproxy.translate import stream_translator

CREATED = 1700000000


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return sse(
        {
            "id": "chatcmpl-7",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": "qwen3-coder",
            "choices": choices,
            **extra,
        }
    )


DONE = b"data: [DONE]\n\n"
USAGE = {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}


def text_stream(
    *pieces: str, finish: str = "stop", usage: dict[str, Any] | None = USAGE
) -> list[bytes]:
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": p}) for p in pieces]
    events.append(chunk({}, finish))
    if usage is not None:
        events.append(chunk(None, usage=usage))
    return [*events, DONE]


def tool_call(
    index: int, *, id: str | None = None, name: str | None = None, args: str = ""
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if id is not None:
        call.update(id=id, type="function")
    if name is not None:
        call["function"]["name"] = name
    return call


# -- chat chunks → Messages events ------------------------------------------------------


def test_a_text_stream_becomes_messages_events_byte_for_byte() -> None:
    got = translate_stream(Api.ANTHROPIC, text_stream("Hel", "lo"))
    assert got == (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_7",'
        b'"type":"message","role":"assistant","model":"qwen3-coder","content":[],"stop_reason":null,"stop_sequence":null,'
        b'"usage":{"input_tokens":0,"output_tokens":0}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Hel"}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"lo"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        b'"stop_sequence":null},"usage":{"input_tokens":20,"output_tokens":4}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    message = accumulate_anthropic(got)
    assert message.content[0].model_dump(exclude_none=True) == {"type": "text", "text": "Hello"}
    assert (message.usage.input_tokens, message.usage.output_tokens) == (20, 4)


def test_each_chunk_gives_its_events_at_once() -> None:
    translator = stream_translator(Api.ANTHROPIC, {"model": "m"})
    events = text_stream("a", "b")
    assert [e for e, _ in anthropic_events(translator.feed(events[0]))] == ["message_start"]
    assert [e for e, _ in anthropic_events(translator.feed(events[1]))] == [
        "content_block_start",
        "content_block_delta",
    ]
    assert [e for e, _ in anthropic_events(translator.feed(events[2]))] == ["content_block_delta"]
    assert [e for e, _ in anthropic_events(translator.feed(events[3]))] == ["content_block_stop"]
    assert [e for e, _ in anthropic_events(translator.feed(events[4]))] == [
        "message_delta",
        "message_stop",
    ]
    assert translator.done
    assert translator.feed(events[5]) == b""
    assert translator.finish() == b""


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "tool_use"),
    ],
)
def test_each_finish_reason_in_the_stream(finish: str, stop: str) -> None:
    assert (
        accumulate_anthropic(
            translate_stream(Api.ANTHROPIC, text_stream("x", finish=finish))
        ).stop_reason
        == stop
    )


def test_a_two_turn_tool_use_stream() -> None:
    events = [
        chunk({"role": "assistant", "content": "Let me look."}),
        chunk({"tool_calls": [tool_call(0, id="call_1", name="Bash", args="")]}),
        chunk({"tool_calls": [tool_call(0, args='{"comm')]}),
        chunk({"tool_calls": [tool_call(0, args='and": "ls"}')]}),
        chunk({}, "tool_calls"),
        chunk(None, usage=USAGE),
        DONE,
    ]
    message = accumulate_anthropic(translate_stream(Api.ANTHROPIC, events))
    assert [b.model_dump(exclude_none=True) for b in message.content] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_1", "name": "Bash", "input": {"command": "ls"}},
    ]
    assert message.stop_reason == "tool_use"


def test_interleaved_parallel_tool_calls_go_to_their_own_blocks_at_once() -> None:
    translator = stream_translator(Api.ANTHROPIC, {"model": "m"})
    reader = AnthropicReader()
    events = [
        chunk({"role": "assistant"}),
        chunk({"tool_calls": [tool_call(0, id="call_a", name="weather", args='{"ci')]}),
        chunk({"tool_calls": [tool_call(1, id="call_b", name="weather", args='{"city"')]}),
        chunk({"tool_calls": [tool_call(0, args='ty": "Paris"}'), tool_call(1, args=': "Rome"}')]}),
        chunk({}, "tool_calls"),
        DONE,
    ]
    reader.read(translator.feed(b"".join(events[:3])))
    assert reader.json_bufs == {0: b'{"ci', 1: b'{"city"'}
    reader.read(translator.feed(events[3]))
    assert reader.json_bufs == {0: b'{"city": "Paris"}', 1: b'{"city": "Rome"}'}
    reader.read(translator.feed(b"".join(events[4:])) + translator.finish())
    assert reader.snapshot is not None
    assert [(b.id, b.input) for b in reader.snapshot.content if b.type == "tool_use"] == [
        ("call_a", {"city": "Paris"}),
        ("call_b", {"city": "Rome"}),
    ]
    assert reader.types[-4:] == [
        "content_block_stop",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_arguments_before_the_name_wait_for_it() -> None:
    events = [
        chunk({"tool_calls": [tool_call(0, id="call_1", args='{"a"')]}),
        chunk({"tool_calls": [tool_call(0, name="f", args=": 1}")]}),
        chunk({}, "tool_calls"),
        DONE,
    ]
    message = accumulate_anthropic(translate_stream(Api.ANTHROPIC, events))
    assert [
        (b.type, getattr(b, "name", None), getattr(b, "input", None)) for b in message.content
    ] == [("tool_use", "f", {"a": 1})]


def test_reasoning_then_text() -> None:
    events = [
        chunk({"role": "assistant", "reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing."}),
        chunk({"content": "Done."}),
        chunk({}, "stop"),
        DONE,
    ]
    message = accumulate_anthropic(translate_stream(Api.ANTHROPIC, events))
    assert [b.model_dump(exclude_none=True) for b in message.content] == [
        {"type": "thinking", "thinking": "Thinking.", "signature": ""},
        {"type": "text", "text": "Done."},
    ]


def test_usage_with_cached_tokens_and_continuous_usage() -> None:
    events = [
        chunk(
            {"role": "assistant", "content": "a"},
            usage={"prompt_tokens": 9, "completion_tokens": 1},
        ),
        chunk({}, "stop", usage={"prompt_tokens": 9, "completion_tokens": 2}),
        chunk(
            None,
            usage={
                "prompt_tokens": 90,
                "completion_tokens": 3,
                "total_tokens": 93,
                "prompt_tokens_details": {"cached_tokens": 80},
            },
        ),
        DONE,
    ]
    message = accumulate_anthropic(translate_stream(Api.ANTHROPIC, events))
    assert message.usage.model_dump(exclude_none=True) == {
        "input_tokens": 10,
        "cache_read_input_tokens": 80,
        "output_tokens": 3,
    }


def test_a_stream_without_usage_or_done_still_ends_properly() -> None:
    events = text_stream("hi", usage=None)[:-1]
    message = accumulate_anthropic(translate_stream(Api.ANTHROPIC, events))
    assert message.content[0].model_dump(exclude_none=True) == {"type": "text", "text": "hi"}
    assert message.stop_reason == "end_turn"


def test_chunks_with_nothing_to_say_are_skipped() -> None:
    azure_filter = sse(
        {
            "id": "",
            "object": "",
            "created": 0,
            "model": "",
            "choices": [],
            "prompt_filter_results": [],
        }
    )
    got = translate_stream(Api.ANTHROPIC, [b": keep-alive\n\n", azure_filter, *text_stream("x")])
    assert accumulate_anthropic(got).id == "msg_7"


def test_a_cut_stream_ends_with_an_error_after_only_complete_events() -> None:
    whole = b"".join(text_stream("abc", "def"))
    cut = whole[: whole.index(b'"def"') + 2]  # inside the second content chunk
    got = translate_stream(Api.ANTHROPIC, [cut])
    events = anthropic_events(got)
    assert [e for e, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert events[-1][1] == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "the backend's stream ended before its last event",
        },
    }
    reader = AnthropicReader()
    with pytest.raises(StreamFailed):
        reader.read(got)
    assert reader.snapshot is not None
    assert reader.snapshot.content[0].model_dump(exclude_none=True) == {
        "type": "text",
        "text": "abc",
    }


def test_fail_ends_the_stream_with_the_errors_event() -> None:
    translator = stream_translator(Api.ANTHROPIC, {"model": "m"})
    translator.feed(b"".join(text_stream("abc")[:2]))
    exc = UpstreamTimeout("the backend sent nothing for 300 s")
    assert translator.fail(exc) == sse_error_event(StreamShape.ANTHROPIC, exc)
    assert translator.done
    assert translator.fail(exc) == b""
    assert translator.finish() == b""


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"error": {"message": "boom", "type": "server_error"}}, "api_error"),
        ({"error": {"message": "slow down", "type": "rate_limit_exceeded"}}, "rate_limit_error"),
        (
            {"error": {"message": "bad", "type": "BadRequestError", "code": 400}},
            "invalid_request_error",
        ),
        ({"error": "plain"}, "api_error"),
    ],
)
def test_an_upstream_error_event_becomes_the_anthropic_error_event(
    error: dict[str, Any], kind: str
) -> None:
    events = [*text_stream("abc")[:2], sse(error), *text_stream("more")[1:]]
    got = translate_stream(Api.ANTHROPIC, events)
    parsed = anthropic_events(got)
    assert parsed[-1][0] == "error"
    assert parsed[-1][1]["error"]["type"] == kind
    assert [e for e, _ in parsed].count("error") == 1


def test_an_event_that_is_not_json_ends_the_stream_with_an_error() -> None:
    got = translate_stream(
        Api.ANTHROPIC, [text_stream("a")[0], b"data: {nope\n\n", *text_stream("a")[1:]]
    )
    parsed = anthropic_events(got)
    assert [e for e, _ in parsed] == ["message_start", "error"]
    assert (
        parsed[-1][1]["error"]["message"] == "the backend's stream sent an event that is not JSON"
    )


def test_done_alone_is_an_empty_answer() -> None:
    message = accumulate_anthropic(translate_stream(Api.ANTHROPIC, [DONE], {"model": "fallback"}))
    assert (message.model, message.content, message.stop_reason) == ("fallback", [], "end_turn")


def test_nothing_at_all_is_an_error() -> None:
    assert [e for e, _ in anthropic_events(translate_stream(Api.ANTHROPIC, []))] == ["error"]


# -- Messages events → chat chunks ----------------------------------------------------


def event(payload: dict[str, Any]) -> bytes:
    return sse(payload, payload["type"])


MESSAGE_START = event(
    {
        "type": "message_start",
        "message": {
            "id": "msg_01ABC",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "cache_read_input_tokens": 100, "output_tokens": 1},
        },
    }
)
PING = event({"type": "ping"})


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return event({"type": "content_block_start", "index": index, "content_block": block})


def block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return event({"type": "content_block_delta", "index": index, "delta": delta})


def block_stop(index: int) -> bytes:
    return event({"type": "content_block_stop", "index": index})


def message_end(stop: str = "end_turn", output: int = 12) -> list[bytes]:
    return [
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": output},
            }
        ),
        event({"type": "message_stop"}),
    ]


def text_events(*pieces: str, stop: str = "end_turn") -> list[bytes]:
    return [
        MESSAGE_START,
        PING,
        block_start(0, {"type": "text", "text": ""}),
        *(block_delta(0, {"type": "text_delta", "text": p}) for p in pieces),
        block_stop(0),
        *message_end(stop),
    ]


def test_a_messages_stream_becomes_chunks_byte_for_byte() -> None:
    got = translate_stream(
        Api.OPENAI,
        text_events("Hi", "!"),
        {"model": "m", "stream_options": {"include_usage": True}},
    )
    head = (
        b'"id":"chatcmpl-01ABC","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"claude-sonnet-4-5"'
    )
    assert got == (
        b"data: {" + head + b',"choices":[{"index":0,"delta":{"role":"assistant"},"logprobs":null,'
        b'"finish_reason":null}],"usage":null}\n\n'
        b"data: {" + head + b',"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,'
        b'"finish_reason":null}],"usage":null}\n\n'
        b"data: {" + head + b',"choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,'
        b'"finish_reason":null}],"usage":null}\n\n'
        b"data: {" + head + b',"choices":[{"index":0,"delta":{},"logprobs":null,'
        b'"finish_reason":"stop"}],"usage":null}\n\n'
        b"data: {" + head + b',"choices":[],"usage":{"prompt_tokens":125,"completion_tokens":12,'
        b'"total_tokens":137,"prompt_tokens_details":{"cached_tokens":100}}}\n\n'
        b"data: [DONE]\n\n"
    )
    completion = accumulate_openai(got)
    assert completion.choices[0].message.content == "Hi!"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 125


def test_without_include_usage_there_is_no_usage_chunk() -> None:
    got = translate_stream(Api.OPENAI, text_events("Hi"))
    assert all(e == "[DONE]" or ("usage" not in e and e["choices"]) for e in openai_events(got))
    assert accumulate_openai(got).usage is None


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_each_stop_reason_in_the_stream(stop: str, finish: str) -> None:
    assert (
        accumulate_openai(translate_stream(Api.OPENAI, text_events("x", stop=stop)))
        .choices[0]
        .finish_reason
        == finish
    )


def test_tool_use_and_thinking_blocks_stream_as_tool_calls_and_reasoning() -> None:
    events = [
        MESSAGE_START,
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        block_delta(0, {"type": "thinking_delta", "thinking": "Two cities."}),
        block_delta(0, {"type": "signature_delta", "signature": "EqQB"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        block_delta(1, {"type": "text_delta", "text": "Checking."}),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}),
        block_delta(2, {"type": "input_json_delta", "partial_json": ""}),
        block_delta(2, {"type": "input_json_delta", "partial_json": '{"city": '}),
        block_delta(2, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
        block_stop(2),
        block_start(3, {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {}}),
        block_delta(3, {"type": "input_json_delta", "partial_json": '{"city": "Rome"}'}),
        block_stop(3),
        *message_end("tool_use"),
    ]
    completion = accumulate_openai(translate_stream(Api.OPENAI, events))
    message = completion.choices[0].message
    assert message.content == "Checking."
    assert message.model_extra is not None
    assert message.model_extra["reasoning_content"] == "Two cities."
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments))
        for c in message.tool_calls or []
        if c.type == "function"
    ] == [
        ("toolu_1", "weather", {"city": "Paris"}),
        ("toolu_2", "weather", {"city": "Rome"}),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_each_event_gives_its_chunk_at_once() -> None:
    translator = stream_translator(Api.OPENAI, {"model": "m"})
    events = text_events("a", "b")
    outputs = [openai_events(translator.feed(e)) for e in events]
    assert [len(o) for o in outputs] == [1, 0, 0, 1, 1, 0, 1, 1]
    assert outputs[-1] == ["[DONE]"]
    assert translator.done


def test_a_cut_messages_stream_ends_with_the_openai_error_event() -> None:
    whole = b"".join(text_events("abc", "def"))
    cut = whole[: whole.index(b'"def"')]
    got = translate_stream(Api.OPENAI, chunks_of(cut, 7))
    reader = OpenAIReader()
    with pytest.raises(StreamFailed) as caught:
        reader.read(got)
    assert (
        caught.value.data["error"]["message"] == "the backend's stream ended before its last event"
    )
    assert reader.state.current_completion_snapshot.choices[0].message.content == "abc"


def test_a_stream_that_ends_after_message_delta_still_ends_properly() -> None:
    got = translate_stream(Api.OPENAI, text_events("ok")[:-1])
    assert openai_events(got)[-1] == "[DONE]"
    assert accumulate_openai(got).choices[0].message.content == "ok"


def test_an_anthropic_error_event_becomes_the_openai_error_event() -> None:
    error = event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    got = translate_stream(Api.OPENAI, [*text_events("abc")[:4], error, *text_events("x")[4:]])
    assert openai_events(got)[-1] == {
        "error": {
            "message": "Overloaded",
            "type": "server_error",
            "param": None,
            "code": "overloaded_error",
        }
    }


def test_fail_ends_the_chat_stream_with_its_error_event() -> None:
    translator = stream_translator(Api.OPENAI, {"model": "m"})
    translator.feed(b"".join(text_events("abc")[:3]))
    exc = UpstreamTimeout("too slow")
    assert translator.fail(exc) == sse_error_event(StreamShape.OPENAI, exc)
    assert translator.feed(b"".join(text_events("abc")[3:])) == b""
