"""Rendering of a proxy's diagnostics for the terminal view (``trioproxy-inspect``).

Everything here is pure: no I/O, no clock. The input is a
:class:`~trioproxy.inspect.document.Diagnostics`, already read and checked; the
connections table is declared once, as :data:`TABLE` (a column: its title, how its
cell is formatted from a connection, how it aligns), and both renderers follow it:

- :func:`render` gives a rich renderable (header panel, connections table, notes), for
  a terminal;
- :func:`render_lines` gives the same content as plain text lines, without escape codes,
  for pipes and files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from trioproxy.activity.snapshot import ConnectionActivity

from .document import Diagnostics
from .formatting import format_bytes, format_clock, format_duration, printable, short_session

#: A connection with no byte in either direction for longer than this is flagged idle.
IDLE_AFTER_SECONDS = 5.0

NO_CONNECTIONS = "No active connections"

TRACKING_DISABLED = (
    "Activity tracking is disabled on this proxy; restart it with "
    "--enable-activity-tracking, ENABLE_ACTIVITY_TRACKING=1 in its environment, "
    "or enable_activity_tracking: true in its config file."
)


# --- the table -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One connection as the table lists it: with the backend instance it is on."""

    backend: str
    connection: ConnectionActivity


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the connections table.

    ``cell`` formats the column's text for an entry; text from the proxy goes through
    :func:`~trioproxy.inspect.formatting.printable`. ``numeric`` columns align right;
    the one that ``gives_way`` is shortened (with an ellipsis) when a terminal is too
    narrow for the table.
    """

    title: str
    cell: Callable[[Entry], str]
    numeric: bool = False
    gives_way: bool = False


#: The connections table, left to right. A new column is one row here.
TABLE: tuple[Column, ...] = (
    Column("Backend", lambda e: printable(e.backend)),
    Column("Session", lambda e: short_session(printable(e.connection.session_id))),
    Column("Type", lambda e: printable(e.connection.connection_type)),
    Column("Model", lambda e: printable(e.connection.model), gives_way=True),
    Column("Duration", lambda e: format_duration(e.connection.duration_seconds)),
    Column("RX", lambda e: format_bytes(e.connection.bytes_rx), numeric=True),
    Column("TX", lambda e: format_bytes(e.connection.bytes_tx), numeric=True),
)

COLUMNS = tuple(column.title for column in TABLE)

# The idle marker follows the duration.
_DURATION = COLUMNS.index("Duration")


@dataclass(frozen=True, slots=True)
class Row:
    """One table row, formatted; ``idle`` is the idle time, set only past the threshold."""

    values: tuple[str, ...]
    idle: str | None

    def cells(self, *, idle_below: bool = False) -> tuple[str, ...]:
        """The cells in :data:`COLUMNS` order.

        An idle marker follows the duration: ``4m 05s (idle 42.0s)``, or with
        ``idle_below`` on a line of its own, which keeps the column narrow.
        """
        if self.idle is None:
            return self.values
        marker = f"\nidle {self.idle}" if idle_below else f" (idle {self.idle})"
        cells = list(self.values)
        cells[_DURATION] += marker
        return tuple(cells)


def entries(diagnostics: Diagnostics) -> list[Entry]:
    """The connections: instances in config order, each one's connections oldest first."""
    return [
        Entry(instance.name, connection)
        for instance in diagnostics.instances
        for connection in (instance.activity.connections if instance.activity else ())
    ]


def rows(diagnostics: Diagnostics, idle_after: float = IDLE_AFTER_SECONDS) -> list[Row]:
    """The table rows, in the order of :func:`entries`."""
    return [_row(entry, idle_after) for entry in entries(diagnostics)]


def _row(entry: Entry, idle_after: float) -> Row:
    idle = entry.connection.idle_seconds
    return Row(
        values=tuple(column.cell(entry) for column in TABLE),
        idle=format_duration(idle) if idle > idle_after else None,
    )


# --- what is shown, independent of how -----------------------------------------------


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
    """The view as plain text lines (no escape codes); columns padded to align."""
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
    widths = [max(len(row[i]) for row in table) for i in range(len(TABLE))]
    return [
        "  ".join(
            cell.rjust(widths[i]) if column.numeric else cell.ljust(widths[i])
            for i, (column, cell) in enumerate(zip(TABLE, row, strict=True))
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
    """
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
        # No vertical rules and a 2-space gap, so the table fits 80 columns; only the
        # column that gives way (Model) is shortened when the terminal is narrower still.
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        for column in TABLE:
            table.add_column(
                column.title,
                justify="right" if column.numeric else "left",
                no_wrap=not column.gives_way,
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
    body = Text(status, style="bold red")
    body.append("\n" + detail, style="red")
    return _panel(body, source)


def with_footer(body: RenderableType, footer: str) -> RenderableType:
    """``body`` with a dim footer line under it (the watch mode's refresh interval)."""
    return Group(body, Text(footer, style="dim"))


def _panel(body: RenderableType, source: str | None) -> RenderableType:
    title = f"trioproxy activity · {source}" if source else "trioproxy activity"
    return Panel(body, title=Text(title), title_align="left", expand=False)
