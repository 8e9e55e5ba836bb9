"""Descriptors: does the proxy give its sockets back as soon as its clients close?

Two runs against a fresh ``trioproxy`` process on the embedded mock backend, each ending
with every client connection closed:

* **streams**: ``--streams`` (2,000) streaming requests held open at once, then all
  closed together;
* **requests**: ``--requests`` (20,000) short JSON requests, ``--concurrency`` (50) at a
  time, each on a connection of its own that the client closes after the answer (what
  curl does; a server that holds closed connections until its keep-alive timer fills its
  descriptor table this way).

For each run it reports the proxy's open descriptors (``/proc/PID/fd``) before the run
(the base), at their peak, and how long they took to be back at the base: for the streams
from the moment the client began closing them, for the requests from the last answer.
``tests/test_descriptors.py`` runs the same two shapes, smaller, in the suite.

Run: ``python bench/descriptors.py [--streams N] [--requests N] [--concurrency N]
[--source TREE]``; it exits 1 if a run failed requests or did not get back to its base.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import h11
import trio
from procs import LOOPBACK, Service, cpu_seconds, free_port, raise_fd_limit

CONFIG = """
backends:
  - name: slow
    type: mock
    chunks: 1000
    chunk_delay: {chunk_delay}
  - name: fast
    type: mock
    chunks: 1
    chunk_delay: 0
"""
STREAM_BODY = b'{"model": "slow:mock-model", "stream": true, "messages": []}'
JSON_BODY = b'{"model": "fast:mock-model", "messages": []}'
RELEASE_TIMEOUT = 120.0


@dataclass
class Run:
    """One run's figures: descriptors before, at the peak, after; seconds to the base."""

    name: str
    clients: int
    pid: int
    fds_base: int
    fds_peak: int = 0
    fds_after: int = 0
    release_seconds: float = float("nan")
    release_cpu_seconds: float = float("nan")
    failures: int = 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def request_bytes(body: bytes) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )


class Sampler:
    """Samples a process's descriptor count in a thread until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, fds(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_for_base(run: Run, pid: int, closed_at: float, cpu_at_close: float) -> None:
    """Poll until the proxy holds no more descriptors than at its base; record how long
    after ``closed_at`` (the held streams' closing began, or the last request ended),
    and the CPU time the proxy spent from then."""
    while True:
        now = time.monotonic()
        count = fds(pid)
        if count <= run.fds_base or now - closed_at > RELEASE_TIMEOUT:
            run.fds_after = count
            run.release_seconds = now - closed_at
            run.release_cpu_seconds = cpu_seconds(pid) - cpu_at_close
            return
        time.sleep(0.005)


async def hold_streams(port: int, count: int, run: Run) -> tuple[float, float]:
    """Open ``count`` streams, each until its first event, then close them all.

    Returns when the closing began, and the proxy's CPU time then: the proxy releases
    the first while the last are still being closed.
    """
    opened: list[trio.SocketStream] = []
    limit = trio.Semaphore(200)

    async def one() -> None:
        async with limit:
            try:
                stream = await trio.open_tcp_stream(LOOPBACK, port)
                await stream.send_all(request_bytes(STREAM_BODY))
                seen = b""
                while b"data: " not in seen:
                    data = await stream.receive_some(65536)
                    if not data:
                        raise OSError("closed before the first event")
                    seen += data
            except OSError:
                run.failures += 1
                return
            opened.append(stream)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    closing_from = time.monotonic(), cpu_seconds(run.pid)
    for stream in opened:  # all at once, as clients.hold_streams hangs up
        stream.socket.close()
    return closing_from


async def short_requests(port: int, count: int, concurrency: int, run: Run) -> tuple[float, float]:
    """``count`` JSON requests, each on its own connection.

    Returns when the last was closed, and the proxy's CPU time then.
    """
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                async with await trio.open_tcp_stream(LOOPBACK, port) as stream:
                    await stream.send_all(request_bytes(JSON_BODY))
                    conn = h11.Connection(h11.CLIENT)
                    conn.send(h11.Request(method="POST", target="/", headers=[("host", "x")]))
                    while True:
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            conn.receive_data(await stream.receive_some(65536))
                        elif isinstance(event, h11.EndOfMessage):
                            break
                        elif isinstance(event, h11.ConnectionClosed):
                            raise OSError("closed mid-answer")
            except (OSError, h11.ProtocolError):
                run.failures += 1

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return time.monotonic(), cpu_seconds(run.pid)


def measure(
    proxy: Service, name: str, clients: int, go: Callable[[Run], Awaitable[tuple[float, float]]]
) -> Run:
    """One run of ``go`` against ``proxy``, with its descriptor figures."""
    run = Run(name=name, clients=clients, pid=proxy.pid, fds_base=fds(proxy.pid))
    with Sampler(proxy.pid) as sampler:
        closed_at, cpu_at_close = trio.run(go, run)
    run.fds_peak = sampler.peak
    wait_for_base(run, proxy.pid, closed_at, cpu_at_close)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=0.05,
        help="seconds between a held stream's events (0.05: the proxy relays 40,000 events "
        "a second while 2,000 are held)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--source",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="the trioproxy tree to run (default: this one), to compare two versions",
    )
    args = parser.parse_args(argv)
    raise_fd_limit()
    root = args.source
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "trioproxy.yaml"
        config.write_text(CONFIG.format(chunk_delay=args.chunk_delay))
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(root)}
        argv_ = [sys.executable, "-m", "trioproxy", "--port", str(port), "-c", str(config)]
        with Service("proxy", argv_, port, Path(tmp) / "proxy.log", env=env) as proxy:
            runs = [
                measure(
                    proxy,
                    "streams",
                    args.streams,
                    lambda run: hold_streams(port, args.streams, run),
                ),
                measure(
                    proxy,
                    "requests",
                    args.requests,
                    lambda run: short_requests(port, args.requests, args.concurrency, run),
                ),
            ]
    if args.json:
        print(json.dumps([asdict(run) for run in runs], indent=2))
        return 0
    print(
        "run       clients  fds base  fds peak  fds after  back to base after  "
        "(proxy CPU)  failures"
    )
    for run in runs:
        print(
            f"{run.name:<9} {run.clients:>7,}  {run.fds_base:>8}  {run.fds_peak:>8}  "
            f"{run.fds_after:>9}  {run.release_seconds:>15.3f} s  "
            f"{run.release_cpu_seconds:>9.2f} s  {run.failures:>8}"
        )
    return 0 if all(r.fds_after <= r.fds_base and not r.failures for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
