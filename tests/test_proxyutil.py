"""The test harness itself: ``running_proxy`` stops the proxy through its shutdown path.

However the block ends, the proxy must be stopped as production stops it (lifespan
shutdown ran: the process-wide tracker is cleared, upstream connections are closed,
nothing listens), and the block's own exception must come out unchanged, not wrapped in
an exception group.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyutil import mock_spec, openai_spec, running_proxy
from tests.streams import raw_chunks
from trioproxy.activity import get_activity_tracker


class Boom(Exception):
    pass


async def assert_nothing_listens(url: str) -> None:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with pytest.raises(OSError):
        await trio.open_tcp_stream(parts.hostname, parts.port)


async def test_a_block_that_raises_stops_the_proxy_and_the_error_comes_out_unchanged(
    nursery: trio.Nursery,
) -> None:
    with pytest.raises(Boom):
        async with running_proxy(
            nursery, enable_activity_tracking=True, backends=(mock_spec(),)
        ) as proxy:
            assert get_activity_tracker() is proxy.app.tracker is not None
            raise Boom
    assert get_activity_tracker() is None
    await assert_nothing_listens(proxy.url)


async def test_a_block_cancelled_with_its_nursery_still_shuts_down_the_proxy(
    fake: FakeUpstream,
) -> None:
    # As when a task beside the proxy crashes: its nursery cancels the proxy's serve task
    # and the block at once, with a stream in flight.
    fake.script(Scenario(chunks=2, delay=1000))  # the content would take 2000 s
    async with (
        trio.open_nursery() as nursery,
        running_proxy(
            nursery, enable_activity_tracking=True, backends=(openai_spec(fake.base_url),)
        ) as proxy,
        httpx.AsyncClient() as client,
        client.stream(
            "POST",
            proxy.openai_url + "/chat/completions",
            json={"model": "gpt-fake", "stream": True, "messages": []},
        ) as response,
        raw_chunks(response) as chunks,
    ):
        await anext(chunks)
        nursery.cancel_scope.cancel()
        await trio.sleep_forever()
    assert nursery.cancel_scope.cancelled_caught
    assert get_activity_tracker() is None  # lifespan shutdown ran
    await assert_nothing_listens(proxy.url)
    with trio.fail_after(1):
        await fake.wait_closed(0)
