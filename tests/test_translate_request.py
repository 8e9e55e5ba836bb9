"""Requests across the APIs: every mapping both ways, what gets 400, and the field tables.

The Claude Code bodies below copy what Claude Code 2.x sends (system prompt as blocks
led by its billing line and carrying ``cache_control``, ``thinking``, ``output_config``,
``context_management``, ``metadata.user_id``, tools with JSON-Schema drafts, history with
signed thinking blocks); they must translate without a 400.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import message_create_params as anthropic_params
from anthropic.types.beta import message_create_params as anthropic_beta_params
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import completion_create_params as openai_params

from trioproxy.errors import Api, BadRequest
from trioproxy.translate import (
    CHAT_FIELDS,
    MESSAGES_FIELDS,
    UntranslatableField,
    fields,
    translate_request,
)
from trioproxy.translate.fields import markdown_table

DOC = Path(__file__).parent.parent / "docs" / "translation.md"


def to_chat(payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return translate_request(Api.ANTHROPIC, payload, **kwargs)


def to_messages(payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return translate_request(Api.OPENAI, payload, **kwargs)


def messages_req(**fields: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


def chat_req(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


# -- Anthropic client → OpenAI backend ------------------------------------------------


def test_minimal_messages_request() -> None:
    assert to_chat(messages_req()) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100,
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"system": "be brief"}, {"messages": [{"role": "system", "content": "be brief"}]}),
        (
            {
                "system": [
                    {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "two"},
                ]
            },
            {"messages": [{"role": "system", "content": "one\n\ntwo"}]},
        ),
        (
            {"system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.1;"}]},
            {"messages": []},
        ),
        ({"stop_sequences": ["END", "STOP"]}, {"stop": ["END", "STOP"]}),
        ({"stop_sequences": []}, {}),
        (
            {"temperature": 0.2, "top_p": 0.9, "top_k": 40},
            {"temperature": 0.2, "top_p": 0.9, "top_k": 40},
        ),
        ({"metadata": {"user_id": "user_1"}}, {"user": "user_1"}),
        ({"metadata": {}}, {}),
        ({"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}),
        ({"stream": False}, {}),
        ({"context_management": {"edits": [{"type": "clear_thinking_20251015"}]}}, {}),
        ({"cache_control": {"type": "ephemeral"}, "speed": "fast", "service_tier": "auto"}, {}),
        ({"diagnostics": {"previous_message_id": "msg_1"}, "inference_geo": "us"}, {}),
        ({"temperature": None}, {}),
    ],
)
def test_messages_top_level_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    got = to_chat(messages_req(**fields))
    user = {"role": "user", "content": "hi"}
    want = {"model": "m", "max_tokens": 100, **expected}
    want["messages"] = [*expected.get("messages", []), user]
    assert got == want


@pytest.mark.parametrize(
    ("thinking", "output_config", "effort"),
    [
        (None, None, None),
        ({"type": "adaptive"}, None, None),
        ({"type": "adaptive"}, {"effort": "low"}, "low"),
        ({"type": "adaptive"}, {"effort": "medium"}, "medium"),
        ({"type": "adaptive"}, {"effort": "high"}, "high"),
        ({"type": "adaptive"}, {"effort": "xhigh"}, "high"),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
        (None, {"effort": "low"}, "low"),
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, None, "high"),
        ({"type": "enabled", "budget_tokens": 31999}, None, "high"),
        ({"type": "enabled", "budget_tokens": 2000}, {"effort": "high"}, "high"),
        ({"type": "disabled"}, {"effort": "high"}, None),
    ],
)
def test_thinking_becomes_reasoning_effort(
    thinking: dict[str, Any] | None, output_config: dict[str, Any] | None, effort: str | None
) -> None:
    got = to_chat(messages_req(thinking=thinking, output_config=output_config))
    assert got.get("reasoning_effort") == effort
    off = to_chat(
        messages_req(thinking=thinking, output_config=output_config), send_reasoning_effort=False
    )
    assert "reasoning_effort" not in off


def test_output_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    got = to_chat(messages_req(output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert got["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


IMAGE_B64 = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("plain", [{"role": "user", "content": "plain"}]),
        ([{"type": "text", "text": "one"}], [{"role": "user", "content": "one"}]),
        (
            [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
            [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
                }
            ],
        ),
        (
            [{"type": "image", "source": IMAGE_B64}, {"type": "text", "text": "what?"}],
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                        },
                        {"type": "text", "text": "what?"},
                    ],
                }
            ],
        ),
        (
            [{"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}}],
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}],
                }
            ],
        ),
        (
            [
                {
                    "type": "document",
                    "title": "spec.pdf",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                }
            ],
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {
                                "filename": "spec.pdf",
                                "file_data": "data:application/pdf;base64,JVBE",
                            },
                        }
                    ],
                }
            ],
        ),
        (
            [
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                }
            ],
            [{"role": "user", "content": "notes"}],
        ),
    ],
)
def test_user_blocks(content: Any, expected: list[dict[str, Any]]) -> None:
    got = to_chat(messages_req(messages=[{"role": "user", "content": content}]))
    assert got["messages"] == expected


def test_a_tool_use_conversation_keeps_openai_order() -> None:
    messages = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "two calls", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "no"}, {"type": "text", "text": "data"}],
                    "is_error": True,
                },
                {"type": "text", "text": "and now?", "cache_control": {"type": "ephemeral"}},
            ],
        },
    ]
    got = to_chat(messages_req(messages=messages))
    assert got["messages"] == [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no\ndata"},
        {"role": "user", "content": "and now?"},
    ]


def test_tool_result_images_move_to_the_user_message_after_the_tool_messages() -> None:
    messages = [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "shot", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t",
                    "content": [
                        {"type": "text", "text": "here"},
                        {"type": "image", "source": IMAGE_B64},
                    ],
                }
            ],
        },
    ]
    got = to_chat(messages_req(messages=messages))["messages"]
    assert got[1:] == [
        {"role": "tool", "tool_call_id": "t", "content": "here"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ],
        },
    ]
    assert got[0] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "shot", "arguments": "{}"}}
        ],
    }


def test_an_assistant_turn_of_only_thinking_is_left_out() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "xyz"}]},
        {"role": "user", "content": "b"},
    ]
    assert to_chat(messages_req(messages=messages))["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ]


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


@pytest.mark.parametrize(
    ("choice", "tool_choice", "parallel"),
    [
        (None, None, None),
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        (
            {"type": "tool", "name": "weather"},
            {"type": "function", "function": {"name": "weather"}},
            None,
        ),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
    ],
)
def test_tools_and_tool_choice(choice: Any, tool_choice: Any, parallel: bool | None) -> None:
    tools = [
        {
            "name": "weather",
            "description": "Weather now",
            "input_schema": WEATHER_SCHEMA,
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "custom", "name": "noop", "input_schema": {"type": "object"}, "strict": True},
    ]
    got = to_chat(messages_req(tools=tools, tool_choice=choice))
    assert got["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather now",
                "parameters": WEATHER_SCHEMA,
            },
        },
        {
            "type": "function",
            "function": {"name": "noop", "parameters": {"type": "object"}, "strict": True},
        },
    ]
    assert got.get("tool_choice") == tool_choice
    assert got.get("parallel_tool_calls") == parallel


def test_no_tools_means_no_tools_field() -> None:
    got = to_chat(messages_req(tools=[], tool_choice={"type": "auto"}))
    assert "tools" not in got
    assert "tool_choice" not in got


CLAUDE_CODE_SYSTEM = [
    {
        "type": "text",
        "text": "x-anthropic-billing-header: cc_version=2.1.37.0d9; cc_entrypoint=cli; cch=fa690;",
    },
    {
        "type": "text",
        "text": "You are Claude Code, Anthropic's official CLI for Claude.",
        "cache_control": {"type": "ephemeral"},
    },
    {
        "type": "text",
        "text": "You are an interactive CLI tool…",
        "cache_control": {"type": "ephemeral"},
    },
]
CLAUDE_CODE_TOOLS = [
    {
        "name": "Bash",
        "description": "Executes a given bash command",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
            "required": ["command"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    },
    {
        "name": "Read",
        "description": "Reads a file",
        "input_schema": {
            "type": "object",
            "properties": {"file_path": {"type": "string"}},
            "required": ["file_path"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
        "cache_control": {"type": "ephemeral"},
    },
]
CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 32000,
    "stream": True,
    "temperature": 1,
    "system": CLAUDE_CODE_SYSTEM,
    "tools": CLAUDE_CODE_TOOLS,
    "metadata": {"user_id": "user_5f2c_account_1b7e_session_9a41"},
    "thinking": {"type": "adaptive"},
    "output_config": {"effort": "medium"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                {"type": "text", "text": "list the files", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "thinking",
                    "thinking": "I should run ls.",
                    "signature": "EqQBCkYIBxgCKkA",
                },
                {"type": "tool_use", "id": "toolu_01A", "name": "Bash", "input": {"command": "ls"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A",
                    "content": "README.md\nsrc",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
    ],
}


def test_a_claude_code_body_translates() -> None:
    got = to_chat(CLAUDE_CODE_BODY)
    assert got == {
        "model": "claude-sonnet-4-5-20250929",
        "messages": [
            {
                "role": "system",
                "content": "You are Claude Code, Anthropic's official CLI for Claude.\n\n"
                "You are an interactive CLI tool…",
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                    {"type": "text", "text": "list the files"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_01A",
                        "type": "function",
                        "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "README.md\nsrc"},
        ],
        "max_tokens": 32000,
        "temperature": 1,
        "user": "user_5f2c_account_1b7e_session_9a41",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": tool["name"],
                    "description": tool["description"],
                    "parameters": tool["input_schema"],
                },
            }
            for tool in CLAUDE_CODE_TOOLS
        ],
        "reasoning_effort": "medium",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    "variant",
    [
        {"thinking": {"type": "enabled", "budget_tokens": 31999}, "output_config": None},
        {"thinking": {"type": "disabled"}},
        {"metadata": {"user_id": '{"device_id":"d","account_uuid":"a","session_id":"s"}'}},
        {
            "stream": False,
            "max_tokens": 512,
            "temperature": 0,
            "system": "Summarize in 50 characters.",
        },
        {
            "cache_control": {"type": "ephemeral"},
            "speed": "fast",
            "betas": ["context-management-2025-06-27"],
        },
    ],
)
def test_claude_code_variants_translate(variant: dict[str, Any]) -> None:
    body = copy.deepcopy(CLAUDE_CODE_BODY)
    body.update(variant)
    got = to_chat({k: v for k, v in body.items() if v is not None})
    assert got["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "toolu_01A",
        "content": "README.md\nsrc",
    }


def test_an_unknown_top_level_field_is_left_out_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="trioproxy.translate.fields"):
        out = to_chat(messages_req(frequency_penalty=1, some_future_hint={"x": 1}))
    assert "frequency_penalty" not in out and "some_future_hint" not in out
    assert "unknown field 'some_future_hint'" in caplog.text


def test_unknown_fields_are_warned_of_once_each_and_at_most_so_many(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fields, "_WARNED", set())
    monkeypatch.setattr(fields, "WARN_AT_MOST", 2)
    with caplog.at_level("WARNING", logger="trioproxy.translate.fields"):
        to_chat(messages_req(hint_a=1))
        to_chat(messages_req(hint_a=1))  # once per name
        to_chat(messages_req(hint_b=1, hint_c=1))  # a client cannot flood the log
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        "translation to the OpenAI Chat Completions API leaves out the unknown field 'hint_a'",
        "translation to the OpenAI Chat Completions API leaves out the unknown field 'hint_b'",
    ]


# What Claude Code 2.1.332 sent for `claude -p "say hi"` (captured in `nox -s clients`),
# shortened: its environment comes as a system message after the first user turn, the
# system prompt's blocks carry `cache_control`, a tool is deferred, `thinking` says how
# to display it, and `metadata.user_id` is a JSON string.
CLAUDE_CODE_2_1_BODY: dict[str, Any] = {
    "model": "claude-opus-5-5",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>\nAttribution…</system-reminder>"},
                {"type": "text", "text": "say hi"},
            ],
        },
        {
            "role": "system",
            "content": [
                {
                    "type": "text",
                    "text": "# Environment\nYou have been invoked in the following environment…",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
    ],
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.0b8;"},
        {
            "type": "text",
            "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
            "cache_control": {"type": "ephemeral"},
        },
    ],
    "tools": [
        {
            "name": "Bash",
            "description": "Executes a given bash command",
            "input_schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
                "additionalProperties": False,
            },
        },
        {
            "name": "DeferredToolPlaceholder",
            "description": "Reserved placeholder that keeps deferred tool loading active.",
            "input_schema": {"type": "object", "properties": {}},
            "defer_loading": True,
        },
    ],
    "metadata": {"user_id": '{"device_id":"3e27","account_uuid":"","session_id":"f320"}'},
    "max_tokens": 128000,
    "thinking": {"type": "adaptive", "display": "omitted"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "medium"},
    "stream": True,
}


def test_a_claude_code_2_1_body_keeps_its_mid_conversation_system_message_in_place() -> None:
    got = to_chat(CLAUDE_CODE_2_1_BODY)
    assert got["messages"] == [
        {
            "role": "system",
            "content": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>\nAttribution…</system-reminder>"},
                {"type": "text", "text": "say hi"},
            ],
        },
        {
            "role": "system",
            "content": "# Environment\nYou have been invoked in the following environment…",
        },
    ]
    assert [tool["function"]["name"] for tool in got["tools"]] == [
        "Bash",
        "DeferredToolPlaceholder",
    ]
    assert "defer_loading" not in got["tools"][1]["function"]
    assert got["reasoning_effort"] == "medium"
    assert got["user"] == CLAUDE_CODE_2_1_BODY["metadata"]["user_id"]
    assert (got["max_tokens"], got["stream"]) == (128000, True)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("be brief", [{"role": "system", "content": "be brief"}]),
        (
            [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
            [{"role": "system", "content": "one\n\ntwo"}],
        ),
        ([], []),
    ],
)
def test_a_system_message_stays_where_it_is(content: Any, expected: list[Any]) -> None:
    first = {"role": "user", "content": "hi"}
    later = {"role": "user", "content": "and now?"}
    system = {"role": "system", "content": content}
    got = to_chat(messages_req(messages=[first, system, later]))
    assert got["messages"] == [first, *expected, later]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"container": "container_1"}, "container"),
        ({"mcp_servers": [{"type": "url", "url": "https://mcp", "name": "m"}]}, "mcp_servers"),
        ({"compaction": {"type": "compact"}}, "compaction"),
        ({"thread": {"type": "create"}}, "thread"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type"),
        (
            {"output_config": {"format": {"type": "text"}}},
            "output_config.format.type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result", "source": "s"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [{"type": "server_tool_use", "id": "s", "name": "web_search"}],
                    }
                ]
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0].source.type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                                "citations": {"enabled": True},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].citations",
        ),
    ],
)
def test_messages_fields_without_a_counterpart_are_refused(
    fields: dict[str, Any], path: str
) -> None:
    with pytest.raises(UntranslatableField) as caught:
        to_chat(messages_req(**fields))
    assert caught.value.message.startswith(f"{path}: ")
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "developer", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "system", "content": [{"type": "image"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        ({"system": [{"type": "text", "text": 3}]}, "system[0].text"),
        ({"tools": [{"name": "x"}]}, "tools[0].input_schema"),
        (
            {"tool_choice": {"type": "maybe"}, "tools": [{"name": "x", "input_schema": {}}]},
            "tool_choice.type",
        ),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"stop_sequences": "END"}, "stop_sequences"),
    ],
)
def test_malformed_messages_requests_name_the_path(fields: dict[str, Any], path: str) -> None:
    with pytest.raises(BadRequest) as caught:
        to_chat(messages_req(**fields))
    assert caught.value.message.startswith(f"{path}: ")


# -- OpenAI client → Anthropic backend --------------------------------------------------


def test_minimal_chat_request_gets_the_default_max_tokens() -> None:
    assert to_messages(chat_req()) == {
        "model": "m",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert to_messages(chat_req(), default_max_tokens=1000)["max_tokens"] == 1000


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 50}, {"max_tokens": 50}),
        ({"max_completion_tokens": 70, "max_tokens": 50}, {"max_tokens": 70}),
        ({"max_tokens": None}, {}),
        ({"stop": "END"}, {"stop_sequences": ["END"]}),
        ({"stop": ["A", "B"]}, {"stop_sequences": ["A", "B"]}),
        (
            {"temperature": 0.5, "top_p": 0.8, "top_k": 5},
            {"temperature": 0.5, "top_p": 0.8, "top_k": 5},
        ),
        ({"user": "u1"}, {"metadata": {"user_id": "u1"}}),
        ({"user": "u1", "safety_identifier": "s1"}, {"metadata": {"user_id": "s1"}}),
        ({"stream": True, "stream_options": {"include_usage": True}}, {"stream": True}),
        ({"n": 1, "logprobs": False, "top_logprobs": 0, "logit_bias": {}}, {}),
        ({"frequency_penalty": 0, "presence_penalty": 0.0, "modalities": ["text"]}, {}),
        ({"seed": 7, "store": True, "metadata": {"a": "b"}, "service_tier": "auto"}, {}),
        (
            {
                "prompt_cache_key": "k",
                "verbosity": "low",
                "prediction": {"type": "content", "content": "x"},
            },
            {},
        ),
        ({"response_format": {"type": "text"}}, {}),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "r", "schema": {"type": "object"}},
                }
            },
            {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
        ),
    ],
)
def test_chat_top_level_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    want = {
        "model": "m",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "hi"}],
        **expected,
    }
    assert to_messages(chat_req(**fields)) == want


@pytest.mark.parametrize(
    ("fields", "max_tokens", "thinking"),
    [
        ({"reasoning_effort": "none"}, 4096, None),
        ({"reasoning_effort": "minimal"}, 4096, None),
        ({"reasoning_effort": "low"}, 4096 + 2048, {"type": "enabled", "budget_tokens": 2048}),
        ({"reasoning_effort": "medium"}, 4096 + 8192, {"type": "enabled", "budget_tokens": 8192}),
        ({"reasoning_effort": "high"}, 4096 + 16384, {"type": "enabled", "budget_tokens": 16384}),
        ({"reasoning_effort": "xhigh"}, 4096 + 32768, {"type": "enabled", "budget_tokens": 32768}),
        (
            {"reasoning_effort": "high", "max_completion_tokens": 40000},
            40000,
            {"type": "enabled", "budget_tokens": 16384},
        ),
        (
            {"reasoning_effort": "high", "max_tokens": 10000},
            10000,
            {"type": "enabled", "budget_tokens": 5000},
        ),
        ({"reasoning_effort": "low", "max_tokens": 2000}, 2000, None),
    ],
)
def test_reasoning_effort_becomes_thinking(
    fields: dict[str, Any], max_tokens: int, thinking: dict[str, Any] | None
) -> None:
    got = to_messages(chat_req(**fields))
    assert got["max_tokens"] == max_tokens
    assert got.get("thinking") == thinking


def test_system_and_developer_messages_become_the_system_prompt() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": [{"type": "text", "text": "use French"}]},
    ]
    got = to_messages(chat_req(messages=messages))
    assert got["system"] == [
        {"type": "text", "text": "be brief"},
        {"type": "text", "text": "use French"},
    ]
    assert got["messages"] == [{"role": "user", "content": "hi"}]
    one = to_messages(
        chat_req(messages=[{"role": "system", "content": "be brief"}, *messages[1:2]])
    )
    assert one["system"] == "be brief"


def test_a_chat_tool_conversation_becomes_messages_turns() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "functions.weather:1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": ""},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {
            "role": "tool",
            "tool_call_id": "functions.weather:1",
            "content": [{"type": "text", "text": "20C"}],
        },
        {"role": "user", "content": "thanks; and tomorrow?"},
        {"role": "assistant", "content": "Sunny.", "name": "bot"},
    ]
    got = to_messages(chat_req(messages=messages))
    assert got["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "functions_weather_1", "name": "weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "functions_weather_1",
                    "content": [{"type": "text", "text": "20C"}],
                },
                {"type": "text", "text": "thanks; and tomorrow?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Sunny."}]},
    ]


@pytest.mark.parametrize(
    ("part", "block"),
    [
        ({"type": "text", "text": "hi"}, {"type": "text", "text": "hi"}),
        (
            {
                "type": "image_url",
                "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "low"},
            },
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
            },
        ),
        (
            {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}},
        ),
        (
            {
                "type": "file",
                "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
            },
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                "title": "a.pdf",
            },
        ),
    ],
)
def test_user_parts(part: dict[str, Any], block: dict[str, Any]) -> None:
    got = to_messages(chat_req(messages=[{"role": "user", "content": [part]}]))
    assert got["messages"] == [{"role": "user", "content": [block]}]


WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "weather", "description": "Weather now", "parameters": WEATHER_SCHEMA},
}


@pytest.mark.parametrize(
    ("fields", "tool_choice"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "weather"}}},
            {"type": "tool", "name": "weather"},
        ),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"parallel_tool_calls": True}, None),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_chat_tools_and_tool_choice(fields: dict[str, Any], tool_choice: Any) -> None:
    bare = {"type": "function", "function": {"name": "ping", "strict": True}}
    got = to_messages(chat_req(tools=[WEATHER_TOOL, bare], **fields))
    assert got["tools"] == [
        {"name": "weather", "description": "Weather now", "input_schema": WEATHER_SCHEMA},
        {"name": "ping", "input_schema": {"type": "object", "properties": {}}, "strict": True},
    ]
    assert got.get("tool_choice") == tool_choice


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"moderation": {"model": "omni"}}, "moderation"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "tools[0].type"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "allowed_tools"}}, "tool_choice.type"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}
                ]
            },
            "messages[0].content[0].file",
        ),
        (
            {"messages": [{"role": "assistant", "content": "x", "function_call": {"name": "f"}}]},
            "messages[0].function_call",
        ),
    ],
)
def test_chat_fields_whose_loss_would_change_the_answer_are_refused(
    fields: dict[str, Any], path: str
) -> None:
    with pytest.raises(UntranslatableField) as caught:
        to_messages(chat_req(**fields))
    assert caught.value.message.startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"reasoning_effort": "huge"}, "reasoning_effort"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:x"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        ({"tools": [WEATHER_TOOL], "tool_choice": 5}, "tool_choice"),
    ],
)
def test_malformed_chat_requests_name_the_path(fields: dict[str, Any], path: str) -> None:
    with pytest.raises(BadRequest) as caught:
        to_messages(chat_req(**fields))
    assert caught.value.message.startswith(f"{path}: ")


# -- the field tables ---------------------------------------------------------------------


def _params(*typed_dicts: type) -> set[str]:
    return {name for cls in typed_dicts for name in typing.get_type_hints(cls)}


def test_every_anthropic_sdk_request_field_has_a_rule() -> None:
    sdk = _params(
        anthropic_params.MessageCreateParamsStreaming,
        anthropic_beta_params.MessageCreateParamsStreaming,
    )
    assert sdk - set(MESSAGES_FIELDS) == set()


def test_every_openai_sdk_request_field_has_a_rule() -> None:
    sdk = _params(openai_params.CompletionCreateParamsStreaming)
    assert sdk - set(CHAT_FIELDS) == set()


@pytest.mark.parametrize("table", [MESSAGES_FIELDS, CHAT_FIELDS])
def test_the_documentation_shows_the_tables_as_the_code_has_them(table: Any) -> None:
    assert markdown_table(table) in DOC.read_text()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)
WORDS = st.sampled_from(
    [
        "text",
        "image",
        "document",
        "tool_use",
        "tool_result",
        "thinking",
        "function",
        "base64",
        "url",
    ]
)
BLOCK = st.dictionaries(
    st.sampled_from(["type", "text", "content", "source", "tool_use_id", "input", "id", "name"]),
    WORDS | JSON,
    max_size=4,
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "tool", "system", "x"])},
    optional={
        "content": JSON | st.lists(BLOCK, max_size=3),
        "tool_calls": st.lists(BLOCK, max_size=2),
        "tool_call_id": JSON,
    },
)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([Api.ANTHROPIC, Api.OPENAI]),
    st.fixed_dictionaries(
        {"model": st.just("m"), "messages": st.lists(MESSAGE, max_size=3)},
        optional={
            name: JSON | st.lists(BLOCK, max_size=2)
            for name in ("system", "tools", "tool_choice", "stop", "max_tokens", "thinking")
        },
    ),
)
def test_any_json_request_translates_or_gets_a_400(api: Api, payload: dict[str, Any]) -> None:
    try:
        translate_request(api, payload)
    except BadRequest as exc:
        assert exc.status == 400
        assert exc.message


@pytest.mark.parametrize(
    ("api", "payload"),
    [
        (Api.ANTHROPIC, CLAUDE_CODE_BODY),
        (
            Api.OPENAI,
            chat_req(
                messages=[
                    {"role": "system", "content": "s"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "a.b",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "a.b", "content": "r"},
                    {"role": "user", "content": "next"},
                ],
                tools=[WEATHER_TOOL],
                parallel_tool_calls=False,
                reasoning_effort="low",
            ),
        ),
    ],
)
def test_the_clients_body_is_left_as_it_was(api: Api, payload: dict[str, Any]) -> None:
    before = copy.deepcopy(payload)
    translate_request(api, payload)
    assert payload == before
