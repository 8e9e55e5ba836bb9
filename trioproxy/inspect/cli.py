"""``trioproxy-inspect``: one or several proxies' activity in a terminal, once or live.

Usage::

    trioproxy-inspect [URL ...] [--watch | --raw] [--interval S] [--recent K]
                      [--admin-key-env VAR]
    trioproxy-inspect --cancel INSTANCE SESSION [URL] [--admin-key-env VAR]

Each refresh polls every URL at once (:mod:`.poll`): ``GET {URL}/v1/diagnostics`` and,
unless ``--recent 0``, ``GET {URL}/v1/diagnostics/recent?limit=K``, with a short timeout;
:mod:`.view` renders the answers merged. On a terminal the output is rich's panel and
tables (``--watch``: redrawn in place with rich's ``Live``); piped or to a file, plain
text lines, one block per refresh. ``--admin-key-env VAR`` sends the admin key held in
the environment variable VAR to every URL (``Authorization: Bearer``), for a proxy on
another host; the key is never printed.

How errors surface: every failure is one sentence, never a traceback. In one-shot mode
(and ``--raw``) with one URL it goes to stderr and the exit code is 1: proxy
unreachable, HTTP 403, activity tracking disabled (not for ``--raw``, whose JSON says so
itself), or an answer that is not the diagnostics JSON. With several URLs, the view
shows those that answered and names the others with the reason; the exit code is 1 only
if none answered (with activity tracking on; for ``--raw``, at all). In ``--watch`` mode
the sentences are shown on screen and polling goes on. ``--cancel`` prints what it did,
or on stderr why it did nothing (exit 1). Ctrl+C in watch mode exits quietly with code
0; bad arguments exit 2 with argparse's message.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import httpx
from rich.console import Console, RenderableType
from rich.live import Live

from . import view
from .cancel import run_cancel
from .document import Diagnostics
from .fetch import DIAGNOSTICS_PATH, InspectError
from .merge import DEFAULT_RECENT, ProxyAnswer, Screen, rx_rates
from .poll import Poller

DEFAULT_URL = "http://localhost:8000"
DEFAULT_INTERVAL = 1.0


# --- one shot ------------------------------------------------------------------------


def run_once(
    urls: Sequence[str],
    *,
    raw: bool,
    fancy: bool,
    recent: int = DEFAULT_RECENT,
    admin_key: str | None = None,
) -> int:
    """Print the view once (or the JSON with ``raw``); return the exit code."""
    with Poller(urls, recent=0 if raw else recent, admin_key=admin_key) as poller:
        answers = poller.poll()
    if raw:
        return _print_raw(answers)
    screen = Screen(answers, recent=recent)
    if not screen.answering:
        for answer in answers:
            print(answer.failure, file=sys.stderr)
        return 1
    if fancy:
        Console().print(view.render(screen))
    else:
        print("\n".join(view.render_lines(screen)))
    return 0


def _print_raw(answers: Sequence[ProxyAnswer]) -> int:
    """One URL: its diagnostics JSON. Several: an object of them keyed by URL, a proxy
    that did not answer as ``{"error": {"message", "status"}}``."""
    if len(answers) == 1:
        (answer,) = answers
        if answer.problem is not None:
            print(answer.problem, file=sys.stderr)
            return 1
        data = answer.data
    else:
        data = {
            a.url: a.data
            if a.problem is None
            else {"error": {"message": str(a.problem), "status": a.problem.status}}
            for a in answers
        }
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0 if any(a.problem is None for a in answers) else 1


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


class Refresher:
    """Polls the proxies and keeps each one's last diagnostics, for the RX rates."""

    def __init__(self, poller: Poller, recent: int) -> None:
        self._poller = poller
        self._recent = recent
        self._previous: dict[str, Diagnostics] = {}

    def screen(self) -> Screen:
        """One refresh: every proxy's answer, with the rates since its last answer."""
        answers = self._poller.poll()
        rates = rx_rates(self._previous, answers)
        for answer in answers:
            if answer.diagnostics is not None:
                self._previous[answer.url] = answer.diagnostics
        return Screen(answers, rates, self._recent)


def _single_problem(screen: Screen) -> InspectError | None:
    """With one URL, the error of a refresh that got no diagnostics (shown alone)."""
    return None if screen.several else screen.answers[0].problem


def watch_rich(
    urls: Sequence[str], interval: float, recent: int = DEFAULT_RECENT, admin_key: str | None = None
) -> int:
    """Redraw the view in place every ``interval`` seconds until Ctrl+C (exit 0)."""
    wait = _ticks(interval)
    try:
        with (
            Poller(urls, recent=recent, admin_key=admin_key) as poller,
            Live(console=Console(), auto_refresh=False) as live,
        ):
            refresher = Refresher(poller, recent)
            while True:
                live.update(_frame(refresher.screen(), interval), refresh=True)
                wait()
    except KeyboardInterrupt:
        return 0


def _frame(screen: Screen, interval: float) -> RenderableType:
    problem = _single_problem(screen)
    if problem is not None:
        source = screen.answers[0].url
        body = view.render_problem(_retrying(problem, interval), str(problem), source=source)
    else:
        body = view.render(screen)
    return view.with_footer(body, footer(interval))


def watch_plain(
    urls: Sequence[str], interval: float, recent: int = DEFAULT_RECENT, admin_key: str | None = None
) -> int:
    """Print one plain text block per refresh until Ctrl+C (exit 0); flushed each time."""
    wait = _ticks(interval)
    try:
        with Poller(urls, recent=recent, admin_key=admin_key) as poller:
            refresher = Refresher(poller, recent)
            while True:
                screen = refresher.screen()
                problem = _single_problem(screen)
                if problem is not None:
                    lines = [_retrying(problem, interval), str(problem)]
                else:
                    lines = view.render_lines(screen)
                print("\n".join([*lines, footer(interval), ""]), flush=True)
                wait()
    except KeyboardInterrupt:
        return 0


# --- entry point ---------------------------------------------------------------------


#: The shortest --interval: ten polls a second.
SHORTEST_INTERVAL = 0.1


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
    if url.port is not None and not 0 < url.port < 65536:
        raise argparse.ArgumentTypeError(f"not a port number in {text!r}: {url.port}")
    base = str(url.copy_with(query=None, fragment=None)).rstrip("/")
    return base.removesuffix(DIAGNOSTICS_PATH)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    if value < SHORTEST_INTERVAL:
        # Every poll builds the whole document on the proxy's event loop.
        raise argparse.ArgumentTypeError(
            f"must be {SHORTEST_INTERVAL:g} s or more (each poll costs the proxy), not {text}"
        )
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of 0 or more, not {text!r}")
    return value


def admin_key_from(variable: str, environ: dict[str, str]) -> str:
    """The admin key held in ``environ[variable]``: its first comma-separated key, so the
    proxy's own ``--admin-keys-env`` variable works too.

    Raises:
        ValueError: the variable is unset or empty, or its key is not printable ASCII
            without spaces; the message names the variable, never the value.
    """
    key = next((k.strip() for k in environ.get(variable, "").split(",") if k.strip()), "")
    if not key:
        raise ValueError(f"the environment variable {variable} is not set or empty")
    if not (key.isascii() and key.isprintable()) or " " in key:
        raise ValueError(
            f"the environment variable {variable} does not hold a key "
            "(printable ASCII without spaces)"
        )
    return key


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; invalid arguments exit 2 with a one-line message."""
    parser = argparse.ArgumentParser(
        description="Show what trioproxies are doing: their active connections per backend "
        "and their latest finished requests, from GET URL/v1/diagnostics (answered to "
        "local clients, or to those with an admin key); or cancel a stuck connection.",
    )
    parser.add_argument(
        "urls",
        nargs="*",
        type=_base_url,
        metavar="URL",
        help=f"a proxy's base URL (default: {DEFAULT_URL}); several are merged into one view",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--watch", action="store_true", help="refresh in place until Ctrl+C")
    mode.add_argument(
        "--raw",
        action="store_true",
        help="print the diagnostics JSON, for scripts and jq (several URLs: keyed by URL)",
    )
    mode.add_argument(
        "--cancel",
        nargs=2,
        metavar=("INSTANCE", "SESSION"),
        help="cancel every request of this connection (SESSION may be the view's "
        "shortened id, ending with …) on the one URL given",
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=DEFAULT_INTERVAL,
        metavar="S",
        help=f"seconds between refreshes with --watch (default: {DEFAULT_INTERVAL:g})",
    )
    parser.add_argument(
        "--recent",
        type=_count,
        default=DEFAULT_RECENT,
        metavar="K",
        help=f"show the latest K finished requests (default: {DEFAULT_RECENT}; 0: none)",
    )
    parser.add_argument(
        "--admin-key-env",
        metavar="VAR",
        help="send the admin key in environment variable VAR to every URL "
        "(for a proxy started with --admin-keys-env, queried from another host)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the tool with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 success (also Ctrl+C, or the reader closing the pipe, in watch mode);
    1 a failure explained on stderr; 2 bad arguments; 130 Ctrl+C during a one-shot.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    urls: list[str] = list(dict.fromkeys(args.urls)) or [DEFAULT_URL]
    key = None
    if args.admin_key_env is not None:
        try:
            key = admin_key_from(args.admin_key_env, dict(os.environ))
        except ValueError as exc:
            parser.error(f"argument --admin-key-env: {exc}")
    if args.cancel is not None and len(urls) > 1:
        parser.error("argument --cancel: give one URL, the proxy holding the connection")
    fancy = sys.stdout.isatty()
    try:
        if args.cancel is not None:
            instance, session = args.cancel
            return run_cancel(urls[0], instance, session, key)
        if args.watch:
            if fancy:
                return watch_rich(urls, args.interval, args.recent, key)
            return watch_plain(urls, args.interval, args.recent, key)
        return run_once(urls, raw=args.raw, fancy=fancy, recent=args.recent, admin_key=key)
    except KeyboardInterrupt:  # watch mode handles its own; this is during a one-shot
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``). Point stdout at /dev/null so the interpreter's
        # final flush does not fail again; a cut watch is a normal end, a cut one-shot not.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0 if args.watch else 1


if __name__ == "__main__":
    sys.exit(main())
