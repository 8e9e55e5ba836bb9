"""One HTTP/1.1 client connection: h11's state machine over a Trio stream.

This module owns the socket-level work of :mod:`trioproxy.backends.h11pool`: opening a
TCP (and TLS) connection within a connect timeout, sending a request, reading with a
per-receive timeout, and telling a dead idle connection from a live one. It is the
boundary where transport errors become :class:`trioproxy.errors.UpstreamError`:

- ``OSError`` / DNS errors / TLS failures while connecting -> :class:`UpstreamConnectFailed`
- connect + TLS handshake over ``connect_timeout`` -> :class:`UpstreamConnectTimeout`
- EOF or reset before any response byte -> :class:`~trioproxy.errors.NoResponseError`
- no byte for ``read_timeout`` seconds -> :class:`UpstreamTimeout`
- malformed HTTP, or the connection cut after the response started -> :class:`UpstreamProtocolError`

``trio.Cancelled`` always propagates unchanged.
"""

from __future__ import annotations

import math
import select
import ssl

import h11
import trio

from trioproxy.errors import (
    NoResponseError,
    UpstreamConnectFailed,
    UpstreamConnectTimeout,
    UpstreamProtocolError,
    UpstreamTimeout,
)

#: Bytes asked of the socket per receive.
RECEIVE_BUFFER_SIZE = 65536
#: Largest response head h11 will buffer before calling it a protocol error.
MAX_HEAD_SIZE = 65536
#: Bodies up to this size are sent in the same write as the head: one segment for the
#: typical small JSON request, while a large body is not copied just to join it.
_JOIN_BODY_LIMIT = 65536


class H11Connection:
    """A client connection carrying one request at a time.

    Not safe for concurrent use: one task sends a request and reads its response before
    the connection goes back to the pool. Create with :func:`open_connection`.
    """

    __slots__ = (
        "_h11",
        "_poll",
        "_read_timeout",
        "_response_started",
        "_socket",
        "_stream",
        "idle_since",
    )

    def __init__(
        self, stream: trio.abc.Stream, socket: trio.socket.SocketType, *, read_timeout: float
    ) -> None:
        self._stream = stream
        # The TCP socket under ``stream`` (also under TLS), for the liveness probe and the
        # synchronous close of idle connections.
        self._socket = socket
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)
        self._read_timeout = read_timeout
        self._response_started = False
        #: ``trio.current_time()`` when the connection last went idle.
        self.idle_since = 0.0
        # One poller for the liveness probe, registered once: the fd never changes.
        self._poll: select.poll | None = None

    async def send_request(self, request: h11.Request, body: bytes) -> h11.Response:
        """Send ``request`` with ``body`` and return the final response head.

        Informational (1xx) heads are skipped. Sending the request and receiving the head
        share one ``read_timeout``, so an upstream that stops reading cannot hold the
        request forever either.

        Raises:
            NoResponseError: the connection ended before any response byte.
            UpstreamTimeout: the head did not arrive within ``read_timeout`` seconds.
            UpstreamProtocolError: the response head is not valid HTTP/1.1.
            ValueError: h11 refuses to send the request.
        """
        h = self._h11
        self._response_started = False
        try:
            head = h.send(request) or b""
            # With Content-Length framing h11 hands the body back as is, without a copy.
            payload = (h.send(h11.Data(data=body)) or b"") if body else b""
            h.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise ValueError(f"cannot send this request: {exc}") from exc
        # One scope for the send and the head: a scope per step costs measurably on the
        # hot path, and "no response head within read_timeout" is the useful limit.
        with trio.move_on_after(self._read_timeout):
            try:
                if len(payload) <= _JOIN_BODY_LIMIT:
                    await self._stream.send_all(head + payload)
                else:
                    await self._stream.send_all(head)
                    await self._stream.send_all(payload)
            except (trio.BrokenResourceError, OSError) as exc:
                raise NoResponseError(f"connection lost while sending the request: {exc}") from exc
            while True:
                event = self.next_event()
                if event is h11.NEED_DATA:
                    await self._feed()
                elif isinstance(event, h11.Response):
                    return _checked_head(event)
                elif not isinstance(event, h11.InformationalResponse):
                    # 1xx heads (100 Continue, 103 Early Hints) precede the real one;
                    # anything else here is a server that broke the protocol.
                    raise UpstreamProtocolError(f"unexpected {type(event).__name__} from upstream")
        raise UpstreamTimeout(f"no response from upstream within {self._read_timeout:g} s")

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """The next h11 event from what was received; malformed HTTP becomes an error.

        Raises:
            UpstreamProtocolError: the upstream broke HTTP/1.1 (including a body cut short
                by EOF: a chunked body without its last chunk, fewer bytes than
                Content-Length).
        """
        try:
            return self._h11.next_event()
        except h11.ProtocolError as exc:
            raise UpstreamProtocolError(f"upstream broke HTTP/1.1: {exc}") from exc

    async def receive(self) -> None:
        """Receive once from the socket (up to 64 KiB) and feed it to h11.

        Raises:
            NoResponseError: EOF or reset before any byte of the response.
            UpstreamProtocolError: reset after the response started.
            UpstreamTimeout: nothing arrived for ``read_timeout`` seconds.
        """
        # A fresh cancel scope per receive is the price of a per-receive timeout: a scope
        # cannot stay open across the body iterator's yields to its consumer.
        with trio.move_on_after(self._read_timeout):
            await self._feed()
            return
        raise UpstreamTimeout(f"no data from upstream for {self._read_timeout:g} s")

    async def _feed(self) -> None:
        """Receive once, without a timeout, and hand the bytes (or EOF) to h11."""
        try:
            data = await self._stream.receive_some(RECEIVE_BUFFER_SIZE)
        except trio.ClosedResourceError as exc:
            raise RuntimeError("response read after its connection was closed") from exc
        except (trio.BrokenResourceError, OSError) as exc:
            if self._response_started:
                raise UpstreamProtocolError(f"connection lost mid-response: {exc}") from exc
            raise NoResponseError(f"connection lost before any response byte: {exc}") from exc
        if data:
            self._response_started = True
        elif not self._response_started:
            raise NoResponseError("connection closed before any response byte")
        # b"" tells h11 about EOF: it ends a close-delimited body, or makes next_event()
        # raise for a body cut short. SSLStream returns bytearray; h11 only appends what it
        # gets to its own bytearray, so it takes one as is (its annotation says bytes).
        self._h11.receive_data(data)  # type: ignore[arg-type]

    def start_next_cycle(self) -> bool:
        """After a complete response: ready the connection for another request if it can be.

        Returns False when the connection must be closed instead: either side asked to close
        (``Connection: close``, HTTP/1.0), the body was delimited by the server closing, or
        the server sent bytes past the end of the response.
        """
        h = self._h11
        if h.our_state is not h11.DONE or h.their_state is not h11.DONE:
            return False
        # After a close-delimited body h11 still says DONE (the EOF becomes ConnectionClosed
        # only on the next next_event() call): ask it whether EOF or extra bytes were seen.
        extra, eof = h.trailing_data
        if extra or eof:
            return False
        h.start_next_cycle()
        return True

    def is_dropped(self) -> bool:
        """Whether an idle connection is unusable: its socket has something to read.

        On an idle HTTP/1.1 connection any readable event (EOF, a reset, stray bytes) means
        the server is done with it. One non-blocking ``poll`` call, no data consumed.
        """
        fd = self._socket.fileno()
        if fd < 0:
            return True
        # poll rather than select: select() fails for descriptors >= FD_SETSIZE (1024),
        # which a proxy holding thousands of streams reaches.
        if hasattr(select, "poll"):
            if self._poll is None:
                self._poll = select.poll()
                self._poll.register(fd, select.POLLIN)
            return bool(self._poll.poll(0))
        return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - Windows

    def close(self) -> None:
        """Close the socket synchronously, at once; for a connection no task is using."""
        self._socket.close()


async def open_connection(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    connect_timeout: float = math.inf,
    read_timeout: float = math.inf,
) -> H11Connection:
    """Connect to ``host:port`` over TCP, then TLS when ``ssl_context`` is given.

    TLS uses ``host`` for SNI and certificate verification. The TCP connect and the TLS
    handshake together must finish within ``connect_timeout`` seconds.

    Raises:
        UpstreamUnreachable: DNS failure, connection refused or reset, TLS failure.
        UpstreamTimeout: over ``connect_timeout``.
        UpstreamProtocolError: TLS negotiated (ALPN) a protocol other than HTTP/1.1.
    """
    with trio.move_on_after(connect_timeout):
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise UpstreamConnectFailed(f"cannot connect to {host}:{port}: {exc}") from exc
        if ssl_context is None:
            return H11Connection(tcp, tcp.socket, read_timeout=read_timeout)
        # https_compatible: do not insist on close_notify at EOF (many servers omit it) and
        # do not wait for one when closing.
        tls = trio.SSLStream(tcp, ssl_context, server_hostname=host, https_compatible=True)
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, OSError) as exc:
            await trio.aclose_forcefully(tls)
            reason = exc.__cause__ or exc
            raise UpstreamConnectFailed(f"TLS with {host}:{port} failed: {reason}") from exc
        except BaseException:
            await trio.aclose_forcefully(tls)
            raise
        alpn = tls.selected_alpn_protocol()
        if alpn not in (None, "http/1.1"):
            await trio.aclose_forcefully(tls)
            raise UpstreamProtocolError(f"{host}:{port} negotiated {alpn!r}, not HTTP/1.1")
        return H11Connection(tls, tcp.socket, read_timeout=read_timeout)
    raise UpstreamConnectTimeout(f"connecting to {host}:{port} took over {connect_timeout:g} s")


def _checked_head(head: h11.Response) -> h11.Response:
    """``head``, unless it is oversized or its framing is ambiguous.

    h11's buffer limit only bounds a head still incomplete after a receive, so one that
    arrives over two receives may exceed :data:`MAX_HEAD_SIZE`: its size is checked here.
    A response with both ``Transfer-Encoding`` and ``Content-Length`` may be an attempt
    at response splitting (RFC 9112 §6.3): h11 would follow the transfer coding, but
    nothing says what the backend meant, so it is a protocol error before the body.

    Raises:
        UpstreamProtocolError: the head is over the limit, or both framing headers are
            present.
    """
    size = len(head.reason) + 15
    chunked = sized = False
    for name, value in head.headers:
        size += len(name) + len(value) + 4
        if name == b"transfer-encoding":
            chunked = True
        elif name == b"content-length":
            sized = True
    if size > MAX_HEAD_SIZE:
        raise UpstreamProtocolError(f"the response head is over {MAX_HEAD_SIZE} bytes")
    if chunked and sized:
        raise UpstreamProtocolError(
            "the response has both Transfer-Encoding and Content-Length (ambiguous framing)"
        )
    return head
