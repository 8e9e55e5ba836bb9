"""Several proxies in one view, RX rates from two refreshes, and tables fitted to a width.

Rules: pure functions on fixed documents (``tests/documents.py``); no I/O, no clock.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest

from tests.documents import T0, connection, finished, instance, recent, snapshot, tracking_off
from trioproxy.inspect import view
from trioproxy.inspect.document import Diagnostics, RecentRequests
from trioproxy.inspect.fetch import DiagnosticsForbidden, ProxyUnreachable
from trioproxy.inspect.formatting import proxy_labels
from trioproxy.inspect.merge import (
    ProxyAnswer,
    Screen,
    entries,
    rx_rates,
    totals,
    tracking_disabled,
)
from trioproxy.inspect.merge import finished as finished_rows
from trioproxy.inspect.tables import Column, fit, plain_table

A, B, C = "http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000"
REFUSED = ProxyUnreachable(f"The proxy at {C} is unreachable: [Errno 111] Connection refused.")


def answer(url: str, doc: dict[str, Any], done: dict[str, Any] | None = None) -> ProxyAnswer:
    finished_doc = RecentRequests.from_dict(done) if done is not None else None
    return ProxyAnswer(url, doc, Diagnostics.from_dict(doc), recent=finished_doc)


def two_up_one_down(show: int = 10) -> Screen:
    """Proxy A with one stream, B (a second later) with one, C refusing connections."""
    a = answer(
        A,
        snapshot([instance("mock.1", "mock", [connection("alpha", rx=4096, tx=4096)])]),
        recent([finished("a-new", ended=T0 - 2), finished("a-old", ended=T0 - 10)]),
    )
    b = answer(
        B,
        snapshot(
            [instance("mock.1", "mock", [connection("beta", rx=1024, tx=1024, duration=3.0)])],
            timestamp=T0 + 1,
        ),
        recent([finished("b-mid", ended=T0 - 5, outcome="error", error="boom", status=502)]),
    )
    return Screen((a, b, ProxyAnswer(C, problem=REFUSED)), None, show)


# --- merging -------------------------------------------------------------------------


def test_plain_merge_of_two_proxies_and_an_unreachable_one() -> None:
    assert view.render_lines(two_up_one_down(), tz=UTC) == [
        "trioproxy activity · 3 proxies",
        "Active Connections: 2   Total RX: 5.0 KB   Total TX: 5.0 KB   Updated: 16:00:01",
        "Since start: 14 requests, 8 completed, 2 errors, 4 cancelled, 0 stale",
        "10.0.0.1:8000  up, 1 connection",
        "10.0.0.2:8000  up, 1 connection",
        "10.0.0.3:8000  unreachable",
        "",
        "Proxy          Backend  Session  API   Type    Model   Duration   TTFB  HTTP    RX    TX",
        "10.0.0.1:8000  mock.1   alpha    chat  stream  gpt-4o  12.3s     250ms  200   4.0K  4.0K",
        "10.0.0.2:8000  mock.1   beta     chat  stream  gpt-4o  3.0s      250ms  200   1.0K  1.0K",
        "",
        "Recently finished, newest first",
        "Ended     Proxy          Backend  Session  API   Model   Duration  TTFB  HTTP    RX    TX  Outcome    Detail",  # noqa: E501
        "15:59:58  10.0.0.1:8000  mock.1   a-new    chat  gpt-4o  1.2s      50ms  200   2.0K  2.0K  completed",  # noqa: E501
        "15:59:55  10.0.0.2:8000  mock.1   b-mid    chat  gpt-4o  1.2s      50ms  502   2.0K  2.0K  error      boom",  # noqa: E501
        "15:59:50  10.0.0.1:8000  mock.1   a-old    chat  gpt-4o  1.2s      50ms  200   2.0K  2.0K  completed",  # noqa: E501
        "",
        str(REFUSED),
    ]


def test_merged_totals_sum_the_proxies_that_answered() -> None:
    sums = totals(two_up_one_down())
    assert (sums.active, sums.bytes_rx, sums.bytes_tx) == (2, 5120, 5120)
    assert sums.lifetime is not None and sums.lifetime.requests == 14
    assert sums.timestamp == T0 + 1  # the newest document's
    nobody = totals(Screen((ProxyAnswer(C, problem=REFUSED),)))
    assert (nobody.active, nobody.lifetime, nobody.timestamp) == (0, None, None)


def test_merged_rows_keep_the_proxies_order_and_name_them() -> None:
    rows = entries(two_up_one_down())
    assert [(e.proxy, e.backend, e.connection.session_id) for e in rows] == [
        ("10.0.0.1:8000", "mock.1", "alpha"),
        ("10.0.0.2:8000", "mock.1", "beta"),
    ]
    # Finished requests interleave over the proxies, newest first, cut to the limit.
    done = finished_rows(two_up_one_down(show=2))
    assert [f.request.session_id for f in done] == ["a-new", "b-mid"]


def test_a_proxy_refusing_or_without_tracking_is_named_with_its_reason() -> None:
    forbidden = DiagnosticsForbidden(f"{B}/v1/diagnostics answered 403 Forbidden: …")
    screen = Screen(
        (
            answer(A, snapshot([instance("mock.1", "mock", [])])),
            ProxyAnswer(B, problem=forbidden),
            answer(C, tracking_off()),
        ),
        None,
        0,
    )
    lines = view.render_lines(screen, tz=UTC)
    assert lines[3:6] == [
        "10.0.0.1:8000  up, 0 connections",
        "10.0.0.2:8000  forbidden (HTTP 403)",
        "10.0.0.3:8000  activity tracking disabled",
    ]
    assert lines[-2:] == [str(forbidden), tracking_disabled(C)]
    assert "the proxy at http://10.0.0.3:8000" in lines[-1]


def test_backend_notes_name_their_proxy() -> None:
    limited = instance("openai.1", "openai", [], rate_limited=True, retry_after=3.0)
    screen = Screen((answer(A, snapshot([limited])), answer(B, snapshot([]))), None, 0)
    assert (
        view.render_lines(screen, tz=UTC)[-1]
        == "10.0.0.1:8000 openai.1: rate limited, retry in 3.0s"
    )


def test_workers_that_did_not_answer_are_named_so_a_partial_view_says_so() -> None:
    partial = {**snapshot([instance("mock.1", "mock", [])]), "workers_unreachable": [1, 3]}
    whole = {**snapshot([]), "workers_unreachable": []}
    one = view.render_lines(Screen((answer(A, partial),), None, 0), tz=UTC)
    several = view.render_lines(Screen((answer(A, partial), answer(B, whole)), None, 0), tz=UTC)
    assert one[-1] == "workers 1, 3 not answering: their requests are not shown"
    assert several[-1] == "10.0.0.1:8000 workers 1, 3 not answering: their requests are not shown"
    assert not any("not answering" in line for line in several[:-1])
    alone = {**snapshot([]), "workers_unreachable": [0]}
    zero = view.render_lines(Screen((answer(A, alone),), None, 0), tz=UTC)
    assert zero[-1] == "worker 0 not answering: its requests are not shown"


def test_rich_merge_with_one_proxy_down() -> None:
    text = record_rich(two_up_one_down(), width=80)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    assert "│ 10.0.0.3:8000  unreachable" in text
    table = lines.index(next(line for line in lines if line.startswith("Proxy ")))
    # Columns are left out before the proxy's name is cut.
    assert lines[table + 2].split()[:3] == ["10.0.0.1:8000", "mock.1", "alpha"]
    assert " ".join(" ".join(lines[-2:]).split()) == str(REFUSED)  # wrapped at the edge


def record_rich(screen: Screen, width: int) -> str:
    import io

    from rich.console import Console

    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True)
    console.print(view.render(screen, tz=UTC))
    return console.export_text()


@pytest.mark.parametrize(
    ("urls", "labels"),
    [
        (["http://localhost:8000"], ["localhost:8000"]),
        ([A, B], ["10.0.0.1:8000", "10.0.0.2:8000"]),
        (
            ["https://proxy-a.corp.example", "http://proxy-b.corp.example:80"],
            ["proxy-a", "proxy-b"],
        ),
        (
            ["http://a.example.com:8000", "http://a.example.org:8000"],
            ["a.example.com:8000", "a.example.org:8000"],
        ),
        (["http://h:1/one", "http://h:1/two"], ["h:1/one", "h:1/two"]),
        (["http://[::1]:8001", "http://[::1]:8002"], ["[::1]:8001", "[::1]:8002"]),
        (["http://h:1", "https://h:1"], ["http://h:1", "https://h:1"]),
    ],
)
def test_proxy_labels_are_short_and_distinct(urls: list[str], labels: list[str]) -> None:
    assert proxy_labels(urls) == labels


# --- rates ---------------------------------------------------------------------------


def doc_at(timestamp: float, *conns: dict[str, Any]) -> dict[str, Any]:
    return snapshot([instance("mock.1", "mock", list(conns))], timestamp=timestamp)


def conn(session: str, rx: int, *, started: float, now: float) -> dict[str, Any]:
    """A connection that started at ``started``, as a document at ``now`` gives it."""
    return {**connection(session, rx=rx, now=now), "started_at": started}


def test_rx_rate_from_two_documents() -> None:
    before = Diagnostics.from_dict(
        doc_at(
            T0,
            conn("steady", 1000, started=T0 - 10, now=T0),
            conn("again", 5000, started=T0 - 30, now=T0),
            conn("gone", 10, started=T0 - 1, now=T0),
        )
    )
    now = answer(
        A,
        doc_at(
            T0 + 2,
            conn("steady", 5096, started=T0 - 10, now=T0 + 2),  # 4096 B in 2 s
            conn("again", 100, started=T0 + 1, now=T0 + 2),  # started again under the key
            conn("new", 700, started=T0 + 1, now=T0 + 2),
        ),
    )
    rates = rx_rates({A: before}, [now])
    assert rates == {(A, "mock.1", "steady"): 2048.0}
    screen = Screen((now,), rates, 0)
    assert [(e.connection.session_id, e.rx_rate) for e in entries(screen)] == [
        ("steady", 2048.0),
        ("again", None),
        ("new", None),
    ]
    assert view.render_lines(screen, tz=UTC)[5].split()[-3:] == ["5.0K", "2.0K", "1.5K"]


def test_rx_rate_needs_the_same_proxy_and_a_clock_that_moved() -> None:
    before = Diagnostics.from_dict(doc_at(T0, conn("s", 0, started=T0, now=T0)))
    later = answer(A, doc_at(T0 + 1, conn("s", 512, started=T0, now=T0 + 1)))
    same_time = answer(A, doc_at(T0, conn("s", 512, started=T0, now=T0)))
    assert rx_rates({}, [later]) == {}  # the first refresh
    assert rx_rates({B: before}, [later]) == {}  # another proxy's document
    assert rx_rates({A: before}, [same_time]) == {}
    assert rx_rates({A: before}, [ProxyAnswer(A, problem=REFUSED)]) == {}
    assert rx_rates({A: before}, [later]) == {(A, "mock.1", "s"): 512.0}


# --- fitting a table to a width ------------------------------------------------------

COLUMNS: tuple[Column[str], ...] = (
    Column("Name", str),
    Column("Wide", str, gives_way=True),
    Column("Minor", str, drop_rank=2),
    Column("Least", str, drop_rank=1),
    Column("Num", str, numeric=True),
)
TABLE = [
    ["Name", "Wide", "Minor", "Least", "Num"],
    ["abcdef", "w" * 30, "mmmmm", "lllll", "12345"],
]


@pytest.mark.parametrize(
    ("width", "shown"),
    [
        (100, [(0, 6), (1, 30), (2, 5), (3, 5), (4, 5)]),  # 51, and 4 gaps of 2
        (59, [(0, 6), (1, 30), (2, 5), (3, 5), (4, 5)]),
        (58, [(0, 6), (1, 29), (2, 5), (3, 5), (4, 5)]),  # the one that gives way narrows
        (39, [(0, 6), (1, 10), (2, 5), (3, 5), (4, 5)]),  # ... down to its minimum
        (38, [(0, 6), (1, 16), (2, 5), (4, 5)]),  # then "Least" is left out, "Wide" widens
        (32, [(0, 6), (1, 10), (2, 5), (4, 5)]),
        (31, [(0, 6), (1, 16), (4, 5)]),  # then "Minor"; the others never are
        (25, [(0, 6), (1, 10), (4, 5)]),
        (20, [(0, 6), (1, 5), (4, 5)]),  # below the minimum when nothing else is left
        (5, [(0, 6), (1, 1), (4, 5)]),  # too narrow: rich squeezes what is left
    ],
)
def test_fit_leaves_out_then_narrows(width: int, shown: list[tuple[int, int]]) -> None:
    assert fit(COLUMNS, TABLE, width) == shown


def test_plain_table_pads_and_aligns() -> None:
    rows = [["Name", "Wide", "Minor", "Least", "Num"], ["a", "b\nc", "", "", "7"]]
    assert plain_table(COLUMNS, rows) == [
        "Name  Wide  Minor  Least  Num",
        "a     b c                   7",
    ]


@pytest.mark.parametrize("width", [60, 80])
def test_a_long_backend_name_is_shortened_on_a_narrow_terminal_and_no_number_is_cut(
    width: int,
) -> None:
    # With a 27-character backend name in 60 columns, the names kept their width and
    # rich narrowed every column: "83…" for 830B, "comple…", the model gone.
    name = "openai-production-eu-west-1"
    rows = [connection("abcdefgh-1234", rx=830, tx=830, model="gpt-4o")]
    doc = snapshot([instance(name, "openai", rows)])
    text = record_rich(Screen((answer(A, doc),), None, 0), width=width)
    lines = text.splitlines()
    assert max(map(len, lines)) <= width
    table = next(line for line in lines if line.lstrip("│ ").startswith("Backend"))
    row = lines[lines.index(table) + 2]
    assert "830B" in row and "…" in row  # the name shortened, the number whole
    assert "Model" in table
