"""Translation end to end: the real SDKs through the proxy to a backend of the other API.

The fake upstream speaks one API; the client the other. Each test checks what the
client's SDK makes of the answer, what the backend was sent, and the counters:
``bytes_rx`` counts the backend's bytes, ``bytes_tx`` the client's, both exact, and the
connection says it was translated.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest
import trio

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyutil import (
    CLIENT_KEY,
    RunningProxy,
    anthropic_spec,
    instance,
    openai_spec,
    running_proxy,
)
from tests.streams import raw_chunks

TEXT = "Translated, chunk by chunk."


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def chat_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return sse(
        {
            "id": "chatcmpl-up",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-fake",
            "choices": [choice],
            **extra,
        }
    )


def chat_answer(
    message: dict[str, Any], finish: str, usage: tuple[int, int] = (11, 7)
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-fake",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


def claude_answer(
    content: list[dict[str, Any]], stop: str, usage: tuple[int, int] = (11, 7)
) -> dict[str, Any]:
    return {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": "claude-fake",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


def claude_stream(
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]], stop: str
) -> tuple[bytes, ...]:
    start = claude_answer([], stop)
    start.update(stop_reason=None)
    events = [sse({"type": "message_start", "message": start}, "message_start")]
    for index, (block, deltas) in enumerate(blocks):
        events.append(
            sse(
                {"type": "content_block_start", "index": index, "content_block": block},
                "content_block_start",
            )
        )
        events += [
            sse({"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta")
            for d in deltas
        ]
        events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    events.append(
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 7},
            },
            "message_delta",
        )
    )
    events.append(sse({"type": "message_stop"}, "message_stop"))
    return tuple(events)


def _openai(proxy: RunningProxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.openai_url, api_key=CLIENT_KEY, max_retries=0)


def _anthropic(proxy: RunningProxy) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key=CLIENT_KEY, max_retries=0)


def _proxy(nursery: trio.Nursery, fake: FakeUpstream, **settings: Any) -> Any:
    # The fake answers for both backends, but each instance's API decides the crossing.
    return running_proxy(
        nursery,
        backends=(openai_spec(fake.base_url), anthropic_spec(fake.base_url)),
        enable_activity_tracking=True,
        **settings,
    )


WEATHER: dict[str, Any] = {
    "name": "weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


# -- Anthropic client, OpenAI backend -------------------------------------------------------


async def test_anthropic_sdk_to_an_openai_backend_json(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with _proxy(nursery, fake) as proxy:
        fake.script(Scenario(json=chat_answer({"role": "assistant", "content": TEXT}, "stop")))
        async with _anthropic(proxy) as client:
            message = await client.messages.create(
                model="openai.1:gpt-fake",
                max_tokens=100,
                system="Be brief.",
                messages=[{"role": "user", "content": "hi"}],
            )
        doc = await proxy.diagnostics()
    assert message.content[0].text == TEXT  # type: ignore[union-attr]
    assert (message.stop_reason, message.usage.input_tokens, message.usage.output_tokens) == (
        "end_turn",
        11,
        7,
    )
    sent = fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent.json["max_tokens"] == 100
    assert "anthropic-version" not in sent.headers  # the client's API headers stay behind
    life = instance(doc, "openai.1")["activity"]["lifetime"]
    assert life["bytes_rx"] == fake.bytes_sent
    assert life["bytes_tx"] != life["bytes_rx"]  # the client got Anthropic's shape


async def test_anthropic_sdk_stream_from_an_openai_backend_with_exact_bytes(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    events = (
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": "Translated, "}),
        chat_chunk({"content": "chunk by chunk."}),
        chat_chunk({}, "stop"),
        sse(
            {
                "id": "chatcmpl-up",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-fake",
                "choices": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            }
        ),
        b"data: [DONE]\n\n",
    )
    async with _proxy(nursery, fake) as proxy:
        fake.script(Scenario(events=events))
        body = {
            "model": "openai.1:gpt-fake",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        async with httpx.AsyncClient(timeout=None) as http:
            raw = await http.post(proxy.url + "/v1/messages", json=body)
        fake.script(Scenario(events=events))
        async with (
            _anthropic(proxy) as client,
            client.messages.stream(
                model="openai.1:gpt-fake",
                max_tokens=50,
                messages=[{"role": "user", "content": "hi"}],
            ) as stream,
        ):
            texts = [t async for t in stream.text_stream]
            final = await stream.get_final_message()
        doc = await proxy.diagnostics()
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert "".join(texts) == TEXT
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4
    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}
    life = instance(doc, "openai.1")["activity"]["lifetime"]
    assert life["bytes_rx"] == fake.bytes_sent == 2 * sum(len(e) for e in events)
    # The raw client's bytes are one of the two translated streams, both the same size.
    assert life["bytes_tx"] == 2 * len(raw.content)


async def test_a_two_turn_tool_conversation_from_claude_to_an_openai_backend(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    async with _proxy(nursery, fake) as proxy:
        fake.script(
            Scenario(
                json=chat_answer(
                    {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
                )
            ),
            Scenario(json=chat_answer({"role": "assistant", "content": "Sunny in Paris."}, "stop")),
        )
        async with _anthropic(proxy) as client:
            first = await client.messages.create(
                model="openai.1:gpt-fake",
                max_tokens=100,
                tools=[WEATHER],  # type: ignore[list-item]
                messages=[{"role": "user", "content": "Weather in Paris?"}],
            )
            (use,) = [b for b in first.content if b.type == "tool_use"]
            second = await client.messages.create(
                model="openai.1:gpt-fake",
                max_tokens=100,
                tools=[WEATHER],  # type: ignore[list-item]
                messages=[
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": first.content},
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}
                        ],
                    },
                ],
            )
    assert first.stop_reason == "tool_use"
    assert (use.name, use.input) == ("weather", {"city": "Paris"})
    assert second.content[0].text == "Sunny in Paris."  # type: ignore[union-attr]
    tools = fake.requests[0].json["tools"]
    assert tools[0]["function"]["name"] == "weather"
    history = fake.requests[1].json["messages"]
    assert history[1]["tool_calls"][0]["id"] == use.id
    assert history[2] == {"role": "tool", "tool_call_id": use.id, "content": "sunny"}


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
async def test_each_finish_reason_becomes_its_stop_reason(
    nursery: trio.Nursery, fake: FakeUpstream, finish: str, stop: str
) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": "x"}
    if finish == "tool_calls":
        message["tool_calls"] = [
            {"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
        ]
    async with _proxy(nursery, fake) as proxy:
        fake.script(Scenario(json=chat_answer(message, finish)))
        async with _anthropic(proxy) as client:
            got = await client.messages.create(
                model="openai.1:gpt-fake", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
    assert got.stop_reason == stop


async def test_parallel_tool_calls_stream_to_claude_as_tool_use_blocks(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    def tool(index: int, **fields: Any) -> dict[str, Any]:
        return {"index": index, **fields}

    events = (
        chat_chunk({"role": "assistant", "content": None}),
        chat_chunk(
            {
                "tool_calls": [
                    tool(
                        0,
                        id="call_a",
                        type="function",
                        function={"name": "weather", "arguments": ""},
                    )
                ]
            }
        ),
        chat_chunk(
            {
                "tool_calls": [
                    tool(
                        1,
                        id="call_b",
                        type="function",
                        function={"name": "weather", "arguments": ""},
                    )
                ]
            }
        ),
        chat_chunk({"tool_calls": [tool(0, function={"arguments": '{"city": '})]}),
        chat_chunk({"tool_calls": [tool(1, function={"arguments": '{"city": "Rome"}'})]}),
        chat_chunk({"tool_calls": [tool(0, function={"arguments": '"Paris"}'})]}),
        chat_chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    )
    async with _proxy(nursery, fake) as proxy:
        fake.script(Scenario(events=events))
        async with (
            _anthropic(proxy) as client,
            client.messages.stream(
                model="openai.1:gpt-fake",
                max_tokens=50,
                tools=[WEATHER],  # type: ignore[list-item]
                messages=[{"role": "user", "content": "Paris and Rome?"}],
            ) as stream,
        ):
            final = await stream.get_final_message()
    uses = [(b.id, b.input) for b in final.content if b.type == "tool_use"]
    assert sorted(uses) == [("call_a", {"city": "Paris"}), ("call_b", {"city": "Rome"})]
    assert final.stop_reason == "tool_use"


async def test_an_image_reaches_an_openai_backend_as_a_data_url(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with _proxy(nursery, fake) as proxy:
        fake.script(Scenario(json=chat_answer({"role": "assistant", "content": "A dot."}, "stop")))
        async with _anthropic(proxy) as client:
            await client.messages.create(
                model="openai.1:gpt-fake",
                max_tokens=10,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": "iVBORw0KGgo=",
                                },
                            },
                            {"type": "text", "text": "What is this?"},
                        ],
                    }
                ],
            )
    (part, text) = fake.requests[-1].json["messages"][0]["content"]
    assert part == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert text == {"type": "text", "text": "What is this?"}


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, "invalid_request_error"), (429, "rate_limit_error"), (500, "api_error")],
)
async def test_openai_backend_errors_reach_claude_in_its_shape(
    nursery: trio.Nursery, fake: FakeUpstream, status: int, error_type: str
) -> None:
    async with _proxy(nursery, fake) as proxy:
        fake.script(Scenario(status=status, headers={"retry-after": "1"}))
        async with _anthropic(proxy) as client:
            with pytest.raises(anthropic.APIStatusError) as caught:
                await client.messages.create(
                    model="openai.1:gpt-fake",
                    max_tokens=5,
                    messages=[{"role": "user", "content": "x"}],
                )
    assert caught.value.status_code == status
    body = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == error_type  # type: ignore[index]
    assert f"Scripted error {status}" in body["error"]["message"]  # type: ignore[index]


async def test_a_translated_stream_cut_mid_way_ends_with_claudes_error_event(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    events = (
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": "Half"}),
        chat_chunk({"content": " and"}),
    )
    async with _proxy(nursery, fake) as proxy:
        fake.script(Scenario(events=events, cut_after=3))
        texts: list[str] = []
        async with _anthropic(proxy) as client:
            with pytest.raises(anthropic.APIStatusError) as caught:
                async with client.messages.stream(
                    model="openai.1:gpt-fake",
                    max_tokens=5,
                    messages=[{"role": "user", "content": "x"}],
                ) as stream:
                    async for text in stream.text_stream:
                        texts.append(text)
        doc = await proxy.diagnostics()
    assert "Backend 'openai.1'" in str(caught.value)
    assert "".join(texts) == "Half and"  # the complete events came first
    assert instance(doc, "openai.1")["activity"]["lifetime"]["errors"] == 1


async def test_a_backend_that_breaks_after_the_translated_stream_ended_spoils_nothing(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    events = (
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": "All of it."}),
        chat_chunk({}, "stop"),
        b"data: [DONE]\n\n",
    )
    async with _proxy(nursery, fake) as proxy:
        # Every event, then the connection closes without the body's last chunk.
        fake.script(Scenario(events=events, cut_after=len(events)))
        body = {
            "model": "openai.1:gpt-fake",
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
        async with httpx.AsyncClient(timeout=None) as http:
            raw = await http.post(proxy.url + "/v1/messages", json=body)
        doc = await proxy.diagnostics()
    assert raw.content.rstrip().endswith(b'data: {"type":"message_stop"}')
    assert b"event: error" not in raw.content
    life = instance(doc, "openai.1")["activity"]["lifetime"]
    assert (life["completed"], life["errors"]) == (1, 0)
    assert life["bytes_rx"] == fake.bytes_sent


async def test_a_translated_connection_says_so_while_in_flight(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with _proxy(nursery, fake) as proxy:
        fake.script(Scenario(stall_after_headers=True))
        body = {"model": "openai.1:gpt-fake", "max_tokens": 5, "stream": True, "messages": []}
        async with (
            httpx.AsyncClient() as http,
            http.stream("POST", proxy.url + "/v1/messages", json=body) as response,
            raw_chunks(response),
        ):
            await fake.wait_in_flight(1)
            doc = await proxy.diagnostics()
    (conn,) = instance(doc, "openai.1")["activity"]["connections"]
    assert (conn["endpoint"], conn["translated"], conn["backend_api"]) == (
        "messages",
        True,
        "openai",
    )


async def test_an_untranslatable_field_is_a_400_naming_it(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with _proxy(nursery, fake) as proxy, _openai(proxy) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="anthropic.1:claude-fake", n=2, messages=[{"role": "user", "content": "x"}]
            )
    assert "n: 2 cannot be translated to the Anthropic Messages API" in str(caught.value)
    assert fake.requests == []


# -- OpenAI client, Anthropic backend -------------------------------------------------------


async def test_openai_sdk_to_an_anthropic_backend_json_with_default_max_tokens(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with _proxy(nursery, fake, anthropic_default_max_tokens=777) as proxy:
        fake.script(Scenario(json=claude_answer([{"type": "text", "text": TEXT}], "end_turn")))
        async with _openai(proxy) as client:
            completion = await client.chat.completions.create(
                model="anthropic.1:claude-fake",
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hi"},
                ],
            )
        doc = await proxy.diagnostics()
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == (TEXT, "stop")
    assert completion.usage is not None and completion.usage.prompt_tokens == 11
    sent = fake.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.json["max_tokens"] == 777
    assert sent.json["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    assert sent.headers["anthropic-version"]  # the dialect adds it
    life = instance(doc, "anthropic.1")["activity"]["lifetime"]
    assert life["bytes_rx"] == fake.bytes_sent != life["bytes_tx"]


async def test_openai_sdk_stream_from_an_anthropic_backend_with_tools(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    events = claude_stream(
        [
            ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Checking. "}]),
            (
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
                [
                    {"type": "input_json_delta", "partial_json": '{"city": '},
                    {"type": "input_json_delta", "partial_json": '"Paris"}'},
                ],
            ),
        ],
        "tool_use",
    )
    async with _proxy(nursery, fake) as proxy:
        fake.script(Scenario(events=events))
        async with _openai(proxy) as client:
            stream = await client.chat.completions.create(
                model="anthropic.1:claude-fake",
                stream=True,
                stream_options={"include_usage": True},
                tools=[
                    {
                        "type": "function",
                        "function": {"name": "weather", "parameters": WEATHER["input_schema"]},
                    }
                ],
                messages=[{"role": "user", "content": "Weather in Paris?"}],
            )
            chunks = [chunk async for chunk in stream]
        doc = await proxy.diagnostics()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    arguments = "".join(
        call.function.arguments or ""
        for c in chunks
        if c.choices
        for call in c.choices[0].delta.tool_calls or []
        if call.function is not None
    )
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert text == "Checking. "
    assert json.loads(arguments) == {"city": "Paris"}
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    assert fake.requests[-1].json["tools"][0]["name"] == "weather"
    life = instance(doc, "anthropic.1")["activity"]["lifetime"]
    assert life["bytes_rx"] == fake.bytes_sent == sum(len(e) for e in events)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, openai.BadRequestError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
async def test_anthropic_backend_errors_reach_openai_clients_in_their_shape(
    nursery: trio.Nursery, fake: FakeUpstream, status: int, error_class: type[Exception]
) -> None:
    async with _proxy(nursery, fake) as proxy:
        fake.script(Scenario(status=status, headers={"retry-after": "1"}))
        async with _openai(proxy) as client:
            with pytest.raises(error_class) as caught:
                await client.chat.completions.create(
                    model="anthropic.1:claude-fake", messages=[{"role": "user", "content": "x"}]
                )
    assert f"Scripted error {status}" in str(caught.value)


# -- aliases ---------------------------------------------------------------------------------


async def test_an_alias_sends_an_agents_model_name_to_another_backend(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with _proxy(nursery, fake, aliases={"claude-sonnet-4-5": "openai.1:gpt-fake"}) as proxy:
        fake.script(Scenario(json=chat_answer({"role": "assistant", "content": TEXT}, "stop")))
        async with _anthropic(proxy) as client:
            message = await client.messages.create(
                model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
            listing = await client.models.list()
    assert message.content[0].text == TEXT  # type: ignore[union-attr]
    assert fake.requests[-1].path == "/v1/chat/completions"
    assert fake.requests[-1].json["model"] == "gpt-fake"
    assert "claude-sonnet-4-5" in [m.id for m in listing.data]


async def test_the_clients_query_string_stays_behind_on_a_crossing(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with _proxy(nursery, fake) as proxy:
        fake.script(Scenario(json=chat_answer({"role": "assistant", "content": TEXT}, "stop")))
        body = {"model": "openai.1:gpt-fake", "max_tokens": 5, "messages": []}
        async with httpx.AsyncClient() as http:
            answer = await http.post(proxy.url + "/v1/messages?beta=true", json=body)
    assert answer.status_code == 200, answer.text
    # ?beta=true is Claude Code's Messages API parameter, not the OpenAI backend's.
    assert (fake.requests[-1].path, fake.requests[-1].query) == ("/v1/chat/completions", "")


# -- encodings -----------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_backend_that_would_compress_is_asked_for_identity_on_a_crossing(
    nursery: trio.Nursery, fake: FakeUpstream, streaming: bool
) -> None:
    # The SDKs accept gzip, and the backend's compressed answer reached the translator
    # as it was: a 502 ("not JSON"), or a stream of one error event. Claude Code, with
    # its retries, then hung.
    events = (
        chat_chunk({"role": "assistant", "content": TEXT}),
        chat_chunk({}, "stop"),
        b"data: [DONE]\n\n",
    )
    async with _proxy(nursery, fake) as proxy:
        if streaming:
            fake.script(Scenario(events=events, gzip=True))
        else:
            answer = chat_answer({"role": "assistant", "content": TEXT}, "stop")
            fake.script(Scenario(json=answer, gzip=True))
        async with _anthropic(proxy) as client:
            kwargs: dict[str, Any] = {
                "model": "openai.1:gpt-fake",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "hi"}],
            }
            if streaming:
                async with client.messages.stream(**kwargs) as stream:
                    text = "".join([t async for t in stream.text_stream])
            else:
                message = await client.messages.create(**kwargs)
                text = message.content[0].text
        doc = await proxy.diagnostics()
    assert text == TEXT
    assert fake.requests[-1].headers["accept-encoding"] == "identity"
    life = instance(doc, "openai.1")["activity"]["lifetime"]
    assert life["bytes_rx"] == fake.bytes_sent and life["completed"] == 1
