"""The real ``openai`` and ``anthropic`` SDKs through the proxy to an upstream server."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import trio

from tests.fake_upstream import DEFAULT_TEXT, FakeUpstream, Scenario
from tests.proxyutil import BACKEND_KEY, CLIENT_KEY, anthropic_spec, openai_spec, running_proxy
from tests.streams import raw_chunks


async def test_openai_sdk_non_streaming(nursery: trio.Nursery, fake: FakeUpstream) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        async with openai.AsyncOpenAI(
            base_url=proxy.openai_url, api_key=CLIENT_KEY, max_retries=0
        ) as client:
            reply = await client.chat.completions.with_raw_response.create(
                model="gpt-fake", messages=[{"role": "user", "content": "hi"}]
            )
        completion = reply.parse()
        assert completion.choices[0].message.content == DEFAULT_TEXT
        assert reply.headers["x-session-id"]
        seen = fake.requests[-1]
        assert seen.path == "/v1/chat/completions"
        assert seen.headers["authorization"] == f"Bearer {BACKEND_KEY}"
        assert CLIENT_KEY not in json.dumps(seen.headers)


async def test_openai_sdk_streaming(nursery: trio.Nursery, fake: FakeUpstream) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        fake.script(Scenario(chunks=7))
        async with openai.AsyncOpenAI(
            base_url=proxy.openai_url, api_key=CLIENT_KEY, max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model="openai.1:gpt-fake",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
            pieces = [c.choices[0].delta.content async for c in stream if c.choices]
        assert "".join(p or "" for p in pieces) == DEFAULT_TEXT
        assert len([p for p in pieces if p]) == 7
        # The instance prefix is stripped before the body goes upstream.
        assert fake.requests[-1].json["model"] == "gpt-fake"


async def test_anthropic_sdk_non_streaming(nursery: trio.Nursery, fake: FakeUpstream) -> None:
    async with running_proxy(nursery, backends=(anthropic_spec(fake.base_url),)) as proxy:
        async with anthropic.AsyncAnthropic(
            base_url=proxy.url, api_key=CLIENT_KEY, max_retries=0
        ) as client:
            message = await client.messages.create(
                model="claude-fake", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
            )
        assert message.content[0].text == DEFAULT_TEXT  # type: ignore[union-attr]
        seen = fake.requests[-1]
        assert seen.path == "/v1/messages"
        assert seen.headers["x-api-key"] == BACKEND_KEY
        assert seen.headers["anthropic-version"]
        assert CLIENT_KEY not in json.dumps(seen.headers)


async def test_anthropic_sdk_streaming(nursery: trio.Nursery, fake: FakeUpstream) -> None:
    async with running_proxy(nursery, backends=(anthropic_spec(fake.base_url),)) as proxy:
        fake.script(Scenario(chunks=5))
        async with (
            anthropic.AsyncAnthropic(
                base_url=proxy.url, api_key=CLIENT_KEY, max_retries=0
            ) as client,
            client.messages.stream(
                model="anthropic:claude-fake",
                max_tokens=50,
                messages=[{"role": "user", "content": "hi"}],
            ) as stream,
        ):
            texts = [t async for t in stream.text_stream]
            final = await stream.get_final_message()
        assert "".join(texts) == DEFAULT_TEXT
        assert len(texts) == 5
        assert final.stop_reason == "end_turn"


async def test_stream_is_relayed_chunk_by_chunk_as_it_arrives(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    """The first event reaches the client while the upstream still holds back the rest."""
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        # The role event goes out at once; every content piece then waits 1000 s.
        fake.script(Scenario(chunks=3, delay=1000))
        body = {"model": "gpt-fake", "stream": True, "messages": []}
        with trio.fail_after(10):  # a hang guard: buffering would hold the event for 3000 s
            async with (
                httpx.AsyncClient() as client,
                client.stream(
                    "POST", proxy.openai_url + "/chat/completions", json=body
                ) as response,
            ):
                assert response.headers["content-type"].startswith("text/event-stream")
                async with raw_chunks(response) as chunks:
                    first = await anext(chunks)
                    assert first.startswith(b"data: ") and b'"role":"assistant"' in first
                    assert fake.in_flight == 1
        await fake.wait_closed(0)


async def test_json_body_is_relayed_unchanged(nursery: trio.Nursery, fake: FakeUpstream) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        raw = rb'{"model": "gpt-fake",  "messages": [{"role": "user", "content": "h\u00e9"}]}'
        async with httpx.AsyncClient() as client:
            response = await client.post(
                proxy.openai_url + "/chat/completions",
                content=raw,
                headers={"content-type": "application/json"},
            )
        assert response.status_code == 200
        # Nothing to rewrite (no prefix, no body session_id): the bytes go up as they came.
        assert fake.requests[0].body == raw
        assert len(response.content) == fake.body_bytes_for(0)
