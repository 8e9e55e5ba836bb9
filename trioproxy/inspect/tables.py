"""The view's tables, declared as columns and drawn to fit the terminal; pure.

A table is a tuple of :class:`Column`: its title, how a row's cell is formatted, how it
aligns, and what happens on a terminal too narrow for it. :func:`plain_table` draws it
as text lines for pipes and files (every column, padded); :class:`FittedTable` draws it
with rich, at the width of the terminal it is printed on: first the columns of the
lowest ``drop_rank`` are left out (:func:`fit`), then rich shortens the columns that
``give_way`` with an ellipsis, so the table never runs past the terminal's edge.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

R = TypeVar("R")

#: Terminal cells between two columns, in both renderings.
GAP = 2

#: How narrow a column that gives way may become before another column is left out,
#: unless it says otherwise (:attr:`Column.min_width`).
GIVE_WAY_MIN = 10


@dataclass(frozen=True, slots=True)
class Column(Generic[R]):
    """One column of a table of rows of type ``R``.

    ``cell`` formats the column's text for a row (text from a proxy goes through
    :func:`~trioproxy.inspect.formatting.printable`; a newline puts the rest on a line
    of its own). ``numeric`` columns align right. The columns that ``give_way`` are
    shortened with an ellipsis when the terminal is too narrow, down to ``min_width``
    before columns with a ``drop_rank`` are left out (rank 1 first; 0: never left out).
    Those that give way ``last`` are shortened only once every other column has been
    left out or shortened (names, which tell the rows apart).
    """

    title: str
    cell: Callable[[R], str]
    numeric: bool = False
    gives_way: bool = False
    drop_rank: int = 0
    min_width: int = GIVE_WAY_MIN
    last: bool = False


def _width(text: str) -> int:
    return max(cell_len(line) for line in text.split("\n"))


def fit(
    columns: Sequence[Column[R]], table: Sequence[Sequence[str]], width: int
) -> list[tuple[int, int]]:
    """Which columns to show in ``width`` terminal cells, and how wide: (index, width)
    pairs in column order.

    ``table`` holds the titles and the cells, a row per line; a column is as wide as its
    widest line. Columns with a ``drop_rank`` are left out, the lowest rank first, while
    the table — its columns (those that give way, but not last, counted at most their
    ``min_width``) and the gaps between them — is wider than ``width``. Then the widest
    column that gives way (not last) is narrowed, one cell at a time, down to its
    ``min_width``; then the widest of all that give way, those that give way last down to
    their ``min_width``, the others past it; and to one cell if nothing else is left. A
    table that still does not fit is returned as it is (rich then narrows every column).
    """
    widths = [max(_width(row[i]) for row in table) for i in range(len(columns))]
    shown = list(range(len(columns)))
    droppable = sorted(
        (i for i, column in enumerate(columns) if column.drop_rank),
        key=lambda i: columns[i].drop_rank,
    )

    def excess(*, narrowed: bool) -> int:
        """Cells over ``width``; ``narrowed``: those that give way (not last) at their
        minimum."""
        needs = (
            min(widths[i], columns[i].min_width)
            if narrowed and columns[i].gives_way and not columns[i].last
            else widths[i]
            for i in shown
        )
        return sum(needs) + GAP * (len(shown) - 1) - width

    while excess(narrowed=True) > 0 and droppable:
        shown.remove(droppable.pop(0))
    over = excess(narrowed=False)

    def floor(i: int, stage: str) -> int:
        """How narrow column ``i`` may get at ``stage`` (0: not at all)."""
        column = columns[i]
        if not column.gives_way or (stage == "first" and column.last):
            return 0
        if stage == "first" or (stage == "then" and column.last):
            return column.min_width
        return 1

    # Those that give way first, to their minimum; then all of them, the widest first,
    # those that give way last no further than their minimum; then all to one cell.
    for stage in ("first", "then", "any"):
        while over > 0:
            narrowable = [i for i in shown if 0 < floor(i, stage) < widths[i]]
            if not narrowable:
                break
            widest = max(narrowable, key=lambda i: widths[i])
            widths[widest] -= 1
            over -= 1
    return [(i, widths[i]) for i in shown]


def plain_table(columns: Sequence[Column[R]], table: Sequence[Sequence[str]]) -> list[str]:
    """``table`` (titles first, a row per line) as text lines: every column, padded, no
    trailing spaces; a cell's own newlines become spaces."""
    flat = [[cell.replace("\n", " ") for cell in row] for row in table]
    widths = [max(cell_len(row[i]) for row in flat) for i in range(len(columns))]
    return [
        (" " * GAP)
        .join(
            _pad(cell, widths[i], right=column.numeric)
            for i, (column, cell) in enumerate(zip(columns, row, strict=True))
        )
        .rstrip()
        for row in flat
    ]


def _pad(text: str, width: int, *, right: bool) -> str:
    space = " " * (width - cell_len(text))
    return space + text if right else text + space


@dataclass(frozen=True, slots=True)
class FittedTable:
    """A rich renderable: ``rows`` under ``columns``' titles, fitted to the terminal.

    ``styles`` holds a rich style (or None) per row. Cells are :class:`~rich.text.Text`,
    never markup, so a ``[`` from a client is drawn as it is.
    """

    columns: Sequence[Column[Any]]
    rows: Sequence[Sequence[str]]
    styles: Sequence[str | None]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        titles = [column.title for column in self.columns]
        shown = fit(self.columns, [titles, *self.rows], options.max_width)
        # No vertical rules and a GAP-wide gap (padding 1, collapsed, plus the box's
        # blank divider), as plain_table draws it. Cells never wrap: a narrowed one ends
        # with an ellipsis.
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        for i, width in shown:
            column = self.columns[i]
            table.add_column(
                column.title,
                justify="right" if column.numeric else "left",
                no_wrap=True,
                overflow="ellipsis",
                width=width,
            )
        for row, style in zip(self.rows, self.styles, strict=True):
            table.add_row(*(Text(row[i]) for i, _ in shown), style=style)
        yield table
