"""Serving the real proxy app in a test, stopped the way production stops it; backend specs.

``async with running_proxy(nursery, backends=...) as proxy:`` serves the app as production
does (``trioproxy.serving.serve_app``: hypercorn's Trio worker with the proxy's own
connection handler) on 127.0.0.1, port 0, in the test's nursery, and the block starts
once it is listening. When the block ends, however it ends, the proxy is stopped through
hypercorn's ``shutdown_trigger`` and the block's exit waits for hypercorn to return: the
listeners close, idle keep-alive connections close, and lifespan shutdown runs the app's
``after_serving`` (every instance's pool closed, the process-wide tracker cleared). So no
socket is left for the garbage collector and no state leaks into the next test.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import trio
import trio.testing

from trioproxy.activity import ActivityTracker
from trioproxy.app import TrioProxyApp, create_app
from trioproxy.asgi import Asgi, Receive, Send
from trioproxy.server import hypercorn_config
from trioproxy.serving import serve_app
from trioproxy.settings import BackendSpec, ConnectorType, Secret, Settings

# Seconds (Trio's clock): past hypercorn's own bounds on a shutdown (the graceful timeout,
# shutdown_grace + 5, then 60 for lifespan shutdown), so a proxy that never stops fails
# the test instead of hanging the suite.
STOP_WITHIN = 120
BACKEND_KEY = "sk-backend-key-0123456789"
CLIENT_KEY = "sk-client-key-should-never-be-forwarded"


@dataclass
class RunningProxy:
    """A proxy serving in a test: its base URL and the app (backends, tracker)."""

    url: str
    app: TrioProxyApp

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    async def diagnostics(self) -> dict[str, Any]:
        """``GET /v1/diagnostics`` on a client of its own (asserting 200)."""
        async with httpx.AsyncClient() as client:
            response = await client.get(self.url + "/v1/diagnostics")
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]


def instance(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The entry of instance ``name`` in a diagnostics document."""
    return next(i for i in doc["instances"] if i["name"] == name)


@asynccontextmanager
async def running_proxy(nursery: trio.Nursery, **settings: Any) -> AsyncIterator[RunningProxy]:
    """Serve a proxy built from ``Settings(**settings)`` in ``nursery`` for the block.

    Host and port default to 127.0.0.1 and 0 (OS-assigned). The block starts once the
    proxy listens. When it ends, the proxy stops through hypercorn's ``shutdown_trigger``
    and the exit returns once hypercorn has (see the module docstring). Requests still in
    flight then get hypercorn's graceful timeout, as in production; when the block ends by
    an exception or a cancellation they are ended at once (503, or an SSE error event).
    The block's own exception propagates unchanged; one from the server itself reaches
    ``nursery``, which cancels the block. The nursery is the caller's, passed in: one
    hidden inside the context manager would wrap the block's exceptions in groups.
    """
    config = replace(Settings(), **{"host": "127.0.0.1", "port": 0, **settings})
    app = create_app(config)
    stop, stopped = trio.Event(), trio.Event()
    binds: list[str] = await nursery.start(_serve, app, config, stop, stopped)
    try:
        yield RunningProxy(binds[0], app)
    except BaseException:
        # The test is over: nothing it left running may hold the shutdown up.
        stop.set()
        app.proxy.cancel_in_flight()
        raise
    finally:
        stop.set()
        with trio.CancelScope(shield=True), trio.fail_after(STOP_WITHIN):
            await stopped.wait()


async def _serve(
    app: TrioProxyApp,
    settings: Settings,
    stop: trio.Event,
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    try:
        # Shielded: only ``stop`` ends it, so lifespan shutdown runs even when the test's
        # nursery is being cancelled (hypercorn bounds the shutdown by its own timeouts).
        with trio.CancelScope(shield=True):
            await serve_app(
                app,
                hypercorn_config(settings),
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
    finally:
        stopped.set()


def openai_spec(
    base: str,
    name: str = "openai.1",
    models: tuple[str, ...] | None = ("gpt-fake",),
    key: str | None = BACKEND_KEY,
) -> BackendSpec:
    """An OpenAI-style backend at the fake whose root URL is ``base``.

    ``models`` defaults to a list so no discovery request precedes the test's own;
    pass None to have the proxy discover them.
    """
    return BackendSpec(
        name=name,
        type=ConnectorType.OPENAI,
        base_url=base + "/v1",
        api_key_env="FAKE_OPENAI_KEY",
        api_key=Secret(key) if key else None,
        models=models,
    )


def anthropic_spec(
    base: str,
    name: str = "anthropic.1",
    models: tuple[str, ...] | None = ("claude-fake",),
    key: str | None = BACKEND_KEY,
) -> BackendSpec:
    """An Anthropic-style backend at the fake whose root URL is ``base``."""
    return BackendSpec(
        name=name,
        type=ConnectorType.ANTHROPIC,
        base_url=base,
        api_key_env="FAKE_ANTHROPIC_KEY",
        api_key=Secret(key) if key else None,
        models=models,
    )


def mock_spec(name: str = "mock.1", chunks: int = 4, delay: float = 0.0) -> BackendSpec:
    return BackendSpec(
        name=name, type=ConnectorType.MOCK, mock_chunks=chunks, mock_chunk_delay=delay
    )


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """A bare test app's answer to the server's lifespan messages, until its shutdown."""
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


async def connect_to_served(
    nursery: trio.Nursery, app: Asgi
) -> tuple[trio.SocketStream, trio.Event]:
    """Serve a bare test ``app`` as the proxy is served (``serve_app``, 127.0.0.1:0) in
    ``nursery``: a TCP stream connected to it, and the event that stops the server."""
    stop = trio.Event()
    config = hypercorn_config(replace(Settings(), host="127.0.0.1", port=0))
    binds: list[str] = await nursery.start(
        functools.partial(serve_app, app, config, shutdown_trigger=stop.wait)
    )
    host, port = binds[0].removeprefix("http://").rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port)), stop


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
