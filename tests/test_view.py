"""The terminal view's rendering, as pure functions on fixed diagnostics snapshots.

Rules: no I/O and no clock; rich output is recorded with ``Console(record=True)`` and
compared as plain text (``styles=True`` only where the highlight itself is the point).
The documents come from ``tests/documents.py`` and are read with ``Diagnostics.from_dict``.
"""

from __future__ import annotations

import io
from datetime import UTC
from typing import Any

import pytest
from rich.console import Console

from tests.documents import (
    LONG_SESSION,
    connection,
    instance,
    no_connections,
    several_backends,
    snapshot,
    tracking_off,
)
from trioproxy.inspect import formatting, view
from trioproxy.inspect.document import Diagnostics

parse = Diagnostics.from_dict


def record(renderable: Any, *, width: int = 140, styles: bool = False) -> str:
    console = Console(
        record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="standard"
    )
    console.print(renderable)
    return console.export_text(styles=styles)


def line_with(text: str, needle: str) -> str:
    [line] = [line for line in text.splitlines() if needle in line]
    return line


# --- formatting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (10 * 1024 - 1, "10.0 KB"),
        (1024 * 1024 - 1, "1.0 MB"),  # would round to "1024.0 KB"
        (1024 * 1024, "1.0 MB"),
        (15 * 1024 * 1024 + 300 * 1024, "15.3 MB"),
        (1024**3 - 1, "1.0 GB"),
        (5 * 1024**4, "5120.0 GB"),
    ],
)
def test_format_bytes(count: int, expected: str) -> None:
    assert formatting.format_bytes(count) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0.0s"),
        (-3.0, "0.0s"),  # clock skew between snapshot and start: never negative
        (0.04, "0.0s"),
        (12.34, "12.3s"),
        (59.94, "59.9s"),
        (59.95, "1m 00s"),  # not "60.0s"
        (60, "1m 00s"),
        (245, "4m 05s"),
        (245.99, "4m 05s"),  # truncated, not rounded up
        (3599.9, "59m 59s"),
        (3600, "1h 00m"),
        (3720, "1h 02m"),
        (90061, "25h 01m"),
    ],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert formatting.format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("session_id", "expected"),
    [
        ("", ""),
        ("abc", "abc"),
        ("0123456789", "0123456789"),
        ("0123456789a", "0123456789…"),
        (LONG_SESSION, "0f8fad5b-d…"),
    ],
)
def test_short_session(session_id: str, expected: str) -> None:
    assert formatting.short_session(session_id) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpt-4o", "gpt-4o"),
        ("with space", "with space"),
        ("日本語", "日本語"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("tab\there", "tab\\there"),
        ("bidi\u202eevil", "bidi\\u202eevil"),
    ],
)
def test_printable(text: str, expected: str) -> None:
    assert formatting.printable(text) == expected


# --- rich ----------------------------------------------------------------------------


def test_rich_several_backends() -> None:
    data = parse(several_backends())
    text = record(view.render(data, source="http://localhost:8000", tz=UTC), width=100)
    assert text == (
        "╭─ trioproxy activity · http://localhost:8000 ─────────────╮\n"
        "│ Active Connections   Total RX   Total TX   Updated       │\n"
        "│ 3                    3.5 MB     3.0 MB     16:00:00      │\n"
        "│ Since start: 21 requests, 3 errors, 6 cancelled, 0 stale │\n"
        "╰──────────────────────────────────────────────────────────╯\n"
        "Backend      Session      Type           Model            Duration        RX      TX\n"
        "────────────────────────────────────────────────────────────────────────────────────\n"
        "openai.1     0f8fad5b-d…  streaming      gpt-4o           12.3s       1.5 KB  1.5 KB\n"
        "openai.1     short        non_streaming  gpt-4o           0.5s         300 B   300 B\n"
        "anthropic.1  sess-idle    streaming      claude-sonnet-4  4m 05s      3.5 MB  3.0 MB\n"
        "                                                          idle 42.0s                \n"
    )


def test_rich_fits_80_columns_by_shortening_the_model_only() -> None:
    data = parse(several_backends())
    lines = record(view.render(data, tz=UTC), width=80).splitlines()
    assert max(len(line) for line in lines) == 80
    assert lines[5].split() == list(view.COLUMNS)
    assert lines[9].split() == [
        *("anthropic.1", "sess-idle", "streaming", "claude-son…"),
        *("4m", "05s", "3.5", "MB", "3.0", "MB"),
    ]
    assert lines[10].split() == ["idle", "42.0s"]


def test_rich_idle_rows_stand_out() -> None:
    data = parse(several_backends())
    styled = record(view.render(data, tz=UTC), styles=True)
    bold_yellow = "\x1b[1;33m"
    assert bold_yellow in line_with(styled, "sess-idle")
    assert bold_yellow not in line_with(styled, "short")
    # Idleness is relative to the threshold: with a higher one, nothing is flagged.
    relaxed = record(view.render(data, tz=UTC, idle_after=60), styles=True)
    assert bold_yellow not in line_with(relaxed, "sess-idle")
    assert "(idle" not in relaxed


def test_rich_no_connections() -> None:
    lines = record(view.render(parse(no_connections()), tz=UTC)).splitlines()
    assert lines[1].split() == [
        "│",
        "Active",
        "Connections",
        "Total",
        "RX",
        "Total",
        "TX",
        "Updated",
        "│",
    ]
    assert lines[2].split() == ["│", "0", "0", "B", "0", "B", "16:00:00", "│"]
    assert lines[5] == "No active connections"
    text = "\n".join(lines)
    assert "Backend" not in text


def test_rich_tracking_off() -> None:
    text = record(view.render(parse(tracking_off())), width=300)
    assert view.TRACKING_DISABLED in text
    for way in (
        "--enable-activity-tracking",
        "ENABLE_ACTIVITY_TRACKING=1",
        "enable_activity_tracking: true",
    ):
        assert way in view.TRACKING_DISABLED
    assert "Active Connections" not in text


def test_rich_notes_for_backends_that_cannot_serve() -> None:
    data = snapshot(
        [
            instance("openai.1", "openai", [], rate_limited=True, retry_after=12.0),
            instance("anthropic.1", "anthropic", [], errors=("ANTHROPIC_API_KEY is not set",)),
        ]
    )
    text = record(view.render(parse(data), tz=UTC))
    assert "openai.1: rate limited, retry in 12.0s" in text
    assert "anthropic.1: not functional: ANTHROPIC_API_KEY is not set" in text


def test_text_from_clients_is_neither_markup_nor_escape_codes() -> None:
    hostile = connection("[bold]\x1b[2Jx", model="[red]m[/red]\x1b]0;title\x07")
    data = parse(snapshot([instance("openai.1", "openai", [hostile])]))
    styled = record(view.render(data, tz=UTC), styles=True)
    assert "\x1b[2J" not in styled
    assert "\x1b]0;" not in styled
    row = line_with(record(view.render(data, tz=UTC)), "openai.1")
    assert "[bold]\\x1b…" in row
    assert "[red]m[/red]\\x1b]0;title\\x07" in row
    plain = "\n".join(view.render_lines(data, tz=UTC))
    assert "\x1b" not in plain
    assert "[bold]\\x1b…" in plain


def test_problem_panel_and_footer() -> None:
    frame = view.with_footer(
        view.render_problem("unreachable, retrying every 1s", "The proxy is unreachable."),
        "Refreshing every 1s",
    )
    lines = record(frame).splitlines()
    assert "unreachable, retrying every 1s" in lines[1]
    assert "The proxy is unreachable." in lines[2]
    assert lines[-1] == "Refreshing every 1s"


# --- plain text ----------------------------------------------------------------------


def test_plain_several_backends() -> None:
    lines = view.render_lines(parse(several_backends()), source="http://localhost:8000", tz=UTC)
    assert lines == [
        "trioproxy activity · http://localhost:8000",
        "Active Connections: 3   Total RX: 3.5 MB   Total TX: 3.0 MB   Updated: 16:00:00",
        "Since start: 21 requests, 3 errors, 6 cancelled, 0 stale",
        "",
        "Backend      Session      Type           Model            Duration                 RX      TX",  # noqa: E501
        "openai.1     0f8fad5b-d…  streaming      gpt-4o           12.3s                1.5 KB  1.5 KB",  # noqa: E501
        "openai.1     short        non_streaming  gpt-4o           0.5s                  300 B   300 B",  # noqa: E501
        "anthropic.1  sess-idle    streaming      claude-sonnet-4  4m 05s (idle 42.0s)  3.5 MB  3.0 MB",  # noqa: E501
    ]


def test_plain_no_connections() -> None:
    lines = view.render_lines(parse(no_connections()), tz=UTC)
    assert lines == [
        "trioproxy activity",
        "Active Connections: 0   Total RX: 0 B   Total TX: 0 B   Updated: 16:00:00",
        "Since start: 7 requests, 1 errors, 2 cancelled, 0 stale",
        "",
        "No active connections",
    ]


def test_plain_tracking_off() -> None:
    lines = view.render_lines(parse(tracking_off()))
    assert lines == ["trioproxy activity", view.TRACKING_DISABLED]


def test_plain_notes_and_no_escape_codes() -> None:
    data = snapshot(
        [instance("openai.1", "openai", [connection()], rate_limited=True, retry_after=None)]
    )
    lines = view.render_lines(parse(data), tz=UTC)
    assert lines[-2:] == ["", "openai.1: rate limited"]
    assert not any("\x1b" in line for line in lines)


def test_header_falls_back_to_instance_sums_without_global_activity() -> None:
    data = several_backends()
    data["global_activity"] = None
    lines = view.render_lines(parse(data), tz=UTC)
    assert lines[1].startswith("Active Connections: 3   Total RX: 3.5 MB")
    assert not any(line.startswith("Since start") for line in lines)
