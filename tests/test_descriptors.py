"""A real proxy process gives its descriptors back as soon as its clients close.

The shapes of ``bench/descriptors.py`` (2,000 streams, 20,000 requests), small enough for
the suite: streams held open and then all reset at once, and short requests each on a
connection of its own that the client closes after the answer. The proxy's open
descriptors (``/proc/PID/fd``) must come back to what they were before, long before
hypercorn's 75 s keep-alive timer would have let go of a held connection, and must not
pile up while the requests run.

Nothing announces that a descriptor was closed, so the test polls ``/proc``
(``tests/fdcount.py``, up to a guard far below 75 s); the bench measures how fast.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import h11
import trio

from tests.fdcount import open_fds, wait_for_fds
from tests.proxyprocess import trioproxy_process

GUARD = 20  # seconds; a held connection is let go of after 75
STREAMS = 200
REQUESTS = 600
CONCURRENCY = 20
CONFIG = """
backends:
  - name: slow
    type: mock
    chunks: 1000
    chunk_delay: 0.05
  - name: fast
    type: mock
    chunks: 1
    chunk_delay: 0
"""


def request_bytes(body: bytes) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )


async def test_descriptors_come_back_after_streams_are_reset_and_requests_closed(
    tmp_path: Path,
) -> None:
    # 800 access-log lines would fill the stderr pipe nobody reads here and block the
    # proxy on its write; the log goes to a file instead.
    log_file = str(tmp_path / "access.log")
    async with trioproxy_process(tmp_path, CONFIG, "--access-log-file", log_file) as proxy:
        pid = proxy.proc.pid
        host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
        base = open_fds(pid)

        # Streams: each open until its first event, then all reset together.
        streams: list[trio.SocketStream] = []

        async def open_stream() -> None:
            stream = await trio.open_tcp_stream(host, int(port))
            streams.append(stream)
            await stream.send_all(request_bytes(b'{"model": "slow:mock-model", "stream": true}'))
            seen = b""
            while b"data: " not in seen:
                seen += await stream.receive_some()

        try:
            async with trio.open_nursery() as nursery:
                for _ in range(STREAMS):
                    nursery.start_soon(open_stream)
        finally:
            for stream in streams:
                linger = struct.pack("ii", 1, 0)
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                await trio.aclose_forcefully(stream)
        await wait_for_fds(base, within=GUARD, pid=pid)

        # Requests: each on its own connection, closed by the client after the answer.
        remaining = REQUESTS
        peak = 0

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with await trio.open_tcp_stream(host, int(port)) as stream:
                    await stream.send_all(request_bytes(b'{"model": "fast:mock-model"}'))
                    conn = h11.Connection(h11.CLIENT)
                    conn.send(h11.Request(method="POST", target="/", headers=[("host", "x")]))
                    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                        if event is h11.NEED_DATA:
                            conn.receive_data(await stream.receive_some())
                        elif isinstance(event, h11.Response):
                            assert event.status_code == 200

        async def sample(task_status: trio.TaskStatus[None]) -> None:
            nonlocal peak
            task_status.started()
            while True:
                peak = max(peak, open_fds(pid))
                await trio.sleep(0.01)

        async with trio.open_nursery() as nursery:
            await nursery.start(sample)
            async with trio.open_nursery() as clients:
                for _ in range(CONCURRENCY):
                    clients.start_soon(client)
            nursery.cancel_scope.cancel()
        await wait_for_fds(base, within=GUARD, pid=pid)
    # Held connections would pile up towards REQUESTS; released ones stay near CONCURRENCY.
    assert peak <= base + 2 * CONCURRENCY, (base, peak)
