"""Activity tracking end to end: live connections, exact byte counts, every way out.

The proxy runs with tracking on against the fake upstream; assertions read the real
``GET /v1/diagnostics`` document (and the Python API where it is the subject).
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

import anthropic
import httpx
import openai
import pytest
import trio
import trio.testing

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyutil import (
    RunningProxy,
    anthropic_spec,
    instance,
    mock_spec,
    openai_spec,
    running_proxy,
)
from tests.streams import raw_chunks
from trioproxy.activity import get_activity_tracker

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
CLOCK_SLACK = 0.05  # seconds


def tracked_proxy(
    nursery: trio.Nursery, fake: FakeUpstream, **settings: Any
) -> AbstractAsyncContextManager[RunningProxy]:
    return running_proxy(
        nursery,
        enable_activity_tracking=True,
        backends=(
            openai_spec(fake.base_url),
            anthropic_spec(fake.base_url),
            openai_spec(fake.base_url, name="second"),
        ),
        **settings,
    )


async def test_live_streams_are_listed_with_their_fields_and_vanish_when_done(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with tracked_proxy(nursery, fake) as proxy:
        # Each stream sends its first event at once, then holds its content for 1000 s.
        fake.script(*[Scenario(chunks=2, delay=1000)] * 3)
        before = time.time()
        targets = [
            (CHAT, "gpt-fake", "alpha"),
            (MESSAGES, "claude-fake", "beta"),
            (CHAT, "second:gpt-fake", "alpha"),
        ]
        first_events = trio.Semaphore(0)

        async def stream(path: str, model: str, session: str) -> None:
            body = {"model": model, "stream": True, "max_tokens": 5, "messages": []}
            async with (
                httpx.AsyncClient() as client,
                client.stream(
                    "POST", proxy.url + path, json=body, headers={"x-session-id": session}
                ) as response,
                raw_chunks(response) as chunks,
            ):
                await anext(chunks)
                first_events.release()
                await trio.sleep_forever()

        async with trio.open_nursery() as clients:
            for path, model, session in targets:
                clients.start_soon(stream, path, model, session)
            for _ in targets:
                await first_events.acquire()
            doc = await proxy.diagnostics()
            after = time.time()
            assert doc["activity_tracking_enabled"] is True
            assert doc["global_activity"]["total_active_connections"] == 3
            openai_1 = instance(doc, "openai.1")["activity"]
            (conn,) = openai_1["connections"]
            assert conn["session_id"] == "alpha"
            assert conn["connection_type"] == "streaming"
            assert conn["model"] == "gpt-fake"
            assert conn["requests"] == 1
            assert conn["bytes_rx"] > 0 and conn["bytes_rx"] == conn["bytes_tx"]
            # Epoch seconds within this test (Trio's clock and the wall clock may drift
            # apart a little), and both durations measured to the document's timestamp.
            assert before - CLOCK_SLACK <= conn["started_at"] <= conn["last_activity_at"]
            assert conn["last_activity_at"] <= doc["timestamp"] <= after + CLOCK_SLACK
            now = doc["timestamp"]
            assert conn["duration_seconds"] == pytest.approx(now - conn["started_at"], abs=1e-6)
            assert conn["idle_seconds"] == pytest.approx(now - conn["last_activity_at"], abs=1e-6)
            assert openai_1["total_bytes_rx"] == conn["bytes_rx"]
            assert (
                instance(doc, "anthropic.1")["activity"]["connections"][0]["session_id"] == "beta"
            )
            second = instance(doc, "second")["activity"]["connections"][0]
            assert (second["session_id"], second["model"]) == ("alpha", "gpt-fake")
            clients.cancel_scope.cancel()
        for i in range(3):
            await fake.wait_closed(i)
        doc = await proxy.diagnostics()
        assert doc["global_activity"]["total_active_connections"] == 0
        assert all(i["activity"]["connections"] == [] for i in doc["instances"])
        assert doc["global_activity"]["lifetime"]["cancelled"] == 3


async def test_bytes_are_exact_for_streams_json_both_apis_and_a_large_body(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with tracked_proxy(nursery, fake) as proxy:
        before = (await proxy.diagnostics())["global_activity"]["lifetime"]
        sent_before = fake.bytes_sent
        fake.script(
            Scenario(chunks=9),
            Scenario(),
            Scenario(chunks=4),
            Scenario(),
            Scenario(body_size=3_000_000),
            Scenario(chunks=3, gzip=True),
        )
        requests: list[tuple[str, dict[str, Any], dict[str, str]]] = [
            (CHAT, {"model": "gpt-fake", "stream": True}, {}),
            (CHAT, {"model": "gpt-fake"}, {}),
            (MESSAGES, {"model": "claude-fake", "stream": True, "max_tokens": 5}, {}),
            (MESSAGES, {"model": "claude-fake", "max_tokens": 5}, {}),
            (CHAT, {"model": "second:gpt-fake"}, {}),
            (CHAT, {"model": "gpt-fake", "stream": True}, {"accept-encoding": "gzip"}),
        ]
        received = 0
        async with httpx.AsyncClient() as client:
            for path, body, headers in requests:
                async with client.stream(
                    "POST", proxy.url + path, json={**body, "messages": []}, headers=headers
                ) as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
        after = (await proxy.diagnostics())["global_activity"]["lifetime"]
        upstream_sent = fake.bytes_sent - sent_before
        assert upstream_sent > 3_000_000
        assert after["bytes_rx"] - before["bytes_rx"] == upstream_sent
        assert after["bytes_tx"] - before["bytes_tx"] == received
        assert after["requests"] - before["requests"] == len(requests)
        assert (after["errors"], after["cancelled"], after["stale"]) == (0, 0, 0)


async def test_sdk_traffic_is_counted_exactly(nursery: trio.Nursery, fake: FakeUpstream) -> None:
    async with tracked_proxy(nursery, fake) as proxy:
        async with (
            openai.AsyncOpenAI(base_url=proxy.openai_url, api_key="x", max_retries=0) as oai,
            anthropic.AsyncAnthropic(base_url=proxy.url, api_key="x", max_retries=0) as ant,
        ):
            await oai.chat.completions.create(model="gpt-fake", messages=[])
            stream = await oai.chat.completions.create(model="gpt-fake", messages=[], stream=True)
            async for _ in stream:
                pass
            await ant.messages.create(model="claude-fake", max_tokens=5, messages=[])
        life = (await proxy.diagnostics())["global_activity"]["lifetime"]
        assert life["requests"] == 3
        assert life["bytes_rx"] == life["bytes_tx"] == fake.bytes_sent


async def test_two_requests_of_one_session_are_one_connection_until_the_last_ends(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with tracked_proxy(nursery, fake) as proxy:
        fake.script(Scenario(stall_after_headers=True), Scenario(stall_after_headers=True))
        scopes = [trio.CancelScope(), trio.CancelScope()]

        async def hold(scope: trio.CancelScope) -> None:
            with scope:
                async with httpx.AsyncClient(timeout=None) as client:
                    await client.post(
                        proxy.url + CHAT,
                        headers={"x-session-id": "shared"},
                        json={"model": "gpt-fake", "stream": True, "messages": []},
                    )

        async with trio.open_nursery() as clients:
            for scope in scopes:
                clients.start_soon(hold, scope)
            await fake.wait_in_flight(2)
            (conn,) = instance(await proxy.diagnostics(), "openai.1")["activity"]["connections"]
            assert (conn["session_id"], conn["requests"]) == ("shared", 2)
            scopes[0].cancel()
            # Either request may have reached the fake first: wait for one to be gone, and
            # for the proxy to finish releasing it.
            await fake.wait_in_flight(1)
            await trio.testing.wait_all_tasks_blocked()
            (conn,) = instance(await proxy.diagnostics(), "openai.1")["activity"]["connections"]
            assert (conn["session_id"], conn["requests"]) == ("shared", 1)
            scopes[1].cancel()
        await fake.wait_closed(0)
        await fake.wait_closed(1)
        # The proxy's request tasks finish their cleanup, then everything is idle.
        await trio.testing.wait_all_tasks_blocked()
        doc = await proxy.diagnostics()
        assert doc["global_activity"]["total_active_connections"] == 0
        assert doc["global_activity"]["lifetime"]["cancelled"] == 2


async def test_hang_up_removes_the_connection_at_once_and_counts_cancelled(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with tracked_proxy(nursery, fake) as proxy:
        fake.script(Scenario(chunks=40, delay=0.05))
        async with (
            httpx.AsyncClient() as client,
            client.stream(
                "POST", proxy.url + CHAT, json={"model": "gpt-fake", "stream": True, "messages": []}
            ) as response,
            raw_chunks(response) as chunks,
        ):
            await anext(chunks)
            assert (await proxy.diagnostics())["global_activity"]["total_active_connections"] == 1
        await fake.wait_closed(0)
        doc = await proxy.diagnostics()
        assert doc["global_activity"]["total_active_connections"] == 0
        assert doc["global_activity"]["lifetime"]["cancelled"] == 1
        assert doc["global_activity"]["lifetime"]["errors"] == 0


async def test_upstream_cut_counts_an_error(nursery: trio.Nursery, fake: FakeUpstream) -> None:
    async with tracked_proxy(nursery, fake) as proxy:
        fake.script(Scenario(cut_after=2))
        async with httpx.AsyncClient() as client:
            response = await client.post(
                proxy.url + MESSAGES,
                json={"model": "claude-fake", "stream": True, "max_tokens": 5, "messages": []},
            )
        assert b"event: error" in response.content
        life = (await proxy.diagnostics())["global_activity"]["lifetime"]
        assert (life["errors"], life["cancelled"]) == (1, 0)
        assert life["bytes_rx"] == fake.bytes_sent
        assert life["bytes_tx"] == len(response.content)


@pytest.mark.parametrize(
    ("scenario", "stream"),
    [
        (Scenario(stall_before_headers=True), False),
        (Scenario(stall_after_headers=True), True),
    ],
)
async def test_sweeper_cancels_a_hanging_upstream_on_time(
    nursery: trio.Nursery,
    fake: FakeUpstream,
    autojump_clock: trio.testing.MockClock,
    scenario: Scenario,
    stream: bool,
) -> None:
    async with tracked_proxy(
        nursery, fake, activity_stale_timeout=10, upstream_read_timeout=1000
    ) as proxy:
        fake.script(scenario)
        start = trio.current_time()
        async with httpx.AsyncClient(timeout=None) as client:
            response = await client.post(
                proxy.url + CHAT, json={"model": "gpt-fake", "stream": stream, "messages": []}
            )
        elapsed = trio.current_time() - start
        # Stale after 10 s of silence; the sweeper looks every 2.5 s.
        assert 10 <= elapsed <= 10 + 2.5 + 0.1
        if stream:
            assert response.status_code == 200
            assert response.content.startswith(b'data: {"error"')
        else:
            assert response.status_code == 504
            assert response.json()["error"]["type"] == "timeout_error"
        await fake.wait_closed(0)
        doc = await proxy.diagnostics()
        assert doc["global_activity"]["lifetime"]["stale"] == 1
        assert doc["global_activity"]["total_active_connections"] == 0


async def test_sweeper_for_real_with_a_short_timeout(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with tracked_proxy(nursery, fake, activity_stale_timeout=0.5) as proxy:
        fake.script(Scenario(stall_after_headers=True))
        with trio.fail_after(10):
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    proxy.url + MESSAGES,
                    json={"model": "claude-fake", "stream": True, "max_tokens": 5, "messages": []},
                )
            await fake.wait_closed(0)
        assert response.content.startswith(b"event: error\ndata: ")
        assert (
            json.loads(response.content.split(b"data: ", 1)[1])["error"]["type"] == "timeout_error"
        )
        assert (await proxy.diagnostics())["global_activity"]["lifetime"]["stale"] == 1


async def test_tracking_off_means_no_tracker_and_null_activity(nursery: trio.Nursery) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        assert proxy.app.tracker is None
        async with httpx.AsyncClient() as client:
            assert (
                await client.post(proxy.url + CHAT, json={"model": "m", "messages": []})
            ).status_code == 200
            summary = (await client.get(proxy.url + "/v1/diagnostics/activity")).json()
        doc = await proxy.diagnostics()
        assert doc["activity_tracking_enabled"] is False
        assert doc["global_activity"] is None
        assert [i["activity"] for i in doc["instances"]] == [None]
        assert summary == {
            "enabled": False,
            "total_active_connections": 0,
            "total_bytes_rx": 0,
            "total_bytes_tx": 0,
        }
        assert get_activity_tracker() is None


async def test_python_api_gives_the_running_proxys_tracker(nursery: trio.Nursery) -> None:
    async with running_proxy(
        nursery, enable_activity_tracking=True, backends=(mock_spec(chunks=3),)
    ) as proxy:
        tracker = get_activity_tracker()
        assert tracker is proxy.app.tracker and tracker is not None
        async with httpx.AsyncClient() as client:
            response = await client.post(
                proxy.url + MESSAGES,
                json={"model": "m", "max_tokens": 5, "stream": True, "messages": []},
            )
            summary = (await client.get(proxy.url + "/v1/diagnostics/activity")).json()
        snapshot = tracker.get_global_snapshot()
        assert snapshot.total_active_connections == 0
        assert snapshot.lifetime.bytes_tx == len(response.content) == snapshot.lifetime.bytes_rx
        assert summary == {
            "enabled": True,
            "total_active_connections": 0,
            "total_bytes_rx": 0,
            "total_bytes_tx": 0,
        }
