"""Clients that stop reading, or send their body too slowly, on real sockets.

A client that stops reading a stream fills the kernel's buffers, and the proxy's send to
it then waits for as long as the client likes. Whatever cancels the request — the stale
sweeper, an operator, the shutdown deadline — must end it anyway: upstream closed, client
connection closed, counted once.

A client that sends its body too slowly — nothing after the headers, or a byte a second —
gets 408 once ``request_body_timeout`` (60 s by default) has passed since the headers.

The non-reading tests take real time (a short stale timeout, a short grace): the kernel's
buffers fill at their own pace, and no mock clock can wait for that. Each bound there is
a guard against a hang, far above what the test needs, not a measurement. The slow-body
tests run on the mock clock.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import h11
import pytest
import trio
import trio.testing

from tests.h11server import H11Server, ServerConn
from tests.proxyprocess import trioproxy_process
from tests.proxyutil import mock_spec, openai_spec, running_proxy
from trioproxy.server import serve
from trioproxy.settings import Settings

GUARD = 20  # seconds; a hang fails here
STUCK_AFTER = 0.5  # seconds the upstream's send must make no progress to count as stuck
SESSION = "slow-reader"
EVENT = b'data: {"choices": [{"delta": {"content": "' + b"x" * 16_000 + b'"}}]}\n\n'


class FloodingUpstream:
    """An OpenAI-style upstream that streams SSE events for as long as they are read.

    ``stuck`` is set once its send has made no progress for ``STUCK_AFTER`` seconds: the
    proxy has stopped reading the stream, because its own send to the client is blocked.
    ``closed`` is set when the proxy closes the upstream connection.
    """

    def __init__(self) -> None:
        self.server = H11Server(self._handle)
        self.stuck = trio.Event()
        self.closed = trio.Event()
        self.requests = 0
        self._sent = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def _handle(self, conn: ServerConn, request: h11.Request, body: bytes) -> None:
        self.requests += 1
        await conn.send_head(200, [(b"content-type", b"text/event-stream")])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_progress)
            try:
                while True:
                    await conn.send(h11.Data(data=EVENT))
                    self._sent += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self.closed.set()
                nursery.cancel_scope.cancel()
                await conn.close()

    async def _watch_progress(self) -> None:
        while not self.closed.is_set():
            seen = self._sent
            await trio.sleep(STUCK_AFTER)
            if self._sent == seen:
                self.stuck.set()
                return


@asynccontextmanager
async def flooding_upstream(nursery: trio.Nursery) -> AsyncIterator[FloodingUpstream]:
    upstream = FloodingUpstream()
    await nursery.start(upstream.server.serve)
    yield upstream


def request_bytes(path: str = "/v1/chat/completions") -> bytes:
    body = json.dumps({"model": "gpt-fake", "stream": True, "messages": []}).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        f"x-session-id: {SESSION}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


@asynccontextmanager
async def non_reading_client(url: str) -> AsyncIterator[trio.SocketStream]:
    """A connection with a tiny receive buffer that sends a stream request and never reads.

    Closed when the block ends, so a test that fails leaves nothing blocked on it.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((host, int(port)))
    async with trio.SocketStream(sock) as stream:
        await stream.send_all(request_bytes())
        yield stream


async def wait_closed_by_peer(stream: trio.SocketStream) -> None:
    """Read (and drop) what the peer still sends, up to its close."""
    try:
        while await stream.receive_some(1 << 16):
            pass
    except trio.BrokenResourceError:
        pass  # a reset is a close too


async def body_bytes_until_closed(stream: trio.SocketStream) -> int:
    """Read what the peer still sends, up to its close: the response body bytes in it
    (a body cut short counts up to its cut)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/", headers=[("host", "proxy")]))
    body = 0
    while True:
        try:
            data = await stream.receive_some(1 << 16)
        except trio.BrokenResourceError:
            data = b""  # a reset is a close too
        conn.receive_data(data)
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:  # the body cut short by the close
                return body
            if isinstance(event, h11.Data):
                body += len(event.data)
            elif event is h11.NEED_DATA:
                break
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return body
        if not data:
            return body


def tracked(upstream: FloodingUpstream, **settings: object) -> dict[str, object]:
    return {
        "backends": (openai_spec(upstream.base_url),),
        "enable_activity_tracking": True,
        **settings,
    }


async def test_a_non_reading_clients_stale_request_ends_upstream_and_client_closed(
    nursery: trio.Nursery,
) -> None:
    async with (
        flooding_upstream(nursery) as upstream,
        running_proxy(nursery, **tracked(upstream, activity_stale_timeout=0.5)) as proxy,
    ):
        async with non_reading_client(proxy.url) as client:
            with trio.fail_after(GUARD):
                await upstream.closed.wait()
                received = await body_bytes_until_closed(client)
        life = (await proxy.diagnostics())["global_activity"]
        assert life["total_active_connections"] == 0
        assert life["lifetime"]["requests"] == 1
        assert (life["lifetime"]["stale"], life["lifetime"]["cancelled"]) == (1, 0)
        assert life["lifetime"]["errors"] == 0
        # Including the part of its chunk that the write the sweep cut had delivered.
        assert life["lifetime"]["bytes_tx"] == received


async def test_an_operator_cancel_ends_a_non_reading_clients_request(
    nursery: trio.Nursery,
) -> None:
    async with (
        flooding_upstream(nursery) as upstream,
        running_proxy(nursery, **tracked(upstream, activity_stale_timeout=1000)) as proxy,
    ):
        assert proxy.app.tracker is not None
        async with non_reading_client(proxy.url) as client:
            with trio.fail_after(GUARD):
                await upstream.stuck.wait()
                assert proxy.app.tracker.cancel("openai.1", SESSION) == 1
                await upstream.closed.wait()
                received = await body_bytes_until_closed(client)
        life = (await proxy.diagnostics())["global_activity"]
        assert life["total_active_connections"] == 0
        assert (life["lifetime"]["requests"], life["lifetime"]["cancelled"]) == (1, 1)
        assert life["lifetime"]["stale"] == 0
        assert life["lifetime"]["bytes_tx"] == received


async def test_the_shutdown_deadline_ends_a_non_reading_clients_request(
    nursery: trio.Nursery,
) -> None:
    async with flooding_upstream(nursery) as upstream:
        settings = replace(
            Settings(),
            host="127.0.0.1",
            port=0,
            shutdown_grace=0.5,
            backends=(openai_spec(upstream.base_url),),
        )
        stop, returned = trio.Event(), trio.Event()

        async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await serve(settings, shutdown_trigger=stop.wait, task_status=task_status)
            finally:
                returned.set()

        binds: list[str] = await nursery.start(run)
        async with non_reading_client(binds[0]) as client:
            with trio.fail_after(GUARD):
                await upstream.stuck.wait()
                stop.set()
                await returned.wait()
                assert upstream.closed.is_set()
                await wait_closed_by_peer(client)


async def test_sigterm_with_a_non_reading_client_exits_within_the_grace(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with flooding_upstream(nursery) as upstream:
        config = f"backends:\n  - type: openai\n    base_url: {upstream.base_url}/v1\n"
        config += "    models: [gpt-fake]\n"
        async with trioproxy_process(tmp_path, config, "--shutdown-grace", "1") as proxy:
            async with non_reading_client(proxy.url) as client:
                with trio.fail_after(GUARD):
                    await upstream.stuck.wait()
                    proxy.proc.terminate()
                    assert await proxy.proc.wait() == 0
                    await upstream.closed.wait()
                    await wait_closed_by_peer(client)
            log = await proxy.read_rest()
        assert b"Traceback" not in log
        assert b"shutdown grace over: ending 1 request(s) with an error" in log


# --- a request body that never arrives, or arrives a byte a second ---------------------
# These run on the mock clock: the proxy's 60 s pass at once, and exactly.


@pytest.mark.parametrize(
    ("path", "shape"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")]
)
@pytest.mark.parametrize("pace", ["stalled", "one-byte-a-second"])
async def test_a_slow_request_body_is_answered_408_in_the_api_shape(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    path: str,
    shape: str,
    pace: str,
) -> None:
    body = b'{"model": "mock-model", "max_tokens": 5, "messages": []}' + b" " * 200
    head = (
        f"POST {path} HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(head + body[:10])
            started = trio.current_time()
            answer = b""

            async def trickle() -> None:
                for byte in body[10:]:
                    await trio.sleep(1)
                    await stream.send_all(bytes([byte]))

            # Virtual seconds: a proxy that never answers fails here.
            with trio.fail_after(1000):
                async with trio.open_nursery() as client:
                    if pace == "one-byte-a-second":
                        client.start_soon(trickle)
                    while chunk := await stream.receive_some():
                        answer += chunk
                    client.cancel_scope.cancel()
            elapsed = trio.current_time() - started
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 "
    error = json.loads(rest.partition(b"\r\n\r\n")[2])
    if shape == "anthropic":
        assert error["type"] == "error"
        message = error["error"]["message"]
    else:
        assert error["error"]["code"] == "request_timeout"
        message = error["error"]["message"]
    assert message == "The request body did not arrive within 60 s."
    # The default timeout, on Trio's clock; the connection closed after the answer.
    assert 60 <= elapsed < 61


async def test_a_body_that_arrives_in_time_is_served(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    body = b'{"model": "mock-model", "messages": []}'
    async with running_proxy(nursery, backends=(mock_spec(),), request_body_timeout=5) as proxy:
        host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            head = (
                f"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            ).encode()
            await stream.send_all(head + body[:5])
            await trio.sleep(4)
            await stream.send_all(body[5:])
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
