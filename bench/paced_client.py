"""The relay-capacity scenario's client: held SSE streams counted from one epoll loop.

Opens ``--streams`` connections to ``--port`` (at most ``--parallel`` of them between
connecting and their response head), sends each a streaming POST for ``--chunks`` events
one every ``--delay`` seconds (the paced upstream's plan, in the body), and once every
stream has its response head — or ``--ramp-timeout`` passed — counts the SSE events the
streams receive (each ends in a blank line) for ``--hold`` seconds. Then it prints one
JSON object and closes every connection (a hang-up mid-stream).

Like ``paced_upstream.py``, it spends as little CPU per chunk as it can: no task, HTTP
library or per-event parsing, a ``recv`` and a ``bytes.count`` per read; the
relay-capacity figure is then the proxy's, not its load generator's. What it uses is in
the result (``cpu_seconds``, its own user and system time while holding).

Run: ``python bench/paced_client.py --port N [--streams 1000] [--chunks C] [--delay S]
[--hold S] [--ramp-timeout S] [--path P]``.
"""

from __future__ import annotations

import argparse
import errno
import json
import select
import socket
import sys
import time
from collections import Counter

from bodies import SLOW_MODEL, request_body
from clients import request_bytes
from procs import LOOPBACK, raise_fd_limit

RECEIVE_SIZE = 65536
TICK = 0.1  # seconds between polls while holding: each read then finds more events


class HeldStream:
    """One connection: its state (connecting, head, body), head bytes so far, last byte."""

    __slots__ = ("head", "last", "sock", "state")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = "connecting"
        self.head = b""
        self.last = 0  # the last byte received (an event's blank line may be split)


class Client:
    """The held streams and their counts; :meth:`run` does the whole scenario."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # Every stream's first event waits until all are open (paced_upstream.py).
        body = request_body(
            SLOW_MODEL,
            stream=True,
            bench_chunks=args.chunks,
            bench_delay=args.delay,
            bench_start_after=args.streams,
            bench_start_by=args.ramp_timeout,
        )
        self.request = request_bytes(LOOPBACK, args.port, args.path, body)
        self.epoll = select.epoll()
        self.held: dict[int, HeldStream] = {}
        self.to_open = args.streams
        self.opening = 0
        self.opened = 0
        self.failures: Counter[str] = Counter()
        self.holding = False
        self.events = 0
        self.received = 0

    def run(self) -> dict[str, object]:
        args = self.args
        start = time.monotonic()
        self._open_more()
        while (self.to_open or self.opening) and time.monotonic() - start < args.ramp_timeout:
            self._poll(0.1)
        held_from = time.monotonic()
        cpu = time.process_time()
        self.holding = True
        print(json.dumps({"event": "hold", "at": held_from}), flush=True)
        while (now := time.monotonic()) < held_from + args.hold:
            self._poll(held_from + args.hold - now)
            time.sleep(TICK)
        held_until = time.monotonic()
        cpu = time.process_time() - cpu
        for held in list(self.held.values()):
            self._drop(held)
        return {
            "event": "done",
            "requested": args.streams,
            "opened": self.opened,
            "failures": dict(self.failures),
            "ramp_seconds": held_from - start,
            "held_from": held_from,
            "held_until": held_until,
            "events": self.events,
            "bytes": self.received,
            "cpu_seconds": cpu,
        }

    def _open_more(self) -> None:
        while self.to_open and self.opening < self.args.parallel:
            self.to_open -= 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            code = sock.connect_ex((LOOPBACK, self.args.port))
            if code not in (0, errno.EINPROGRESS):
                self.failures[f"connect: {errno.errorcode.get(code, code)}"] += 1
                sock.close()
                continue
            self.opening += 1
            held = HeldStream(sock)
            self.held[sock.fileno()] = held
            self.epoll.register(sock.fileno(), select.EPOLLOUT)

    def _drop(self, held: HeldStream, why: str | None = None) -> None:
        if why is not None:
            self.failures[why] += 1
        if held.state != "body":
            self.opening -= 1
        fd = held.sock.fileno()
        self.held.pop(fd, None)
        self.epoll.unregister(fd)
        held.sock.close()

    def _poll(self, timeout: float) -> None:
        for fd, _ in self.epoll.poll(timeout):
            held = self.held.get(fd)
            if held is None:
                continue
            if held.state == "connecting":
                self._connected(held)
            else:
                self._read(held)
        if self.to_open:
            self._open_more()

    def _connected(self, held: HeldStream) -> None:
        code = held.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._drop(held, f"connect: {errno.errorcode.get(code, code)}")
            return
        try:
            held.sock.send(self.request)  # a few hundred bytes: a new socket takes them
        except OSError as exc:
            self._drop(held, f"send: {type(exc).__name__}")
            return
        held.state = "head"
        self.epoll.modify(held.sock.fileno(), select.EPOLLIN)

    def _read(self, held: HeldStream) -> None:
        try:
            data = held.sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._drop(held, f"{held.state}: {type(exc).__name__}")
            return
        if not data:
            self._drop(held, f"closed in the {held.state}")
            return
        if held.state == "head":
            held.head += data
            head, found, data = held.head.partition(b"\r\n\r\n")
            if not found:
                return
            if head[9:12] != b"200":
                self._drop(held, f"HTTP {head[9:12].decode(errors='replace')}")
                return
            held.state = "body"
            held.head = b""
            self.opening -= 1
            self.opened += 1
            if not data:
                return
        if self.holding:
            self.received += len(data)
            # SSE events end in a blank line; the chunked framing has no "\n\n" of its own.
            self.events += data.count(b"\n\n") + (held.last == 10 and data[0] == 10)
        held.last = data[-1]


def main() -> None:
    """Run the scenario and print its result as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--ramp-timeout", type=float, default=60.0)
    parser.add_argument("--parallel", type=int, default=64)
    args = parser.parse_args()
    raise_fd_limit()
    result = Client(args).run()
    json.dump(result, sys.stdout)
    print(flush=True)


if __name__ == "__main__":
    main()
