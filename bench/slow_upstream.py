"""The slow fake upstream of the concurrency scenarios: SSE streams paced by the clock.

A small HTTP/1.1 server on Trio and h11. Every POST is answered with an OpenAI-style
``chat.completion.chunk`` stream of ``bench_chunks`` events, one every ``bench_delay``
seconds (both top-level fields of the request body; defaults from the command line),
then ``data: [DONE]``. Chunk ``i`` is due ``i * delay`` after the request arrived; each
event carries ``"due"`` (that schedule) and ``"sent"`` (when it was written), both
``time.monotonic()`` seconds — one clock for every process on the machine — so a client
can tell how late each chunk reaches it, and how much of that the upstream itself added.

Run: ``python bench/slow_upstream.py --port N [--chunks C] [--delay S]``.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import h11
import trio
from bodies import SLOW_MODEL, SSE_DONE, sse_event

RECEIVE_SIZE = 65536
MAX_BODY = 1 << 20


async def _read_request(
    stream: trio.SocketStream, conn: h11.Connection
) -> tuple[h11.Request, bytes] | None:
    """The next request and its body, or None when the client closed the connection."""
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(RECEIVE_SIZE)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                return None
        elif isinstance(event, h11.EndOfMessage) and request is not None:
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed | h11.PAUSED):
            return None


def _plan(body: bytes, chunks: int, delay: float) -> tuple[int, float]:
    try:
        payload = json.loads(body)
    except ValueError:
        return chunks, delay
    if not isinstance(payload, dict):
        return chunks, delay
    return int(payload.get("bench_chunks", chunks)), float(payload.get("bench_delay", delay))


async def handle(stream: trio.SocketStream, *, chunks: int, delay: float) -> None:
    """Serve requests on one connection (keep-alive) until the client goes away."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            got = await _read_request(stream, conn)
            if got is None:
                return
            _, body = got
            count, pause = _plan(body, chunks, delay)
            start = time.monotonic()
            head = h11.Response(
                status_code=200,
                headers=[("content-type", "text/event-stream"), ("cache-control", "no-cache")],
            )
            await stream.send_all(conn.send(head) or b"")
            for i in range(count):
                due = start + i * pause
                await trio.sleep(max(0.0, due - time.monotonic()))
                sent = time.monotonic()
                event = sse_event(i, SLOW_MODEL, f',"due":{due:.6f},"sent":{sent:.6f}')
                await stream.send_all(conn.send(h11.Data(data=event)) or b"")
            await stream.send_all(conn.send(h11.Data(data=SSE_DONE)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        return
    finally:
        await trio.aclose_forcefully(stream)


async def serve(
    port: int,
    *,
    chunks: int,
    delay: float,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``127.0.0.1:port`` (0: any free port); ``started()`` gets the port."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1", backlog=4096)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(handle, chunks=chunks, delay=delay), listeners)


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20, help="events per stream")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds between events")
    args = parser.parse_args()
    trio.run(partial(serve, args.port, chunks=args.chunks, delay=args.delay))


if __name__ == "__main__":
    main()
