"""``trioproxy.serving.write_all``: the server's socket write, without Trio's yield after it.

On a real socket pair (``trio.socket.socketpair``): what the socket takes at once is
written without the task yielding to the scheduler (a Trio instrument counts its steps);
what it does not take is sent on as ``send_all`` sends it, in order; and the errors are
``send_all``'s. Another kind of stream goes through ``send_all`` itself.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable

import pytest
import trio
import trio.lowlevel
import trio.testing

from tests.proxyutil import connect_to_served, serve_lifespan
from trioproxy.asgi import Receive, Scope, Send
from trioproxy.serving import BULK_WRITE, write_all


@pytest.fixture
async def pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    left, right = trio.socket.socketpair()
    streams = trio.SocketStream(left), trio.SocketStream(right)
    try:
        yield streams
    finally:
        for stream in streams:
            stream.socket.close()


@pytest.fixture
async def tcp_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """A loopback TCP connection's two ends, as Trio's streams (with its low-water mark)."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = trio.socket.socket()
    await client.connect(listener.getsockname())
    server, _ = await listener.accept()
    listener.close()
    streams = trio.SocketStream(server), trio.SocketStream(client)
    try:
        yield streams
    finally:
        for stream in streams:
            stream.socket.close()


def lowat(stream: trio.SocketStream) -> int:
    return stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = await stream.receive_some()
        assert chunk, "end of stream before every byte came"
        got += chunk
    return bytes(got)


class TaskSteps(trio.abc.Instrument):
    """Counts the steps of one task that end (at each of its yields to the scheduler)."""

    def __init__(self) -> None:
        self.task = trio.lowlevel.current_task()
        self.ended = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.ended += 1


async def yields_of(write: Awaitable[None]) -> int:
    """How many times the current task yielded to the scheduler while awaiting ``write``."""
    steps = TaskSteps()
    trio.lowlevel.add_instrument(steps)
    try:
        await write
    finally:
        trio.lowlevel.remove_instrument(steps)
    return steps.ended


async def test_what_the_socket_takes_is_written_without_a_turn_of_the_loop(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    sender, receiver = pair
    assert await yields_of(write_all(sender, b"data: one\n\n")) == 0
    # It is on the socket (Trio's sockets are non-blocking: this read does not wait).
    assert os.read(receiver.socket.fileno(), 100) == b"data: one\n\n"
    # Trio's own write yields once after it.
    assert await yields_of(sender.send_all(b"data: two\n\n")) == 1


async def test_what_the_socket_does_not_take_at_once_follows_in_order(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    sender, receiver = pair
    # Far more than a socket buffer holds: the first write is partial, the rest waits.
    data = bytes(range(256)) * 40_000
    got: list[bytes] = []

    async def read() -> None:
        got.append(await receive_exactly(receiver, len(data)))

    # A guard against hanging (a remainder never sent), not a timing.
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await write_all(sender, data)
    assert got == [data]


async def test_a_cancelled_write_raises_before_writing_anything(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    sender, receiver = pair
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await write_all(sender, b"never")
    with pytest.raises(BlockingIOError):  # nothing to read (non-blocking: no wait)
        os.read(receiver.socket.fileno(), 100)


async def test_a_write_to_a_peer_that_is_gone_is_a_broken_resource(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    sender, receiver = pair
    receiver.socket.close()
    with pytest.raises(trio.BrokenResourceError):
        await write_all(sender, b"to no one")


async def test_a_write_on_a_closed_stream_is_a_closed_resource(
    pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    sender, _ = pair
    sender.socket.close()
    with pytest.raises(trio.ClosedResourceError):
        await write_all(sender, b"on nothing")


async def test_a_whole_document_is_handed_to_the_kernel_in_one_write(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    sender, receiver = tcp_pair
    assert lowat(sender) == 2**14  # Trio's
    document = bytes(range(256)) * 4096  # 1 MiB: the diagnostics of a few thousand streams
    # Guards against hanging, not timings: under Trio's limit this write would wait for
    # a reader, and there is none yet.
    with trio.fail_after(5):
        assert await yields_of(write_all(sender, document)) == 0
    assert lowat(sender) == 2**14  # put back
    with trio.fail_after(20):
        assert await receive_exactly(receiver, len(document)) == document


async def test_a_write_below_a_document_keeps_trios_low_water_mark(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    # A stream's chunks are far smaller: their back-pressure stays as Trio made it, and
    # the kernel takes about 100 KB of them before the writer waits for the reader.
    sender, receiver = tcp_pair
    chunk = bytes(range(256)) * (BULK_WRITE // 256)
    got: list[bytes] = []

    async def read() -> None:
        got.append(await receive_exactly(receiver, len(chunk)))

    with trio.fail_after(20):  # a guard against hanging, not a timing
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            assert await yields_of(write_all(sender, chunk)) > 0
    assert got == [chunk] and lowat(sender) == 2**14


async def test_another_kind_of_stream_is_sent_to_by_its_send_all() -> None:
    sender, receiver = trio.testing.memory_stream_pair()
    through = await yields_of(write_all(sender, b"through send_all"))
    assert through == await yields_of(sender.send_all(b" and again")) > 0
    assert await receiver.receive_some() == b"through send_all and again"


async def test_our_server_sends_each_chunk_of_a_stream_without_a_turn_of_the_loop(
    nursery: trio.Nursery,
) -> None:
    yields: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for number in range(3):
            event = {"type": "http.response.body", "body": b"data: %d\n\n" % number}
            yields.append(await yields_of(send({**event, "more_body": True})))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    stream, stop = await connect_to_served(nursery, app)
    await stream.send_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    response = b""
    with trio.fail_after(20):  # a guard against hanging, not a timing
        while not response.endswith(b"0\r\n\r\n"):
            response += await stream.receive_some()
    await stream.aclose()
    stop.set()
    assert b"data: 0\n\n" in response and b"data: 2\n\n" in response
    # The first chunk carries the response's head with it; none of them waits a turn.
    assert yields == [0, 0, 0]
