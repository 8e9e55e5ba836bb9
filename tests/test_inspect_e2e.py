"""``trioproxy-inspect`` against the real proxy with tracking on and live streams.

The proxy serves in the test's nursery; the tool runs as a subprocess (one shot, --raw),
as a function in a thread (--cancel), and in a real terminal (a tmux pane) for --watch.
Several proxies are real processes (``tests/proxyprocess.py``), stopped by their PID.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import trio

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyprocess import trioproxy_process
from tests.proxyutil import RunningProxy, instance, mock_spec, openai_spec, running_proxy
from tests.streams import raw_chunks
from tests.tmuxpane import SCRIPT, Pane, header_values, pane_runner
from trioproxy.inspect import cli

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
        assert row.split()[:5] == ["openai.1", "live-sessi…", "chat", "stream", "gpt-fake"]
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
            # Gone from the live table, it stays in the finished ones, below it.
            live, _, done = ended.partition("No active connections")
            assert "watched-se…" not in live
            row = next(line for line in done.splitlines() if "watched-se…" in line)
            assert row.split()[1:3] == ["openai.1", "watched-se…"]
            assert row.split()[-1] == "completed"
            await pane.tmux("send-keys", "-t", "t", "C-c")
            status, final = await pane.exit_status()
        assert status == 0
        assert "Traceback" not in final and "KeyboardInterrupt" not in final


# --- cancel --------------------------------------------------------------------------

MOCK_STREAM = {"model": "mock-model", "stream": True, "messages": []}


async def test_cancel_from_the_command_ends_a_live_stream(
    nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_proxy(
        nursery, backends=(mock_spec(chunks=50, delay=0.1),), enable_activity_tracking=True
    ) as proxy:
        session = "stuck-session-0001"
        with trio.fail_after(TIMEOUT):
            async with (
                httpx.AsyncClient(timeout=TIMEOUT) as client,
                client.stream(
                    "POST",
                    proxy.openai_url + "/chat/completions",
                    json=MOCK_STREAM,
                    headers={"x-session-id": session},
                ) as response,
                raw_chunks(response) as chunks,
            ):
                received = await anext(chunks)
                # As the view shows it: the first ten characters and an ellipsis.
                argv = ["--cancel", "mock.1", "stuck-sess…", proxy.url]
                code = await trio.to_thread.run_sync(cli.main, argv)
                async for chunk in chunks:  # the proxy ends the stream
                    received += chunk
            assert code == 0
            out = capsys.readouterr().out
            assert out == (
                f"Cancelled 1 request of session {session!r} on instance 'mock.1' at {proxy.url}.\n"
            )
            # The client got its API's error event, last, and no end of stream.
            last = json.loads(received.rstrip(b"\n").rsplit(b"\n\n", 1)[-1].removeprefix(b"data: "))
            assert last["error"]["code"] == "cancelled_by_operator"
            assert b"[DONE]" not in received
            # The connection left the diagnostics; the history says who ended it.
            doc = await proxy.diagnostics()
            assert instance(doc, "mock.1")["activity"]["connections"] == []
            assert instance(doc, "mock.1")["activity"]["lifetime"]["cancelled"] == 1
            async with httpx.AsyncClient() as client:
                history = (await client.get(proxy.url + "/v1/diagnostics/recent")).json()
            (ended,) = history["recent"]
            assert (ended["session_id"], ended["outcome"], ended["reason"]) == (
                session,
                "cancelled",
                "operator",
            )
            # Nothing left to cancel: one sentence, exit 1.
            argv = ["--cancel", "mock.1", session, proxy.url]
            assert await trio.to_thread.run_sync(cli.main, argv) == 1
            # The proxy's access log shares stderr in this process, and its line for the
            # cancel may come before or after the command's (another thread): one of them.
            assert (
                f"No active connection of session {session!r} on instance 'mock.1' at {proxy.url}."
                in capsys.readouterr().err.splitlines()[-2:]
            )


# --- several proxies -----------------------------------------------------------------

# The mock's reply has about 90 characters, one at least per chunk: a stream of some 20 s.
SLOW_MOCK = """\
enable_activity_tracking: true
backends:
  - type: mock
    chunks: 100
    chunk_delay: 0.25
"""


async def hold_process_stream(url: str, session: str, started: trio.Event) -> None:
    """A streaming request of ``session`` to the proxy at ``url``, read to its end."""
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as client,
        client.stream(
            "POST",
            url + "/v1/chat/completions",
            json=MOCK_STREAM,
            headers={"x-session-id": session},
        ) as response,
        raw_chunks(response) as chunks,
    ):
        await anext(chunks)
        started.set()
        async for _ in chunks:
            pass


async def test_watch_merges_two_proxies_and_goes_on_when_one_stops(
    tmp_path: Path, run_in_pane: Callable[..., Awaitable[Pane]]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    quiet = ("--access-log", "off")
    async with (
        trioproxy_process(tmp_path / "a", SLOW_MOCK, *quiet) as a,
        trioproxy_process(tmp_path / "b", SLOW_MOCK, *quiet, "--shutdown-grace", "0.2") as b,
        trio.open_nursery() as clients,
    ):
        with trio.fail_after(TIMEOUT):
            started = trio.Event(), trio.Event()
            clients.start_soon(hold_process_stream, a.url, "alpha-a", started[0])
            clients.start_soon(hold_process_stream, b.url, "beta-b", started[1])
            for event in started:
                await event.wait()
            pane = await run_in_pane(a.url, b.url, "--watch", "--interval", "0.2")
            both = await pane.wait_for(
                lambda s: "Ctrl+C" in s and s.count("up, 1 connection") == 2 and "beta-b" in s
            )
            label_a, label_b = (url.removeprefix("http://") for url in (a.url, b.url))
            assert "trioproxy activity · 2 proxies" in both
            assert header_values(both) is not None
            assert header_values(both).split()[1] == "2"  # type: ignore[union-attr]
            rows = {line.split()[2]: line.split()[:2] for line in both.splitlines() if "-" in line}
            assert rows["alpha-a"] == [label_a, "mock.1"]
            assert rows["beta-b"] == [label_b, "mock.1"]
            # Proxy B stops (its stream ends at the grace period); A goes on.
            b.proc.send_signal(signal.SIGTERM)
            assert await b.proc.wait() == 0
            down = await pane.wait_for(lambda s: "Ctrl+C" in s and f"{label_b}  unreachable" in s)
            assert "beta-b" not in down
            assert f"{label_a}  up, 1 connection" in down
            assert f"The proxy at {b.url} is unreachable" in " ".join(down.split())
            assert header_values(down).split()[1] == "1"  # type: ignore[union-attr]
            # ... and its row keeps updating.
            await pane.wait_for(
                lambda s: (
                    f"{label_b}  unreachable" in s
                    and "alpha-a" in s
                    and header_values(s) not in (None, header_values(down))
                )
            )
            await pane.tmux("send-keys", "-t", "t", "C-c")
            status, final = await pane.exit_status()
            clients.cancel_scope.cancel()
    assert status == 0
    assert "Traceback" not in final
