"""The incremental SSE parser the stream translators read backends with."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.translate.sse import SSEEvent, SSEParser, anthropic_event, openai_event


def parse(*pieces: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    return [event for piece in pieces for event in parser.feed(piece)]


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"data: a\n\n", [SSEEvent("", b"a")]),
        (b"data: a\r\n\r\n", [SSEEvent("", b"a")]),
        (b"data: a\r\r", [SSEEvent("", b"a")]),
        (b"data: a\r\n\r", [SSEEvent("", b"a")]),
        (b"event: ping\ndata: {}\n\n", [SSEEvent("ping", b"{}")]),
        (b"data:a\n\n", [SSEEvent("", b"a")]),
        (b"data:  a\n\n", [SSEEvent("", b" a")]),
        (b"data: a\ndata: b\n\n", [SSEEvent("", b"a\nb")]),
        (b"data\n\n", [SSEEvent("", b"")]),
        (b": comment\ndata: a\n: more\n\n", [SSEEvent("", b"a")]),
        (b": keep-alive\n\n", []),
        (b"event: x\n\ndata: a\n\n", [SSEEvent("", b"a")]),
        (b"id: 3\nretry: 10\ndata: a\n\n", [SSEEvent("", b"a")]),
        (b"\xef\xbb\xbfdata: a\n\n", [SSEEvent("", b"a")]),
        (b"data: a\n\ndata: b\n\n", [SSEEvent("", b"a"), SSEEvent("", b"b")]),
        (b"data: a\n", []),
        ("data: é€😀\n\n".encode(), [SSEEvent("", "é€😀".encode())]),
    ],
)
def test_parser_table(stream: bytes, expected: list[SSEEvent]) -> None:
    assert parse(stream) == expected
    assert parse(*(stream[i : i + 1] for i in range(len(stream)))) == expected


def test_an_event_is_returned_by_the_piece_that_ends_it() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.pending
    assert parser.feed(b"\n") == [SSEEvent("", b"a")]
    assert not parser.pending


def test_a_carriage_return_ends_the_line_before_the_next_piece_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\r") == [SSEEvent("", b"a")]
    # The \n that may follow the \r belongs to it, and is not another blank line.
    assert parser.feed(b"\ndata: b\r\n\r\n") == [SSEEvent("", b"b")]


def test_a_lone_newline_after_a_piece_ending_in_cr_is_skipped() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\n") == [SSEEvent("", b"a")]


def test_the_encoders_write_what_the_parser_reads() -> None:
    assert parse(anthropic_event("message_stop", {"type": "message_stop"})) == [
        SSEEvent("message_stop", b'{"type":"message_stop"}')
    ]
    assert parse(openai_event({"a": "é"})) == [SSEEvent("", '{"a":"é"}'.encode())]


ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """A stream of events with any line endings, comments and multi-line data."""
    text = st.text(st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=8)
    out: list[str] = []
    expected = []
    previous = ""

    def line(content: str) -> None:
        nonlocal previous
        # "\r" then "\n" would be one CRLF, not two line ends: no writer produces that.
        ending = draw(ENDINGS.filter(lambda e: not (previous == "\r" and e == "\n")))
        out.append(content + ending)
        previous = ending

    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(["", "message", "content_block_delta"]))
        datas = draw(st.lists(text, min_size=1, max_size=3))
        if draw(st.booleans()):
            line(": " + draw(text))
        if name:
            line(f"event: {name}")
        for data in datas:
            line(f"data: {data}")
        line("")
        expected.append(SSEEvent(name, "\n".join(datas).encode()))
    return "".join(out).encode(), expected


@settings(max_examples=200, deadline=None)
@given(streams(), st.lists(st.integers(0, 10_000), max_size=8))
def test_any_split_of_any_stream_gives_the_same_events(
    case: tuple[bytes, list[SSEEvent]], cuts: list[int]
) -> None:
    data, expected = case
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert parse(*pieces) == expected
