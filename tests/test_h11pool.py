"""Tests of the h11 connection pool against real sockets.

The rules these tests follow: every upstream is a scripted handler on the suite's small
HTTP/1.1 server (``tests/h11server.py``: raw Trio streams and h11), listening on 127.0.0.1
with an OS-assigned port and started with ``await nursery.start(...)``. Nothing sleeps in
real time to synchronise: tests wait on events the server sets (``trio.fail_after`` only
guards against hanging). Timeouts are tested under ``MockClock(autojump_threshold=0)``
(pytest-trio's ``autojump_clock``), with no other deadline active but a far
``fail_after`` guard, so the clock jumps to the timeout under test, or to the guard if
that timeout is missing.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import ssl
import sys
from dataclasses import dataclass, field

import h11
import pytest
import trio
import trio.testing
import trustme

from tests.h11server import H11Server, Handler, ServerConn
from trioproxy.backends.h11conn import H11Connection
from trioproxy.backends.h11pool import H11Pool
from trioproxy.errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable


@dataclass
class Upstream:
    """A scripted server: ``handler`` answers each request; it records what it sees."""

    handler: Handler
    ssl_context: ssl.SSLContext | None = None
    requests: list[tuple[int, h11.Request, bytes]] = field(default_factory=list)
    alpn: list[str | None] = field(default_factory=list)
    server: H11Server = field(init=False)

    def __post_init__(self) -> None:
        self.server = H11Server(self._record, ssl_context=self.ssl_context)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def connections(self) -> int:
        return self.server.connections_opened

    @property
    def open_peak(self) -> int:
        return self.server.open_peak

    def url(self, host: str = "127.0.0.1", path: str = "") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def _record(self, conn: ServerConn, request: h11.Request, body: bytes) -> None:
        if isinstance(conn.stream, trio.SSLStream):
            self.alpn.append(conn.stream.selected_alpn_protocol())
        self.requests.append((conn.number, request, body))
        await self.handler(conn, request, body)


async def start(
    nursery: trio.Nursery, handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> Upstream:
    upstream = Upstream(handler, ssl_context)
    await nursery.start(upstream.server.serve)
    return upstream


async def answer_ok(conn: ServerConn, request: h11.Request, body: bytes) -> None:
    await conn.respond(b"ok")


async def fetch(pool: H11Pool, **kwargs: object) -> tuple[int, bytes]:
    """POST / and read the whole body."""
    async with pool.stream("POST", "/", **kwargs) as resp:  # type: ignore[arg-type]
        body = b"".join([chunk async for chunk in resp.aiter_raw()])
    return resp.status, body


def header(request: h11.Request, name: bytes) -> list[bytes]:
    return [value for key, value in request.headers if key == name]


# --- requests and keep-alive -------------------------------------------------------------


async def test_request_carries_host_content_length_and_caller_headers(
    nursery: trio.Nursery,
) -> None:
    upstream = await start(nursery, answer_ok)
    async with (
        H11Pool(upstream.url(path="/v1")) as pool,
        pool.stream(
            "POST",
            "/chat/completions",
            headers=[(b"X-Custom", b"1"), (b"content-length", b"999")],
            body=b'{"model": "m"}',
        ) as resp,
    ):
        assert resp.status == 200
    _, request, body = upstream.requests[0]
    assert request.method == b"POST"
    assert request.target == b"/v1/chat/completions"
    assert header(request, b"host") == [b"127.0.0.1:%d" % upstream.port]
    assert header(request, b"content-length") == [b"14"]  # the caller's 999 is dropped
    assert header(request, b"x-custom") == [b"1"]
    assert body == b'{"model": "m"}'


async def test_caller_host_header_replaces_the_default(nursery: trio.Nursery) -> None:
    upstream = await start(nursery, answer_ok)
    async with H11Pool(upstream.url()) as pool:
        await fetch(pool, headers=[(b"host", b"api.example.com")])
    assert header(upstream.requests[0][1], b"host") == [b"api.example.com"]


async def test_keepalive_reuses_one_connection(nursery: trio.Nursery) -> None:
    upstream = await start(nursery, answer_ok)
    async with H11Pool(upstream.url()) as pool:
        assert await fetch(pool) == (200, b"ok")
        assert await fetch(pool) == (200, b"ok")
        stats = pool.statistics()
    assert upstream.connections == 1
    assert [index for index, _, _ in upstream.requests] == [0, 0]
    assert stats.connections_opened == 1
    assert stats.requests_served == 2
    assert (stats.connections_open, stats.connections_idle, stats.connections_in_use) == (1, 1, 0)


async def test_server_closing_idle_connection_gets_a_fresh_one(nursery: trio.Nursery) -> None:
    async def answer_then_close(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.respond(b"ok")  # keep-alive as far as HTTP says, then gone
        await conn.close()

    upstream = await start(nursery, answer_then_close)
    async with H11Pool(upstream.url()) as pool:
        assert await fetch(pool) == (200, b"ok")
        assert await fetch(pool) == (200, b"ok")
        assert pool.statistics().connections_opened == 2
    assert [index for index, _, _ in upstream.requests] == [0, 1]


async def test_idle_probe_sees_a_server_close() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    conn = H11Connection(client, client.socket, read_timeout=math.inf)
    assert not conn.is_dropped()
    await server.aclose()
    await trio.lowlevel.wait_readable(client.socket)
    assert conn.is_dropped()
    await client.aclose()
    await listeners[0].aclose()


@pytest.mark.parametrize(("idle", "probed"), [(0.5, False), (2.0, True)])
async def test_probe_only_connections_idle_over_a_second(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock, idle: float, probed: bool
) -> None:
    # The server half-closes each connection after its first answer but still reads.
    # A connection idle over PROBE_AFTER_IDLE is probed, seen dropped and skipped; a
    # younger one is reused without the probe, fails before any response byte and the
    # request is retried on a fresh connection. Both end with the answer.
    async def answer_once(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        if [index for index, _, _ in upstream.requests].count(conn.number) == 1:
            await conn.respond(b"ok")
            await conn.stream.send_eof()  # type: ignore[attr-defined]

    upstream = await start(nursery, answer_once)
    async with H11Pool(upstream.url()) as pool:
        assert await fetch(pool, body=b"one") == (200, b"ok")
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(idle)
        assert await fetch(pool, body=b"two") == (200, b"ok")
    sent = [(index, body) for index, _, body in upstream.requests]
    if probed:
        assert sent == [(0, b"one"), (1, b"two")]  # the probe saw the close
    else:
        assert sent == [(0, b"one"), (0, b"two"), (1, b"two")]  # sent, failed, retried


@pytest.mark.parametrize("how", ["eof", "reset"])
async def test_reused_connection_dropped_before_response_is_retried(
    nursery: trio.Nursery, how: str
) -> None:
    # The server drops the connection on the second request, after the client's idle
    # probe passed: the race the retry exists for.
    async def drop_second_request(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        if conn.number == 0 and len(upstream.requests) == 2:
            await (conn.close() if how == "eof" else conn.reset())
        else:
            await conn.respond(b"ok")

    upstream = await start(nursery, drop_second_request)
    async with H11Pool(upstream.url()) as pool:
        assert await fetch(pool, body=b"one") == (200, b"ok")
        assert await fetch(pool, body=b"two") == (200, b"ok")
        assert pool.statistics().connections_opened == 2
    assert [(index, body) for index, _, body in upstream.requests] == [
        (0, b"one"),
        (0, b"two"),
        (1, b"two"),
    ]


async def test_fresh_connection_dropped_before_response_is_not_retried(
    nursery: trio.Nursery,
) -> None:
    async def drop(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.close()

    upstream = await start(nursery, drop)
    async with H11Pool(upstream.url()) as pool:
        with pytest.raises(UpstreamUnreachable, match="before any response byte"):
            await fetch(pool)
        assert pool.statistics().connections_open == 0
    assert upstream.connections == 1


async def test_retry_happens_only_once(nursery: trio.Nursery) -> None:
    async def answer_first_only(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        if len(upstream.requests) == 1:
            await conn.respond(b"ok")
        else:
            await conn.close()

    upstream = await start(nursery, answer_first_only)
    async with H11Pool(upstream.url()) as pool:
        await fetch(pool)
        with pytest.raises(UpstreamUnreachable):
            await fetch(pool)
    assert upstream.connections == 2  # the reused one and one fresh retry, no more


async def test_no_retry_once_a_response_byte_arrived(nursery: trio.Nursery) -> None:
    async def cut_second_head(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        if len(upstream.requests) == 1:
            await conn.respond(b"ok")
        else:
            await conn.send_raw(b"HTTP/1.1 200")
            await conn.close()

    upstream = await start(nursery, cut_second_head)
    async with H11Pool(upstream.url()) as pool:
        await fetch(pool)
        with pytest.raises(UpstreamProtocolError):
            await fetch(pool)
    assert upstream.connections == 1


async def test_connection_close_header_is_honoured(nursery: trio.Nursery) -> None:
    async def answer_close(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.respond(b"ok", headers=[(b"connection", b"close")])

    upstream = await start(nursery, answer_close)
    async with H11Pool(upstream.url()) as pool:
        assert await fetch(pool) == (200, b"ok")
        assert pool.statistics().connections_open == 0
        assert await fetch(pool) == (200, b"ok")
    assert upstream.connections == 2


# --- bodies ------------------------------------------------------------------------------


async def test_chunked_body_is_streamed_chunk_by_chunk(nursery: trio.Nursery) -> None:
    first_seen = trio.Event()

    async def stream_two_chunks(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.send_head(headers=[(b"transfer-encoding", b"chunked")])
        await conn.send(h11.Data(data=b"data: one\n\n"))
        await first_seen.wait()  # the first chunk must arrive before the second is sent
        await conn.send(h11.Data(data=b"data: two\n\n"))
        await conn.send(h11.EndOfMessage())

    upstream = await start(nursery, stream_two_chunks)
    async with H11Pool(upstream.url()) as pool:
        async with pool.stream("POST", "/") as resp:
            chunks = []
            async for chunk in resp.aiter_raw():
                assert type(chunk) is bytes
                chunks.append(chunk)
                first_seen.set()
        assert chunks == [b"data: one\n\n", b"data: two\n\n"]
        assert (b"transfer-encoding", b"chunked") in resp.headers
        assert pool.statistics().connections_idle == 1  # a complete chunked body allows reuse


async def test_a_body_read_to_its_end_stays_ended(nursery: trio.Nursery) -> None:
    # The relay reads on after a translated stream's last event; with a body that ended
    # without the backend's last marker, the next read waited for the read timeout.
    upstream = await start(nursery, answer_ok)
    async with H11Pool(upstream.url()) as pool:
        async with pool.stream("POST", "/") as resp:
            body = resp.aiter_raw()
            assert [chunk async for chunk in body] == [b"ok"]
            with trio.fail_after(5):
                assert [chunk async for chunk in body] == []
        assert pool.statistics().connections_idle == 1


async def test_content_length_body(nursery: trio.Nursery) -> None:
    payload = bytes(range(256)) * 1000  # several receives' worth

    async def answer_big(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.respond(payload)

    upstream = await start(nursery, answer_big)
    async with H11Pool(upstream.url()) as pool:
        assert await fetch(pool) == (200, payload)
        assert pool.statistics().connections_idle == 1


async def test_close_delimited_body(nursery: trio.Nursery) -> None:
    async def answer_until_close(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.send_raw(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nhello ")
        await conn.send_raw(b"world")
        await conn.close()

    upstream = await start(nursery, answer_until_close)
    async with H11Pool(upstream.url()) as pool:
        assert await fetch(pool) == (200, b"hello world")
        assert pool.statistics().connections_open == 0  # the body's end was the connection's end


async def test_gzip_body_passes_through_undecoded(nursery: trio.Nursery) -> None:
    compressed = gzip.compress(b'{"choices": []}' * 50)

    async def answer_gzip(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.respond(compressed, headers=[(b"Content-Encoding", b"gzip")])

    upstream = await start(nursery, answer_gzip)
    async with (
        H11Pool(upstream.url()) as pool,
        pool.stream("POST", "/", headers=[(b"accept-encoding", b"gzip")]) as resp,
    ):
        body = b"".join([chunk async for chunk in resp.aiter_raw()])
    assert body == compressed
    assert (b"content-encoding", b"gzip") in resp.headers  # names come lower-cased


async def test_informational_responses_are_skipped(nursery: trio.Nursery) -> None:
    async def hint_then_answer(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.send(h11.InformationalResponse(status_code=103, headers=[(b"link", b"</x>")]))
        await conn.respond(b"ok", status=201)

    upstream = await start(nursery, hint_then_answer)
    async with H11Pool(upstream.url()) as pool:
        assert await fetch(pool) == (201, b"ok")


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello",
    ],
    ids=["chunked-without-last-chunk", "short-of-content-length"],
)
async def test_body_cut_short_is_a_protocol_error(nursery: trio.Nursery, raw: bytes) -> None:
    async def cut(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.send_raw(raw)
        await conn.close()

    upstream = await start(nursery, cut)
    async with H11Pool(upstream.url()) as pool:
        received = []
        with pytest.raises(UpstreamProtocolError, match="complete message body"):
            async with pool.stream("POST", "/") as resp:
                async for chunk in resp.aiter_raw():
                    received.append(chunk)
        assert received == [b"hello"]
        assert pool.statistics().connections_open == 0


async def test_reset_mid_body_is_a_protocol_error(nursery: trio.Nursery) -> None:
    async def reset_mid_body(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.send_raw(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
        await conn.reset()

    upstream = await start(nursery, reset_mid_body)
    async with H11Pool(upstream.url()) as pool:
        with pytest.raises(UpstreamProtocolError):
            await fetch(pool)


async def test_malformed_response_is_a_protocol_error(nursery: trio.Nursery) -> None:
    async def garbage(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.send_raw(b"SMTP ready\r\n\r\n")
        await conn.close()

    upstream = await start(nursery, garbage)
    async with H11Pool(upstream.url()) as pool:
        with pytest.raises(UpstreamProtocolError) as info:
            await fetch(pool)
        assert isinstance(info.value.__cause__, h11.RemoteProtocolError)
        assert pool.statistics().connections_open == 0


# --- early exits and cancellation ----------------------------------------------------------


async def test_cancellation_mid_body_closes_the_socket(nursery: trio.Nursery) -> None:
    first_chunk = trio.Event()
    client_gone = trio.Event()

    async def stall_after_first_chunk(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        if conn.number > 0:
            await conn.respond(b"ok")
            return
        await conn.send_head(headers=[(b"transfer-encoding", b"chunked")])
        await conn.send(h11.Data(data=b"first"))
        await conn.wait_eof()
        client_gone.set()
        await conn.close()

    upstream = await start(nursery, stall_after_first_chunk)
    async with H11Pool(upstream.url()) as pool:
        # Holding the response keeps the connection alive as an object: only an explicit
        # close, not garbage collection, can make the server see EOF.
        held: list[object] = []

        async def read_forever() -> None:
            async with pool.stream("POST", "/") as resp:
                held.append(resp)
                async for _ in resp.aiter_raw():
                    first_chunk.set()

        async with trio.open_nursery() as client:
            client.start_soon(read_forever)
            await first_chunk.wait()
            client.cancel_scope.cancel()  # the client hangs up while the body is in flight
        with trio.fail_after(1):
            await client_gone.wait()
        assert pool.statistics().connections_open == 0
        assert await fetch(pool) == (200, b"ok")
    assert upstream.connections == 2  # the cancelled connection was not reused


@pytest.mark.parametrize("how", ["break", "raise", "unread"])
async def test_block_left_before_the_end_closes_the_connection(
    nursery: trio.Nursery, how: str
) -> None:
    client_gone = trio.Event()

    async def half_a_body(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.send_raw(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
        await conn.wait_eof()
        client_gone.set()
        await conn.close()

    upstream = await start(nursery, half_a_body)

    class Boom(Exception):
        pass

    async with H11Pool(upstream.url()) as pool:
        with pytest.raises(Boom) if how == "raise" else contextlib.nullcontext():
            # The body is a plain iterator: abandoning it leaves nothing to close.
            async with pool.stream("POST", "/") as resp:
                body = resp.aiter_raw()
                if how != "unread":
                    async for _ in body:
                        if how == "raise":
                            raise Boom
                        break
        with trio.fail_after(1):
            await client_gone.wait()
        assert pool.statistics().connections_open == 0
    assert upstream.connections == 1


async def test_unread_empty_body_leaves_a_reusable_connection(nursery: trio.Nursery) -> None:
    async def no_content(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.send_head(204)
        await conn.send(h11.EndOfMessage())

    upstream = await start(nursery, no_content)
    async with H11Pool(upstream.url()) as pool:
        for _ in range(2):
            async with pool.stream("POST", "/") as resp:
                assert resp.status == 204
    assert upstream.connections == 1


async def test_body_is_iterated_once_and_only_inside_its_block(nursery: trio.Nursery) -> None:
    upstream = await start(nursery, answer_ok)
    async with H11Pool(upstream.url()) as pool:
        async with pool.stream("POST", "/") as resp:
            assert [chunk async for chunk in resp.aiter_raw()] == [b"ok"]
            with pytest.raises(RuntimeError):
                await resp.aiter_raw().__anext__()
        async with pool.stream("POST", "/") as resp:
            pass
        with pytest.raises(RuntimeError):
            await resp.aiter_raw().__anext__()


# --- failures to connect ---------------------------------------------------------------------


async def test_refused_connection_is_unreachable() -> None:
    # A bound socket that does not listen holds the port, so connecting is refused.
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with H11Pool(f"http://127.0.0.1:{port}", max_connections=1) as pool:
            for _ in range(2):  # the second would hang if the first kept its slot
                with pytest.raises(UpstreamUnreachable, match="cannot connect") as info:
                    await fetch(pool)
                assert isinstance(info.value.__cause__, OSError)
            assert pool.statistics().connections_open == 0


async def test_unknown_host_is_unreachable() -> None:
    async with H11Pool("http://nonexistent.invalid") as pool:
        with pytest.raises(UpstreamUnreachable, match=r"nonexistent\.invalid"):
            await fetch(pool)


async def test_connect_timeout_on_tcp(autojump_clock: trio.testing.MockClock) -> None:
    if sys.platform != "linux":
        pytest.skip("relies on Linux dropping SYNs when the accept queue is full")
    # backlog 0 holds one unaccepted connection; the next SYN is dropped, never answered.
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        port = sock.getsockname()[1]
        filler = await trio.open_tcp_stream("127.0.0.1", port)
        async with H11Pool(f"http://127.0.0.1:{port}", connect_timeout=10) as pool:
            start_time = trio.current_time()
            with trio.fail_after(1000), pytest.raises(UpstreamTimeout, match="connecting"):
                await fetch(pool)
            assert trio.current_time() - start_time == pytest.approx(10)
            assert pool.statistics().connections_open == 0
        await filler.aclose()


async def test_connect_timeout_covers_the_tls_handshake(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # A plain TCP server that never answers the ClientHello.
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await nursery.start(
        trio.serve_listeners, silent, await trio.open_tcp_listeners(0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    async with H11Pool(f"https://127.0.0.1:{port}", connect_timeout=10) as pool:
        start_time = trio.current_time()
        with trio.fail_after(1000), pytest.raises(UpstreamTimeout):
            await fetch(pool)
        assert trio.current_time() - start_time == pytest.approx(10)


# --- read timeouts ---------------------------------------------------------------------------


async def test_read_timeout_waiting_for_the_head(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def never_answer(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await trio.sleep_forever()

    upstream = await start(nursery, never_answer)
    async with H11Pool(upstream.url(), connect_timeout=None, read_timeout=30) as pool:
        start_time = trio.current_time()
        with trio.fail_after(1000), pytest.raises(UpstreamTimeout, match="no response"):
            await fetch(pool)
        assert trio.current_time() - start_time == pytest.approx(30)
        assert pool.statistics().connections_open == 0


async def test_read_timeout_mid_body(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def stall(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.send_head(headers=[(b"transfer-encoding", b"chunked")])
        await conn.send(h11.Data(data=b"first"))
        await trio.sleep_forever()

    upstream = await start(nursery, stall)
    async with H11Pool(upstream.url(), connect_timeout=None, read_timeout=30) as pool:
        received = []
        with trio.fail_after(1000), pytest.raises(UpstreamTimeout):
            async with pool.stream("POST", "/") as resp:
                async for chunk in resp.aiter_raw():
                    received.append(chunk)
        assert received == [b"first"]
        assert pool.statistics().connections_open == 0


async def test_read_timeout_is_per_receive_not_per_response(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def slow_stream(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.send_head(headers=[(b"transfer-encoding", b"chunked")])
        for i in range(10):
            await trio.sleep(20)
            await conn.send(h11.Data(data=b"%d" % i))
        await conn.send(h11.EndOfMessage())

    upstream = await start(nursery, slow_stream)
    async with H11Pool(upstream.url(), connect_timeout=None, read_timeout=30) as pool:
        start_time = trio.current_time()
        assert await fetch(pool) == (200, b"0123456789")
        assert trio.current_time() - start_time == pytest.approx(200)


# --- pool limits -----------------------------------------------------------------------------


async def test_max_connections_is_respected(nursery: trio.Nursery) -> None:
    two_arrived = trio.Event()
    release = trio.Event()

    async def held(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        if len(upstream.requests) == 2:
            two_arrived.set()
        await release.wait()
        await conn.respond(body)

    upstream = await start(nursery, held)
    results: list[tuple[int, bytes]] = []
    async with H11Pool(upstream.url(), max_connections=2) as pool:

        async def one(i: int) -> None:
            results.append(await fetch(pool, body=b"%d" % i))

        async with trio.open_nursery() as client:
            for i in range(6):
                client.start_soon(one, i)
            await two_arrived.wait()
            await trio.testing.wait_all_tasks_blocked()
            stats = pool.statistics()
            assert (stats.connections_in_use, stats.requests_waiting) == (2, 4)
            assert upstream.connections == 2
            release.set()
    assert sorted(results) == [(200, b"%d" % i) for i in range(6)]
    assert upstream.open_peak == 2
    assert upstream.connections == 2  # waiters took over the connections that went idle


async def test_max_keepalive_bounds_idle_connections(nursery: trio.Nursery) -> None:
    three_arrived = trio.Event()
    release = trio.Event()

    async def held(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        if len(upstream.requests) == 3:
            three_arrived.set()
        await release.wait()
        await conn.respond(b"ok")

    upstream = await start(nursery, held)
    async with H11Pool(upstream.url(), max_keepalive=1) as pool:
        async with trio.open_nursery() as client:
            for _ in range(3):
                client.start_soon(fetch, pool)
            await three_arrived.wait()
            release.set()
        stats = pool.statistics()
        assert (stats.connections_open, stats.connections_idle) == (1, 1)


async def test_idle_connections_expire(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    upstream = await start(nursery, answer_ok)
    async with H11Pool(upstream.url(), keepalive_expiry=60) as pool:
        await fetch(pool)
        mock_clock.jump(59)
        await fetch(pool)
        assert upstream.connections == 1  # still fresh: reused
        mock_clock.jump(61)
        await fetch(pool)
        assert upstream.connections == 2
        assert pool.statistics().connections_open == 1  # the expired one was closed


async def test_aclose_closes_idle_connections_and_refuses_new_requests(
    nursery: trio.Nursery,
) -> None:
    client_gone = trio.Event()

    async def answer_then_watch(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await conn.respond(b"ok")
        await conn.wait_eof()
        client_gone.set()
        await conn.close()

    upstream = await start(nursery, answer_then_watch)
    pool = H11Pool(upstream.url())
    await fetch(pool)
    assert pool.statistics().connections_idle == 1
    await pool.aclose()
    with trio.fail_after(1):
        await client_gone.wait()
    assert pool.statistics().connections_open == 0
    with pytest.raises(RuntimeError, match="closed"):
        await fetch(pool)


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, server_names: list[str | None]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    ctx.set_alpn_protocols(["http/1.1"])

    def record_server_name(sslobj: ssl.SSLObject, name: str | None, context: object) -> None:
        server_names.append(name)

    ctx.sni_callback = record_server_name
    return ctx


async def test_tls_with_a_self_signed_certificate(nursery: trio.Nursery, ca: trustme.CA) -> None:
    server_names: list[str | None] = []
    upstream = await start(nursery, answer_ok, server_context(ca, server_names))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with H11Pool(upstream.url(host="localhost"), ssl_context=client_ctx) as pool:
        assert await fetch(pool) == (200, b"ok")
        assert await fetch(pool) == (200, b"ok")
    assert upstream.connections == 1  # keep-alive over TLS too
    assert server_names == ["localhost"]  # SNI
    assert upstream.alpn == ["http/1.1", "http/1.1"]


async def test_tls_untrusted_certificate_is_unreachable(
    nursery: trio.Nursery, ca: trustme.CA
) -> None:
    upstream = await start(nursery, answer_ok, server_context(ca, []))
    # The default context trusts the system store, which has never heard of this CA.
    async with H11Pool(upstream.url(host="localhost")) as pool:
        with pytest.raises(UpstreamUnreachable, match="certificate verify failed"):
            await fetch(pool)
        assert pool.statistics().connections_open == 0


# --- argument checking -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com", "http://", "http://example.com/?q=1", "http://user:pw@example.com"],
)
def test_pool_rejects_urls_that_are_not_http_origins(url: str) -> None:
    with pytest.raises(ValueError):
        H11Pool(url)


@pytest.mark.parametrize(
    "url", ["http://user:sk-secret@example.com", "http://example.com/?key=sk-secret"]
)
def test_a_rejected_urls_message_never_shows_its_key(url: str) -> None:
    with pytest.raises(ValueError, match="credentials") as error:
        H11Pool(url)
    assert "sk-secret" not in str(error.value) and "***" in str(error.value)


def test_request_h11_cannot_send_is_a_value_error() -> None:
    pool = H11Pool("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="invalid request"):
        pool.stream("POST", "/", headers=[(b"x-bad", b"line\r\nbreak")])
