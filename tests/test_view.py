"""The terminal view's rendering, as pure functions on fixed diagnostics snapshots.

Rules: no I/O and no clock; rich output is recorded with ``Console(record=True)`` and
compared as plain text (``styles=True`` only where the highlight itself is the point).
The documents come from ``tests/documents.py`` and are read with ``Diagnostics.from_dict``
and ``RecentRequests.from_dict``. Several proxies merged: ``tests/test_inspect_merge.py``.
"""

from __future__ import annotations

import io
from datetime import UTC
from typing import Any

import pytest
from rich.console import Console

from tests.documents import (
    LONG_SESSION,
    T0,
    connection,
    finished,
    instance,
    no_connections,
    recent,
    several_backends,
    snapshot,
    some_finished,
    tracking_off,
)
from trioproxy.inspect import formatting, view
from trioproxy.inspect.document import Diagnostics, RecentRequests
from trioproxy.inspect.fetch import ProxyUnreachable
from trioproxy.inspect.merge import ConnectionKey, ProxyAnswer, Screen

URL = "http://localhost:8000"


def one(
    doc: dict[str, Any],
    finished_doc: dict[str, Any] | None = None,
    *,
    rates: dict[ConnectionKey, float] | None = None,
    show: int | None = None,
) -> Screen:
    """One proxy's refresh; ``show`` finished requests (default: all of ``finished_doc``,
    none without it)."""
    done = RecentRequests.from_dict(finished_doc) if finished_doc is not None else None
    answer = ProxyAnswer(URL, doc, Diagnostics.from_dict(doc), recent=done)
    if show is None:
        show = len(done.recent) if done is not None else 0
    return Screen((answer,), rates, show)


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
    ("count", "expected"),
    [
        (0, "0B"),
        (1023, "1023B"),
        (1023.9, "1023B"),  # a rate: the fraction of a byte is dropped
        (1024, "1.0K"),
        (1536, "1.5K"),
        (1024 * 1024 - 1, "1.0M"),
        (15 * 1024 * 1024 + 300 * 1024, "15.3M"),
        (5 * 1024**4, "5120.0G"),
    ],
)
def test_format_bytes_short(count: float, expected: str) -> None:
    assert formatting.format_bytes_short(count) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, ""),
        (0.0, "0ms"),
        (0.0027, "3ms"),
        (0.25, "250ms"),
        (0.9994, "999ms"),
        (0.9996, "1.0s"),  # not "1000ms"
        (12.34, "12.3s"),
        (245, "4m 05s"),
    ],
)
def test_format_ttfb(seconds: float | None, expected: str) -> None:
    assert formatting.format_ttfb(seconds) == expected
    assert formatting.format_ttfb(None, "…") == "…"


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("chat.completions", "chat"),
        ("responses", "resp"),
        ("messages", "msgs"),
        ("embeddings", "embed"),
        ("completions", "compl"),
        ("count_tokens", "count"),
        ("batches", "batches"),  # a newer proxy's endpoint, as it is
        ("a\x1b[2J", "a\\x1b[2J"),
    ],
)
def test_short_endpoint(endpoint: str, expected: str) -> None:
    assert formatting.short_endpoint(endpoint) == expected


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


@pytest.mark.parametrize(
    ("instance_name", "translated", "expected"),
    [("vllm.1", False, "vllm.1"), ("vllm.1", True, "vllm.1⇄"), ("a\x1bb", True, "a\\x1bb⇄")],
)
def test_backend_name_marks_translation(
    instance_name: str, translated: bool, expected: str
) -> None:
    assert formatting.backend_name(instance_name, translated) == expected


# --- rich ----------------------------------------------------------------------------


def test_rich_several_backends() -> None:
    text = record(view.render(one(several_backends()), tz=UTC), width=100)
    assert text == (
        "╭─ trioproxy activity · http://localhost:8000 ───────────────────────────╮\n"
        "│ Active Connections   Total RX   Total TX   Updated                     │\n"
        "│ 3                    3.5 MB     3.0 MB     16:00:00                    │\n"
        "│ Since start: 21 requests, 12 completed, 3 errors, 6 cancelled, 0 stale │\n"
        "╰────────────────────────────────────────────────────────────────────────╯\n"
        "Backend      Session      API   Type    Model            Duration     TTFB  HTTP    RX    TX\n"  # noqa: E501
        "────────────────────────────────────────────────────────────────────────────────────────────\n"
        "openai.1     0f8fad5b-d…  chat  stream  gpt-4o           12.3s       250ms  200   1.5K  1.5K\n"  # noqa: E501
        "openai.1     short        chat  json    gpt-4o           0.5s        250ms  200   300B  300B\n"  # noqa: E501
        "anthropic.1  sess-idle    chat  stream  claude-sonnet-4  4m 05s      250ms  200   3.5M  3.0M\n"  # noqa: E501
        "                                                         idle 42.0s                         \n"  # noqa: E501
    )


def test_rich_fits_80_columns_by_leaving_out_then_shortening() -> None:
    lines = record(view.render(one(several_backends()), tz=UTC), width=80).splitlines()
    assert max(len(line) for line in lines) <= 80
    # The upstream status and the type go first, then the model is shortened.
    assert lines[5].split() == [
        "Backend",
        "Session",
        "API",
        "Model",
        "Duration",
        "TTFB",
        "RX",
        "TX",
    ]
    assert lines[9].split() == [
        *("anthropic.1", "sess-idle", "chat", "claude-sonnet-4"),
        *("4m", "05s", "250ms", "3.5M", "3.0M"),
    ]
    assert lines[10].split() == ["idle", "42.0s"]
    # In watch mode the rate column comes too, and the model gives way for it.
    watched = one(several_backends(), rates={(URL, "openai.1", "short"): 2048.0})
    lines = record(view.render(watched, tz=UTC), width=80).splitlines()
    assert max(len(line) for line in lines) == 80
    assert lines[5].split() == [
        *("Backend", "Session", "API", "Model", "Duration", "TTFB", "RX", "RX/s", "TX")
    ]
    assert lines[8].split() == [
        *("openai.1", "short", "chat", "gpt-4o", "0.5s", "250ms", "300B", "2.0K", "300B")
    ]
    assert lines[9].split()[3] == "claude-son…"


@pytest.mark.parametrize("width", [60, 80, 100, 120])
def test_rich_never_runs_past_the_terminal(width: int) -> None:
    data = one(several_backends(), some_finished(), rates={(URL, "openai.1", "short"): 1.0})
    lines = record(view.render(data, tz=UTC), width=width).splitlines()
    assert max(len(line) for line in lines) <= width
    assert all("Backend" in line for line in lines if "Session" in line)


def test_rich_idle_rows_stand_out() -> None:
    data = one(several_backends())
    styled = record(view.render(data, tz=UTC), styles=True)
    bold_yellow = "\x1b[1;33m"
    assert bold_yellow in line_with(styled, "sess-idle")
    assert bold_yellow not in line_with(styled, "short")
    # Idleness is relative to the threshold: with a higher one, nothing is flagged.
    relaxed = record(view.render(data, tz=UTC, idle_after=60), styles=True)
    assert bold_yellow not in line_with(relaxed, "sess-idle")
    assert "(idle" not in relaxed


def test_rich_no_connections() -> None:
    lines = record(view.render(one(no_connections()), tz=UTC)).splitlines()
    assert lines[1].split() == [
        *("│", "Active", "Connections", "Total", "RX", "Total", "TX", "Updated", "│")
    ]
    assert lines[2].split() == ["│", "0", "0", "B", "0", "B", "16:00:00", "│"]
    assert lines[5] == "No active connections"
    text = "\n".join(lines)
    assert "Backend" not in text
    assert view.RECENT_HEADING not in text  # none asked for


def test_rich_tracking_off() -> None:
    text = record(view.render(one(tracking_off())), width=300)
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
    text = record(view.render(one(data), tz=UTC))
    assert "openai.1: rate limited, retry in 12.0s" in text
    assert "anthropic.1: not functional: ANTHROPIC_API_KEY is not set" in text


def test_text_from_clients_is_neither_markup_nor_escape_codes() -> None:
    hostile = connection("[bold]\x1b[2Jx", model="[red]m[/red]\x1b]0;title\x07")
    ended = finished("[i]\x1b[2J", model="\x1b]0;t\x07", error="[b]boom\x1b[31m\nnext")
    data = one(snapshot([instance("openai.1", "openai", [hostile])]), recent([ended]))
    styled = record(view.render(data, tz=UTC), width=200, styles=True)
    assert "\x1b[2J" not in styled
    assert "\x1b]0;" not in styled
    assert "\x1b[31m" not in styled
    plain_rich = record(view.render(data, tz=UTC), width=200)
    row = line_with(plain_rich, "openai.1")
    assert "[bold]\\x1b…" in row
    assert "[red]m[/red]\\x1b]0;title\\x07" in row
    assert "[b]boom\\x1b[31m\\nnext" in line_with(plain_rich, "boom")
    plain = "\n".join(view.render_lines(data, tz=UTC))
    assert "\x1b" not in plain
    assert "[bold]\\x1b…" in plain
    assert "[i]\\x1b[2J" in plain


def test_problem_panel_and_footer() -> None:
    frame = view.with_footer(
        view.render_problem("unreachable, retrying every 1s", "The proxy is unreachable."),
        "Refreshing every 1s",
    )
    lines = record(frame).splitlines()
    assert "unreachable, retrying every 1s" in lines[1]
    assert "The proxy is unreachable." in lines[2]
    assert lines[-1] == "Refreshing every 1s"


def test_translated_rows_are_marked() -> None:
    conns = [
        connection("cc", endpoint="messages", translated=True, backend_api="openai"),
        connection("plain", endpoint="responses"),
    ]
    data = one(snapshot([instance("vllm.1", "openai", conns)]))
    text = record(view.render(data, tz=UTC))
    assert line_with(text, " cc ").split()[:3] == ["vllm.1⇄", "cc", "msgs"]
    assert line_with(text, "plain").split()[:3] == ["vllm.1", "plain", "resp"]
    assert text.splitlines()[-1] == view.TRANSLATED_NOTE
    assert view.TRANSLATED_NOTE not in record(view.render(one(several_backends()), tz=UTC))


def test_a_request_waiting_for_its_backend() -> None:
    waiting = connection("slow", connection_type="non_streaming", ttfb=None, status=None, rx=0)
    lines = view.render_lines(one(snapshot([instance("mock.1", "mock", [waiting])])), tz=UTC)
    assert lines[5].split() == [
        *("mock.1", "slow", "chat", "json", "gpt-4o", "12.3s", "…", "0B", "1.5K")
    ]
    assert lines[5].endswith("…        0B  1.5K")  # no status yet: the HTTP cell is blank


# --- the recent requests -------------------------------------------------------------


def test_plain_recent_requests() -> None:
    lines = view.render_lines(one(no_connections(), some_finished()), tz=UTC)
    assert lines[3:] == [
        "",
        "No active connections",
        "",
        "Recently finished, newest first",
        "Ended     Backend   Session      API   Model        Duration  TTFB  HTTP    RX    TX  Outcome    Detail",  # noqa: E501
        "15:59:59  mock.1    done-1       chat  gpt-4o       1.2s      50ms  200   2.0K  2.0K  completed",  # noqa: E501
        "15:59:55  mock.1    0f8fad5b-d…  chat  gpt-4o       5m 00s    50ms  200   512B  600B  stale      No data in either direction for 300 s; the request was cancelled.",  # noqa: E501
        "15:59:00  openai.1  stuck        chat  gpt-4o       42.0s     50ms  200   2.0K  2.0K  cancelled  by an operator",  # noqa: E501
        "15:00:00  vllm.1⇄   claude-cod…  msgs  qwen3-coder  0.0s         -  -       0B  160B  error      Backend 'vllm.1': cannot connect to 10.0.0.7:8000",  # noqa: E501
        "",
        view.TRANSLATED_NOTE,
    ]


def test_rich_recent_requests() -> None:
    text = record(view.render(one(no_connections(), some_finished()), tz=UTC), width=120)
    # At 120 columns every column fits, the detail and the model shortened.
    assert text.splitlines()[5:] == [
        "No active connections",
        "",
        "Recently finished, newest first",
        "Ended     Backend   Session      API   Model       Duration  TTFB  HTTP    RX    TX  Outcome    Detail                  ",  # noqa: E501
        "────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────",
        "15:59:59  mock.1    done-1       chat  gpt-4o      1.2s      50ms  200   2.0K  2.0K  completed                          ",  # noqa: E501
        "15:59:55  mock.1    0f8fad5b-d…  chat  gpt-4o      5m 00s    50ms  200   512B  600B  stale      No data in either direc…",  # noqa: E501
        "15:59:00  openai.1  stuck        chat  gpt-4o      42.0s     50ms  200   2.0K  2.0K  cancelled  by an operator          ",  # noqa: E501
        "15:00:00  vllm.1⇄   claude-cod…  msgs  qwen3-cod…  0.0s         -  -       0B  160B  error      Backend 'vllm.1': canno…",  # noqa: E501
        view.TRANSLATED_NOTE,
    ]
    # At 80, the byte counts, timings and API make room for what happened.
    lines = record(view.render(one(no_connections(), some_finished()), tz=UTC), width=80)
    assert lines.splitlines()[8:] == [
        "Ended     Backend   Session      Model       Duration  Outcome    Detail        ",
        "────────────────────────────────────────────────────────────────────────────────",
        "15:59:59  mock.1    done-1       gpt-4o      1.2s      completed                ",
        "15:59:55  mock.1    0f8fad5b-d…  gpt-4o      5m 00s    stale      No data in ei…",
        "15:59:00  openai.1  stuck        gpt-4o      42.0s     cancelled  by an operator",
        "15:00:00  vllm.1⇄   claude-cod…  qwen3-cod…  0.0s      error      Backend 'vllm…",
        view.TRANSLATED_NOTE,
    ]


def test_rich_recent_failures_stand_out() -> None:
    styled = record(view.render(one(no_connections(), some_finished()), tz=UTC), styles=True)
    assert "\x1b[1;31m" in line_with(styled, "No data")  # stale: bold red
    assert "\x1b[31m" in line_with(styled, "Backend 'vllm.1'")  # red
    assert "\x1b[33m" in line_with(styled, "by an operator")  # yellow
    assert "\x1b[" not in line_with(styled, "done-1").replace("\x1b[0m", "")


def test_recent_requests_are_limited_and_can_be_hidden() -> None:
    two = view.render_lines(one(no_connections(), some_finished(), show=2), tz=UTC)
    assert [line.split()[0] for line in two[8:]] == ["15:59:59", "15:59:55"]
    hidden = view.render_lines(one(no_connections(), some_finished(), show=0), tz=UTC)
    assert view.RECENT_HEADING not in hidden
    assert hidden[-1] == "No active connections"


def test_no_finished_requests_yet() -> None:
    lines = view.render_lines(one(no_connections(), recent([]), show=10), tz=UTC)
    assert lines[-2:] == [view.RECENT_HEADING, view.NO_FINISHED]


def test_recent_requests_that_could_not_be_read_are_a_note() -> None:
    problem = ProxyUnreachable("The proxy at http://localhost:8000 is unreachable: reset.")
    doc = no_connections()
    answer = ProxyAnswer(URL, doc, Diagnostics.from_dict(doc), recent_problem=problem)
    lines = view.render_lines(Screen((answer,), None, 10), tz=UTC)
    assert lines[-4:] == [
        view.RECENT_HEADING,
        view.NO_FINISHED,
        "",
        f"No finished requests to show: {problem}",
    ]


def test_a_finished_request_ends_at_start_plus_duration() -> None:
    ended = finished("x", ended=T0 + 3600.5, duration=3600.0)
    lines = view.render_lines(one(no_connections(), recent([ended])), tz=UTC)
    assert lines[-1].startswith("17:00:00  mock.1   x ")


# --- plain text ----------------------------------------------------------------------


def test_plain_several_backends() -> None:
    lines = view.render_lines(one(several_backends()), tz=UTC)
    assert lines == [
        "trioproxy activity · http://localhost:8000",
        "Active Connections: 3   Total RX: 3.5 MB   Total TX: 3.0 MB   Updated: 16:00:00",
        "Since start: 21 requests, 12 completed, 3 errors, 6 cancelled, 0 stale",
        "",
        "Backend      Session      API   Type    Model            Duration              TTFB  HTTP    RX    TX",  # noqa: E501
        "openai.1     0f8fad5b-d…  chat  stream  gpt-4o           12.3s                250ms  200   1.5K  1.5K",  # noqa: E501
        "openai.1     short        chat  json    gpt-4o           0.5s                 250ms  200   300B  300B",  # noqa: E501
        "anthropic.1  sess-idle    chat  stream  claude-sonnet-4  4m 05s (idle 42.0s)  250ms  200   3.5M  3.0M",  # noqa: E501
    ]


def test_plain_rates_in_watch_mode() -> None:
    rates = {(URL, "openai.1", "short"): 1536.0, (URL, "anthropic.1", "sess-idle"): 0.0}
    lines = view.render_lines(one(several_backends(), rates=rates), tz=UTC)
    assert lines[4].split()[-3:] == ["RX", "RX/s", "TX"]
    assert lines[5].endswith("1.5K        1.5K")  # new since the refresh before: blank
    assert lines[6].endswith("300B  1.5K  300B")
    assert lines[7].endswith("3.5M    0B  3.0M")


def test_plain_no_connections() -> None:
    lines = view.render_lines(one(no_connections()), tz=UTC)
    assert lines == [
        "trioproxy activity · http://localhost:8000",
        "Active Connections: 0   Total RX: 0 B   Total TX: 0 B   Updated: 16:00:00",
        "Since start: 7 requests, 4 completed, 1 errors, 2 cancelled, 0 stale",
        "",
        "No active connections",
    ]


def test_plain_tracking_off() -> None:
    lines = view.render_lines(one(tracking_off()))
    assert lines == ["trioproxy activity · http://localhost:8000", view.TRACKING_DISABLED]


def test_plain_notes_and_no_escape_codes() -> None:
    data = snapshot(
        [instance("openai.1", "openai", [connection()], rate_limited=True, retry_after=None)]
    )
    lines = view.render_lines(one(data), tz=UTC)
    assert lines[-2:] == ["", "openai.1: rate limited"]
    assert not any("\x1b" in line for line in lines)


def test_header_falls_back_to_instance_sums_without_global_activity() -> None:
    data = several_backends()
    data["global_activity"] = None
    lines = view.render_lines(one(data), tz=UTC)
    assert lines[1].startswith("Active Connections: 3   Total RX: 3.5 MB")
    assert not any(line.startswith("Since start") for line in lines)
