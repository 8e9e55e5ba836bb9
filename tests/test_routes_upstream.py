"""Every route relayed to a real HTTP backend (the fake upstream), by the real SDKs.

What the backend sees (path, query string, version and beta headers, no client
credentials), what the client gets, and the byte counters, exact on both sides.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
import trio

from tests.fake_upstream import DEFAULT_TEXT, FakeUpstream, Scenario
from tests.proxyutil import (
    BACKEND_KEY,
    CLIENT_KEY,
    RunningProxy,
    anthropic_spec,
    instance,
    openai_spec,
    running_proxy,
)
from tests.streams import raw_chunks
from trioproxy.settings import BackendSpec

CLOSE_WITHIN = 1.0  # seconds: the promise the proxy makes on a hang-up


def _openai(proxy: RunningProxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.openai_url, api_key=CLIENT_KEY, max_retries=0)


def _backends(fake: FakeUpstream) -> tuple[BackendSpec, ...]:
    return (openai_spec(fake.base_url), anthropic_spec(fake.base_url))


async def test_responses_json_and_stream_reach_the_backends_responses_path(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(
        nursery, backends=_backends(fake), enable_activity_tracking=True
    ) as proxy:
        async with _openai(proxy) as client:
            reply = await client.responses.with_raw_response.create(
                model="openai.1:gpt-fake", input="hi"
            )
            response = reply.parse()
            fake.script(Scenario(chunks=4))
            stream = await client.responses.create(model="gpt-fake", input="hi", stream=True)
            events = [event async for event in stream]
        doc = await proxy.diagnostics()
    assert response.output_text == DEFAULT_TEXT
    assert reply.headers["x-session-id"]
    assert [r.path for r in fake.requests] == ["/v1/responses", "/v1/responses"]
    assert fake.requests[0].json["model"] == "gpt-fake"  # the instance prefix is stripped
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == DEFAULT_TEXT and len(deltas) == 4
    assert events[-1].type == "response.completed"
    life = instance(doc, "openai.1")["activity"]["lifetime"]
    assert life["requests"] == 2 and life["completed"] == 2
    assert life["bytes_rx"] == life["bytes_tx"] == fake.bytes_sent


async def test_the_responses_stream_helper_through_the_proxy(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with (
        running_proxy(nursery, backends=_backends(fake)) as proxy,
        _openai(proxy) as client,
        client.responses.stream(model="gpt-fake", input="hi") as stream,
    ):
        final = await stream.get_final_response()
    assert final.output_text == DEFAULT_TEXT


async def test_embeddings_and_completions_with_exact_bytes(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(
        nursery, backends=_backends(fake), enable_activity_tracking=True
    ) as proxy:
        received = 0
        async with httpx.AsyncClient(base_url=proxy.openai_url) as client:
            for path, body in (
                ("/embeddings", {"model": "gpt-fake", "input": ["a", "b"]}),
                ("/completions", {"model": "gpt-fake", "prompt": "hi"}),
                ("/completions", {"model": "gpt-fake", "prompt": "hi", "stream": True}),
            ):
                answer = await client.post(path, json=body)
                assert answer.status_code == 200, answer.text
                received += len(answer.content)
        async with _openai(proxy) as sdk:
            vectors = await sdk.embeddings.create(model="gpt-fake", input=["a", "b"])
            completion = await sdk.completions.create(model="gpt-fake", prompt="hi")
            stream = await sdk.completions.create(model="gpt-fake", prompt="hi", stream=True)
            pieces = [chunk.choices[0].text async for chunk in stream]
        doc = await proxy.diagnostics()
    assert [r.path for r in fake.requests[:3]] == [
        "/v1/embeddings",
        "/v1/completions",
        "/v1/completions",
    ]
    assert len(vectors.data) == 2
    assert completion.choices[0].text == DEFAULT_TEXT
    assert "".join(pieces) == DEFAULT_TEXT
    life = instance(doc, "openai.1")["activity"]["lifetime"]
    # The first three answers were read raw: the client got exactly what the backend sent.
    first_three = sum(fake.body_bytes_for(i) for i in range(3))
    assert received == first_three
    assert life["bytes_rx"] == life["bytes_tx"] == fake.bytes_sent


async def test_count_tokens_and_models_retrieve_in_both_shapes(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(nursery, backends=_backends(fake)) as proxy:
        async with anthropic.AsyncAnthropic(
            base_url=proxy.url, api_key=CLIENT_KEY, max_retries=0
        ) as claude:
            counted = await claude.messages.count_tokens(
                model="claude-fake", messages=[{"role": "user", "content": "hello there"}]
            )
            model = await claude.models.retrieve("claude-fake")
        async with _openai(proxy) as client:
            listed = await client.models.retrieve("gpt-fake")
    assert counted.input_tokens > 0
    seen = fake.requests[-1]
    assert seen.path == "/v1/messages/count_tokens"
    assert seen.headers["x-api-key"] == BACKEND_KEY
    assert (model.id, model.type) == ("claude-fake", "model")
    assert (listed.id, listed.owned_by) == ("gpt-fake", "openai.1")


async def test_query_string_and_version_headers_reach_the_backend_unchanged(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with (
        running_proxy(nursery, backends=_backends(fake)) as proxy,
        httpx.AsyncClient() as client,
    ):
        openai_answer = await client.post(
            proxy.openai_url + "/chat/completions?api-version=2024-10-21&x=a%20b",
            json={"model": "gpt-fake", "messages": []},
            headers={"openai-beta": "assistants=v2", "authorization": f"Bearer {CLIENT_KEY}"},
        )
        anthropic_answer = await client.post(
            proxy.url + "/v1/messages?beta=true",
            json={"model": "claude-fake", "max_tokens": 5, "messages": []},
            headers={
                "anthropic-version": "2023-06-01",
                "anthropic-beta": "interleaved-thinking-2025-05-14,fine-grained-tool-streaming",
                "x-api-key": CLIENT_KEY,
            },
        )
    assert openai_answer.status_code == anthropic_answer.status_code == 200
    to_openai, to_anthropic = fake.requests
    assert (to_openai.path, to_openai.query) == (
        "/v1/chat/completions",
        "api-version=2024-10-21&x=a%20b",
    )
    assert to_openai.headers["openai-beta"] == "assistants=v2"
    assert (to_anthropic.path, to_anthropic.query) == ("/v1/messages", "beta=true")
    assert to_anthropic.headers["anthropic-version"] == "2023-06-01"
    assert (
        to_anthropic.headers["anthropic-beta"]
        == "interleaved-thinking-2025-05-14,fine-grained-tool-streaming"
    )
    # Client credentials never reach the backend; the instance's own key does.
    assert to_openai.headers["authorization"] == f"Bearer {BACKEND_KEY}"
    assert to_anthropic.headers["x-api-key"] == BACKEND_KEY
    assert CLIENT_KEY not in json.dumps([to_openai.headers, to_anthropic.headers])


async def test_a_responses_stream_cut_by_the_backend_ends_with_the_responses_error_event(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(
        nursery, backends=_backends(fake), enable_activity_tracking=True
    ) as proxy:
        fake.script(Scenario(chunks=5, cut_after=6))
        async with _openai(proxy) as client:
            stream = await client.responses.create(model="gpt-fake", input="hi", stream=True)
            events = [event async for event in stream]
        doc = await proxy.diagnostics()
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["error", "response.failed"]
    assert "response.completed" not in kinds
    error, failed = events[-2:]
    assert error.code == "upstream_protocol_error"  # type: ignore[union-attr]
    assert "Backend 'openai.1'" in error.message  # type: ignore[union-attr]
    # Numbered after the last event the client got; the terminal event after it says the
    # same (Codex reads only that one).
    assert error.sequence_number == events[-3].sequence_number + 1
    assert failed.sequence_number == error.sequence_number + 1
    assert failed.response.status == "failed"  # type: ignore[union-attr]
    assert failed.response.error.message == error.message  # type: ignore[union-attr]
    assert instance(doc, "openai.1")["activity"]["lifetime"]["errors"] == 1


async def test_a_client_hanging_up_a_responses_stream_closes_the_upstream(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(nursery, backends=_backends(fake)) as proxy:
        fake.script(Scenario(chunks=50, delay=0.05))
        body = {"model": "gpt-fake", "input": "hi", "stream": True}
        async with (
            httpx.AsyncClient() as client,
            client.stream("POST", proxy.openai_url + "/responses", json=body) as response,
            raw_chunks(response) as chunks,
        ):
            assert b"response.created" in await anext(chunks)
        with trio.fail_after(CLOSE_WITHIN):
            await fake.wait_closed(0)
        assert fake.in_flight == 0


@pytest.mark.parametrize(
    ("path", "body", "endpoint"),
    [
        ("/v1/responses", {"model": "gpt-fake", "input": "x", "stream": True}, "responses"),
        ("/v1/completions", {"model": "gpt-fake", "prompt": "x", "stream": True}, "completions"),
        (
            "/v1/chat/completions",
            {"model": "gpt-fake", "messages": [], "stream": True},
            "chat.completions",
        ),
        (
            "/v1/messages",
            {"model": "claude-fake", "max_tokens": 5, "messages": [], "stream": True},
            "messages",
        ),
    ],
)
async def test_a_connection_says_its_endpoint_while_in_flight(
    nursery: trio.Nursery, fake: FakeUpstream, path: str, body: dict[str, object], endpoint: str
) -> None:
    async with running_proxy(
        nursery, backends=_backends(fake), enable_activity_tracking=True
    ) as proxy:
        fake.script(Scenario(chunks=3, stall_after_headers=True))
        async with (
            httpx.AsyncClient() as client,
            client.stream("POST", proxy.url + path, json=body) as response,
            raw_chunks(response),
        ):
            await fake.wait_in_flight(1)
            doc = await proxy.diagnostics()
    name = "anthropic.1" if path == "/v1/messages" else "openai.1"
    (conn,) = instance(doc, name)["activity"]["connections"]
    assert conn["endpoint"] == endpoint
    assert conn["upstream_status"] == 200
    assert conn["time_to_first_byte_seconds"] is None  # headers, but no body byte yet
    assert conn["translated"] is False
