"""Tests of the fake upstream itself, so the proxy's tests can trust what it reports.

Rules these tests follow: the fake listens on 127.0.0.1 with an OS-assigned port and is
started with ``nursery.start`` in the test's nursery, which ends it; clients are real
(httpx, and the ``openai`` and ``anthropic`` SDKs running under Trio through anyio);
synchronisation is event based (``wait_in_flight``, ``wait_closed``) or
``wait_all_tasks_blocked``, never a real-time sleep; where time matters the test takes
pytest-trio's ``autojump_clock`` fixture (``MockClock(autojump_threshold=0)``).
"""

from __future__ import annotations

import gzip
import json
from functools import partial
from typing import Any

import anthropic
import httpx
import openai
import pytest
import trio
import trio.testing

from tests.fake_upstream import DEFAULT_TEXT, FakeUpstream, Scenario

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {
    "model": "claude-fake",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeUpstream:
    upstream = FakeUpstream()
    base = await nursery.start(upstream.serve)
    assert base == upstream.base_url
    assert base.startswith("http://127.0.0.1:")
    return upstream


def sse_data(raw: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded (``[DONE]`` kept as a string)."""
    payloads: list[Any] = []
    for event in raw.decode().split("\n\n"):
        for line in event.splitlines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


# -- the real SDKs accept every answer ---------------------------------------------------


async def test_openai_sdk_non_stream(fake: FakeUpstream) -> None:
    async with openai.AsyncOpenAI(
        base_url=fake.base_url + "/v1", api_key="sk-test", max_retries=0
    ) as client:
        completion = await client.chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": "hi"}]
        )
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-fake"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.json["messages"] == [{"role": "user", "content": "hi"}]
    assert fake.in_flight == 0


async def test_openai_sdk_stream_with_usage(fake: FakeUpstream) -> None:
    fake.script(Scenario(text="one two three four", chunks=4))
    async with openai.AsyncOpenAI(
        base_url=fake.base_url + "/v1", api_key="x", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-fake" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    # role chunk, 4 content chunks, finish chunk, usage chunk
    assert len(chunks) == 7


async def test_anthropic_sdk_non_stream(fake: FakeUpstream) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="ak-test", max_retries=0
    ) as client:
        message = await client.messages.create(
            model="claude-fake", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "claude-fake"
    assert message.content[0].type == "text" and message.content[0].text == DEFAULT_TEXT
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    # This SDK release sends the key as a bearer token; older ones used x-api-key.
    credentials = {request.headers.get("x-api-key"), request.headers.get("authorization")}
    assert credentials & {"ak-test", "Bearer ak-test"}
    assert "anthropic-version" in request.headers


async def test_anthropic_sdk_stream(fake: FakeUpstream) -> None:
    fake.script(Scenario(chunks=3), Scenario(chunks=3))
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="x", max_retries=0
    ) as client:
        async with client.messages.stream(
            model="claude-fake", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
        raw = await client.messages.create(
            model="claude-fake",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
        types = [event.type async for event in raw]
    assert "".join(pieces) == DEFAULT_TEXT and len(pieces) == 3
    assert final.content[0].type == "text" and final.content[0].text == DEFAULT_TEXT
    assert final.stop_reason == "end_turn"
    assert types == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_models_in_both_shapes(fake: FakeUpstream) -> None:
    async with openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="x") as oai:
        openai_ids = [model.id async for model in oai.models.list()]
    async with anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="x") as ant:
        anthropic_models = [model async for model in ant.models.list()]
    assert openai_ids == ["gpt-fake", "claude-fake"]
    assert [m.id for m in anthropic_models] == ["gpt-fake", "claude-fake"]
    assert anthropic_models[1].display_name == "Claude Fake"
    assert [r.path for r in fake.requests] == ["/v1/models", "/v1/models"]
    assert fake.pending_scenarios == 0  # model lists never consume a scenario


async def test_error_status_in_each_api_shape(fake: FakeUpstream) -> None:
    fake.script(
        Scenario(status=429, headers={"Retry-After": "7"}),
        Scenario(status=529),
    )
    async with openai.AsyncOpenAI(
        base_url=fake.base_url + "/v1", api_key="x", max_retries=0
    ) as oai:
        with pytest.raises(openai.RateLimitError) as openai_error:
            await oai.chat.completions.create(
                model="gpt-fake", messages=[{"role": "user", "content": "hi"}]
            )
    async with anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="x", max_retries=0) as ant:
        with pytest.raises(anthropic.APIStatusError) as anthropic_error:
            await ant.messages.create(
                model="claude-fake", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
    assert openai_error.value.status_code == 429
    assert openai_error.value.response.headers["retry-after"] == "7"
    assert openai_error.value.response.json()["error"]["type"] == "rate_limit_exceeded"
    assert set(openai_error.value.response.json()["error"]) >= {"message", "type", "code"}
    assert anthropic_error.value.status_code == 529
    assert anthropic_error.value.response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Scripted error 529"},
    }


# -- scripting, recording, connections ---------------------------------------------------


async def test_scenarios_are_consumed_in_order_then_default(fake: FakeUpstream) -> None:
    fake.script(Scenario(text="first"), Scenario(text="second"))
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        texts = []
        for _ in range(3):
            response = await client.post("/v1/chat/completions", json=CHAT)
            texts.append(response.json()["choices"][0]["message"]["content"])
        models = await client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
        missing = await client.get("/v1/nope")
    assert texts == ["first", "second", DEFAULT_TEXT]
    assert models.json()["has_more"] is False and models.json()["first_id"] == "gpt-fake"
    assert missing.status_code == 404 and "error" in missing.json()
    assert fake.pending_scenarios == 0
    assert len(fake.requests) == 5


async def test_keep_alive_serves_requests_in_sequence_on_one_connection(
    fake: FakeUpstream,
) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        first = await client.post("/v1/chat/completions", json=CHAT)
        assert fake.active_connections == 1
        second = await client.post("/v1/messages", json={**MESSAGES, "stream": True})
        assert fake.active_connections == 1
    assert first.status_code == second.status_code == 200
    assert fake.connections_opened == 1
    assert fake.requests[0].connection == fake.requests[1].connection == 0
    with trio.fail_after(5):
        await fake.wait_closed(1)  # the client closed its pool
    assert fake.active_connections == 0


async def test_wait_in_flight_tracks_each_request(fake: FakeUpstream) -> None:
    fake.script(Scenario(stall_before_headers=True), Scenario(stall_before_headers=True))
    async with httpx.AsyncClient(base_url=fake.base_url) as client, trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(partial(client.post, "/v1/chat/completions", json=CHAT))
        with trio.fail_after(5):
            await fake.wait_in_flight(2)
        assert fake.active_connections == 2  # a stalled connection cannot be reused
        nursery.cancel_scope.cancel()
    with trio.fail_after(5):
        await fake.wait_in_flight(0)
        await fake.wait_closed(0)
        await fake.wait_closed(1)
    assert fake.active_connections == 0


# -- misbehaviour ------------------------------------------------------------------------


async def read_until_cut(fake: FakeUpstream, path: str, body: Any) -> tuple[httpx.Headers, bytes]:
    """POST ``body``, read the raw body until the expected protocol error; headers, bytes."""
    received = bytearray()
    async with (
        httpx.AsyncClient(base_url=fake.base_url) as client,
        client.stream("POST", path, json=body) as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            async for raw in response.aiter_raw():
                received += raw
    return response.headers, bytes(received)


async def test_cut_stream_is_a_protocol_error_after_n_events(fake: FakeUpstream) -> None:
    fake.script(Scenario(cut_after=3))
    _, received = await read_until_cut(fake, "/v1/chat/completions", {**CHAT, "stream": True})
    assert len(sse_data(received)) == 3
    assert len(received) == fake.bytes_sent == fake.body_bytes_for(0)
    with trio.fail_after(5):
        await fake.wait_closed(0)
    assert fake.in_flight == 0


async def test_cut_after_every_event_still_lacks_the_terminating_chunk(
    fake: FakeUpstream,
) -> None:
    fake.script(Scenario(cut_after=1000))
    _, received = await read_until_cut(fake, "/v1/messages", {**MESSAGES, "stream": True})
    assert [event["type"] for event in sse_data(received)][-1] == "message_stop"
    assert len(received) == fake.bytes_sent


async def test_cut_non_stream_sends_part_of_the_declared_length(fake: FakeUpstream) -> None:
    fake.script(Scenario(cut_after=10))
    headers, received = await read_until_cut(fake, "/v1/chat/completions", CHAT)
    assert int(headers["content-length"]) > 10
    assert len(received) == fake.bytes_sent == 10


async def test_stall_after_headers_stays_in_flight_until_the_client_closes(
    fake: FakeUpstream,
) -> None:
    fake.script(Scenario(stall_after_headers=True))
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        async with client.stream("POST", "/v1/messages", json={**MESSAGES, "stream": True}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            await trio.testing.wait_all_tasks_blocked()
            assert fake.in_flight == 1
            assert fake.active_connections == 1
        # Leaving the block closes the unfinished response, and with it the connection.
        with trio.fail_after(5):
            await fake.wait_closed(0)
    assert fake.in_flight == 0
    assert fake.active_connections == 0
    assert fake.bytes_sent == 0


async def test_stall_before_headers_times_the_client_out(
    fake: FakeUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    fake.script(Scenario(stall_before_headers=True))
    start = trio.current_time()
    async with httpx.AsyncClient(base_url=fake.base_url, timeout=30) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/chat/completions", json=CHAT)
    assert trio.current_time() - start == pytest.approx(30)
    await fake.wait_closed(0)
    assert fake.in_flight == 0


async def test_close_without_response(fake: FakeUpstream) -> None:
    fake.script(Scenario(close_without_response=True))
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/v1/chat/completions", json=CHAT)
        # The next request gets a new connection and the default answer.
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert [r.connection for r in fake.requests] == [0, 1]
    assert fake.body_bytes_for(0) == 0


async def test_delay_between_chunks_runs_on_the_trio_clock(
    fake: FakeUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    fake.script(Scenario(chunks=4, delay=2.5), Scenario(chunks=4, delay=2.5))
    async with httpx.AsyncClient(base_url=fake.base_url, timeout=None) as client:
        start = trio.current_time()
        arrivals: list[float] = []
        async with client.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
        ) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get(
                    "content"
                ):
                    arrivals.append(trio.current_time() - start)
        streamed = trio.current_time() - start
        await client.post("/v1/chat/completions", json=CHAT)
        whole = trio.current_time() - start - streamed
    assert arrivals == pytest.approx([2.5, 5.0, 7.5, 10.0])
    assert streamed == pytest.approx(10.0)
    assert whole == pytest.approx(10.0)  # a non-stream answer waits delay * chunks


# -- byte accounting, big and compressed bodies ------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_bytes_sent_equals_raw_bytes_received(
    fake: FakeUpstream, stream: bool, compress: bool, path: str
) -> None:
    fake.script(Scenario(gzip=compress), Scenario(gzip=compress))
    body = {**(CHAT if path.endswith("completions") else MESSAGES), "stream": stream}
    raw_sizes = []
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        for _ in range(2):
            async with client.stream("POST", path, json=body) as r:
                assert (r.headers.get("content-encoding") == "gzip") is compress
                assert ("transfer-encoding" in r.headers) is stream
                raw_sizes.append(sum([len(raw) async for raw in r.aiter_raw()]))
    assert [fake.body_bytes_for(0), fake.body_bytes_for(1)] == raw_sizes
    assert fake.bytes_sent == sum(raw_sizes)


async def test_large_body_has_the_requested_size(fake: FakeUpstream) -> None:
    size = 5_000_000
    fake.script(Scenario(body_size=size), Scenario(body_size=size, gzip=True))
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        plain = await client.post("/v1/messages", json=MESSAGES)
        async with client.stream("POST", "/v1/messages", json=MESSAGES) as r:
            compressed = b"".join([raw async for raw in r.aiter_raw()])
    assert len(plain.content) == size
    assert plain.json()["content"][0]["text"] == DEFAULT_TEXT
    unzipped = gzip.decompress(compressed)
    assert len(unzipped) == size
    assert json.loads(unzipped)["content"] == plain.json()["content"]
    assert fake.bytes_sent == size + len(compressed)


async def test_gzip_only_when_the_client_accepts_it(fake: FakeUpstream) -> None:
    fake.script(Scenario(gzip=True), Scenario(gzip=True))
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        accepted = await client.post("/v1/chat/completions", json=CHAT)
        refused = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"accept-encoding": "gzip;q=0, identity"}
        )
    assert accepted.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in refused.headers
    assert accepted.json() != refused.json()  # distinct ids
    assert accepted.json()["choices"] == refused.json()["choices"]


def test_scenario_validates_its_knobs() -> None:
    with pytest.raises(ValueError, match="chunks"):
        Scenario(chunks=0)
    with pytest.raises(ValueError, match="status"):
        Scenario(status=302)
    assert Scenario(text="abcdef", chunks=4).pieces() == ["a", "bc", "d", "ef"]
    assert dict(Scenario(headers={"Retry-After": "1"}).headers) == {"retry-after": "1"}
