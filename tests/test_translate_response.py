"""Non-streamed answers and error bodies across the APIs, read back by the real SDK types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from trioproxy.errors import Api, UpstreamProtocolError
from trioproxy.translate import translate_error, translate_response

CREATED = 1700000000


def to_message(completion: dict[str, Any]) -> Message:
    return Message.model_validate_json(
        translate_response(Api.ANTHROPIC, json.dumps(completion).encode())
    )


def to_completion(message: dict[str, Any]) -> ChatCompletion:
    body = translate_response(Api.OPENAI, json.dumps(message).encode(), created=CREATED)
    return ChatCompletion.model_validate_json(body)


def completion(
    message: dict[str, Any], finish: str | None = "stop", **extra: Any
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": CREATED,
        "model": "qwen3-coder",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        **extra,
    }


def message(
    content: list[dict[str, Any]], stop: str | None = "end_turn", **extra: Any
) -> dict[str, Any]:
    return {
        "id": "msg_01XYZ",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
        **extra,
    }


# -- chat completion → Messages answer ----------------------------------------------------


def test_text_answer() -> None:
    got = to_message(
        completion(
            {"content": "Hello!"},
            usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        )
    )
    assert got.model_dump(exclude_none=True) == {
        "id": "msg_abc123",
        "type": "message",
        "role": "assistant",
        "model": "qwen3-coder",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }


@pytest.mark.parametrize(
    ("finish", "calls", "stop"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("content_filter", False, "refusal"),
        ("function_call", True, "tool_use"),
        ("stop", True, "tool_use"),
        (None, False, "end_turn"),
        ("something_new", False, "end_turn"),
    ],
)
def test_each_finish_reason(finish: str | None, calls: bool, stop: str) -> None:
    reply: dict[str, Any] = {"content": "x"}
    if calls:
        reply["tool_calls"] = [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]
    assert to_message(completion(reply, finish)).stop_reason == stop


def test_parallel_tool_calls_become_tool_use_blocks() -> None:
    reply = {
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            },
            {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": ""}},
        ],
    }
    got = to_message(completion(reply, "tool_calls"))
    assert [b.model_dump(exclude_none=True) for b in got.content] == [
        {
            "type": "tool_use",
            "id": "call_a",
            "name": "weather",
            "input": {"city": "Paris"},
        },
        {"type": "tool_use", "id": "call_b", "name": "weather", "input": {}},
    ]
    assert got.stop_reason == "tool_use"


@pytest.mark.parametrize("arguments", ["{", "[1, 2]", '"text"'])
def test_tool_arguments_that_are_no_json_object_are_a_protocol_error(arguments: str) -> None:
    reply = {
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
        ]
    }
    with pytest.raises(UpstreamProtocolError, match="'f'"):
        translate_response(Api.ANTHROPIC, json.dumps(completion(reply)).encode())


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_becomes_a_thinking_block(field: str) -> None:
    got = to_message(completion({field: "Let me think.", "content": "42"}))
    assert [b.type for b in got.content] == ["thinking", "text"]
    assert got.content[0].model_dump() == {
        "type": "thinking",
        "thinking": "Let me think.",
        "signature": "",
    }


def test_a_refusal_is_text_with_stop_reason_refusal() -> None:
    got = to_message(completion({"content": None, "refusal": "I can't help with that."}))
    assert got.content[0].model_dump(exclude_none=True) == {
        "type": "text",
        "text": "I can't help with that.",
    }
    assert got.stop_reason == "refusal"


def test_usage_with_cached_and_reasoning_tokens() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 30,
        "total_tokens": 130,
        "prompt_tokens_details": {"cached_tokens": 60},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }
    got = to_message(completion({"content": "x"}, usage=usage)).usage
    assert got.model_dump(exclude_none=True) == {
        "input_tokens": 40,
        "cache_read_input_tokens": 60,
        "output_tokens": 30,
        "output_tokens_details": {"thinking_tokens": 20},
    }


def test_an_answer_without_usage_or_id_still_parses() -> None:
    got = to_message({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]})
    assert got.id.startswith("msg_")
    assert got.usage.input_tokens == 0


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"choices": []}', b'{"error": {"message": "x"}}']
)
def test_a_body_that_is_not_a_chat_completion_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        translate_response(Api.ANTHROPIC, body)


# -- Messages answer → chat completion ----------------------------------------------------


def test_message_to_completion() -> None:
    got = to_completion(message([{"type": "text", "text": "Hello!"}]))
    assert got.model_dump(exclude_none=True) == {
        "id": "chatcmpl-01XYZ",
        "object": "chat.completion",
        "created": CREATED,
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_each_stop_reason(stop: str | None, finish: str) -> None:
    assert (
        to_completion(message([{"type": "text", "text": "x"}], stop)).choices[0].finish_reason
        == finish
    )


def test_tool_use_and_thinking_blocks() -> None:
    content: list[dict[str, Any]] = [
        {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "abc"},
        {"type": "text", "text": "Checking "},
        {"type": "text", "text": "both."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
    ]
    got = to_completion(message(content, "tool_use")).choices[0]
    assert got.finish_reason == "tool_calls"
    assert got.message.content == "Checking both."
    assert got.message.model_extra == {"reasoning_content": "Two cities."}
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments))
        for c in got.message.tool_calls or []
        if c.type == "function"
    ] == [
        ("toolu_1", "weather", {"city": "Paris"}),
        ("toolu_2", "weather", {"city": "Rome"}),
    ]


def test_a_tool_only_answer_has_null_content() -> None:
    got = to_completion(
        message([{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "tool_use")
    )
    assert got.choices[0].message.content is None


def test_cache_tokens_count_as_prompt_tokens() -> None:
    usage = {
        "input_tokens": 5,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
        "output_tokens": 7,
        "output_tokens_details": {"thinking_tokens": 3},
    }
    got = to_completion(message([{"type": "text", "text": "x"}], usage=usage)).usage
    assert got is not None
    assert got.model_dump(exclude_none=True) == {
        "prompt_tokens": 125,
        "completion_tokens": 7,
        "total_tokens": 132,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }


def test_created_defaults_to_now() -> None:
    body = translate_response(Api.OPENAI, json.dumps(message([])).encode())
    assert json.loads(body)["created"] > CREATED


@pytest.mark.parametrize(
    "body", [b"<html>", b'{"type": "error", "error": {"type": "api_error"}}', b"3"]
)
def test_a_body_that_is_not_a_message_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        translate_response(Api.OPENAI, body)


# -- error bodies -------------------------------------------------------------------------

OPENAI_ERRORS: dict[int, dict[str, Any]] = {
    400: {
        "error": {
            "message": "bad temperature",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": None,
        }
    },
    429: {
        "error": {
            "message": "Rate limit reached",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    },
    500: {
        "error": {
            "message": "The server had an error",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    },
}
ANTHROPIC_ERRORS: dict[int, dict[str, Any]] = {
    400: {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: too big"},
    },
    429: {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}},
    500: {"type": "error", "error": {"type": "api_error", "message": "Internal"}},
    529: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
}


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (429, "rate_limit_error"), (500, "api_error")],
)
def test_openai_errors_in_anthropic_shape(status: int, kind: str) -> None:
    body = translate_error(Api.ANTHROPIC, status, json.dumps(OPENAI_ERRORS[status]).encode())
    assert json.loads(body) == {
        "type": "error",
        "error": {"type": kind, "message": OPENAI_ERRORS[status]["error"]["message"]},
    }


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (529, "server_error"),
    ],
)
def test_anthropic_errors_in_openai_shape(status: int, kind: str) -> None:
    body = translate_error(Api.OPENAI, status, json.dumps(ANTHROPIC_ERRORS[status]).encode())
    source = ANTHROPIC_ERRORS[status]["error"]
    assert json.loads(body) == {
        "error": {"message": source["message"], "type": kind, "param": None, "code": source["type"]}
    }


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            502,
            b"<html><body>\n  Bad   Gateway</body></html>",
            "the backend answered HTTP 502: <html><body> Bad Gateway</body></html>",
        ),
        (503, b"", "the backend answered HTTP 503 without details"),
        (
            400,
            b'{"object": "error", "message": "vLLM says no", "type": "BadRequestError", '
            b'"code": 400}',
            "vLLM says no",
        ),
        (422, b'{"detail": "field required"}', "field required"),
        (404, b'{"error": "model not found"}', "model not found"),
        (500, b'{"foo": 1}', 'the backend answered HTTP 500: {"foo": 1}'),
        (500, b"\xff\xfe", "the backend answered HTTP 500: \ufffd\ufffd"),
    ],
)
def test_odd_error_bodies_keep_what_they_say(status: int, body: bytes, message: str) -> None:
    anthropic = json.loads(translate_error(Api.ANTHROPIC, status, body))
    assert anthropic["error"]["message"] == message
    openai = json.loads(translate_error(Api.OPENAI, status, body))
    assert openai["error"]["message"] == message


def test_long_non_json_bodies_are_shortened() -> None:
    got = json.loads(translate_error(Api.ANTHROPIC, 502, b"x" * 5000))["error"]["message"]
    assert len(got) < 600
    assert got.endswith("…")


@pytest.mark.parametrize(
    ("status", "anthropic_type", "openai_type"),
    [
        (401, "authentication_error", "authentication_error"),
        (402, "billing_error", "invalid_request_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "invalid_request_error"),
        (413, "request_too_large", "invalid_request_error"),
        (418, "invalid_request_error", "invalid_request_error"),
        (503, "overloaded_error", "server_error"),
        (504, "timeout_error", "timeout_error"),
        (599, "api_error", "server_error"),
    ],
)
def test_the_error_type_follows_the_status(
    status: int, anthropic_type: str, openai_type: str
) -> None:
    body = b'{"error": {"message": "m"}}'
    assert (
        json.loads(translate_error(Api.ANTHROPIC, status, body))["error"]["type"] == anthropic_type
    )
    assert json.loads(translate_error(Api.OPENAI, status, body))["error"]["type"] == openai_type
