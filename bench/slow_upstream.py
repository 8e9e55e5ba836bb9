"""The slow fake upstream of the concurrency scenarios: SSE streams paced by the clock.

A handler on the test suite's small HTTP/1.1 server (``tests/h11server.py``, Trio and
h11). Every POST is answered with an OpenAI-style ``chat.completion.chunk`` stream of
``bench_chunks`` events, one every ``bench_delay`` seconds (both top-level fields of the
request body; defaults from the command line), then ``data: [DONE]``. Chunk ``i`` is due
``i * delay`` after the request arrived; each event carries ``"due"`` (that schedule) and
``"sent"`` (when it was written), both ``time.monotonic()`` seconds — one clock for every
process on the machine — so a client can tell how late each chunk reaches it, and how
much of that the upstream itself added.

Run: ``python bench/slow_upstream.py --port N [--chunks C] [--delay S]``.
"""

from __future__ import annotations

import json
import sys
import time
from functools import partial
from pathlib import Path

import h11
import trio
from bodies import SLOW_MODEL, SSE_DONE, sse_event, upstream_arguments

# Run as a script, this directory is on sys.path but the repository root, which holds the
# server core, is not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.h11server import H11Server, ServerConn

MAX_BODY = 1 << 20
HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def _plan(body: bytes, chunks: int, delay: float) -> tuple[int, float]:
    try:
        payload = json.loads(body)
    except ValueError:
        return chunks, delay
    if not isinstance(payload, dict):
        return chunks, delay
    return int(payload.get("bench_chunks", chunks)), float(payload.get("bench_delay", delay))


async def answer(
    conn: ServerConn, request: h11.Request, body: bytes, *, chunks: int, delay: float
) -> None:
    """Stream one answer, each event at its due time (the connection then stays open)."""
    count, pause = _plan(body, chunks, delay)
    start = time.monotonic()
    await conn.send_head(200, HEADERS)
    for i in range(count):
        due = start + i * pause
        await trio.sleep(max(0.0, due - time.monotonic()))
        sent = time.monotonic()
        event = sse_event(i, SLOW_MODEL, f',"due":{due:.6f},"sent":{sent:.6f}')
        await conn.send(h11.Data(data=event))
    await conn.send(h11.Data(data=SSE_DONE))
    await conn.send(h11.EndOfMessage())


async def serve(
    port: int,
    *,
    chunks: int,
    delay: float,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``127.0.0.1:port`` (0: any free port); ``started()`` gets the port."""
    # Thousands of streams connect at once: the accept queue must hold them.
    server = H11Server(partial(answer, chunks=chunks, delay=delay), backlog=4096, max_body=MAX_BODY)
    await server.serve(port, task_status=task_status)


def main() -> None:
    """Serve until killed."""
    args = upstream_arguments(__doc__.splitlines()[0])
    trio.run(partial(serve, args.port, chunks=args.chunks, delay=args.delay))


if __name__ == "__main__":
    main()
