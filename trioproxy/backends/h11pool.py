"""A lean HTTP/1.1 keep-alive connection pool for the relay's hot path: h11 over Trio.

One :class:`H11Pool` talks to one origin (``http://host:port`` or ``https://host``).
``pool.stream(...)`` is an async context manager that sends one request and yields an
:class:`H11Response` (status, headers, raw body stream); the connection under it goes
back to the pool only if the response was read to its end and HTTP/1.1 allows reuse,
and is closed at once on any other way out of the block. Every failure surfaces as a
:class:`trioproxy.errors.UpstreamError` subclass (see :mod:`trioproxy.backends.h11conn`
for the mapping), named with the pool's ``name``; ``trio.Cancelled`` propagates
unchanged.

Measured as a bare relay on hypercorn against nginx (issue 6), a pool of this shape
reaches about 0.74 of the bare server's throughput where ``httpx.AsyncClient`` reaches
0.30. Every request of an instance goes through its pool: the relay's, model discovery's
and the health checks'.
"""

from __future__ import annotations

import math
import ssl
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

import h11
import trio

from trioproxy.backends.h11conn import H11Connection, open_connection
from trioproxy.errors import NoResponseError, UpstreamError, UpstreamProtocolError
from trioproxy.urls import shown_url

__all__ = ["H11Pool", "H11Response", "PoolStatistics"]

DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_MAX_KEEPALIVE = 20
DEFAULT_KEEPALIVE_EXPIRY = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 300.0
#: Idle connections older than this (seconds) are probed for a server-side close before
#: reuse; younger ones are reused without the system call.
PROBE_AFTER_IDLE = 1.0

_DEFAULT_PORTS = {"http": 80, "https": 443}
# The pool frames the body itself; a caller's framing headers would contradict it.
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
# Methods that customarily carry no body: no ``Content-Length: 0`` when the body is empty.
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "DELETE", "CONNECT"})


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of one pool's counters.

    Attributes:
        connections_open: idle plus in use.
        connections_idle: open, waiting in the pool for a request.
        connections_in_use: open, carrying a request whose block has not exited.
        connections_opened: connections established since the pool was created.
        requests_served: requests that received a response head.
        requests_waiting: requests queued for a slot under ``max_connections``.
    """

    connections_open: int
    connections_idle: int
    connections_in_use: int
    connections_opened: int
    requests_served: int
    requests_waiting: int


class H11Response:
    """The upstream's answer: status, headers and the raw body stream.

    Satisfies :class:`trioproxy.backends.base.UpstreamResponse`. Usable only inside the
    ``async with pool.stream(...)`` block that produced it.
    """

    __slots__ = ("_closed", "_complete", "_conn", "_head", "_iterated", "_name")

    def __init__(self, conn: H11Connection, head: h11.Response, name: str | None) -> None:
        self._conn = conn
        self._head = head
        self._name = name
        self._iterated = False
        self._complete = False
        self._closed = False

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self._head.status_code

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:
        """Response headers in order, names lower-cased, values as sent."""
        return self._head.headers

    def aiter_raw(self) -> _Body:
        """The body as it arrives: after HTTP framing, before content decoding.

        Chunked transfer coding is removed; a gzip body stays gzip. Each receive waits at
        most ``read_timeout`` seconds; there is no deadline on the whole body. The
        iterator is a plain object, not a generator: abandoning it mid-body leaves
        nothing to close but the response's block.

        Raises (from iterating):
            UpstreamTimeout: no byte for ``read_timeout`` seconds.
            UpstreamProtocolError: malformed framing, or the body was cut short (EOF before
                the last chunk or before Content-Length bytes, or a reset).
            RuntimeError: (when called) iterated twice, or after the block exited.
        """
        if self._iterated or self._closed:
            raise RuntimeError("a response body can be iterated once, inside its block")
        self._iterated = True
        return _Body(self)

    def _is_complete(self) -> bool:
        """Whether the whole response has been received, peeking at buffered data only.

        A block that never iterated an empty body (204, ``Content-Length: 0``) or stopped
        right after the last chunk still leaves a reusable connection: h11 already holds
        the end of the message, so no read is needed to know.
        """
        if self._complete:
            return True
        try:
            return type(self._conn.next_event()) is h11.EndOfMessage
        except UpstreamError:
            return False


class _Body:
    """The async iterator of one response's body bytes (see :meth:`H11Response.aiter_raw`)."""

    __slots__ = ("_response",)

    def __init__(self, response: H11Response) -> None:
        self._response = response

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        response = self._response
        if response._closed:
            raise RuntimeError("a response body read after its block exited")
        if response._complete:
            raise StopAsyncIteration  # read to its end already: it stays ended
        conn = response._conn
        try:
            while True:
                event = conn.next_event()
                if type(event) is h11.Data:
                    # h11 hands out a fresh bytearray; the interface promises bytes.
                    return bytes(event.data)
                if event is h11.NEED_DATA:
                    await conn.receive()
                elif type(event) is h11.EndOfMessage:
                    response._complete = True
                    raise StopAsyncIteration
                else:
                    raise UpstreamProtocolError(f"unexpected {event!r} in a response body")
        except UpstreamError as exc:
            if response._name is not None:
                exc.of_backend(response._name)
            raise


class H11Pool:
    """A keep-alive pool of HTTP/1.1 connections to one origin.

    Args:
        url: ``http://host[:port]`` or ``https://host[:port]``, optionally with a base path
            that prefixes every request target (``https://api.openai.com/v1``).
        max_connections: at most this many connections open at once; further requests
            wait, first come first served, for one to become idle or close.
        max_keepalive: at most this many idle connections are kept.
        keepalive_expiry: idle connections older than this (seconds) are closed, not reused.
        connect_timeout: seconds for TCP connect plus TLS handshake; None for no limit.
        read_timeout: seconds without a byte, per receive, before giving up (also bounds
            sending the request); None for no limit. No deadline bounds a whole response.
        ssl_context: for ``https``; defaults to ``ssl.create_default_context()`` (the
            system trust store). The pool sets its ALPN protocols to ``http/1.1``.
        name: names the backend in every error the pool raises (``UpstreamError.backend``).

    Raises:
        ValueError: a URL that is not an http(s) origin with an optional path, or a bad
            limit.

    Idle connections are checked for a server-side close before reuse and are pruned
    when the pool is used; the pool runs no background task. Use ``async with H11Pool(...)``
    or call :meth:`aclose` to close the idle connections.
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_keepalive: int = DEFAULT_MAX_KEEPALIVE,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
        name: str | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if max_keepalive < 0:
            raise ValueError("max_keepalive must not be negative")
        scheme, host, port, base_path = _parse_url(url)
        self._host = host
        self._port = port
        self._base_path = base_path
        self.name = name
        host_header = f"[{host}]" if ":" in host else host
        if port != _DEFAULT_PORTS[scheme]:
            host_header += f":{port}"
        self._host_header = (b"host", host_header.encode("idna"))
        if scheme == "https":
            if ssl_context is None:
                ssl_context = ssl.create_default_context()
            ssl_context.set_alpn_protocols(["http/1.1"])
            self._ssl_context: ssl.SSLContext | None = ssl_context
        else:
            self._ssl_context = None
        self._max_keepalive = max_keepalive
        self._keepalive_expiry = keepalive_expiry
        self._connect_timeout = math.inf if connect_timeout is None else connect_timeout
        self._read_timeout = math.inf if read_timeout is None else read_timeout
        # One slot per request in flight. Every open connection is idle or carries such a
        # request, and an idle one is always taken before a new one is dialled, so open
        # connections never exceed max_connections; trio.Semaphore wakes waiters in order.
        self._slots = trio.Semaphore(max_connections, max_value=max_connections)
        # LIFO: the most recently used connection is the least likely to have been dropped
        # by the server, and the oldest ones age out at the left end.
        self._idle: deque[H11Connection] = deque()
        self._in_use = 0
        self._opened = 0
        self._served = 0
        self._closed = False

    def stream(
        self,
        method: str,
        path: str,
        *,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
    ) -> AbstractAsyncContextManager[H11Response]:
        """Send one request; the block gets the response once its head has arrived.

        Sends a ``Host`` header (with the port when not the scheme's default) unless
        ``headers`` has one, then ``headers`` as given, then ``Content-Length``; the
        caller's ``Content-Length`` and ``Transfer-Encoding`` are dropped, since the pool
        frames the body. A reused idle connection that fails before any response byte
        is retried once on a fresh connection.

        Raises (from entering the block):
            UpstreamUnreachable: DNS, refused, reset, TLS failure, closed before a response.
            UpstreamTimeout: connect timeout, or no byte for ``read_timeout`` seconds.
            UpstreamProtocolError: malformed response head.
            ValueError: (when called) a request h11 cannot send, e.g. a bad header.
            RuntimeError: the pool is closed.
        """
        out: list[tuple[bytes, bytes]] = [self._host_header]
        for name, value in headers:
            lname = name.lower()
            if lname == b"host":
                out[0] = (name, value)
            elif lname not in _FRAMING_HEADERS:
                out.append((name, value))
        if body or method.upper() not in _BODYLESS_METHODS:
            out.append((b"content-length", b"%d" % len(body)))
        target = self.path_of(path)
        try:
            request = h11.Request(method=method, target=target, headers=out)
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid request: {exc}") from exc
        return _ResponseContext(self, request, body)

    def path_of(self, path: str) -> str:
        """The request target for ``path``: the base URL's path, then ``path``."""
        return self._base_path + (path if path.startswith("/") else "/" + path)

    def statistics(self) -> PoolStatistics:
        """An immutable snapshot of the pool's connection and request counters."""
        idle = len(self._idle)
        return PoolStatistics(
            connections_open=idle + self._in_use,
            connections_idle=idle,
            connections_in_use=self._in_use,
            connections_opened=self._opened,
            requests_served=self._served,
            requests_waiting=self._slots.statistics().tasks_waiting,
        )

    async def aclose(self) -> None:
        """Close the idle connections; connections in use close when their blocks exit.

        Afterwards :meth:`stream` raises ``RuntimeError``. Idempotent.
        """
        self._closed = True
        while self._idle:
            self._idle.pop().close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> H11Pool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, request: h11.Request, body: bytes) -> H11Response:
        """Take a slot and a connection, send, and return the response with its head.

        On any failure the connection is closed and the slot released before raising.
        """
        if self._closed:
            raise RuntimeError("this H11Pool is closed")
        # Skip the scheduler round trip of acquire() when a slot is free; with waiters
        # queued no slot is ever free (release hands it straight over), so no one jumps
        # the queue.
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()
        conn: H11Connection | None = None
        try:
            if self._closed:
                raise RuntimeError("this H11Pool is closed")
            conn = self._checkout_idle()
            if conn is not None:
                try:
                    head = await conn.send_request(request, body)
                except NoResponseError:
                    # The server closed this idle connection after our liveness probe.
                    # No byte of a response was seen, so a fresh connection may retry.
                    dead, conn = conn, None
                    self._discard(dead)
                else:
                    self._served += 1
                    return H11Response(conn, head, self.name)
            conn = await self._connect()
            head = await conn.send_request(request, body)
            self._served += 1
            return H11Response(conn, head, self.name)
        except UpstreamError as exc:
            if conn is not None:
                self._discard(conn)
            self._slots.release()
            if self.name is not None:
                exc.of_backend(self.name)
            raise
        except BaseException:
            if conn is not None:
                self._discard(conn)
            self._slots.release()
            raise

    async def _finish(self, response: H11Response) -> None:
        """Return the response's connection to the pool, or close it; release the slot."""
        response._closed = True
        conn = response._conn
        try:
            if response._is_complete() and conn.start_next_cycle():
                self._keep(conn)
            else:
                # The block left before the end of the response (client gone, cancelled,
                # error) or HTTP/1.1 forbids reuse: the connection's state is unknown.
                self._discard(conn)
        finally:
            self._slots.release()

    def _checkout_idle(self) -> H11Connection | None:
        """The most recently used live idle connection, closing dead or expired ones."""
        idle = self._idle
        if not idle:
            return None
        now = trio.current_time()
        oldest_allowed = now - self._keepalive_expiry
        probe_before = now - PROBE_AFTER_IDLE
        while idle:
            conn = idle.pop()
            # The liveness probe is a system call: worth it for a connection that sat
            # idle long enough for the server to drop it, not for one in constant use
            # (if that one fails before any response byte, the request is retried).
            if conn.idle_since < oldest_allowed or (
                conn.idle_since < probe_before and conn.is_dropped()
            ):
                conn.close()
                continue
            self._in_use += 1
            return conn
        return None

    async def _connect(self) -> H11Connection:
        conn = await open_connection(
            self._host,
            self._port,
            ssl_context=self._ssl_context,
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
        )
        self._opened += 1
        self._in_use += 1
        return conn

    def _keep(self, conn: H11Connection) -> None:
        """Put a reusable connection into the idle set, within max_keepalive."""
        self._in_use -= 1
        idle = self._idle
        now = trio.current_time()
        oldest_allowed = now - self._keepalive_expiry
        while idle and idle[0].idle_since < oldest_allowed:
            idle.popleft().close()
        if self._closed or self._max_keepalive == 0:
            conn.close()
            return
        if len(idle) >= self._max_keepalive:
            idle.popleft().close()
        conn.idle_since = now
        idle.append(conn)

    def _discard(self, conn: H11Connection) -> None:
        # Synchronously: no task uses the connection any more, and a request cancelled
        # with thousands of others (their clients hung up together) should cost no
        # cancel scope and no scheduler round trip to close.
        self._in_use -= 1
        conn.close()


class _ResponseContext:
    """``async with pool.stream(...) as response``: owns the request's slot and connection."""

    __slots__ = ("_body", "_pool", "_request", "_response")

    def __init__(self, pool: H11Pool, request: h11.Request, body: bytes) -> None:
        self._pool = pool
        self._request = request
        self._body = body
        self._response: H11Response | None = None

    async def __aenter__(self) -> H11Response:
        if self._response is not None:
            raise RuntimeError("a stream() context can be entered once")
        self._response = await self._pool._send(self._request, self._body)
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._response is not None
        await self._pool._finish(self._response)


def _parse_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, base path without trailing slash)`` of an http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an http(s) URL: {shown_url(url)!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {shown_url(url)!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        shown = shown_url(url)  # the message never repeats a key it found there
        raise ValueError(f"URL must not have a query, fragment or credentials: {shown!r}")
    port = parts.port or _DEFAULT_PORTS[parts.scheme]  # .port raises ValueError if invalid
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")
