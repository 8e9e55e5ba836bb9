"""What a request leaves for the garbage collector: nothing.

hypercorn's objects of a connection refer to each other in cycles; ``ProxyTCPServer``
cuts them when the connection ends, so reference counting frees a connection as it
closes — after thousands of streams hang up, the one full collection that finds their
garbage would otherwise scan hundreds of thousands of objects. These tests run with the
collector off, so whatever is still in memory after the connections closed is what only
a collection would free.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import httpx
import pytest
import trio
import trio.testing
from hypercorn.protocol.h11 import H11Protocol

from tests.proxyutil import mock_spec, running_proxy
from trioproxy.activity import ActivityTracker
from trioproxy.serving import ProxyTCPServer

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def connections_in_memory() -> int:
    """hypercorn connection objects still allocated (served, closed or not)."""
    return sum(isinstance(o, ProxyTCPServer | H11Protocol) for o in gc.get_objects())


async def released(tracker: ActivityTracker | None) -> None:
    """Until every task is blocked and the tracker holds no connection."""
    assert tracker is not None
    while True:
        await trio.testing.wait_all_tasks_blocked()
        if tracker.totals()[0] == 0:
            return


async def hang_up_mid_stream(url: str) -> None:
    """Open a streamed chat completion, read its first bytes, and close the socket."""
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    body = b'{"model": "mock-model", "stream": true, "messages": []}'
    await stream.send_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200")
    await stream.aclose()


async def test_closed_connections_are_freed_without_a_collection(collector_off: None) -> None:
    async with (
        trio.open_nursery() as nursery,
        running_proxy(
            nursery, backends=(mock_spec(chunks=50, delay=0.2),), enable_activity_tracking=True
        ) as proxy,
    ):
        assert connections_in_memory() == 0
        for _ in range(5):
            # Each client its own connection: answered (the proxy route, a Quart route), closed.
            async with httpx.AsyncClient(base_url=proxy.openai_url) as client:
                assert (await client.post("/chat/completions", json=CHAT)).status_code == 200
                assert (await client.get("/models")).status_code == 200  # a Quart route
        for _ in range(5):
            await hang_up_mid_stream(proxy.url)
        await released(proxy.app.tracker)
        assert connections_in_memory() == 0
