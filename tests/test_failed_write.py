"""A write to a client that is gone is not counted as sent (``bytes_tx`` stays exact).

Our server turns a write that meets a vanished client into the connection's close, and
the app's send then returns as if it had been written; the request's
:class:`~trioproxy.hangup.Hangup` is told (``broken``), and :class:`ClientOut` counts
nothing of that chunk, or of any after it. Served as the proxy is served, on real sockets;
the client is reset (``SO_LINGER`` 0) so that the write fails rather than finds the
client's half-close.
"""

from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing

from tests.proxyutil import connect_to_served, serve_lifespan
from trioproxy.asgi import Receive, Scope, Send
from trioproxy.client_out import ClientOut
from trioproxy.hangup import Hangup, hangup_of

GUARD = 20  # seconds; a hang fails here
FIRST = b"data: first\n\n"
SSE = [(b"content-type", b"text/event-stream")]


class OneStream:
    """A test app that sends ``FIRST``, waits for ``proceed``, then sends ``second``
    through a :class:`ClientOut` (the proxy's own), and keeps it in ``out``."""

    def __init__(self, second: bytes) -> None:
        self.second = second
        self.first_sent = trio.Event()
        self.proceed = trio.Event()
        self.done = trio.Event()
        self.hangup: Hangup | None = None
        self.out: ClientOut | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        self.hangup = hangup_of(scope)
        out = self.out = ClientOut(send, "s", self.hangup)
        await out.start(200, SSE)
        await out.body(FIRST)
        self.first_sent.set()
        await self.proceed.wait()
        await out.body(self.second)
        self.done.set()


def reset(stream: trio.SocketStream) -> None:
    """Close ``stream`` with a reset rather than a FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def opened(nursery: trio.Nursery, app: OneStream) -> tuple[trio.SocketStream, trio.Event]:
    """A connection to ``app``, served, whose first event the client has read."""
    stream, stop = await connect_to_served(nursery, app)
    await stream.send_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    got = b""
    while FIRST not in got:
        got += await stream.receive_some(65536)
    await app.first_sent.wait()
    return stream, stop


async def test_a_chunk_sent_after_the_client_is_gone_is_not_counted(
    nursery: trio.Nursery,
) -> None:
    app = OneStream(b"data: second\n\n")
    with trio.fail_after(GUARD):
        stream, stop = await opened(nursery, app)
        reset(stream)
        while app.hangup is None or not app.hangup.gone:
            await trio.testing.wait_all_tasks_blocked()
        app.proceed.set()
        await app.done.wait()
    assert app.out is not None and app.hangup is not None
    assert (app.out.tx, app.hangup.broken) == (len(FIRST), True)
    stop.set()


async def test_a_chunk_whose_write_the_clients_reset_cuts_is_not_counted(
    nursery: trio.Nursery,
) -> None:
    # More than the kernel's buffers of both ends hold: the write waits for the client,
    # which never reads it, and is reset instead.
    app = OneStream(b"x" * (32 << 20))
    with trio.fail_after(GUARD):
        stream, stop = await opened(nursery, app)
        app.proceed.set()
        await trio.testing.wait_all_tasks_blocked()  # the write waits for room
        assert not app.done.is_set()
        reset(stream)
        await app.done.wait()
    assert app.out is not None
    assert app.out.tx == len(FIRST)
    stop.set()


async def test_a_chunk_the_client_reads_is_counted(nursery: trio.Nursery) -> None:
    app = OneStream(b"x" * (4 << 20))
    with trio.fail_after(GUARD):
        stream, stop = await opened(nursery, app)
        app.proceed.set()
        got = 0  # with the chunk's framing, which the count leaves out
        while got < len(app.second):
            got += len(await stream.receive_some(1 << 20))
        await app.done.wait()
        await stream.aclose()
    assert app.out is not None and app.hangup is not None
    assert (app.out.tx, app.hangup.broken) == (len(FIRST) + len(app.second), False)
    stop.set()


class CancelledMidWrite(Exception):
    pass


@pytest.mark.parametrize(
    ("framing", "written", "delivered"),
    [
        ("sized", 0, 0),
        ("sized", 600, 600),
        ("chunked", 2, 0),  # inside the chunk's size line
        ("chunked", 5 + 600, 600),  # "3e8\r\n" and 600 bytes
        ("chunked", 5 + 1000 + 1, 1000),  # the whole chunk, half its CRLF
    ],
)
async def test_a_write_cancelled_partway_counts_the_part_the_connection_took(
    framing: str, written: int, delivered: int
) -> None:
    chunk = b"x" * 1000
    framed = chunk if framing == "sized" else b"3e8\r\n" + chunk + b"\r\n"
    hangup = Hangup()

    async def send(message: object) -> None:
        # As ProxyTCPServer tells it, when the scope around the send is cancelled (the
        # Cancelled it then raises stands in as an exception of the test's own).
        hangup.cut = (written, len(framed))
        raise CancelledMidWrite

    out = ClientOut(send, "s", hangup)
    with pytest.raises(CancelledMidWrite):
        await out.body(chunk)
    assert out.tx == delivered
