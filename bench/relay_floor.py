"""The relay's own floor: a minimal relay over trioproxy's H11Pool, as a bare ASGI app.

It reads the request body and relays it to nginx with ``H11Pool`` (the transport
trioproxy uses), answering with the upstream's status, content headers and body chunk by
chunk — no routing, validation, session, tracking, disconnect watching or error
handling. It is what issue 6's calibration calls "a minimal connection pool speaking h11
directly over Trio streams": the cost of relaying at all, so the bench can say how much of
trioproxy's cost is its own features and how much the second HTTP exchange.

Run: ``python bench/relay_floor.py --port N --upstream http://127.0.0.1:M``.
"""

from __future__ import annotations

import argparse
import logging
from functools import partial

import trio
from floor_app import Message, Receive, Send, config, read_request
from hypercorn.trio import serve

from trioproxy.backends.h11pool import H11Pool

_DROP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"date", b"server"})
_HEADERS = [(b"content-type", b"application/json")]


class RelayFloor:
    """Relays every POST to the same path on the upstream."""

    def __init__(self, upstream: str) -> None:
        self.pool = H11Pool(upstream, max_connections=10_000, max_keepalive=256)

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        body = await read_request(scope, receive, send)
        if body is None:
            return
        async with self.pool.stream("POST", scope["path"], headers=_HEADERS, body=body) as response:
            headers = [(k, v) for k, v in response.headers if k not in _DROP]
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def main() -> None:
    """Serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's root URL")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    trio.run(partial(serve, RelayFloor(args.upstream), config(args.port)))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
