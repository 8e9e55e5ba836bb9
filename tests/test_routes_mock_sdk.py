"""Every route the proxy serves, called by the real SDKs, answered by the embedded mock.

The mock answers in each API's real shape, so these also check that the shapes are
what the official clients parse: the Responses API (JSON, stream, and the SDK's
``responses.stream`` helper), embeddings (the SDK asks for base64 by default), legacy
completions, Anthropic's token counting, and single-model lookups.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import anthropic
import httpx
import openai
import trio
from openai.types.chat import ChatCompletionMessageParam

from tests.proxyutil import RunningProxy, instance, mock_spec, running_proxy
from trioproxy import __version__
from trioproxy.backends.mock import REPLY
from trioproxy.backends.mock_replies import EMBEDDING_DIMENSIONS, embedding_vector


def _proxy(nursery: trio.Nursery) -> AbstractAsyncContextManager[RunningProxy]:
    return running_proxy(nursery, backends=(mock_spec(chunks=5),), enable_activity_tracking=True)


def _openai(proxy: RunningProxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.openai_url, api_key="unused", max_retries=0)


def _anthropic(proxy: RunningProxy) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key="unused", max_retries=0)


async def test_responses_create_json(nursery: trio.Nursery) -> None:
    async with _proxy(nursery) as proxy:
        async with _openai(proxy) as client:
            response = await client.responses.create(model="mock-model", input="Say hi")
        assert response.object == "response" and response.status == "completed"
        assert response.output_text == REPLY
        assert response.usage is not None and response.usage.output_tokens > 0


async def test_responses_create_stream_has_the_real_event_sequence(
    nursery: trio.Nursery,
) -> None:
    async with _proxy(nursery) as proxy:
        async with _openai(proxy) as client:
            stream = await client.responses.create(model="mock-model", input="Say hi", stream=True)
            events = [event async for event in stream]
        kinds = [event.type for event in events]
        assert kinds == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            *["response.output_text.delta"] * 5,
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert [event.sequence_number for event in events] == list(range(len(events)))
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert deltas == REPLY


async def test_responses_stream_helper_accumulates_the_reply(nursery: trio.Nursery) -> None:
    async with _proxy(nursery) as proxy:
        async with (
            _openai(proxy) as client,
            client.responses.stream(model="mock-model", input="Say hi") as stream,
        ):
            texts = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
        assert "".join(texts) == REPLY
        assert final.output_text == REPLY


async def test_embeddings_are_deterministic_vectors_one_per_input(nursery: trio.Nursery) -> None:
    async with _proxy(nursery) as proxy:
        async with _openai(proxy) as client:
            result = await client.embeddings.create(model="mock-model", input=["a", "b", "a"])
            plain = await client.embeddings.create(
                model="mock-model", input="a", encoding_format="float"
            )
        vectors = [item.embedding for item in result.data]
        assert len(vectors) == 3 and all(len(v) == EMBEDDING_DIMENSIONS for v in vectors)
        assert vectors[0] == vectors[2] != vectors[1]
        # The SDK asked for base64 (its default) and decoded float32s: equal to float32 precision.
        assert all(
            abs(x - y) < 1e-6 for x, y in zip(vectors[0], embedding_vector("a"), strict=True)
        )
        assert plain.data[0].embedding == embedding_vector("a")
        assert result.usage.prompt_tokens > 0


async def test_legacy_completions_json_and_stream(nursery: trio.Nursery) -> None:
    async with _proxy(nursery) as proxy:
        async with _openai(proxy) as client:
            completion = await client.completions.create(model="mock-model", prompt="Say hi")
            stream = await client.completions.create(
                model="mock-model", prompt="Say hi", stream=True
            )
            pieces = [chunk.choices[0].text async for chunk in stream]
        assert completion.choices[0].text == REPLY
        assert completion.choices[0].finish_reason == "stop"
        assert "".join(pieces) == REPLY


async def test_a_chat_stream_asked_for_usage_ends_with_a_usage_chunk(
    nursery: trio.Nursery,
) -> None:
    # The `llm` CLI asks for it, as OpenAI's own clients do.
    async with _proxy(nursery) as proxy:
        async with _openai(proxy) as client:
            messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi"}]
            stream = await client.chat.completions.create(
                model="mock-model",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
            plain = await client.chat.completions.create(
                model="mock-model", messages=messages, stream=True
            )
            plain_chunks = [chunk async for chunk in plain]
        *content, last = chunks
        assert "".join(c.choices[0].delta.content or "" for c in content) == REPLY
        assert all(c.usage is None for c in content)
        assert last.choices == [] and last.usage is not None
        assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0
        assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
        assert all(c.choices and c.usage is None for c in plain_chunks)


async def test_count_tokens_is_a_deterministic_estimate(nursery: trio.Nursery) -> None:
    async with _proxy(nursery) as proxy:
        async with _anthropic(proxy) as client:
            short = await client.messages.count_tokens(
                model="mock-model", messages=[{"role": "user", "content": "hi"}]
            )
            again = await client.messages.count_tokens(
                model="mock-model", messages=[{"role": "user", "content": "hi"}]
            )
            longer = await client.messages.count_tokens(
                model="mock-model", messages=[{"role": "user", "content": "hi " * 200}]
            )
        assert short.input_tokens == again.input_tokens > 0
        assert longer.input_tokens > short.input_tokens


async def test_every_route_is_tracked_under_its_endpoint_with_exact_bytes(
    nursery: trio.Nursery,
) -> None:
    async with _proxy(nursery) as proxy:
        async with _openai(proxy) as client, _anthropic(proxy) as claude:
            await client.responses.create(model="mock-model", input="x")
            await client.embeddings.create(model="mock-model", input="x")
            await client.completions.create(model="mock-model", prompt="x")
            await claude.messages.count_tokens(
                model="mock-model", messages=[{"role": "user", "content": "x"}]
            )
        doc = await proxy.diagnostics()
        life = instance(doc, "mock.1")["activity"]["lifetime"]
        assert life["requests"] == 4 and life["errors"] == 0
        assert life["bytes_rx"] == life["bytes_tx"] > 0


async def test_models_retrieve_in_both_apis_and_404_in_each_shape(nursery: trio.Nursery) -> None:
    async with _proxy(nursery) as proxy:
        async with _openai(proxy) as client, _anthropic(proxy) as claude:
            model = await client.models.retrieve("mock-model")
            info = await claude.models.retrieve("mock-model")
            pinned = await client.models.retrieve("mock.1:mock-model")
            try:
                await client.models.retrieve("nope")
            except openai.NotFoundError as exc:
                openai_missing = exc
            try:
                await claude.models.retrieve("nope")
            except anthropic.NotFoundError as exc:
                anthropic_missing = exc
        assert (model.id, model.owned_by) == ("mock-model", "mock.1")
        assert (info.id, info.type) == ("mock-model", "model")
        assert pinned.id == "mock.1:mock-model"
        assert openai_missing.body["code"] == "not_found"  # type: ignore[index]
        assert anthropic_missing.body["error"]["type"] == "not_found_error"  # type: ignore[index]


async def test_the_root_names_the_proxy_for_get_and_head(nursery: trio.Nursery) -> None:
    async with _proxy(nursery) as proxy:
        async with httpx.AsyncClient() as client:
            got = await client.get(proxy.url + "/")
            head = await client.head(proxy.url + "/")
        assert got.status_code == head.status_code == 200
        assert got.json() == {"name": "trioproxy", "version": __version__, "status": "ok"}
        assert head.content == b""
