"""The proxy's own CPU per request, without sockets: a quick check of the hot path.

Builds the real app (``create_app``) with one OpenAI-style backend whose H11Pool is
replaced by an in-memory answer (a 542-byte JSON body), then calls the ASGI app directly
— no server, no network — N times in one Trio run and prints the CPU microseconds per
request. What it measures is exactly what trioproxy adds on top of the server and the
HTTP exchange: validation, routing, the session, tracking, the relay's scopes and tasks.
It is the fast loop for trying a change (seconds, and steady to a few percent, where
the wrk scenarios of ``run.py`` vary by 10 % from round to round on a shared machine);
``run.py`` remains the measurement of record.

Run: ``python bench/overhead.py [--tracking on|off] [--access-log off|text|json]
[--requests N] [--repeat R]``; it prints the best and the median of R runs. The access
log is off by default, so figures compare with those from before it existed; ``text`` or
``json`` writes it to a file in a temporary directory (its cost, line formatting and
the write included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

from trioproxy.activity import set_activity_tracker
from trioproxy.app import TrioProxyApp, create_app
from trioproxy.cli import load_settings
from trioproxy.hangup import HANGUP, Hangup

_BODY = b"x" * 542
_RESPONSE_HEADERS = [
    (b"server", b"nginx"),
    (b"date", b"Sat, 28 Nov 2026 09:00:00 GMT"),
    (b"content-type", b"application/json"),
    (b"content-length", b"542"),
    (b"connection", b"keep-alive"),
]
_REQUEST = json.dumps(
    {"model": "bench-json", "messages": [{"role": "user", "content": "Say hello"}]}
).encode()
_SCOPE_HEADERS = [
    (b"host", b"127.0.0.1:8080"),
    (b"content-type", b"application/json"),
    (b"content-length", b"%d" % len(_REQUEST)),
]


class _Answer:
    """An upstream response already in memory."""

    status = 200
    headers = _RESPONSE_HEADERS

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        yield _BODY


class _Exchange:
    async def __aenter__(self) -> _Answer:
        return _Answer()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def build(tracking: bool, workdir: Path, access_log: str = "off") -> TrioProxyApp:
    """The real app, its one backend's pool answering from memory; its access log (if
    not ``off``) written to ``workdir/access.log``."""
    config = workdir / "overhead.yaml"
    config.write_text(
        "backends:\n  - name: json\n    type: openai\n"
        "    base_url: http://127.0.0.1:9/v1\n    models: [bench-json]\n"
    )
    argv = ["-c", str(config), "--access-log", access_log]
    argv += ["--access-log-file", str(workdir / "access.log")] if access_log != "off" else []
    argv += ["--enable-activity-tracking"] if tracking else []
    app = create_app(load_settings(argv, {}))
    pool = app.backends["json"].connector.pool  # type: ignore[attr-defined]
    pool.stream = lambda *args, **kwargs: _Exchange()
    return app


async def one(app: TrioProxyApp) -> None:
    """One request through the ASGI app, with hypercorn's kind of receive channel and the
    scope's :class:`~trioproxy.hangup.Hangup` of our server."""
    to_app, from_client = trio.open_memory_channel[dict[str, Any]](10)
    to_app.send_nowait({"type": "http.request", "body": _REQUEST, "more_body": False})
    hangup = Hangup()
    scope = {
        "type": "http",
        "path": "/v1/chat/completions",
        "method": "POST",
        "headers": _SCOPE_HEADERS,
        "client": ("127.0.0.1", 50000),
        HANGUP: hangup,
    }
    status = 0

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif not message.get("more_body", False):
            hangup.fire()  # as our server does
            to_app.send_nowait({"type": "http.disconnect"})

    await app(scope, from_client.receive, send)
    if status != 200:
        raise RuntimeError(f"the app answered {status}")


async def measure(app: TrioProxyApp, requests: int) -> float:
    """CPU microseconds per request over ``requests`` requests, after a warm-up."""
    set_activity_tracker(app.tracker)
    for _ in range(min(2000, requests)):
        await one(app)
    start = time.process_time()
    for _ in range(requests):
        await one(app)
    return (time.process_time() - start) / requests * 1e6


def main() -> None:
    """Print the best and the median CPU time per request."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking", choices=("on", "off"), default="on")
    parser.add_argument("--access-log", choices=("off", "text", "json"), default="off")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trioproxy-overhead-") as tmp:
        app = build(args.tracking == "on", Path(tmp), args.access_log)
        runs = [trio.run(measure, app, args.requests) for _ in range(args.repeat)]
    print(
        f"tracking {args.tracking}, access log {args.access_log}: "
        f"{min(runs):.1f} us per request at best, "
        f"median {statistics.median(runs):.1f} (of {args.repeat} runs of {args.requests})"
    )


if __name__ == "__main__":
    main()
