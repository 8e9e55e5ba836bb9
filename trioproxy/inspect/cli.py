"""``trioproxy-inspect``: the proxy's activity in a terminal, once or live.

Usage: ``trioproxy-inspect [URL] [--watch | --raw] [--interval S]`` (``--interval`` is the
refresh period of ``--watch``). Each refresh is one ``GET {URL}/v1/diagnostics`` with a
short timeout (:mod:`.fetch`); :mod:`.view` renders the answer. On a terminal the output
is rich's panel and table (``--watch``: redrawn in place with rich's ``Live``); piped or
to a file, plain text lines, one block per refresh.

How errors surface: every failure is one sentence, never a traceback. In one-shot mode
(and ``--raw``) it goes to stderr and the exit code is 1: proxy unreachable, HTTP 403
(diagnostics are loopback-only), activity tracking disabled (not for ``--raw``, whose
JSON says so itself), or an answer that is not the diagnostics JSON. In ``--watch`` mode
the sentence is shown in place of the table and polling goes on. Ctrl+C in watch mode
exits quietly with code 0; bad arguments exit 2 with argparse's message.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime

import httpx
from rich.console import Console, RenderableType
from rich.live import Live

from . import view
from .fetch import DIAGNOSTICS_PATH, InspectError, TrackingDisabled, fetch, open_client

DEFAULT_URL = "http://localhost:8000"
DEFAULT_INTERVAL = 1.0


# --- one shot ------------------------------------------------------------------------


def run_once(base_url: str, *, raw: bool, fancy: bool) -> int:
    """Print the diagnostics once (table, or JSON with ``raw``); return the exit code."""
    try:
        with open_client() as client:
            data, diagnostics = fetch(client, base_url)
        if not raw and not diagnostics.activity_tracking_enabled:
            raise TrackingDisabled(view.TRACKING_DISABLED)
    except InspectError as exc:
        print(exc, file=sys.stderr)
        return 1
    if raw:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif fancy:
        Console().print(view.render(diagnostics, source=base_url))
    else:
        print("\n".join(view.render_lines(diagnostics, source=base_url)))
    return 0


# --- watch ---------------------------------------------------------------------------


def footer(interval: float) -> str:
    """The watch mode's footer line, which states the refresh interval."""
    return f"Refreshing every {interval:g}s · Ctrl+C to quit"


def _retrying(error: InspectError, interval: float) -> str:
    now = datetime.now().strftime("%H:%M:%S")
    return f"{error.status}, retrying every {interval:g}s (last try {now})"


def _ticks(interval: float) -> Callable[[], None]:
    """A function that sleeps until the next multiple of ``interval`` since the start."""
    start = time.monotonic()

    def wait() -> None:
        elapsed = time.monotonic() - start
        time.sleep((math.floor(elapsed / interval) + 1) * interval - elapsed)

    return wait


def watch_rich(base_url: str, interval: float) -> int:
    """Redraw the view in place every ``interval`` seconds until Ctrl+C (exit 0)."""
    wait = _ticks(interval)
    try:
        with open_client() as client, Live(console=Console(), auto_refresh=False) as live:
            while True:
                live.update(_frame(client, base_url, interval), refresh=True)
                wait()
    except KeyboardInterrupt:
        return 0


def _frame(client: httpx.Client, base_url: str, interval: float) -> RenderableType:
    try:
        _, diagnostics = fetch(client, base_url)
        body = view.render(diagnostics, source=base_url)
    except InspectError as exc:
        body = view.render_problem(_retrying(exc, interval), str(exc), source=base_url)
    return view.with_footer(body, footer(interval))


def watch_plain(base_url: str, interval: float) -> int:
    """Print one plain text block per refresh until Ctrl+C (exit 0); flushed each time."""
    wait = _ticks(interval)
    try:
        with open_client() as client:
            while True:
                try:
                    _, diagnostics = fetch(client, base_url)
                    lines = view.render_lines(diagnostics, source=base_url)
                except InspectError as exc:
                    lines = [_retrying(exc, interval), str(exc)]
                print("\n".join([*lines, footer(interval), ""]), flush=True)
                wait()
    except KeyboardInterrupt:
        return 0


# --- entry point ---------------------------------------------------------------------


def _base_url(text: str) -> str:
    """Normalise the URL argument: default scheme http, no trailing slash or API path."""
    if "://" not in text:
        text = "http://" + text
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise argparse.ArgumentTypeError(f"not a URL: {text!r} ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"not an http(s) URL with a host: {text!r}")
    base = str(url.copy_with(query=None, fragment=None)).rstrip("/")
    return base.removesuffix(DIAGNOSTICS_PATH)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; invalid arguments exit 2 with a one-line message."""
    parser = argparse.ArgumentParser(
        description="Show what a trioproxy is doing: its active connections per backend, "
        "from GET URL/v1/diagnostics (answered to local clients only).",
    )
    parser.add_argument(
        "url",
        nargs="?",
        default=DEFAULT_URL,
        type=_base_url,
        metavar="URL",
        help=f"the proxy's base URL (default: {DEFAULT_URL})",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--watch", action="store_true", help="refresh in place until Ctrl+C")
    mode.add_argument(
        "--raw", action="store_true", help="print the diagnostics JSON, for scripts and jq"
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=DEFAULT_INTERVAL,
        metavar="S",
        help=f"seconds between refreshes with --watch (default: {DEFAULT_INTERVAL:g})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the tool with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 success (also Ctrl+C, or the reader closing the pipe, in watch mode);
    1 a failure explained on stderr; 2 bad arguments; 130 Ctrl+C during a one-shot.
    """
    args = build_parser().parse_args(argv)
    fancy = sys.stdout.isatty()
    try:
        if args.watch:
            if fancy:
                return watch_rich(args.url, args.interval)
            return watch_plain(args.url, args.interval)
        return run_once(args.url, raw=args.raw, fancy=fancy)
    except KeyboardInterrupt:  # watch mode handles its own; this is during a one-shot
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``). Point stdout at /dev/null so the interpreter's
        # final flush does not fail again; a cut watch is a normal end, a cut one-shot not.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0 if args.watch else 1


if __name__ == "__main__":
    sys.exit(main())
