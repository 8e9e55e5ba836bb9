"""The bench's own HTTP clients: sequential stream timing, and thousands of held streams.

* :func:`stream_timings` sends N streaming requests one after another on one keep-alive
  connection (blocking socket + h11) and times each one's first and last body byte.
* :func:`hold_streams` opens many slow SSE streams at once on raw Trio sockets — no HTTP
  library, a minimal response parser — so one client process on a shared 2-core machine
  can keep 5,000 of them open; it records how late each chunk arrives while all are held.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import h11
import trio

RECEIVE_SIZE = 65536


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """One streaming request: seconds from sending it to the first and last body byte."""

    ttfb: float
    ttlb: float
    body_bytes: int


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    """A streaming POST of ``body`` (JSON) to ``path``, head and body, as sent on the wire."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def stream_timings(host: str, port: int, path: str, body: bytes, count: int) -> list[StreamTiming]:
    """Time ``count`` sequential POSTs of ``body`` to ``path`` on one keep-alive connection.

    Raises:
        RuntimeError: a non-200 answer or a connection closed mid-response.
    """
    headers = [
        ("host", f"{host}:{port}"),
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("content-length", str(len(body))),
    ]
    timings = []
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.CLIENT)
        for _ in range(count):
            request = conn.send(h11.Request(method="POST", target=path, headers=headers)) or b""
            request += conn.send(h11.Data(data=body)) or b""
            request += conn.send(h11.EndOfMessage()) or b""
            start = time.perf_counter()
            sock.sendall(request)
            first = 0.0
            size = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = sock.recv(RECEIVE_SIZE)
                    if not data:
                        raise RuntimeError("server closed the connection mid-response")
                    conn.receive_data(data)
                elif isinstance(event, h11.Response):
                    if event.status_code != 200:
                        raise RuntimeError(f"HTTP {event.status_code} from {path}")
                elif isinstance(event, h11.Data):
                    if not first:
                        first = time.perf_counter()
                    size += len(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    end = time.perf_counter()
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise RuntimeError("server closed the connection mid-response")
            timings.append(StreamTiming(first - start, end - start, size))
            conn.start_next_cycle()
    return timings


# The slow upstream's events carry their schedule and send time (time.monotonic()).
_STAMPS = re.compile(rb'"due":([0-9.]+),"sent":([0-9.]+)')


class _Dechunker:
    """Incremental decoder of a chunked (or Content-Length) HTTP/1.1 response body."""

    __slots__ = ("_buf", "_need", "done", "remaining")

    def __init__(self, content_length: int | None) -> None:
        self._buf = b""
        self._need = -1  # -1: a chunk-size line is next; else payload bytes left (+CRLF)
        self.remaining = content_length
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.remaining is not None:
            self.remaining -= len(data)
            self.done = self.remaining <= 0
            return data
        self._buf += data
        out = []
        while not self.done:
            if self._need < 0:
                eol = self._buf.find(b"\r\n")
                if eol < 0:
                    break
                size = int(self._buf[:eol].split(b";", 1)[0], 16)
                self._buf = self._buf[eol + 2 :]
                if size == 0:
                    self.done = True
                    break
                self._need = size
            if len(self._buf) < self._need + 2:
                break
            out.append(self._buf[: self._need])
            self._buf = self._buf[self._need + 2 :]
            self._need = -1
        return b"".join(out)


@dataclass
class HoldResult:
    """What :func:`hold_streams` saw. Times in seconds (``time.monotonic()`` based).

    ``transit`` (receive - the upstream's send time) and ``lateness`` (receive - the
    chunk's due time on the upstream's schedule) are sampled per chunk, only while all
    streams were held; ``upstream_lag`` is the upstream's own part (send - due).
    """

    requested: int
    opened: int = 0
    peak_open: int = 0
    ramp_seconds: float = 0.0
    hold_seconds: float = 0.0
    ended_early: int = 0
    unanswered_at_hold: int = 0
    held_from: float = 0.0
    held_until: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    transit: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    upstream_lag: list[float] = field(default_factory=list)
    client_cpu_seconds: float = 0.0
    #: Seconds the client took to close every stream, from ``held_until``.
    hang_up_seconds: float = 0.0


class _Hold:
    def __init__(self, result: HoldResult) -> None:
        self.result = result
        self.current = 0
        self.settled = 0  # opened or failed
        self.last_settled = time.monotonic()
        self.all_settled = trio.Event()
        self.holding = False
        self.open_streams: set[trio.SocketStream] = set()
        self.hung_up = False

    def hang_up(self) -> None:
        """Close every open stream's socket at once, in one synchronous loop.

        Closing them from their own tasks (cancelled, each unwinding and closing in its
        turn) took this one process 1 to 1.5 s for 5,000 on a shared core, so the proxy
        saw the hang-ups trickle in; real clients hang up independently of each other.
        A task waiting on a socket closed here wakes with ``ClosedResourceError``.
        """
        self.hung_up = True
        for stream in self.open_streams:
            stream.socket.close()

    def settle(self) -> None:
        self.settled += 1
        self.last_settled = time.monotonic()
        if self.settled >= self.result.requested:
            self.all_settled.set()

    def fail(self, why: str) -> None:
        self.result.failures[why] += 1

    async def _open(
        self, host: str, port: int, request: bytes
    ) -> tuple[trio.SocketStream, _Dechunker, bytes] | None:
        """Connect, send the request, read the head: the stream, its decoder, body so far."""
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            self.fail(f"connect: {exc.strerror or exc}")
            return None
        try:
            await stream.send_all(request)
            head = b""
            while b"\r\n\r\n" not in head:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    self.fail("closed before the response")
                    await stream.aclose()
                    return None
                head += data
        except BaseException as exc:
            await trio.aclose_forcefully(stream)
            if isinstance(exc, trio.BrokenResourceError | OSError):
                self.fail(f"before the response: {type(exc).__name__}")
                return None
            raise
        head, _, rest = head.partition(b"\r\n\r\n")
        status = int(head[9:12])
        if status != 200:
            self.fail(f"HTTP {status}")
            await stream.aclose()
            return None
        length = None
        for line in head.lower().split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = _Dechunker(length)
        return stream, body, body.feed(rest)

    async def one(
        self, host: str, port: int, request: bytes, limiter: trio.CapacityLimiter
    ) -> None:
        """One stream: open it (holding a limiter slot until its head arrives), read it."""
        result = self.result
        async with limiter:
            opened = await self._open(host, port, request)
        self.settle()
        if opened is None:
            return
        stream, body, pending = opened
        result.opened += 1
        self.current += 1
        result.peak_open = max(result.peak_open, self.current)
        self.open_streams.add(stream)
        try:
            async with stream:
                while True:
                    end = pending.rfind(b"\n\n")
                    if end >= 0:
                        if self.holding:
                            now = time.monotonic()
                            for match in _STAMPS.finditer(pending, 0, end):
                                due, sent = float(match[1]), float(match[2])
                                result.transit.append(now - sent)
                                result.lateness.append(now - due)
                                result.upstream_lag.append(sent - due)
                        pending = pending[end + 2 :]
                    if body.done:
                        result.ended_early += 1
                        return
                    data = await stream.receive_some(RECEIVE_SIZE)
                    if not data:
                        self.fail("closed mid-stream")
                        return
                    pending += body.feed(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if not self.hung_up:
                self.fail(f"mid-stream: {type(exc).__name__}")
        finally:
            self.open_streams.discard(stream)
            self.current -= 1


async def hold_streams(
    host: str,
    port: int,
    path: str,
    bodies: Sequence[bytes],
    count: int,
    *,
    while_held: Callable[[], Awaitable[None]],
    ramp_timeout: float,
    stall_timeout: float = 5.0,
    parallel_connects: int = 64,
    on_hang_up: Callable[[], None] | None = None,
) -> HoldResult:
    """Open ``count`` streams at once, hold them while ``while_held()`` runs, then hang up.

    Stream ``i`` sends ``bodies[i % len(bodies)]``.

    At most ``parallel_connects`` streams are between connecting and their response head
    at any time (a server's listen backlog is finite: an overflowing accept queue drops
    handshakes and costs retransmits or resets, which would measure the client). Once every
    stream has answered its response head (or failed; or ``ramp_timeout`` passed, or no
    stream was answered for ``stall_timeout`` seconds), chunk delays are sampled until
    ``while_held`` returns; then every connection is closed at once (:meth:`_Hold.hang_up`)
    and ``on_hang_up()`` is called (the hang-up began at ``held_until``), before this
    process's 5,000 tasks unwind (about a second: a release timed from after this returns
    would include it).
    """
    result = HoldResult(requested=count)
    hold = _Hold(result)
    requests = [request_bytes(host, port, path, body) for body in bodies]
    limiter = trio.CapacityLimiter(parallel_connects)
    cpu0 = time.process_time()
    start = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(hold.one, host, port, requests[i % len(requests)], limiter)
        deadline = start + ramp_timeout
        while not hold.all_settled.is_set():
            now = time.monotonic()
            if now > deadline or now - hold.last_settled > stall_timeout:
                break
            await trio.sleep(0.1)
        result.ramp_seconds = time.monotonic() - start
        result.unanswered_at_hold = count - hold.settled
        hold.holding = True
        result.held_from = time.monotonic()
        await while_held()
        hold.holding = False
        result.held_until = time.monotonic()
        result.hold_seconds = result.held_until - result.held_from
        hold.hang_up()
        result.hang_up_seconds = time.monotonic() - result.held_until
        if on_hang_up is not None:
            on_hang_up()
        nursery.cancel_scope.cancel()
    result.client_cpu_seconds = time.process_time() - cpu0
    return result


def active_connections(host: str, port: int, timeout: float) -> int | None:
    """``total_active_connections`` of the proxy at ``host:port``
    (``GET /v1/diagnostics/activity``), or None if it did not answer in time."""
    conn = http.client.HTTPConnection(host, port, timeout=max(0.1, timeout))
    try:
        conn.request("GET", "/v1/diagnostics/activity")
        return int(json.loads(conn.getresponse().read())["total_active_connections"])
    except (OSError, http.client.HTTPException, ValueError, KeyError):
        return None
    finally:
        conn.close()


class ReleaseWatch(threading.Thread):
    """A thread that asks the proxy at ``host:port`` how many connections it holds, every
    ``interval`` seconds, until it says none or ``timeout`` seconds have passed.

    Started by :func:`hold_streams`'s ``on_hang_up``, as the hang-up begins: polled from
    the event loop once ``hold_streams`` returned, the first answer would come only after
    the client's own thousands of tasks had unwound (about a second for 5,000), whatever
    the proxy took. ``released`` is when it said none (``time.monotonic()``; None if it
    never did), ``leftover`` its last count (-1: no answer), ``slowest_poll`` the longest
    one answer took.
    """

    def __init__(self, host: str, port: int, timeout: float, interval: float = 0.02) -> None:
        super().__init__(name="release-watch", daemon=True)
        self.host, self.port, self.timeout, self.interval = host, port, timeout, interval
        self.released: float | None = None
        self.leftover = -1
        self.slowest_poll = 0.0

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            asked = time.monotonic()
            active = active_connections(self.host, self.port, deadline - asked)
            now = time.monotonic()
            self.slowest_poll = max(self.slowest_poll, now - asked)
            self.leftover = -1 if active is None else active
            if active == 0:
                self.released = now
                return
            if now > deadline:
                return
            time.sleep(self.interval)
