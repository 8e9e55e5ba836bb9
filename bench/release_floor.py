"""The release's floor: the least a Trio program can do to relay streams and let them go.

Each connection's task reads one request (head and ``Content-Length`` body), opens a
socket to the upstream, sends it on, and relays the upstream's bytes raw (head included)
from a child task while it waits for the client's end of stream; then it cancels the
child and closes both sockets. No HTTP library, no ASGI, no routing, tracking, access log
or error handling, and the collector tuned as trioproxy tunes it. What is left is
Trio's and the kernel's part of a release: the wake-ups, the cancellation, two socket
closes per stream. ``GET /v1/diagnostics…``
answers ``{"total_active_connections": N}``, all the bench asks of a proxy, so
``python bench/release.py --floor`` and ``run.py`` time this program's release as they
time trioproxy's.

With ``--batched`` a connection has one task, not two: it relays, and one task of the
whole program watches every relayed client socket for its end of stream (``EPOLLRDHUP``
in an epoll set of its own, which Trio waits on as one descriptor) and cancels the
relays of all the clients that hung up since it last looked, in one step. That is a
design, not a floor of trioproxy's: what a release costs when hang-ups are told in
batches instead of waking a task each. Connections are accepted by a loop of its own
(Trio's ``serve_tcp`` closes each stream again after its handler, two more steps).

With ``--raw`` there is no Trio at all: one thread, one level-triggered epoll set of
every socket, each event handled as it comes (``RawFloor``). What is left is the kernel's
part of a release (each hang-up's event, two closes and their epoll removals) and the
least Python can do around it: the floor under every event-loop design, not one of them.

With ``--pump`` Trio serves each connection (a task reads its request and sends it on)
until its relay begins; then the connection's two sockets are handed to one task of the
whole program, which relays every stream by readiness with ``--raw``'s loop and closes
both sockets at the client's end of stream. No task is left per stream: that is the
shape a release that resumes no task per stream would have in a Trio program.

Run: ``python bench/release_floor.py --port N --upstream-port M [--batched | --raw |
--pump]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import socket
from functools import partial
from pathlib import Path

import trio
from procs import python_argv

from trioproxy.gcpolicy import tune_gc

LOOPBACK = "127.0.0.1"
RECEIVE_SIZE = 65536


class Floor:
    """The connections being relayed, and the handler of each."""

    def __init__(self, upstream_port: int, *, batched: bool = False, pump: bool = False) -> None:
        self.upstream_port = upstream_port
        self.active = 0
        #: With ``--pump``: the task that relays every stream once its request is sent.
        self.pump = Pump(upstream_port) if pump else None
        #: With ``--batched``: the relayed client sockets, watched for their end of stream,
        #: and the cancel scope of each one's relay.
        self.hang_ups = select.epoll() if batched else None
        self.relays: dict[int, trio.CancelScope] = {}

    async def serve_batched(self, port: int) -> None:
        """Accept and serve connections, and tell hang-ups in batches (``--batched``), or
        relay every stream from one task (``--pump``)."""
        listener = (await trio.open_tcp_listeners(port, host=LOOPBACK))[0]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_hang_ups if self.pump is None else self.pump.run)
            while True:
                nursery.start_soon(self.handle, await listener.accept())

    async def _watch_hang_ups(self) -> None:
        assert self.hang_ups is not None
        while True:
            await trio.lowlevel.wait_readable(self.hang_ups.fileno())
            for fd, _ in self.hang_ups.poll(0, 4096):
                relay = self.relays.pop(fd, None)
                if relay is not None:
                    relay.cancel()

    async def handle(self, client: trio.SocketStream) -> None:
        """Serve one connection (one request) until either side ends it."""
        try:
            await self._serve(client)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            client.socket.close()

    async def _serve(self, client: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            more = await client.receive_some(RECEIVE_SIZE)
            if not more:
                return
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        if head.startswith(b"GET /v1/diagnostics"):
            active = self.active + (len(self.pump.upstreams) if self.pump is not None else 0)
            answer = json.dumps({"total_active_connections": active}).encode()
            await client.send_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(answer), answer)
            )
            return
        length = _content_length(head)
        while len(body) < length:
            more = await client.receive_some(RECEIVE_SIZE)
            if not more:
                return
            body += more
        request_line = head.split(b"\r\n", 1)[0]
        upstream = await trio.open_tcp_stream(LOOPBACK, self.upstream_port)
        self.active += 1
        try:
            await upstream.send_all(
                request_line + b"\r\nhost: upstream\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            if self.pump is not None:
                self.pump.adopt(client.socket, upstream.socket)  # the sockets are its now
                return
            if self.hang_ups is not None:
                await self._relay_batched(upstream, client)
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
                try:
                    while await client.receive_some(RECEIVE_SIZE):
                        pass
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()
        finally:
            self.active -= 1
            upstream.socket.close()  # nothing, when the pump has them (detached)
            client.socket.close()

    async def _relay_batched(self, upstream: trio.SocketStream, client: trio.SocketStream) -> None:
        assert self.hang_ups is not None
        fd = client.socket.fileno()
        with trio.CancelScope() as relay:
            self.relays[fd] = relay
            # One-shot: an end of stream is told once, and the socket leaves the set as
            # it is closed.
            self.hang_ups.register(fd, select.EPOLLRDHUP | select.EPOLLONESHOT)
            await self._pump(upstream, client, relay)
        self.relays.pop(fd, None)

    @staticmethod
    async def _pump(
        upstream: trio.SocketStream, client: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        try:
            while data := await upstream.receive_some(RECEIVE_SIZE):
                await client.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()


def _content_length(head: bytes) -> int:
    """The ``Content-Length`` of a request head (0 without one)."""
    for line in head.lower().split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


class RawFloor:
    """``--raw``: the same relay with no event-loop library, on one epoll set.

    A client socket is registered for its input and end of stream; while its request is
    read its bytes gather in ``requests``; once it is relayed, ``peers`` maps it and its
    upstream socket to each other. A chunk is sent with one non-blocking ``send`` (the
    slow streams' chunks are small and far apart: a socket buffer never fills, and a
    chunk that did not fit would be dropped, not queued)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.epoll = select.epoll()
        self.sockets: dict[int, socket.socket] = {}
        self.requests: dict[int, bytes] = {}
        self.peers: dict[int, int] = {}
        self.upstreams: set[int] = set()

    def serve(self, port: int) -> None:
        """Accept and relay until interrupted."""
        listener = socket.create_server((LOOPBACK, port), backlog=4096)
        listener.setblocking(False)
        self.epoll.register(listener.fileno(), select.EPOLLIN)
        watched = select.EPOLLIN | select.EPOLLRDHUP
        while True:
            for fd, events in self.epoll.poll():
                if fd == listener.fileno():
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            client, _ = listener.accept()
                            client.setblocking(False)
                            self.sockets[client.fileno()] = client
                            self.requests[client.fileno()] = b""
                            self.epoll.register(client.fileno(), watched)
                elif fd in self.requests:
                    self._read_request(fd)
                else:
                    self._relay_event(fd, events)

    def _relay_event(self, fd: int, events: int) -> None:
        """Handle an event of a relayed socket."""
        if fd in self.upstreams:
            self._relay(fd)
        elif fd in self.peers and (events & ~select.EPOLLIN or self._receive(fd) == b""):
            # A relayed client: anything but more input is its end.
            self._release(fd)

    def _receive(self, fd: int) -> bytes | None:
        """What ``fd`` has: bytes, ``b""`` at its end (or a reset), None if nothing yet."""
        try:
            return self.sockets[fd].recv(RECEIVE_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def _read_request(self, fd: int) -> None:
        more = self._receive(fd)
        if more is None:
            return
        if not more:
            self.requests.pop(fd)
            self._drop(fd)
            return
        data = self.requests[fd] + more
        head, found, body = data.partition(b"\r\n\r\n")
        if not found or len(body) < _content_length(head):
            self.requests[fd] = data
            return
        del self.requests[fd]
        client = self.sockets[fd]
        if head.startswith(b"GET /v1/diagnostics"):
            answer = json.dumps({"total_active_connections": len(self.upstreams)}).encode()
            client.setblocking(True)
            client.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(answer), answer)
            )
            self._drop(fd)
            return
        upstream = socket.create_connection((LOOPBACK, self.upstream_port))
        upstream.sendall(
            head.split(b"\r\n", 1)[0] + b"\r\nhost: upstream\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        upstream.setblocking(False)
        self._relay_pair(fd, upstream)

    def _relay_pair(self, fd: int, upstream: socket.socket) -> None:
        """Relay ``upstream`` to the client socket ``fd`` (already registered)."""
        up = upstream.fileno()
        self.sockets[up] = upstream
        self.upstreams.add(up)
        self.peers[fd], self.peers[up] = up, fd
        self.epoll.register(up, select.EPOLLIN)

    def _relay(self, up: int) -> None:
        data = self._receive(up)
        if data is None:
            return
        if not data:
            self._release(self.peers[up])
            return
        with contextlib.suppress(OSError):
            self.sockets[self.peers[up]].send(data)

    def _release(self, fd: int) -> None:
        up = self.peers.pop(fd)
        del self.peers[up]
        self.upstreams.discard(up)
        self._drop(up)
        self._drop(fd)

    def _drop(self, fd: int) -> None:
        self.epoll.unregister(fd)
        self.sockets.pop(fd).close()


class Pump(RawFloor):
    """``--pump``: Trio serves each connection until its relay begins; then one task of
    the whole program relays every stream by readiness (:class:`RawFloor`'s relay, on
    an epoll set of its own that Trio waits on as one descriptor), and no task is left
    per stream to resume when it ends."""

    def adopt(self, client: trio.socket.SocketType, upstream: trio.socket.SocketType) -> None:
        """Take over relaying ``upstream`` to ``client``: their Trio sockets are done with."""
        pair = []
        for trio_socket in (client, upstream):
            trio.lowlevel.notify_closing(trio_socket)
            pair.append(socket.socket(fileno=trio_socket.detach()))
        fd = pair[0].fileno()
        self.sockets[fd] = pair[0]
        self.epoll.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        self._relay_pair(fd, pair[1])

    async def run(self) -> None:
        """Relay until cancelled."""
        while True:
            await trio.lowlevel.wait_readable(self.epoll.fileno())
            for fd, events in self.epoll.poll(0):
                self._relay_event(fd, events)


def floor_argv(port: int, upstream_port: int, *extra: str) -> list[str]:
    """``argv`` running this floor with this interpreter on ``port`` (``extra``: its other
    options: ``--batched``, ``--raw`` or ``--pump``)."""
    argv = ["--port", str(port), "--upstream-port", str(upstream_port), *extra]
    return python_argv(Path(__file__).resolve(), *argv)


def main() -> None:
    """Serve until SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--batched", action="store_true", help="hang-ups told in batches")
    parser.add_argument("--raw", action="store_true", help="no Trio: one epoll loop")
    parser.add_argument("--pump", action="store_true", help="one task relays every stream")
    args = parser.parse_args()
    floor = Floor(args.upstream_port, batched=args.batched, pump=args.pump)
    tune_gc()  # collected as trioproxy's process is
    with contextlib.suppress(KeyboardInterrupt):
        if args.raw:
            RawFloor(args.upstream_port).serve(args.port)
        elif args.batched or args.pump:
            trio.run(floor.serve_batched, args.port)
        else:
            trio.run(partial(trio.serve_tcp, floor.handle, args.port, host=LOOPBACK))


if __name__ == "__main__":
    main()
