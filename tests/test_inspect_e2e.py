"""``trioproxy-inspect`` against the real proxy with tracking on and live streams.

The proxy serves in the test's nursery; the tool runs as a subprocess (one shot, --raw)
and in a real terminal (a tmux pane) for --watch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable

import httpx
import pytest
import trio

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyutil import RunningProxy, openai_spec, running_proxy
from tests.streams import raw_chunks
from tests.tmuxpane import SCRIPT, Pane, header_values, pane_runner

run_in_pane = pytest.fixture(pane_runner)
TIMEOUT = 30


async def hold_stream(proxy: RunningProxy, session: str, started: trio.Event) -> None:
    """A streaming request of ``session`` read to its end."""
    body = {"model": "gpt-fake", "stream": True, "messages": []}
    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream(
            "POST",
            proxy.openai_url + "/chat/completions",
            json=body,
            headers={"x-session-id": session},
        ) as response,
        raw_chunks(response) as chunks,
    ):
        await anext(chunks)
        started.set()
        async for _ in chunks:
            pass


async def tool(*args: str) -> tuple[int, str]:
    with trio.fail_after(TIMEOUT):
        result = await trio.run_process(
            [sys.executable, str(SCRIPT), *args], capture_stdout=True, check=False
        )
    return result.returncode, result.stdout.decode()


async def test_one_shot_and_raw_show_a_live_stream(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(
        nursery, enable_activity_tracking=True, backends=(openai_spec(fake.base_url),)
    ) as proxy:
        # The first event goes out at once; the content then waits far longer than the test.
        fake.script(Scenario(chunks=2, delay=1000))
        started = trio.Event()
        async with trio.open_nursery() as clients:
            clients.start_soon(hold_stream, proxy, "live-session-1234", started)
            await started.wait()
            code, shot = await tool(proxy.url)
            raw_code, raw = await tool(proxy.url, "--raw")
            clients.cancel_scope.cancel()
        assert code == 0
        assert "Active Connections: 1" in shot
        row = next(line for line in shot.splitlines() if line.startswith("openai.1"))
        assert row.split()[:4] == ["openai.1", "live-sessi…", "streaming", "gpt-fake"]
        assert raw_code == 0
        doc = json.loads(raw)
        (conn,) = doc["instances"][0]["activity"]["connections"]
        assert conn["session_id"] == "live-session-1234" and conn["bytes_tx"] > 0


async def test_watch_follows_a_stream_live_and_drops_it_when_it_ends(
    nursery: trio.Nursery,
    fake: FakeUpstream,
    run_in_pane: Callable[..., Awaitable[Pane]],
) -> None:
    async with running_proxy(
        nursery, enable_activity_tracking=True, backends=(openai_spec(fake.base_url),)
    ) as proxy:
        finish = trio.Event()
        # Thirty pieces, a fifth of a second apart: six seconds of visible progress.
        fake.script(Scenario(chunks=30, delay=0.2))
        started = trio.Event()

        async def stream_then_flag() -> None:
            await hold_stream(proxy, "watched-session", started)
            finish.set()

        with trio.fail_after(TIMEOUT):
            nursery.start_soon(stream_then_flag)
            await started.wait()
            pane = await run_in_pane(proxy.url, "--watch", "--interval", "0.2")
            first = await pane.wait_for(lambda s: "watched-se…" in s)
            assert "openai.1" in first and "gpt-fake" in first
            # The byte counts grow between refreshes, redrawn in place.
            changed = await pane.wait_for(
                lambda s: (
                    "watched-se…" in s and header_values(s) not in (None, header_values(first))
                )
            )
            assert changed.count("Active Connections") == 1
            await finish.wait()
            ended = await pane.wait_for(lambda s: "No active connections" in s)
            assert "watched-se…" not in ended
            await pane.tmux("send-keys", "-t", "t", "C-c")
            status, final = await pane.exit_status()
        assert status == 0
        assert "Traceback" not in final and "KeyboardInterrupt" not in final
