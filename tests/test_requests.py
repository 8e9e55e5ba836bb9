"""Request rules end to end: sessions, model lists, and every error in the API's shape."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyutil import RunningProxy, anthropic_spec, mock_spec, openai_spec, running_proxy
from tests.streams import ChunkedUpload

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def assert_openai_error(response: httpx.Response, status: int, words: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["type"]
    assert "code" in body["error"]
    assert words.lower() in body["error"]["message"].lower()


def assert_anthropic_error(response: httpx.Response, status: int, words: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert words.lower() in body["error"]["message"].lower()


async def post(
    proxy: RunningProxy,
    path: str,
    body: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        if content is None:
            content = json.dumps(body).encode()
        return await client.post(
            proxy.url + path,
            content=content,
            headers={"content-type": "application/json", **(headers or {})},
        )


async def test_session_id_from_header_is_echoed_and_not_forwarded(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        response = await post(
            proxy, CHAT, {"model": "gpt-fake", "messages": []}, headers={"x-session-id": "sess-42"}
        )
        assert response.headers["x-session-id"] == "sess-42"
        assert "x-session-id" not in fake.requests[0].headers


async def test_session_id_from_body_is_removed_before_forwarding(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        response = await post(
            proxy, CHAT, {"model": "gpt-fake", "session_id": "from-body", "messages": []}
        )
        assert response.headers["x-session-id"] == "from-body"
        assert "session_id" not in fake.requests[0].json


async def test_generated_session_ids_differ(nursery: trio.Nursery) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        a = await post(proxy, CHAT, {"model": "m", "messages": []})
        b = await post(proxy, MESSAGES, {"model": "m", "max_tokens": 5, "messages": []})
        assert a.status_code == b.status_code == 200
        assert a.headers["x-session-id"] != b.headers["x-session-id"]


async def test_models_are_discovered_and_listed_per_instance(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(
        nursery,
        backends=(
            openai_spec(fake.base_url, models=None),
            anthropic_spec(fake.base_url, models=None),
            openai_spec(fake.base_url, name="listed", models=("only-this",)),
        ),
    ) as proxy:
        async with httpx.AsyncClient() as client:
            listing = (await client.get(proxy.url + "/v1/models")).json()
            anthropic_listing = (
                await client.get(
                    proxy.url + "/v1/models", headers={"anthropic-version": "2023-06-01"}
                )
            ).json()
        rows = {(m["id"], m["owned_by"]) for m in listing["data"]}
        assert ("gpt-fake", "openai.1") in rows
        assert ("claude-fake", "anthropic.1") in rows
        assert ("only-this", "listed") in rows
        assert listing["object"] == "list"
        # An Anthropic client can ask for every model: another API's instance translates.
        ids = {m["id"] for m in anthropic_listing["data"]}
        assert ids == {"gpt-fake", "claude-fake", "only-this"}
        # A bare model goes to the instance that lists it.
        await post(proxy, CHAT, {"model": "only-this", "messages": []})
        assert fake.requests[-1].json["model"] == "only-this"


@pytest.mark.parametrize(
    ("path", "check"), [(CHAT, assert_openai_error), (MESSAGES, assert_anthropic_error)]
)
async def test_bad_input_gets_400_in_the_api_shape(
    nursery: trio.Nursery, path: str, check: Any
) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        check(await post(proxy, path, content=b"{not json"), 400, "not valid JSON")
        check(await post(proxy, path, content=b"[1, 2]"), 400, "JSON object")
        check(await post(proxy, path, {"messages": []}), 400, "model")
        check(await post(proxy, path, {"model": 7}), 400, "model")
        check(
            await post(proxy, path, {"model": "m"}, headers={"content-type": "text/plain"}),
            400,
            "Content-Type",
        )
        # And the proxy still serves.
        assert (
            await post(proxy, path, {"model": "m", "max_tokens": 5, "messages": []})
        ).status_code == 200


async def test_body_over_the_limit_is_413_without_reading_it_all(nursery: trio.Nursery) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),), max_request_body=1000) as proxy:
        declared = await post(proxy, CHAT, content=b"x" * 5000)
        assert_openai_error(declared, 413)

        upload = ChunkedUpload(100, b"y" * 100)
        headers = {"content-type": "application/json", "transfer-encoding": "chunked"}
        async with httpx.AsyncClient() as client:
            request = client.build_request("POST", proxy.url + MESSAGES, headers=headers)
            request.stream = upload
            streamed = await client.send(request)
        assert_anthropic_error(streamed, 413)
        assert upload.sent < upload.count  # answered before the body was all sent


async def test_get_on_a_proxy_route_is_405(nursery: trio.Nursery) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        async with httpx.AsyncClient() as client:
            response = await client.get(proxy.url + CHAT)
        assert_openai_error(response, 405)
        assert response.headers["allow"] == "POST"


async def test_unknown_path_is_a_json_404(nursery: trio.Nursery) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        async with httpx.AsyncClient() as client:
            response = await client.get(proxy.url + "/v2/nothing")
        assert_openai_error(response, 404)


async def test_no_instance_for_the_route_is_404(nursery: trio.Nursery, fake: FakeUpstream) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        body = {"model": "claude", "messages": []}
        response = await post(proxy, MESSAGES + "/count_tokens", body)
        assert_anthropic_error(response, 404, "anthropic")


async def test_instance_that_cannot_serve_the_route_is_400_naming_one_that_can(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(
        nursery, backends=(openai_spec(fake.base_url), anthropic_spec(fake.base_url))
    ) as proxy:
        body = {"model": "anthropic.1:claude-fake", "input": "hi"}
        response = await post(proxy, "/v1/responses", body)
        assert_openai_error(response, 400, "'openai.1:<model>'")
        assert fake.requests == []


async def test_upstream_unreachable_is_502(nursery: trio.Nursery) -> None:
    # A port that was just bound and closed again: nothing listens there.
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with running_proxy(
        nursery, backends=(openai_spec(f"http://127.0.0.1:{port}", models=("m",)),)
    ) as proxy:
        assert_openai_error(await post(proxy, CHAT, {"model": "m", "messages": []}), 502)
        inst = proxy.app.backends["openai.1"]
        assert not inst.is_functional and inst.validation_errors


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
async def test_upstream_http_errors_keep_status_and_body(
    nursery: trio.Nursery, fake: FakeUpstream, status: int
) -> None:
    async with running_proxy(nursery, backends=(anthropic_spec(fake.base_url),)) as proxy:
        fake.script(Scenario(status=status, headers={"retry-after": "3"}))
        response = await post(
            proxy, MESSAGES, {"model": "claude-fake", "max_tokens": 5, "messages": []}
        )
        assert response.status_code == status
        assert response.content and len(response.content) == fake.body_bytes_for(0)
        assert response.json()["type"] == "error"
        assert response.headers["retry-after"] == "3"


@pytest.mark.parametrize(
    ("path", "model", "marker"),
    [
        (CHAT, "gpt-fake", b'data: {"error"'),
        (MESSAGES, "claude-fake", b"event: error\ndata: "),
    ],
)
async def test_upstream_cut_mid_stream_ends_with_an_error_event(
    nursery: trio.Nursery, fake: FakeUpstream, path: str, model: str, marker: bytes
) -> None:
    backends = (openai_spec(fake.base_url), anthropic_spec(fake.base_url))
    async with running_proxy(nursery, backends=backends) as proxy:
        fake.script(Scenario(cut_after=3))
        body = {"model": model, "stream": True, "max_tokens": 5, "messages": []}
        async with (
            httpx.AsyncClient() as client,
            client.stream("POST", proxy.url + path, json=body) as response,
        ):
            assert response.status_code == 200
            received = b"".join([chunk async for chunk in response.aiter_raw()])
        assert marker in received
        assert received.endswith(b"\n\n")
        before_error = received[: received.index(marker)]
        assert len(before_error) == fake.body_bytes_for(0)


async def test_upstream_silent_hits_the_read_timeout(
    nursery: trio.Nursery, fake: FakeUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_proxy(
        nursery, backends=(openai_spec(fake.base_url),), upstream_read_timeout=2
    ) as proxy:
        fake.script(Scenario(stall_before_headers=True))
        response = await post(proxy, CHAT, {"model": "gpt-fake", "messages": []})
        assert_openai_error(response, 504, "Backend 'openai.1': no response from upstream within")
        await fake.wait_closed(0)
