"""The server's own floor: hypercorn's trio worker with a minimal ASGI app.

It reads the request body and answers the canned body — the chat completion for paths
under ``/json/``, the 40-chunk SSE stream (in one body message, as nginx sends it) for
paths under ``/sse/`` — with the hypercorn settings trioproxy uses. Whatever trioproxy
costs beyond this is the proxy's own work.

Run: ``python bench/floor_app.py --port N --json FILE --sse FILE``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def read_request(scope: Message, receive: Receive, send: Send) -> bytes | None:
    """An HTTP request's body; None for the lifespan (answered here) or a disconnect."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return None
    if scope["type"] != "http":
        return None
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


class FloorApp:
    """An ASGI app that answers every POST with one of two canned bodies."""

    def __init__(self, json_body: bytes, sse_body: bytes) -> None:
        self.json = self._response(json_body, b"application/json")
        self.sse = self._response(sse_body, b"text/event-stream")

    @staticmethod
    def _response(body: bytes, content_type: bytes) -> tuple[Message, Message]:
        start: Message = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
        return start, {"type": "http.response.body", "body": body, "more_body": False}

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if await read_request(scope, receive, send) is None:
            return
        start, body = self.sse if scope["path"].startswith("/sse/") else self.json
        await send(start)
        await send(body)


def config(port: int) -> Config:
    """hypercorn settings as trioproxy's ``hypercorn_config`` sets them."""
    cfg = Config()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.include_server_header = False
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("hypercorn.error")
    cfg.keep_alive_timeout = 75
    return cfg


def main() -> None:
    """Serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--json", type=Path, required=True, help="the chat completion body")
    parser.add_argument("--sse", type=Path, required=True, help="the SSE stream body")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = FloorApp(args.json.read_bytes(), args.sse.read_bytes())
    trio.run(partial(serve, app, config(args.port)))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
