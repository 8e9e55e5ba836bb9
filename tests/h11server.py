"""A tiny HTTP/1.1 server on Trio and h11: the core of every scripted upstream.

``H11Server(handler)`` listens on 127.0.0.1 (plain TCP, or TLS with ``ssl_context``),
accepts connections, and runs the h11 request cycle on each: read one whole request,
call ``handler(conn, request, body)``, and when both sides are done start the next cycle
on the same connection (keep-alive); otherwise close. The handler answers through the
``ServerConn`` it is given, which keeps the h11 state and can also break HTTP on purpose
(raw bytes, a close, a TCP reset). The test suite's ``FakeUpstream``, the pool tests'
scripted servers and the benchmark's slow upstream are handlers on this core::

    server = H11Server(handler)
    port = await nursery.start(server.serve)       # listening on 127.0.0.1:port

A connection ends when the client closes between requests, when the handler closes it
(``close``/``reset`` at once, or ``closing = True`` to close once it returns), or when a
response leaves h11 unable to reuse it. Connection-level errors (resets, broken pipes,
malformed HTTP from the client) close that connection only; any other exception from a
handler is a bug in it and propagates to the nursery running ``serve``.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Sequence

import h11
import trio

__all__ = ["H11Server", "Handler", "Headers", "ServerConn"]

Headers = Sequence[tuple[bytes, bytes]]
RECEIVE_SIZE = 65536


class ServerConn:
    """The server side of one accepted connection, speaking h11.

    Attributes:
        stream: The accepted stream (a ``trio.SSLStream`` over TLS).
        number: Serial number of the connection, from 0.
        h11: Its ``h11.Connection`` (server role).
        closing: Set by a handler to close the connection once it returns.
        closed: Set when the connection ends, just before the stream is closed.
    """

    def __init__(self, stream: trio.abc.Stream, number: int) -> None:
        self.stream = stream
        self.number = number
        self.h11 = h11.Connection(h11.SERVER)
        self.closing = False
        self.closed = trio.Event()

    async def next_request(self, max_body: int | None = None) -> tuple[h11.Request, bytes] | None:
        """The next request with its body; None when the client closes between requests.

        Also None when the body grows over ``max_body`` bytes (the connection then closes).
        """
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(bytes(await self.stream.receive_some(RECEIVE_SIZE)))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if max_body is not None and len(body) > max_body:
                    return None
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, bytes(body)
            else:
                return None

    def frame(self, event: h11.Event) -> bytes:
        """``event`` as bytes on the wire, advancing the h11 state (nothing is sent)."""
        data = self.h11.send(event)
        assert data is not None  # only ConnectionClosed yields None, and it is never sent
        return data

    async def send(self, event: h11.Event) -> None:
        await self.stream.send_all(self.frame(event))

    async def send_head(self, status: int = 200, headers: Headers = ()) -> None:
        await self.send(h11.Response(status_code=status, headers=list(headers)))

    async def respond(self, body: bytes = b"ok", status: int = 200, headers: Headers = ()) -> None:
        """A complete Content-Length response."""
        await self.send_head(status, [*headers, (b"content-length", b"%d" % len(body))])
        if body:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    async def send_raw(self, data: bytes) -> None:
        """Bytes straight to the socket, bypassing h11 (to break HTTP on purpose)."""
        await self.stream.send_all(data)

    async def close(self) -> None:
        """Close the connection now."""
        self.closing = True
        await trio.aclose_forcefully(self.stream)

    async def reset(self) -> None:
        """Close with a TCP reset rather than a FIN."""
        stream = self.stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        assert isinstance(stream, trio.SocketStream)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.close()

    async def wait_eof(self) -> None:
        """Return once the client has closed the connection (what it sends is dropped)."""
        try:
            while await self.stream.receive_some(RECEIVE_SIZE):
                pass
        except trio.BrokenResourceError:
            pass


Handler = Callable[[ServerConn, h11.Request, bytes], Awaitable[None]]


class H11Server:
    """Serves ``handler`` over HTTP/1.1 on 127.0.0.1; see the module docstring.

    Args:
        handler: Called once per request with the connection, the request and its body.
        ssl_context: Serve TLS with it (ALPN and SNI as the context says).
        backlog: The listen queue (default: Trio's).
        max_body: Close a connection whose request body grows over this many bytes.

    Attributes:
        port: The port it listens on (0 until ``serve`` has started).
        connections_opened: Connections accepted so far.
        open_now: Connections open now; ``open_peak``: the most open at once.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int | None = None,
        max_body: int | None = None,
    ) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.backlog = backlog
        self.max_body = max_body
        self.port = 0
        self.connections_opened = 0
        self.open_now = 0
        self.open_peak = 0

    async def serve(
        self, port: int = 0, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on 127.0.0.1 (``port``; 0: OS-assigned) and serve until cancelled.

        ``task_status.started`` receives the port once the socket is listening.
        """
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1", backlog=self.backlog)
        self.port = listeners[0].socket.getsockname()[1]
        serving: list[trio.abc.Listener[trio.abc.Stream]] = list(listeners)
        if self.ssl_context is not None:
            serving = [
                trio.SSLListener(listener, self.ssl_context, https_compatible=True)
                for listener in listeners
            ]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, serving)
            task_status.started(self.port)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        conn = ServerConn(stream, self.connections_opened)
        self.connections_opened += 1
        self.open_now += 1
        self.open_peak = max(self.open_peak, self.open_now)
        try:
            while not conn.closing:
                received = await conn.next_request(self.max_body)
                if received is None:
                    break
                await self.handler(conn, *received)
                if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                    break
                conn.h11.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            pass  # the client reset, hung up mid-request or spoke broken HTTP: just close
        finally:
            # Before the close itself, which follows with no checkpoint between: whoever
            # sees the connection closed sees these updated.
            self.open_now -= 1
            conn.closed.set()
            await trio.aclose_forcefully(stream)
