"""Finding a request's session id: pure."""

from __future__ import annotations

import random
import re

import pytest

from trioproxy.sessions import new_session_id, session_id_of


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
