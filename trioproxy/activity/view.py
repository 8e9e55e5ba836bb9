"""Rendering of the proxy's diagnostics for the terminal view (``trioproxy-inspect``).

Everything here is pure: no I/O, no clock. The input is the decoded JSON of
``GET /v1/diagnostics``; :func:`parse_diagnostics` is the one place that checks its shape
and turns it into frozen dataclasses, raising :class:`NotDiagnostics` (naming the first
offending field) for anything else. The renderers then take a :class:`Diagnostics`:

- :func:`render` gives a rich renderable (header panel, connections table, notes);
- :func:`render_lines` gives the same content as plain text lines, without escape codes
  and without importing rich, for pipes and for installs where rich is missing.

rich is imported inside the rich-only functions, so this module imports without it.
Bytes are shown 1024-based (1 KB = 1024 B) by :func:`format_bytes`; durations as
``12.3s``, ``4m 05s``, ``1h 02m`` by :func:`format_duration`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType

#: A connection with no byte in either direction for longer than this is flagged idle.
IDLE_AFTER_SECONDS = 5.0

#: Session ids longer than this many characters are cut and end with an ellipsis.
SESSION_WIDTH = 10

COLUMNS = ("Backend", "Session", "Type", "Model", "Duration", "RX", "TX")

NO_CONNECTIONS = "No active connections"

TRACKING_DISABLED = (
    "Activity tracking is disabled on this proxy; restart it with "
    "--enable-activity-tracking, ENABLE_ACTIVITY_TRACKING=1 in its environment, "
    "or enable_activity_tracking: true in its config file."
)


class NotDiagnostics(ValueError):
    """The JSON is not the shape of ``GET /v1/diagnostics``; the message names the field."""


@dataclass(frozen=True)
class Lifetime:
    """Counters since the proxy started."""

    requests: int
    bytes_rx: int
    bytes_tx: int
    errors: int
    cancelled: int
    stale: int


@dataclass(frozen=True)
class Connection:
    """One (backend, session) connection in flight."""

    session_id: str
    connection_type: str
    started_at: float
    duration_seconds: float
    model: str
    bytes_rx: int
    bytes_tx: int
    requests: int
    last_activity_at: float
    idle_seconds: float


@dataclass(frozen=True)
class InstanceActivity:
    """A backend instance's live connections (oldest first) and counters."""

    active_connections: int
    connections: tuple[Connection, ...]
    total_bytes_rx: int
    total_bytes_tx: int
    lifetime: Lifetime


@dataclass(frozen=True)
class Instance:
    """A configured backend instance; ``activity`` is None when tracking is off."""

    name: str
    connector_type: str
    is_rate_limited: bool
    retry_after_seconds: float | None
    is_functional: bool
    validation_errors: tuple[str, ...]
    models: tuple[str, ...]
    activity: InstanceActivity | None


@dataclass(frozen=True)
class GlobalActivity:
    """Sums over all instances."""

    total_active_connections: int
    total_bytes_rx: int
    total_bytes_tx: int
    lifetime: Lifetime


@dataclass(frozen=True)
class Diagnostics:
    """A whole ``GET /v1/diagnostics`` answer."""

    timestamp: float
    activity_tracking_enabled: bool
    instances: tuple[Instance, ...]
    global_activity: GlobalActivity | None


# --- parsing -------------------------------------------------------------------------


class _Obj:
    """A JSON object being read, with the path used in error messages."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, Mapping):
            raise NotDiagnostics(f"{path or 'the document'}: expected an object")
        self._value = value
        self._path = path

    def _get(self, key: str) -> object:
        if key not in self._value:
            raise NotDiagnostics(f"{self._at(key)}: missing")
        return self._value[key]

    def _at(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _fail(self, key: str, expected: str) -> NotDiagnostics:
        return NotDiagnostics(f"{self._at(key)}: expected {expected}")

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false")
        return value

    def count(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._fail(key, "a non-negative integer")
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number")
        if not math.isfinite(value):
            raise self._fail(key, "a finite number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self._get(key) is None else self.number(key)

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings")
        return tuple(value)

    def objects(self, key: str) -> list[_Obj]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self._fail(key, "a list")
        return [_Obj(item, f"{self._at(key)}[{i}]") for i, item in enumerate(value)]

    def obj(self, key: str) -> _Obj:
        return _Obj(self._get(key), self._at(key))

    def optional_obj(self, key: str) -> _Obj | None:
        return None if self._get(key) is None else self.obj(key)


def _lifetime(o: _Obj) -> Lifetime:
    return Lifetime(
        requests=o.count("requests"),
        bytes_rx=o.count("bytes_rx"),
        bytes_tx=o.count("bytes_tx"),
        errors=o.count("errors"),
        cancelled=o.count("cancelled"),
        stale=o.count("stale"),
    )


def _connection(o: _Obj) -> Connection:
    return Connection(
        session_id=o.text("session_id"),
        connection_type=o.text("connection_type"),
        started_at=o.number("started_at"),
        duration_seconds=o.number("duration_seconds"),
        model=o.text("model"),
        bytes_rx=o.count("bytes_rx"),
        bytes_tx=o.count("bytes_tx"),
        requests=o.count("requests"),
        last_activity_at=o.number("last_activity_at"),
        idle_seconds=o.number("idle_seconds"),
    )


def _instance(o: _Obj) -> Instance:
    activity = o.optional_obj("activity")
    return Instance(
        name=o.text("name"),
        connector_type=o.text("connector_type"),
        is_rate_limited=o.flag("is_rate_limited"),
        retry_after_seconds=o.optional_number("retry_after_seconds"),
        is_functional=o.flag("is_functional"),
        validation_errors=o.strings("validation_errors"),
        models=o.strings("models"),
        activity=None
        if activity is None
        else InstanceActivity(
            active_connections=activity.count("active_connections"),
            connections=tuple(_connection(c) for c in activity.objects("connections")),
            total_bytes_rx=activity.count("total_bytes_rx"),
            total_bytes_tx=activity.count("total_bytes_tx"),
            lifetime=_lifetime(activity.obj("lifetime")),
        ),
    )


def parse_diagnostics(data: object) -> Diagnostics:
    """Check that ``data`` (decoded JSON) is a diagnostics answer and convert it.

    Unknown fields are ignored, so a newer proxy still parses.

    Raises:
        NotDiagnostics: a field is missing or has the wrong type; the message gives its
            path, e.g. ``instances[0].activity.connections[1].bytes_rx: missing``.
    """
    top = _Obj(data, "")
    timestamp = top.number("timestamp")
    enabled = top.flag("activity_tracking_enabled")
    instances = tuple(_instance(i) for i in top.objects("instances"))
    glob = top.optional_obj("global_activity")
    diagnostics = Diagnostics(
        timestamp=timestamp,
        activity_tracking_enabled=enabled,
        instances=instances,
        global_activity=None
        if glob is None
        else GlobalActivity(
            total_active_connections=glob.count("total_active_connections"),
            total_bytes_rx=glob.count("total_bytes_rx"),
            total_bytes_tx=glob.count("total_bytes_tx"),
            lifetime=_lifetime(glob.obj("lifetime")),
        ),
    )
    try:
        datetime.fromtimestamp(diagnostics.timestamp)
    except (OverflowError, OSError, ValueError):
        raise NotDiagnostics("timestamp: not a representable time") from None
    return diagnostics


# --- formatting ----------------------------------------------------------------------


def format_bytes(count: int) -> str:
    """``512 B``, ``1.5 KB``, ``12.0 MB``, ``3.2 GB``; 1024-based (1 KB = 1024 B)."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KB", "MB"):
        value /= 1024
        if round(value, 1) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} GB"


def format_duration(seconds: float) -> str:
    """``12.3s`` under a minute, ``4m 05s`` under an hour, ``1h 02m`` beyond; never negative.

    Minutes and hours are truncated, never rounded up: ``3599.9`` is ``59m 59s``.
    """
    seconds = max(0.0, seconds)
    if seconds < 59.95:  # anything higher would print as "60.0s"
        return f"{seconds:.1f}s"
    whole = max(60, int(seconds))
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes}m {secs:02d}s"
    hours, rest = divmod(whole, 3600)
    return f"{hours}h {rest // 60:02d}m"


def printable(text: str) -> str:
    """``text`` with control and format characters shown as ``\\xNN`` / ``\\uNNNN``.

    Session ids and model names come from clients; an escape sequence among them must not
    reach the operator's terminal.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in text)


def short_session(session_id: str) -> str:
    """The first :data:`SESSION_WIDTH` characters, and ``…`` when there are more."""
    if len(session_id) <= SESSION_WIDTH:
        return session_id
    return session_id[:SESSION_WIDTH] + "…"


def format_clock(timestamp: float, tz: tzinfo | None = None) -> str:
    """``HH:MM:SS`` of an epoch timestamp, in ``tz`` (default: local time)."""
    return datetime.fromtimestamp(timestamp, tz).strftime("%H:%M:%S")


# --- what is shown, independent of how -----------------------------------------------


@dataclass(frozen=True)
class Row:
    """One table row, formatted; ``idle`` is the idle time, set only past the threshold."""

    backend: str
    session: str
    connection_type: str
    model: str
    duration: str
    rx: str
    tx: str
    idle: str | None

    def cells(self, *, idle_below: bool = False) -> tuple[str, ...]:
        """The cells in :data:`COLUMNS` order.

        An idle marker follows the duration: ``4m 05s (idle 42.0s)``, or with
        ``idle_below`` on a line of its own, which keeps the column narrow.
        """
        duration = self.duration
        if self.idle is not None:
            duration += f"\nidle {self.idle}" if idle_below else f" (idle {self.idle})"
        kind = self.connection_type
        return (self.backend, self.session, kind, self.model, duration, self.rx, self.tx)


def rows(diagnostics: Diagnostics, idle_after: float = IDLE_AFTER_SECONDS) -> list[Row]:
    """The table rows: instances in config order, each one's connections oldest first.

    Text from the proxy (names, session ids, models) goes through :func:`printable`.
    """
    return [
        Row(
            backend=printable(instance.name),
            session=short_session(printable(c.session_id)),
            connection_type=printable(c.connection_type),
            model=printable(c.model),
            duration=format_duration(c.duration_seconds),
            rx=format_bytes(c.bytes_rx),
            tx=format_bytes(c.bytes_tx),
            idle=format_duration(c.idle_seconds) if c.idle_seconds > idle_after else None,
        )
        for instance in diagnostics.instances
        for c in (instance.activity.connections if instance.activity else ())
    ]


def summary(diagnostics: Diagnostics, tz: tzinfo | None = None) -> list[tuple[str, str]]:
    """The header's (label, value) pairs: active connections, totals, update time."""
    g = diagnostics.global_activity
    if g is not None:
        active, rx, tx = g.total_active_connections, g.total_bytes_rx, g.total_bytes_tx
    else:
        acts = [i.activity for i in diagnostics.instances if i.activity is not None]
        active = sum(a.active_connections for a in acts)
        rx = sum(a.total_bytes_rx for a in acts)
        tx = sum(a.total_bytes_tx for a in acts)
    return [
        ("Active Connections", str(active)),
        ("Total RX", format_bytes(rx)),
        ("Total TX", format_bytes(tx)),
        ("Updated", format_clock(diagnostics.timestamp, tz)),
    ]


def lifetime_line(diagnostics: Diagnostics) -> str | None:
    """``Since start: …`` from the global lifetime counters, or None without them."""
    if diagnostics.global_activity is None:
        return None
    life = diagnostics.global_activity.lifetime
    return (
        f"Since start: {life.requests} requests, {life.errors} errors, "
        f"{life.cancelled} cancelled, {life.stale} stale"
    )


def notes(diagnostics: Diagnostics) -> list[str]:
    """One line per backend that cannot take traffic now: rate limited or not functional."""
    result = []
    for i in diagnostics.instances:
        name = printable(i.name)
        if i.is_rate_limited:
            retry = i.retry_after_seconds
            when = f", retry in {format_duration(retry)}" if retry is not None else ""
            result.append(f"{name}: rate limited{when}")
        if not i.is_functional:
            why = "; ".join(map(printable, i.validation_errors)) or "no reason given"
            result.append(f"{name}: not functional: {why}")
    return result


# --- plain text ----------------------------------------------------------------------


def render_lines(
    diagnostics: Diagnostics,
    *,
    source: str | None = None,
    tz: tzinfo | None = None,
    idle_after: float = IDLE_AFTER_SECONDS,
) -> list[str]:
    """The view as plain text lines (no escape codes, no rich); columns padded to align."""
    lines = [f"trioproxy activity · {source}" if source else "trioproxy activity"]
    if not diagnostics.activity_tracking_enabled:
        return [*lines, TRACKING_DISABLED]
    lines.append("   ".join(f"{label}: {value}" for label, value in summary(diagnostics, tz)))
    life = lifetime_line(diagnostics)
    if life:
        lines.append(life)
    lines.append("")
    table = rows(diagnostics, idle_after)
    if table:
        lines.extend(_plain_table([COLUMNS, *(r.cells() for r in table)]))
    else:
        lines.append(NO_CONNECTIONS)
    problems = notes(diagnostics)
    if problems:
        lines.extend(["", *problems])
    return lines


def _plain_table(table: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    right = {COLUMNS.index(name) for name in ("RX", "TX")}
    return [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in table
    ]


# --- rich ----------------------------------------------------------------------------


def render(
    diagnostics: Diagnostics,
    *,
    source: str | None = None,
    tz: tzinfo | None = None,
    idle_after: float = IDLE_AFTER_SECONDS,
) -> RenderableType:
    """The view as a rich renderable: a header panel, then the table and any notes.

    Idle connections are drawn in bold yellow, with ``idle …`` under their duration.
    Requires rich (imported here, not at module import).
    """
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if not diagnostics.activity_tracking_enabled:
        return _panel(Text(TRACKING_DISABLED, style="bold red"), source)
    header = Table.grid(padding=(0, 3))
    pairs = summary(diagnostics, tz)
    for _ in pairs:
        header.add_column(no_wrap=True)
    header.add_row(*(Text(label, style="bold") for label, _ in pairs))
    header.add_row(*(Text(value, style="cyan") for _, value in pairs))
    heading: list[RenderableType] = [header]
    life = lifetime_line(diagnostics)
    if life:
        heading.append(Text(life, style="dim"))
    parts: list[RenderableType] = [_panel(Group(*heading), source)]
    table_rows = rows(diagnostics, idle_after)
    if table_rows:
        # No vertical rules and a 2-space gap, so the table fits 80 columns; only Model
        # gives way (with an ellipsis) when the terminal is narrower still.
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        for name in COLUMNS:
            table.add_column(
                name,
                justify="right" if name in ("RX", "TX") else "left",
                no_wrap=name != "Model",
                overflow="ellipsis",
            )
        for row in table_rows:
            # Text, not str: a "[" in a session id or model is not rich markup.
            cells = (Text(cell) for cell in row.cells(idle_below=True))
            table.add_row(*cells, style="bold yellow" if row.idle else None)
        parts.append(table)
    else:
        parts.append(Text(NO_CONNECTIONS, style="dim"))
    parts.extend(Text(note, style="red") for note in notes(diagnostics))
    return Group(*parts)


def render_problem(status: str, detail: str, *, source: str | None = None) -> RenderableType:
    """A panel for a failed refresh in watch mode: a short status line and the reason."""
    from rich.text import Text

    body = Text(status, style="bold red")
    body.append("\n" + detail, style="red")
    return _panel(body, source)


def with_footer(body: RenderableType, footer: str) -> RenderableType:
    """``body`` with a dim footer line under it (the watch mode's refresh interval)."""
    from rich.console import Group
    from rich.text import Text

    return Group(body, Text(footer, style="dim"))


def _panel(body: RenderableType, source: str | None) -> RenderableType:
    from rich.panel import Panel
    from rich.text import Text

    title = f"trioproxy activity · {source}" if source else "trioproxy activity"
    return Panel(body, title=Text(title), title_align="left", expand=False)
