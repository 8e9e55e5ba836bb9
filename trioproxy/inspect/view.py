"""Rendering of one refresh for the terminal view (``trioproxy-inspect``).

Everything here is pure: no I/O, no clock. The input is a
:class:`~trioproxy.inspect.merge.Screen` — one or several proxies' answers, already
read and checked. The two tables are declared once each, as columns
(:mod:`.tables`): :data:`TABLE`, the live connections, and :func:`recent_table`, the
latest finished requests. Both renderers follow them:

- :func:`render` gives a rich renderable (header panel, tables, notes) for a terminal,
  fitted to its width (columns are left out, then shortened; see :mod:`.tables`);
- :func:`render_lines` gives the same content as plain text lines, every column, without
  escape codes, for pipes and files.

With several proxies a ``Proxy`` column leads both tables, the header sums what the
proxies that answered report and has a line per proxy, and each proxy that gave
nothing is named with the reason in a note. The ``RX/s`` column needs two refreshes,
so it is there in watch mode only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import tzinfo
from typing import TypeVar

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .formatting import (
    TRANSLATED,
    backend_name,
    format_bytes,
    format_bytes_short,
    format_clock,
    format_duration,
    format_ttfb,
    printable,
    short_endpoint,
    short_session,
)
from .merge import Entry, Finished, Screen, entries, finished, totals, tracking_disabled
from .tables import Column, FittedTable, plain_table

#: A connection with no byte in either direction for longer than this is flagged idle.
IDLE_AFTER_SECONDS = 5.0

NO_CONNECTIONS = "No active connections"
NO_FINISHED = "No finished requests yet"
RECENT_HEADING = "Recently finished, newest first"
TRANSLATED_NOTE = f"{TRANSLATED} translated: the backend speaks the other API"
TRACKING_DISABLED = tracking_disabled()

# A cell the table has no value for yet: the first byte of a request still waiting.
WAITING = "…"

# A proxy's name, cut, may no longer tell it from the others (127.0.0.1:8001 and :8002):
# columns are left out before it is shortened below an IPv4 address and a port.
PROXY_MIN = len("255.255.255.255:65535")
# What went wrong with a request is worth more than its byte counts and timings.
DETAIL_MIN = 24
#: A backend's or session's name shortened no further than this on a narrow terminal
#: (a long backend name cut every number of the table in 60 columns).
NAME_MIN = 8

_TYPES = {"streaming": "stream", "non_streaming": "json"}

_REASONS = {
    "client": "client hung up",
    "operator": "by an operator",
    "shutdown": "at shutdown",
    "proxy": "by the proxy",
}


# --- the tables ----------------------------------------------------------------------


R = TypeVar("R")


def name_column(title: str, cell: Callable[[R], str]) -> Column[R]:
    """A column of names (backends, sessions): they tell the rows apart, so they are
    shortened last, and below :data:`NAME_MIN` only when nothing else is left to cut."""
    return Column(title, cell, gives_way=True, min_width=NAME_MIN, last=True)


def _rate(entry: Entry) -> str:
    return "" if entry.rx_rate is None else format_bytes_short(entry.rx_rate)


#: The live connections, left to right. A new column is one row here. ``Proxy`` is shown
#: with several proxies only, ``RX/s`` in watch mode only.
TABLE: tuple[Column[Entry], ...] = (
    Column("Proxy", lambda e: e.proxy or "", gives_way=True, min_width=PROXY_MIN),
    name_column("Backend", lambda e: backend_name(e.backend, e.connection.translated)),
    name_column("Session", lambda e: short_session(printable(e.connection.session_id))),
    Column("API", lambda e: short_endpoint(e.connection.endpoint), drop_rank=4),
    Column(
        "Type",
        lambda e: _TYPES.get(e.connection.connection_type, e.connection.connection_type),
        drop_rank=2,
    ),
    Column("Model", lambda e: printable(e.connection.model), gives_way=True),
    Column("Duration", lambda e: format_duration(e.connection.duration_seconds)),
    Column(
        "TTFB",
        lambda e: format_ttfb(e.connection.time_to_first_byte_seconds, WAITING),
        numeric=True,
        drop_rank=5,
    ),
    Column("HTTP", lambda e: str(e.connection.upstream_status or ""), drop_rank=1),
    Column("RX", lambda e: format_bytes_short(e.connection.bytes_rx), numeric=True),
    Column("RX/s", _rate, numeric=True),
    Column("TX", lambda e: format_bytes_short(e.connection.bytes_tx), numeric=True, drop_rank=3),
)

COLUMNS = tuple(column.title for column in TABLE)


def _detail(request: Finished) -> str:
    reason = request.request.reason
    parts = [_REASONS.get(reason, reason) if reason else None, request.request.error]
    return "; ".join(printable(part) for part in parts if part)


def recent_table(tz: tzinfo | None = None) -> tuple[Column[Finished], ...]:
    """The finished requests, left to right; ``Ended`` in ``tz`` (default: local time)."""
    return (
        Column("Ended", lambda f: format_clock(f.ended_at, tz)),
        Column("Proxy", lambda f: f.proxy or "", gives_way=True, min_width=PROXY_MIN),
        name_column("Backend", lambda f: backend_name(f.request.instance, f.request.translated)),
        name_column("Session", lambda f: short_session(printable(f.request.session_id))),
        Column("API", lambda f: short_endpoint(f.request.endpoint), drop_rank=4),
        Column("Model", lambda f: printable(f.request.model), gives_way=True),
        Column("Duration", lambda f: format_duration(f.request.duration_seconds)),
        Column(
            "TTFB",
            lambda f: format_ttfb(f.request.time_to_first_byte_seconds, "-"),
            numeric=True,
            drop_rank=3,
        ),
        Column("HTTP", lambda f: str(f.request.upstream_status or "-"), drop_rank=5),
        Column("RX", lambda f: format_bytes_short(f.request.bytes_rx), numeric=True, drop_rank=2),
        Column("TX", lambda f: format_bytes_short(f.request.bytes_tx), numeric=True, drop_rank=1),
        Column("Outcome", lambda f: printable(f.request.outcome)),
        Column("Detail", _detail, gives_way=True, min_width=DETAIL_MIN),
    )


def _columns(columns: Sequence[Column[R]], screen: Screen) -> list[Column[R]]:
    def shown(column: Column[R]) -> bool:
        if column.title == "Proxy":
            return screen.several
        if column.title == "RX/s":
            return screen.rates is not None
        return True

    return [column for column in columns if shown(column)]


# Outcomes of finished requests drawn in a colour; the others in the terminal's own.
_OUTCOME_STYLES = {"error": "red", "stale": "bold red", "cancelled": "yellow"}


def live_rows(
    screen: Screen, idle_after: float = IDLE_AFTER_SECONDS, *, idle_below: bool = False
) -> tuple[list[Column[Entry]], list[list[str]], list[bool]]:
    """The live table: its columns, its cells, and per row whether it is idle.

    An idle connection's duration is followed by ``(idle 42.0s)``, or with ``idle_below``
    by ``idle 42.0s`` on a line of its own, which keeps the column narrow.
    """
    columns = _columns(TABLE, screen)
    cells, idle = [], []
    for entry in entries(screen):
        row = [column.cell(entry) for column in columns]
        seconds = entry.connection.idle_seconds
        idle.append(seconds > idle_after)
        if seconds > idle_after:
            marker = format_duration(seconds)
            at = [c.title for c in columns].index("Duration")
            row[at] += f"\nidle {marker}" if idle_below else f" (idle {marker})"
        cells.append(row)
    return columns, cells, idle


def recent_rows(
    screen: Screen, tz: tzinfo | None = None
) -> tuple[list[Column[Finished]], list[list[str]], list[str]]:
    """The recent table: its columns, its cells, and each row's outcome."""
    columns = _columns(recent_table(tz), screen)
    rows = finished(screen)
    return (
        columns,
        [[column.cell(f) for column in columns] for f in rows],
        [f.request.outcome for f in rows],
    )


# --- what is shown, independent of how -----------------------------------------------


def title(screen: Screen) -> str:
    """The view's title: the proxy's URL, or how many proxies it merges."""
    if screen.several:
        return f"trioproxy activity · {len(screen.answers)} proxies"
    return f"trioproxy activity · {screen.answers[0].url}"


def summary(screen: Screen, tz: tzinfo | None = None) -> list[tuple[str, str]]:
    """The header's (label, value) pairs: active connections, totals, update time."""
    t = totals(screen)
    return [
        ("Active Connections", str(t.active)),
        ("Total RX", format_bytes(t.bytes_rx)),
        ("Total TX", format_bytes(t.bytes_tx)),
        ("Updated", format_clock(t.timestamp, tz) if t.timestamp is not None else "-"),
    ]


def lifetime_line(screen: Screen) -> str | None:
    """``Since start: …`` from the lifetime counters (summed), or None without them."""
    life = totals(screen).lifetime
    if life is None:
        return None
    return (
        f"Since start: {life.requests} requests, {life.completed} completed, "
        f"{life.errors} errors, {life.cancelled} cancelled, {life.stale} stale"
    )


def proxy_lines(screen: Screen) -> list[tuple[str, bool]]:
    """With several proxies, a line per proxy — its name and state — and whether it is
    up (answering with tracking on); nothing with one proxy."""
    if not screen.several:
        return []
    width = max(len(label) for label in screen.labels.values())
    lines = []
    for answer in screen.answers:
        label = screen.labels[answer.url].ljust(width)
        failure = answer.failure
        if failure is not None:
            lines.append((f"{label}  {failure.status}", False))
            continue
        assert answer.diagnostics is not None
        count = sum(
            i.activity.active_connections for i in answer.diagnostics.instances if i.activity
        )
        lines.append((f"{label}  up, {count} connection{'' if count == 1 else 's'}", True))
    return lines


def notes(screen: Screen) -> list[str]:
    """Lines about what the view lacks: each proxy that gave nothing (with several) and
    why, workers of a proxy whose part is missing, each backend that cannot take traffic
    now (rate limited, not functional), and finished requests that could not be read."""
    result = []
    for answer in screen.answers:
        failure = answer.failure
        if failure is not None:
            if screen.several:
                result.append(str(failure))
            continue
        where = f"{screen.labels[answer.url]} " if screen.several else ""
        assert answer.diagnostics is not None
        missing = answer.diagnostics.workers_unreachable
        if missing:
            # "worker 0", not a bare "0", which read as "no workers".
            numbers = ", ".join(map(str, missing))
            if len(missing) == 1:
                line = f"worker {numbers} not answering: its requests are not shown"
            else:
                line = f"workers {numbers} not answering: their requests are not shown"
            result.append(where + line)
        for i in answer.diagnostics.instances:
            name = where + printable(i.name)
            if i.is_rate_limited:
                retry = i.retry_after_seconds
                when = f", retry in {format_duration(retry)}" if retry is not None else ""
                result.append(f"{name}: rate limited{when}")
            if not i.is_functional:
                why = "; ".join(map(printable, i.validation_errors)) or "no reason given"
                result.append(f"{name}: not functional: {why}")
        if answer.recent_problem is not None and screen.recent:
            result.append(f"No finished requests to show: {answer.recent_problem}")
    return result


def any_translated(screen: Screen) -> bool:
    """Whether a row of either table is a translated request (and so marked)."""
    return any(e.connection.translated for e in entries(screen)) or any(
        f.request.translated for f in finished(screen)
    )


def _single_tracking_off(screen: Screen) -> bool:
    (answer,) = screen.answers
    diagnostics = answer.diagnostics
    return diagnostics is not None and not diagnostics.activity_tracking_enabled


# --- plain text ----------------------------------------------------------------------


def render_lines(
    screen: Screen, *, tz: tzinfo | None = None, idle_after: float = IDLE_AFTER_SECONDS
) -> list[str]:
    """The view as plain text lines (no escape codes); columns padded to align."""
    lines = [title(screen)]
    if not screen.several and _single_tracking_off(screen):
        return [*lines, TRACKING_DISABLED]
    lines.append("   ".join(f"{label}: {value}" for label, value in summary(screen, tz)))
    life = lifetime_line(screen)
    if life:
        lines.append(life)
    lines.extend(line for line, _ in proxy_lines(screen))
    lines.append("")
    columns, cells, _ = live_rows(screen, idle_after)
    if cells:
        lines.extend(plain_table(columns, [[c.title for c in columns], *cells]))
    else:
        lines.append(NO_CONNECTIONS)
    if screen.recent:
        done, cells, _ = recent_rows(screen, tz)
        lines.extend(["", RECENT_HEADING])
        if cells:
            lines.extend(plain_table(done, [[c.title for c in done], *cells]))
        else:
            lines.append(NO_FINISHED)
    extra = ([TRANSLATED_NOTE] if any_translated(screen) else []) + notes(screen)
    if extra:
        lines.extend(["", *extra])
    return lines


# --- rich ----------------------------------------------------------------------------


def render(
    screen: Screen, *, tz: tzinfo | None = None, idle_after: float = IDLE_AFTER_SECONDS
) -> RenderableType:
    """The view as a rich renderable: a header panel, then the tables and any notes.

    Idle connections are drawn in bold yellow, with ``idle …`` under their duration;
    finished requests that failed in red, cancelled ones in yellow.
    """
    if not screen.several and _single_tracking_off(screen):
        return _panel(Text(TRACKING_DISABLED, style="bold red"), title(screen))
    header = Table.grid(padding=(0, 3))
    pairs = summary(screen, tz)
    for _ in pairs:
        header.add_column(no_wrap=True)
    header.add_row(*(Text(label, style="bold") for label, _ in pairs))
    header.add_row(*(Text(value, style="cyan") for _, value in pairs))
    heading: list[RenderableType] = [header]
    life = lifetime_line(screen)
    if life:
        heading.append(Text(life, style="dim"))
    heading.extend(
        Text(line, style="green" if up else "bold red") for line, up in proxy_lines(screen)
    )
    parts: list[RenderableType] = [_panel(Group(*heading), title(screen))]
    columns, cells, idle = live_rows(screen, idle_after, idle_below=True)
    if cells:
        styles = ["bold yellow" if flag else None for flag in idle]
        parts.append(FittedTable(columns, cells, styles))
    else:
        parts.append(Text(NO_CONNECTIONS, style="dim"))
    if screen.recent:
        done, cells, outcomes = recent_rows(screen, tz)
        parts.append(Text("\n" + RECENT_HEADING, style="bold"))
        if cells:
            styles = [_OUTCOME_STYLES.get(outcome) for outcome in outcomes]
            parts.append(FittedTable(done, cells, styles))
        else:
            parts.append(Text(NO_FINISHED, style="dim"))
    if any_translated(screen):
        parts.append(Text(TRANSLATED_NOTE, style="dim"))
    parts.extend(Text(note, style="red") for note in notes(screen))
    return Group(*parts)


def render_problem(status: str, detail: str, *, source: str | None = None) -> RenderableType:
    """A panel for a failed refresh in watch mode: a short status line and the reason."""
    body = Text(status, style="bold red")
    body.append("\n" + detail, style="red")
    return _panel(body, f"trioproxy activity · {source}" if source else "trioproxy activity")


def with_footer(body: RenderableType, footer: str) -> RenderableType:
    """``body`` with a dim footer line under it (the watch mode's refresh interval)."""
    return Group(body, Text(footer, style="dim"))


def _panel(body: RenderableType, heading: str) -> RenderableType:
    return Panel(body, title=Text(heading), title_align="left", expand=False)
