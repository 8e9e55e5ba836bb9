"""Finding a request's session id: pure."""

from __future__ import annotations

import random
import re

import pytest

from trioproxy.sessions import (
    DEFAULT_SESSION_HEADERS,
    header_session_id,
    new_session_id,
    session_id_of,
)


def fixed() -> str:
    return "generated"


@pytest.mark.parametrize(
    ("header", "payload", "expected"),
    [
        ("abc", {}, ("abc", False)),
        ("abc", {"session_id": "body"}, ("abc", True)),
        (None, {"session_id": "body"}, ("body", True)),
        (None, {}, ("generated", False)),
        ("  ", {"session_id": "body"}, ("body", True)),
        (None, {"session_id": 42}, ("generated", True)),
        (None, {"session_id": "x" * 201}, ("generated", True)),
    ],
)
def test_session_id_precedence(
    header: str | None, payload: dict[str, object], expected: tuple[str, bool]
) -> None:
    assert session_id_of(header, payload, generate=fixed) == expected


def test_generated_ids_are_unique() -> None:
    ids = {session_id_of(None, {})[0] for _ in range(100)}
    assert len(ids) == 100


def test_new_session_ids_are_32_hex_digits_untouched_by_the_global_seed() -> None:
    saved = random.getstate()
    try:
        random.seed(7)
        first = new_session_id()
        random.seed(7)  # code that seeds the global generator cannot make ids repeat
        second = new_session_id()
    finally:
        random.setstate(saved)
    assert first != second
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)


DEFAULT_NAMES = tuple(n.encode() for n in DEFAULT_SESSION_HEADERS)


@pytest.mark.parametrize(
    ("headers", "payload", "expected"),
    [
        # Ours first, then Claude Code's, then the Codex CLI's two spellings, then the body.
        ([(b"x-session-id", b"ours"), (b"session-id", b"codex")], {}, "ours"),
        ([(b"session-id", b"codex"), (b"x-claude-code-session-id", b"claude")], {}, "claude"),
        ([(b"session-id", b"codex")], {"session_id": "body"}, "codex"),
        ([(b"session_id", b"codex-underscore")], {}, "codex-underscore"),
        ([(b"session_id", b"b"), (b"session-id", b"a")], {}, "a"),
        ([], {"session_id": "body"}, "body"),
        ([(b"x-session-id", b"  padded  ")], {}, "padded"),
        # An invalid value is skipped: the next header in the list, or the body, decides.
        ([(b"x-session-id", b"   "), (b"session-id", b"codex")], {}, "codex"),
        ([(b"x-session-id", b"x" * 201)], {"session_id": "body"}, "body"),
        ([(b"x-session-id", "é".encode())], {}, "generated"),
        ([(b"x-other", b"nope")], {}, "generated"),
        # The first of two same-named headers counts.
        ([(b"x-session-id", b"one"), (b"x-session-id", b"two")], {}, "one"),
    ],
)
def test_the_session_of_a_request(
    headers: list[tuple[bytes, bytes]], payload: dict[str, object], expected: str
) -> None:
    found = header_session_id(headers, DEFAULT_NAMES)
    assert session_id_of(found, payload, generate=fixed)[0] == expected


def test_the_header_list_is_the_configured_one() -> None:
    headers = [(b"x-session-id", b"ours"), (b"x-trace", b"trace")]
    assert header_session_id(headers, (b"x-trace",)) == "trace"
    assert header_session_id(headers, ()) is None
