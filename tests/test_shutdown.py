"""Graceful shutdown: ``server.serve()`` in-process under a mock clock, and a real process.

The in-process tests drive ``serve`` through its ``shutdown_trigger`` on
``MockClock(autojump_threshold=0)``: the clock jumps whenever every task waits, so the
grace period and the fake upstream's delays pass at once and exactly, and the tests can
state when things happen in Trio's time. They wait on events only; clients have no
timeout of their own (it would run out on the jumping clock). The process tests below
send real signals to a real ``trioproxy`` and take real time.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio
import trio.testing

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyprocess import trioproxy_process
from tests.proxyutil import openai_spec
from tests.streams import raw_chunks
from trioproxy.server import serve
from trioproxy.settings import Settings

CHAT = "/v1/chat/completions"
STREAM_BODY = {"model": "gpt-fake", "stream": True, "messages": []}
JSON_BODY = {"model": "gpt-fake", "messages": []}
# Virtual seconds: more than any grace below plus hypercorn's margin. A serve() that never
# returns fails at this guard instead of hanging the suite (the mock clock gets there).
RETURN_WITHIN = 600


@dataclass
class Serving:
    """``serve()`` running in a test: its URL, its trigger, and whether it has returned."""

    url: str
    stop: trio.Event
    returned: trio.Event

    async def wait_returned(self) -> None:
        """Return once serve() has; fail after ``RETURN_WITHIN`` (Trio time)."""
        with trio.fail_after(RETURN_WITHIN):
            await self.returned.wait()

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port


@asynccontextmanager
async def serving(
    nursery: trio.Nursery, fake: FakeUpstream, grace: float, *, trigger: bool = True
) -> AsyncIterator[Serving]:
    """``serve()`` on 127.0.0.1:0 in ``nursery``, relaying to ``fake``, for the block.

    The test sets ``stop`` (the shutdown trigger) itself, or with ``trigger=False`` serve
    waits for its default trigger, a signal. Leaving the block sets ``stop`` and waits for
    serve to return, so a failing test still shuts down cleanly.
    """
    settings = replace(
        Settings(),
        host="127.0.0.1",
        port=0,
        shutdown_grace=grace,
        backends=(openai_spec(fake.base_url),),
    )
    stop, returned = trio.Event(), trio.Event()

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(
                settings, shutdown_trigger=stop.wait if trigger else None, task_status=task_status
            )
        finally:
            returned.set()

    binds: list[str] = await nursery.start(run)
    server = Serving(binds[0], stop, returned)
    try:
        yield server
    finally:
        stop.set()
        with trio.CancelScope(shield=True):
            await server.wait_returned()


async def test_a_stream_that_ends_within_the_grace_completes_and_serve_returns(
    nursery: trio.Nursery,
    fake: FakeUpstream,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.script(Scenario(chunks=5, delay=1.0))  # 5 s of content after the first event
    async with (
        serving(nursery, fake, grace=30) as server,
        httpx.AsyncClient(timeout=None) as client,
        client.stream("POST", server.url + CHAT, json=STREAM_BODY) as response,
        raw_chunks(response) as chunks,
    ):
        received = await anext(chunks)
        server.stop.set()
        stopped_at = trio.current_time()
        async for chunk in chunks:
            received += chunk
        assert received.endswith(b"data: [DONE]\n\n")
        assert b'"error"' not in received
        await server.wait_returned()
        # Returned when the last request ended, not at the end of the grace period.
        assert trio.current_time() - stopped_at == pytest.approx(5.0)
    assert "shutdown grace over" not in caplog.text


async def test_new_connections_are_refused_once_stopping(
    nursery: trio.Nursery, fake: FakeUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    fake.script(Scenario(chunks=2, delay=10.0))
    async with (
        serving(nursery, fake, grace=30) as server,
        httpx.AsyncClient(timeout=None) as client,
        client.stream("POST", server.url + CHAT, json=STREAM_BODY) as response,
        raw_chunks(response) as chunks,
    ):
        await anext(chunks)
        server.stop.set()
        # Every task waits: the listeners have closed, and the stream is still in flight.
        await trio.testing.wait_all_tasks_blocked()
        assert not server.returned.is_set()
        with pytest.raises(OSError):
            await trio.open_tcp_stream(*server.address)
        async for _ in chunks:
            pass
        await server.wait_returned()


async def test_at_the_deadline_a_stream_gets_an_error_event_and_a_waiting_request_a_503(
    nursery: trio.Nursery,
    fake: FakeUpstream,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trioproxy")
    # The stream's content would take 1000 s; the JSON request's headers never come.
    fake.script(Scenario(chunks=10, delay=100.0), Scenario(stall_before_headers=True))
    async with serving(nursery, fake, grace=2) as server, httpx.AsyncClient(timeout=None) as client:
        received = b""
        answer: list[httpx.Response] = []
        ended_at: dict[str, float] = {}

        async def read_stream(*, task_status: trio.TaskStatus[None]) -> None:
            nonlocal received
            async with (
                client.stream("POST", server.url + CHAT, json=STREAM_BODY) as response,
                raw_chunks(response) as chunks,
            ):
                received = await anext(chunks)
                task_status.started()
                async for chunk in chunks:
                    received += chunk
            ended_at["stream"] = trio.current_time()

        async def wait_for_json() -> None:
            answer.append(await client.post(server.url + CHAT, json=JSON_BODY))
            ended_at["json"] = trio.current_time()

        async with trio.open_nursery() as clients:
            await clients.start(read_stream)
            clients.start_soon(wait_for_json)
            await fake.wait_in_flight(2)
            server.stop.set()
            stopped_at = trio.current_time()
        await server.wait_returned()

    assert ended_at == {
        "stream": pytest.approx(stopped_at + 2),
        "json": pytest.approx(stopped_at + 2),
    }
    assert b"data: [DONE]" not in received
    last = received.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last.startswith(b"data: ")
    assert json.loads(last.removeprefix(b"data: "))["error"]["code"] == "shutting_down"
    (response,) = answer
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "shutting_down"
    assert "shutdown grace over: ending 2 request(s) with an error" in caplog.text
    await fake.wait_closed(0)
    await fake.wait_closed(1)  # both upstream requests were closed too


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", CHAT),  # a proxy route
        ("GET", "/health"),  # Quart routes: Quart-Trio cancels its request task at the end
        ("GET", "/v1/models"),
        ("GET", "/v1/diagnostics"),
    ],
)
async def test_idle_keep_alive_connections_do_not_hold_the_shutdown(
    nursery: trio.Nursery,
    fake: FakeUpstream,
    autojump_clock: trio.testing.MockClock,
    method: str,
    path: str,
) -> None:
    async with serving(nursery, fake, grace=30) as server, httpx.AsyncClient() as client:
        body = JSON_BODY if method == "POST" else None
        assert (await client.request(method, server.url + path, json=body)).status_code == 200
        # The client keeps its connection open for the next request; stopping closes it.
        server.stop.set()
        stopped_at = trio.current_time()
        await server.wait_returned()
        assert trio.current_time() == stopped_at


async def test_a_second_signal_ends_in_flight_requests_at_once(
    nursery: trio.Nursery,
    fake: FakeUpstream,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trioproxy")
    # serve()'s default trigger: SIGINT or SIGTERM, caught by its signal receiver.
    fake.script(Scenario(chunks=2, delay=1000.0))
    async with (
        serving(nursery, fake, grace=30, trigger=False) as server,
        httpx.AsyncClient(timeout=None) as client,
        client.stream("POST", server.url + CHAT, json=STREAM_BODY) as response,
        raw_chunks(response) as chunks,
    ):
        received = await anext(chunks)
        # A second upstream connection, left idle in the instance's pool.
        assert (await client.post(server.url + CHAT, json=JSON_BODY)).status_code == 200
        assert fake.connections_opened == 2
        signal.raise_signal(signal.SIGTERM)
        await trio.testing.wait_all_tasks_blocked()
        assert not server.returned.is_set()  # draining: the stream has 30 s
        signalled_at = trio.current_time()
        signal.raise_signal(signal.SIGTERM)
        with pytest.raises(httpx.RemoteProtocolError):
            async for chunk in chunks:
                received += chunk
        await server.wait_returned()
        assert trio.current_time() == signalled_at
    assert b"[DONE]" not in received
    # The pooled connection of the JSON request was closed too, as lifespan shutdown would.
    with trio.fail_after(RETURN_WITHIN):
        await fake.wait_closed(1)
    assert "SIGTERM: stopping; in-flight requests have 30s to finish" in caplog.text
    assert "second signal: cancelling in-flight requests now" in caplog.text


# --- a real process, real signals ---------------------------------------------------------

CONFIG = """
backends:
  - type: mock
    chunks: 30
    chunk_delay: 0.05
"""
MOCK_STREAM = {"model": "mock-model", "stream": True, "messages": []}


# SIGHUP: the terminal or ssh session closed, whose default action cut every stream.
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
async def test_signal_lets_running_streams_finish_and_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    async with trioproxy_process(tmp_path, CONFIG, "--shutdown-grace", "20") as proxy:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("POST", proxy.url + "/v1/chat/completions", json=MOCK_STREAM) as response,
            raw_chunks(response) as chunks,
        ):
            received = await anext(chunks)
            proxy.proc.send_signal(signum)
            async for chunk in chunks:
                received += chunk
        assert received.endswith(b"data: [DONE]\n\n")
        with trio.fail_after(30):
            assert await proxy.proc.wait() == 0
        assert b"Traceback" not in await proxy.read_rest()
        # Nothing listens any more.
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(proxy.url + "/health")


async def test_streams_past_the_grace_period_end_with_an_error_event_and_exit_0(
    tmp_path: Path,
) -> None:
    async with trioproxy_process(tmp_path, CONFIG, "--shutdown-grace", "0.3") as proxy:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("POST", proxy.url + "/v1/chat/completions", json=MOCK_STREAM) as response,
            raw_chunks(response) as chunks,
        ):
            received = await anext(chunks)
            proxy.proc.send_signal(signal.SIGTERM)
            async for chunk in chunks:
                received += chunk
        assert b"data: [DONE]" not in received
        last = received.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        assert last.startswith(b"data: ")
        assert json.loads(last[len(b"data: ") :])["error"]["code"] == "shutting_down"
        with trio.fail_after(30):
            assert await proxy.proc.wait() == 0
        assert b"shutdown grace over: ending 1 request(s)" in await proxy.read_rest()


@pytest.mark.parametrize("path", ["/health", "/v1/models"])
async def test_sigint_after_a_request_on_a_kept_alive_connection_exits_at_once(
    tmp_path: Path, path: str
) -> None:
    # Nothing in flight: the idle connection closes at once, so the exit does not wait
    # for the grace (30 s) and hypercorn's margin.
    async with (
        trioproxy_process(tmp_path, CONFIG) as proxy,
        httpx.AsyncClient(timeout=30) as client,
    ):
        assert (await client.get(proxy.url + path)).status_code == 200
        proxy.proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await proxy.proc.wait() == 0
        assert b"Traceback" not in await proxy.read_rest()
