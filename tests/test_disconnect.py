"""A client that hangs up cancels its request: the upstream is closed within a second.

Each case hangs up at a different moment, including the windows where a framework
route would leak: after the upstream request was sent but before its headers came back,
and after the headers but before the first body byte.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyutil import RunningProxy, openai_spec, running_proxy
from tests.streams import raw_chunks

CLOSE_WITHIN = 1.0  # seconds: the promise the proxy makes (DESIGN.md, "Client disconnect")


def raw_request(
    proxy: RunningProxy, body: Mapping[str, object], *, declared: int | None = None
) -> tuple[tuple[str, int], bytes]:
    url = urlsplit(proxy.url)
    payload = json.dumps(body).encode()
    length = declared if declared is not None else len(payload)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {url.netloc}\r\n"
        f"content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    ).encode()
    assert url.hostname and url.port
    return (url.hostname, url.port), head + payload


async def hang_up_after(proxy: RunningProxy, body: Mapping[str, object], wait: object) -> None:
    """Send ``body``, wait for ``wait()`` to return, then close the client socket."""
    (host, port), data = raw_request(proxy, body)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(data)
    await wait()  # type: ignore[operator]
    await stream.aclose()


async def test_hang_up_mid_stream_closes_upstream(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        fake.script(Scenario(chunks=50, delay=0.05))
        body = {"model": "gpt-fake", "stream": True, "messages": []}
        async with (
            httpx.AsyncClient() as client,
            client.stream("POST", proxy.openai_url + "/chat/completions", json=body) as response,
            raw_chunks(response) as chunks,
        ):
            seen = 0
            async for chunk in chunks:
                seen += len(chunk)
                if seen > 300:
                    break
        # Leaving the block closed the client's connection mid-body.
        with trio.fail_after(CLOSE_WITHIN):
            await fake.wait_closed(0)
        assert fake.in_flight == 0


async def test_hang_up_before_upstream_headers_closes_upstream(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        fake.script(Scenario(stall_before_headers=True))
        await hang_up_after(
            proxy, {"model": "gpt-fake", "messages": []}, lambda: fake.wait_in_flight(1)
        )
        with trio.fail_after(CLOSE_WITHIN):
            await fake.wait_closed(0)


async def test_hang_up_after_headers_before_first_body_byte_closes_upstream(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        fake.script(Scenario(stall_after_headers=True))
        (host, port), data = raw_request(
            proxy, {"model": "gpt-fake", "stream": True, "messages": []}
        )
        stream = await trio.open_tcp_stream(host, port)
        await stream.send_all(data)
        head = b""
        while b"\r\n\r\n" not in head:  # the proxy relayed the upstream's headers
            head += await stream.receive_some(4096)
        assert head.startswith(b"HTTP/1.1 200")
        await stream.aclose()
        with trio.fail_after(CLOSE_WITHIN):
            await fake.wait_closed(0)


@pytest.mark.parametrize("stall", ["before the headers", "after the headers"])
async def test_hang_up_while_a_reused_connection_waits_for_a_json_answer_closes_upstream(
    nursery: trio.Nursery, fake: FakeUpstream, stall: str
) -> None:
    # A quick JSON answer is relayed without a disconnect watcher; on a reused upstream
    # connection nothing but a wait past the connector's patience starts one. This
    # checks that it does, both before the answer's headers and after them.
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        stalled = (
            Scenario(stall_before_headers=True)
            if stall == "before the headers"
            else Scenario(stall_after_headers=True)
        )
        fake.script(Scenario(), stalled)
        body = {"model": "gpt-fake", "messages": []}
        async with httpx.AsyncClient() as client:
            first = await client.post(proxy.openai_url + "/chat/completions", json=body)
        assert first.status_code == 200
        await hang_up_after(proxy, body, lambda: fake.wait_in_flight(1))
        with trio.fail_after(CLOSE_WITHIN):
            await fake.wait_closed(1)
        assert fake.connections_opened == 1  # the stalled request rode the reused connection
        assert fake.in_flight == 0


async def test_hang_up_while_sending_the_body_opens_nothing_upstream(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        (host, port), data = raw_request(
            proxy, {"model": "gpt-fake", "messages": []}, declared=10_000
        )
        stream = await trio.open_tcp_stream(host, port)
        await stream.send_all(data)
        await stream.aclose()
        # The proxy is undisturbed: the next request is served, and it is the first upstream.
        async with httpx.AsyncClient() as client:
            response = await client.post(
                proxy.openai_url + "/chat/completions", json={"model": "gpt-fake", "messages": []}
            )
        assert response.status_code == 200
        assert [r.path for r in fake.requests] == ["/v1/chat/completions"]


async def test_other_requests_are_not_disturbed_by_a_hang_up(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        fake.script(Scenario(stall_after_headers=True), Scenario(chunks=20, delay=0.01))
        results: list[bytes] = []

        async def long_stream() -> None:
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    proxy.openai_url + "/chat/completions",
                    json={"model": "gpt-fake", "stream": True, "messages": []},
                )
                results.append(response.content)

        async with trio.open_nursery() as inner:
            await hang_up_after(
                proxy,
                {"model": "gpt-fake", "stream": True, "messages": []},
                lambda: fake.wait_in_flight(1),
            )
            inner.start_soon(long_stream)
        with trio.fail_after(CLOSE_WITHIN):
            await fake.wait_closed(0)
        assert results and results[0].endswith(b"data: [DONE]\n\n")
