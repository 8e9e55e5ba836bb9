"""The relay-capacity scenario's upstream: paced SSE streams from one epoll loop.

It answers like ``slow_upstream.py`` — every POST gets a chunked ``text/event-stream`` of
``bench_chunks`` OpenAI-style events, one every ``bench_delay`` seconds (top-level fields
of the request body), then ``data: [DONE]`` — but at a fraction of the CPU: no task,
coroutine or HTTP library per stream, only a heap of due times, non-blocking sockets,
events framed once at start-up (without ``slow_upstream.py``'s time stamps, which only
the latency figures read) and one ``send`` per chunk, for every stream due in the same
:data:`TICK` together, as an inference server's decode step emits a token for every
sequence of its batch at once. The relay-capacity scenario runs the proxy on the cores
its load runs on: what the load costs is what the proxy does not get. A stream whose
socket is full queues its due chunks (up to :data:`OUT_LIMIT` bytes past what its socket
holds, then skips them) and sends them together once writable, as a real server behind
a slow reader would.

A request whose body has ``bench_start_after: N`` gets its response head at once and
its first event only once N such streams are waiting (or ``bench_start_by`` seconds,
default 60, after the first of them came); the waiting streams then start together, their
first events spread over one interval. The relay scenario opens every stream before any
relays, so that a proxy busy relaying the first streams does not slow the opening of
the rest (under a saturated event loop a Trio server accepts about one connection per
turn), and every run relays for as many streams.

Any other request gets an empty 404. Connections are HTTP/1.1 keep-alive.

Run: ``python bench/paced_upstream.py --port N``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import math
import select
import socket
import time

from bodies import SLOW_MODEL, SSE_DONE, sse_event, upstream_arguments

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
START_BY = 60.0  # seconds: streams held back start at the latest this long after the first
TICK = 0.005  # seconds: chunks due within a tick are sent together, as by a decode step
OUT_LIMIT = 16 * 1024  # bytes queued for one stream (past its full socket) before its due
# chunks are skipped: a reader this far behind is not sent more than it reads
MAX_HEAD = 64 * 1024
RECEIVE_SIZE = 65536


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


FRAMES = [_frame(sse_event(i, SLOW_MODEL)) for i in range(64)]  # chunk i is FRAMES[i % 64]
END = _frame(SSE_DONE) + LAST_CHUNK


class Stream:
    """One connection: its unread request bytes, unsent answer bytes and schedule."""

    __slots__ = ("count", "delay", "inbox", "index", "outbox", "sock", "start", "writing")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = b""
        self.outbox = b""
        self.writing = False  # registered for EPOLLOUT: the socket was full
        self.index = self.count = 0
        self.delay = self.start = 0.0


class PacedUpstream:
    """The server: :meth:`run` serves the listening socket until the process ends."""

    def __init__(self, listener: socket.socket, chunks: int, delay: float) -> None:
        self.listener = listener
        self.chunks, self.delay = chunks, delay
        self.epoll = select.epoll()
        self.streams: dict[int, Stream] = {}
        self.due: list[tuple[float, int, Stream]] = []
        self.order = itertools.count()  # ties in the heap never compare two Streams
        self.waiting: list[Stream] = []  # answered, their first event held back
        self.start_by = math.inf

    def run(self) -> None:
        listener = self.listener
        listener.setblocking(False)
        self.epoll.register(listener.fileno(), select.EPOLLIN)
        while True:
            # Woken once a tick at most, not once a chunk: with 1,000 streams a chunk is
            # due every few microseconds, and a wake-up costs more than the send.
            timeout = max(TICK, self.due[0][0] - time.monotonic()) if self.due else -1
            if self.waiting:
                if time.monotonic() >= self.start_by:
                    self._start_waiting()
                timeout = TICK if timeout < 0 else timeout
            for fd, events in self.epoll.poll(timeout):
                if fd == listener.fileno():
                    self._accept()
                    continue
                stream = self.streams.get(fd)
                if stream is None:
                    continue
                if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    self._read(stream)
                if events & select.EPOLLOUT and stream.sock.fileno() >= 0:
                    self._flush(stream)
            self._send_due()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.streams[sock.fileno()] = Stream(sock)
            self.epoll.register(sock.fileno(), select.EPOLLIN)

    def _close(self, stream: Stream) -> None:
        fd = stream.sock.fileno()
        if fd >= 0:
            self.streams.pop(fd, None)
            self.epoll.unregister(fd)
            stream.sock.close()

    def _read(self, stream: Stream) -> None:
        try:
            data = stream.sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(stream)
            return
        stream.inbox += data
        self._answer(stream)

    def _answer(self, stream: Stream) -> None:
        """Start the answer of the request in ``stream.inbox`` once it is whole."""
        if stream.count:
            return  # still answering the last one: HTTP/1.1 clients wait for it
        head, found, rest = stream.inbox.partition(b"\r\n\r\n")
        if not found:
            if len(stream.inbox) > MAX_HEAD:
                self._close(stream)
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            return
        body, stream.inbox = rest[:length], rest[length:]
        if not head.startswith(b"POST "):
            self._queue(stream, NOT_FOUND)
            return
        stream.count, stream.delay, start_after, start_by = self._plan(body)
        stream.index, stream.start = 0, time.monotonic()
        self._queue(stream, HEAD)
        if start_after > 1:
            if not self.waiting:
                self.start_by = stream.start + start_by
            self.waiting.append(stream)
            if len(self.waiting) >= start_after:
                self._start_waiting()
            return
        heapq.heappush(self.due, (stream.start, next(self.order), stream))

    def _start_waiting(self) -> None:
        """Start the streams held back, their first events spread over one interval."""
        now, waiting = time.monotonic(), self.waiting
        self.waiting, self.start_by = [], math.inf
        for number, stream in enumerate(waiting):
            stream.start = now + number / len(waiting) * stream.delay
            heapq.heappush(self.due, (stream.start, next(self.order), stream))

    def _plan(self, body: bytes) -> tuple[int, float, int, float]:
        """Events, seconds between them, streams to wait for and the longest wait."""
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return self.chunks, self.delay, 0, 0.0
        chunks = int(payload.get("bench_chunks", self.chunks))
        return (
            max(chunks, 1),
            float(payload.get("bench_delay", self.delay)),
            int(payload.get("bench_start_after", 0)),
            float(payload.get("bench_start_by", START_BY)),
        )

    def _send_due(self) -> None:
        due, now = self.due, time.monotonic()
        while due and due[0][0] <= now + TICK:
            stream = heapq.heappop(due)[2]
            if stream.sock.fileno() < 0:
                continue  # closed meanwhile
            # A reader this far behind gets no more than it reads: the chunk is skipped.
            data = FRAMES[stream.index % 64] if len(stream.outbox) < OUT_LIMIT else b""
            stream.index += 1
            if stream.index < stream.count:
                when = stream.start + stream.index * stream.delay
                heapq.heappush(due, (when, next(self.order), stream))
            else:
                data += END
                stream.count = 0
            self._queue(stream, data)
            if not stream.count and stream.sock.fileno() >= 0:
                self._answer(stream)  # a request that arrived meanwhile

    def _queue(self, stream: Stream, data: bytes) -> None:
        if not data:
            return
        stream.outbox += data
        if not stream.writing:
            self._flush(stream)

    def _flush(self, stream: Stream) -> None:
        try:
            sent = stream.sock.send(stream.outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(stream)
            return
        stream.outbox = stream.outbox[sent:]
        writing = bool(stream.outbox)
        if writing != stream.writing:
            stream.writing = writing
            mask = select.EPOLLIN | (select.EPOLLOUT if writing else 0)
            self.epoll.modify(stream.sock.fileno(), mask)


def main() -> None:
    """Serve until killed."""
    args = upstream_arguments(__doc__.splitlines()[0])
    listener = socket.create_server(("127.0.0.1", args.port), backlog=4096)
    with contextlib.suppress(KeyboardInterrupt):  # ^C by hand: no traceback
        PacedUpstream(listener, args.chunks, args.delay).run()


if __name__ == "__main__":
    main()
