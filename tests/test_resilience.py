"""Rate limits, failover and backend health, against two fake upstreams."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyutil import RunningProxy, openai_spec, running_proxy
from trioproxy.ratelimit import DEFAULT_RETRY_AFTER, retry_after_seconds

CHAT = "/v1/chat/completions"


@pytest.fixture
async def second(nursery: trio.Nursery) -> FakeUpstream:
    upstream = FakeUpstream()
    await nursery.start(upstream.serve)
    return upstream


def two_backends(
    nursery: trio.Nursery, a: str, b: str, **settings: Any
) -> AbstractAsyncContextManager[RunningProxy]:
    return running_proxy(
        nursery,
        enable_activity_tracking=True,
        backends=(openai_spec(a, name="a"), openai_spec(b, name="b")),
        **settings,
    )


async def chat(proxy: RunningProxy, model: str = "gpt-fake", **extra: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=None) as client:
        return await client.post(proxy.url + CHAT, json={"model": model, "messages": [], **extra})


async def diagnostics(proxy: RunningProxy) -> dict[str, Any]:
    """The instances of the diagnostics document, by name."""
    doc = await proxy.diagnostics()
    return {i["name"]: i for i in doc["instances"]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("0.5", 0.5),
        (None, DEFAULT_RETRY_AFTER),
        ("soon", DEFAULT_RETRY_AFTER),
        ("-3", 0.0),
        ("999999", 3600.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_retry_after_parsing(value: str | None, expected: float) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after_seconds(value, now) == expected


async def test_429_marks_the_instance_and_fails_over(
    nursery: trio.Nursery,
    fake: FakeUpstream,
    second: FakeUpstream,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with two_backends(nursery, fake.base_url, second.base_url) as proxy:
        fake.script(Scenario(status=429, headers={"retry-after": "7"}))
        response = await chat(proxy)
        assert response.status_code == 200
        assert [len(fake.requests), len(second.requests)] == [1, 1]
        doc = await diagnostics(proxy)
        assert doc["a"]["is_rate_limited"] is True
        assert 6.9 <= doc["a"]["retry_after_seconds"] <= 7
        assert doc["b"]["is_rate_limited"] is False
        assert doc["a"]["activity"]["lifetime"]["requests"] == 1
        assert doc["a"]["activity"]["lifetime"]["errors"] == 1
        assert doc["b"]["activity"]["lifetime"]["requests"] == 1
        assert doc["b"]["activity"]["lifetime"]["errors"] == 0
        # The window counts down; while open, bare models skip the instance.
        await trio.sleep(3)
        doc = await diagnostics(proxy)
        assert 3.9 <= doc["a"]["retry_after_seconds"] <= 4
        await chat(proxy)
        assert [len(fake.requests), len(second.requests)] == [1, 2]
        # Once it closes, the first instance serves again.
        await trio.sleep(4.1)
        assert (await diagnostics(proxy))["a"]["is_rate_limited"] is False
        await chat(proxy)
        assert [len(fake.requests), len(second.requests)] == [2, 2]


async def test_429_without_retry_after_waits_30_seconds(
    nursery: trio.Nursery,
    fake: FakeUpstream,
    second: FakeUpstream,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with two_backends(nursery, fake.base_url, second.base_url) as proxy:
        fake.script(Scenario(status=429))
        assert (await chat(proxy)).status_code == 200
        assert (await diagnostics(proxy))["a"]["retry_after_seconds"] == pytest.approx(30, abs=0.1)


async def test_when_every_instance_is_rate_limited_the_client_gets_the_429(
    nursery: trio.Nursery, fake: FakeUpstream, second: FakeUpstream
) -> None:
    async with two_backends(nursery, fake.base_url, second.base_url) as proxy:
        fake.script(Scenario(status=429, headers={"retry-after": "5"}))
        second.script(Scenario(status=429, headers={"retry-after": "9"}))
        response = await chat(proxy)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "9"
        assert response.json()["error"]["type"]
        doc = await diagnostics(proxy)
        assert doc["a"]["is_rate_limited"] and doc["b"]["is_rate_limited"]


async def test_a_pinned_instance_is_not_failed_over(
    nursery: trio.Nursery, fake: FakeUpstream, second: FakeUpstream
) -> None:
    async with two_backends(nursery, fake.base_url, second.base_url) as proxy:
        fake.script(Scenario(status=429, headers={"retry-after": "5"}))
        response = await chat(proxy, model="a:gpt-fake")
        assert response.status_code == 429
        assert len(second.requests) == 0


async def test_connection_failure_fails_over_and_marks_the_instance(
    nursery: trio.Nursery, second: FakeUpstream
) -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    async with two_backends(nursery, dead, second.base_url) as proxy:
        response = await chat(proxy, stream=True)
        assert response.status_code == 200 and response.content.endswith(b"data: [DONE]\n\n")
        doc = await diagnostics(proxy)
        assert doc["a"]["is_functional"] is False
        assert any("connect" in e for e in doc["a"]["validation_errors"])
        assert doc["a"]["activity"]["lifetime"]["errors"] == 1
        assert doc["b"]["activity"]["lifetime"]["requests"] == 1


async def test_no_retry_once_bytes_reached_the_client(
    nursery: trio.Nursery, fake: FakeUpstream, second: FakeUpstream
) -> None:
    async with two_backends(nursery, fake.base_url, second.base_url) as proxy:
        fake.script(Scenario(cut_after=2))
        response = await chat(proxy, stream=True)
        assert b'data: {"error"' in response.content
        assert len(second.requests) == 0


async def test_a_silent_upstream_is_not_failed_over(
    nursery: trio.Nursery,
    fake: FakeUpstream,
    second: FakeUpstream,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The request reached the backend: sending it elsewhere could run it twice.
    async with two_backends(
        nursery, fake.base_url, second.base_url, upstream_read_timeout=5
    ) as proxy:
        fake.script(Scenario(stall_before_headers=True))
        response = await chat(proxy)
        assert response.status_code == 504
        assert len(second.requests) == 0


async def test_a_backend_that_comes_back_becomes_functional(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # Model discovery fails at start: nothing listens on the port yet.
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with running_proxy(
        nursery, backends=(openai_spec(f"http://127.0.0.1:{port}", models=None),)
    ) as proxy:
        doc = await diagnostics(proxy)
        assert doc["openai.1"]["is_functional"] is False
        assert "model discovery failed" in doc["openai.1"]["validation_errors"][0]
        # The backend comes up on that port; the background re-check finds it.
        upstream = FakeUpstream()
        await nursery.start(upstream.serve, port)
        await trio.sleep(61)
        doc = await diagnostics(proxy)
        assert doc["openai.1"]["is_functional"] is True
        assert doc["openai.1"]["validation_errors"] == []
        assert doc["openai.1"]["models"] == ["gpt-fake", "claude-fake"]
