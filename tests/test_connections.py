"""Client connections on the wire: released when the client closes, closed when their
keep-alive timer runs out, framed once, and served on when the descriptor table is full.

Raw sockets speak HTTP/1.1 here, so each test controls exactly what the server sees: a
half-close, a pipelined request behind an ambiguous one. The bounds are guards against a
hang (far below hypercorn's 75 s keep-alive timer, which is what a held connection waits
for), not measurements.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import struct
import sys
from dataclasses import replace
from pathlib import Path

import h11
import httpx
import pytest
import trio

from tests.fdcount import open_fds, wait_for_fds
from tests.proxyprocess import trioproxy_process
from tests.proxyutil import mock_spec, running_proxy, serve_lifespan
from trioproxy.asgi import Receive, Scope, Send
from trioproxy.server import hypercorn_config
from trioproxy.serving import (
    AcceptErrorFilter,
    IdleTimer,
    ambiguous_framing,
    install_tcp_server,
    run_handler,
    serve_app,
)
from trioproxy.settings import Settings

GUARD = 20  # seconds; hypercorn's keep-alive timer is 75
CHAT = b'{"model": "mock-model", "messages": []}'


async def connect(proxy_url: str) -> trio.SocketStream:
    host, port = proxy_url.removeprefix("http://").rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def read_response(stream: trio.SocketStream, conn: h11.Connection) -> tuple[int, bytes]:
    """The next whole response on ``stream``: status and body."""
    status, body = 0, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(1 << 16))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, body
        else:
            raise AssertionError(f"unexpected {event!r}")


async def read_to_eof(stream: trio.SocketStream) -> bytes:
    """Everything the server still sends, up to its close."""
    data = b""
    while chunk := await stream.receive_some(1 << 16):
        data += chunk
    return data


def request(method: str, path: str, body: bytes = b"", *, close: bool = False) -> h11.Request:
    headers = [("host", "proxy"), *([("connection", "close")] if close else [])]
    if method == "POST":
        headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
    return h11.Request(method=method, target=path, headers=headers)


async def send_request(
    stream: trio.SocketStream,
    conn: h11.Connection,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    close: bool = False,
) -> None:
    data = conn.send(request(method, path, body, close=close)) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


# --- a connection the client closes is released at once --------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/chat/completions", CHAT),  # a proxy route
        ("GET", "/health", b""),  # a Quart route
        (None, None, b""),  # no request at all
    ],
    ids=["proxy-route", "quart-route", "no-request"],
)
async def test_a_connection_the_client_closes_is_released_at_once(
    nursery: trio.Nursery, method: str | None, path: str | None, body: bytes
) -> None:
    async with (
        running_proxy(nursery, backends=(mock_spec(chunks=2),)) as proxy,
        await connect(proxy.url) as stream,
    ):
        conn = h11.Connection(h11.CLIENT)
        if method is not None and path is not None:
            await send_request(stream, conn, method, path, body)
            status, _ = await read_response(stream, conn)
            assert status == 200
        # The client is done: it closes its sending side, as a close would.
        await stream.send_eof()
        with trio.fail_after(GUARD):
            assert await read_to_eof(stream) == b""


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/chat/completions", CHAT),
        ("GET", "/health", b""),
        ("GET", "/v1/models", b""),
        ("GET", "/v1/diagnostics", b""),
    ],
)
async def test_a_request_that_says_connection_close_is_answered_and_the_connection_closed(
    nursery: trio.Nursery, method: str, path: str, body: bytes
) -> None:
    async with (
        running_proxy(nursery, backends=(mock_spec(chunks=2),)) as proxy,
        await connect(proxy.url) as stream,
    ):
        await send_request(stream, h11.Connection(h11.CLIENT), method, path, body, close=True)
        with trio.fail_after(GUARD):
            answer = await read_to_eof(stream)
    assert answer.startswith(b"HTTP/1.1 200 ")


# --- the keep-alive timer ----------------------------------------------------------------


@pytest.mark.parametrize("requests", [1, 3])
async def test_an_idle_kept_alive_connection_is_closed_when_its_timer_runs_out(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, requests: int
) -> None:
    keep_alive = hypercorn_config(Settings()).keep_alive_timeout
    async with (
        running_proxy(nursery, backends=(mock_spec(chunks=2),)) as proxy,
        await connect(proxy.url) as stream,
    ):
        conn = h11.Connection(h11.CLIENT)
        for _ in range(requests):  # each response restarts the timer, each request stops it
            await send_request(stream, conn, "POST", "/v1/chat/completions", CHAT)
            assert (await read_response(stream, conn))[0] == 200
            conn.start_next_cycle()
        idle_from = trio.current_time()
        with trio.fail_after(keep_alive + GUARD):
            assert await read_to_eof(stream) == b""
        assert trio.current_time() - idle_from >= keep_alive


async def test_the_idle_timer_starts_and_stops_without_a_turn_of_the_loop(
    nursery: trio.Nursery,
) -> None:
    class Group:  # what IdleTimer uses of hypercorn's TaskGroup
        _nursery = nursery

    running: set[str] = set()

    async def timer(name: str) -> None:
        running.add(name)
        try:
            await trio.sleep_forever()
        finally:
            running.discard(name)

    idle = IdleTimer()
    with trio.CancelScope() as scope:
        scope.cancel()  # any checkpoint in here would raise Cancelled
        await idle.restart(Group(), lambda: timer("first"))
        await idle.restart(Group(), lambda: timer("second"))  # stops the first
        await idle.stop()
        await idle.restart(Group(), lambda: timer("third"))
    assert not scope.cancelled_caught
    await trio.testing.wait_all_tasks_blocked()
    # The first two were stopped before they ran: each ends at its first checkpoint.
    assert running == {"third"}
    assert len(nursery.child_tasks) == 1
    await idle.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert not running
    assert not nursery.child_tasks


async def test_a_connection_task_whose_socket_is_closed_ends_without_a_turn() -> None:
    left, right = trio.socket.socketpair()
    stream = trio.SocketStream(left)

    async def closes_its_socket(s: trio.SocketStream) -> None:
        s.socket.close()  # as ProxyTCPServer closes it

    # Trio's own _run_handler closes the stream again here, with two checkpoints.
    with trio.testing.assert_no_checkpoints():
        await run_handler(stream, closes_its_socket)
    assert stream.socket.fileno() == -1
    right.close()


async def test_a_connection_that_fails_is_logged_and_closed_and_ends_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Trio's own _run_handler lets the exception out of its accept loop, which ended the
    # process (hypercorn's HTTP/2 stack raised KeyError on a large early-answered body).
    left, right = trio.socket.socketpair()
    stream = trio.SocketStream(left)

    async def fails_early(s: trio.SocketStream) -> None:
        raise KeyError(1)

    with caplog.at_level(logging.ERROR, logger="trioproxy.serving"):
        await run_handler(stream, fails_early)
    assert stream.socket.fileno() == -1
    (record,) = caplog.records
    assert "a connection failed" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    right.close()


def test_serving_puts_run_handler_in_place_of_trios_and_refuses_a_trio_that_moved_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import trio._highlevel_serve_listeners as listeners

    install_tcp_server()
    assert listeners._run_handler is run_handler

    async def elsewhere(*args: object) -> None:  # an accept loop that names no _run_handler
        pass

    monkeypatch.setattr(listeners, "_run_handler", lambda *a: None)
    monkeypatch.setattr(listeners, "_serve_one_listener", elsewhere)
    with pytest.raises(RuntimeError, match="no longer starts connections with _run_handler"):
        install_tcp_server()


async def finish_after_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app that answers only once the client is gone (it ignores the hang-up)."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    while (await receive())["type"] != "http.disconnect":
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late", "more_body": False})


async def test_a_response_that_ends_after_the_client_reset_does_not_keep_the_connection(
    nursery: trio.Nursery,
) -> None:
    # h11 never sees a reset (the read fails instead), so a response that completes after
    # one looks like a finished exchange, and hypercorn recycled the connection and
    # started its 75 s keep-alive timer for a client that was gone.
    stop, stopped = trio.Event(), trio.Event()
    config = hypercorn_config(replace(Settings(), host="127.0.0.1", port=0))

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve_app(
                finish_after_disconnect, config, shutdown_trigger=stop.wait, task_status=task_status
            )
        finally:
            stopped.set()

    binds: list[str] = await nursery.start(run)
    try:
        base = open_fds()
        stream = await connect(binds[0])
        await send_request(stream, h11.Connection(h11.CLIENT), "GET", "/")
        # Nothing to wait on: the app only answers once the reset has been seen.
        linger = struct.pack("ii", 1, 0)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        await stream.aclose()
        await wait_for_fds(base, within=GUARD)
    finally:
        stop.set()
        await stopped.wait()


# --- a request framed twice is refused and its connection closed ------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"content-length", b"3")], False),
        ([(b"transfer-encoding", b"chunked")], False),
        ([(b"transfer-encoding", b"chunked"), (b"content-length", b"3")], True),
        ([(b"content-length", b"3"), (b"x", b"y"), (b"transfer-encoding", b"chunked")], True),
        ([], False),
    ],
)
def test_ambiguous_framing(headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert ambiguous_framing(headers) is expected


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic"), ("/health", "openai")],
)
async def test_transfer_encoding_with_content_length_is_400_and_the_connection_closes(
    nursery: trio.Nursery, path: str, shape: str
) -> None:
    async with (
        running_proxy(nursery, backends=(mock_spec(chunks=2),)) as proxy,
        await connect(proxy.url) as stream,
    ):
        smuggled = b"GET /health HTTP/1.1\r\nhost: proxy\r\n\r\n"
        body = b'{"model": "mock-model", "max_tokens": 5, "messages": []}'
        data = (
            f"POST {path} HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
            f"transfer-encoding: chunked\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        data += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        # What a front end believing the Content-Length would take for a second request.
        await stream.send_all(data + smuggled)
        with trio.fail_after(GUARD):
            answer = await read_to_eof(stream)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nconnection: close" in head.lower()
    error = json.loads(payload)
    if shape == "anthropic":
        assert error["type"] == "error"
        assert error["error"]["type"] == "invalid_request_error"
        message = error["error"]["message"]
    else:
        assert error["error"]["code"] == "bad_request"
        message = error["error"]["message"]
    assert "Transfer-Encoding and Content-Length" in message
    assert answer.count(b"HTTP/1.1 ") == 1  # the second request was never read


# --- a full descriptor table -------------------------------------------------------------


def test_accept_errors_are_one_line_a_second_without_a_traceback() -> None:
    now = [0.0]
    accept_filter = AcceptErrorFilter(interval=1.0, clock=lambda: now[0])
    passed: list[logging.LogRecord] = []
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        exc_info = sys.exc_info()
    for tenth in range(25):  # 2.5 s of Trio's retries, one every 0.1 s
        now[0] = tenth / 10
        record = logging.LogRecord(
            "trio.serve_listeners",
            logging.ERROR,
            __file__,
            1,
            "accept returned %s (%s); retrying in %s seconds",
            ("EMFILE", "Too many open files", 0.1),
            exc_info,
        )
        if accept_filter.filter(record):
            passed.append(record)
    assert [r.getMessage() for r in passed] == [
        "cannot accept new connections: EMFILE (Too many open files); open connections "
        "are still served",
        "cannot accept new connections: EMFILE (Too many open files); open connections "
        "are still served; 9 more such errors since the last line",
        "cannot accept new connections: EMFILE (Too many open files); open connections "
        "are still served; 9 more such errors since the last line",
    ]
    assert all(r.exc_info is None for r in passed)
    other = logging.LogRecord("trio.serve_listeners", logging.ERROR, __file__, 1, "x", (), None)
    assert accept_filter.filter(other)


EMFILE_LINE = re.compile(rb"cannot accept new connections: EMFILE")
FD_LIMIT = 32  # the proxy needs about 10 descriptors of its own


async def test_a_full_descriptor_table_logs_rarely_and_open_connections_are_served(
    tmp_path: Path,
) -> None:
    config = "backends:\n  - type: mock\n    chunks: 2\n    chunk_delay: 0\n"
    async with trioproxy_process(tmp_path, config, max_open_files=FD_LIMIT) as proxy:
        async with httpx.AsyncClient(timeout=GUARD) as client:
            # A connection opened before the table fills, kept alive across the flood.
            assert (
                await client.post(proxy.url + "/v1/chat/completions", content=CHAT)
            ).status_code == 200
            flood: list[trio.SocketStream] = []
            try:
                started = trio.current_time()
                assert proxy.proc.stderr is not None
                with trio.fail_after(GUARD):
                    while not EMFILE_LINE.search(proxy.log):
                        if len(flood) < 2 * FD_LIMIT:
                            flood.append(await connect(proxy.url))
                        with trio.move_on_after(0.05):
                            proxy.log += await proxy.proc.stderr.receive_some()
                    # Let Trio's accept loop retry for a while (it does every 0.1 s).
                    with trio.move_on_after(2.0):
                        while data := await proxy.proc.stderr.receive_some():
                            proxy.log += data
                    elapsed = trio.current_time() - started
                    response = await client.post(proxy.url + "/v1/chat/completions", content=CHAT)
                assert response.status_code == 200
            finally:
                for stream in flood:
                    await stream.aclose()
        proxy.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(GUARD):
            assert await proxy.proc.wait() == 0
        log = await proxy.read_rest()
    lines = EMFILE_LINE.findall(log)
    # One a second at most (the margin: lines logged before the flood was closed).
    assert 1 <= len(lines) <= elapsed + 2
    assert b"Traceback" not in log
    assert b"accept returned" not in log
