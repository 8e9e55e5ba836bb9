"""Finding a request's session id: pure."""

from __future__ import annotations

import pytest

from trioproxy.sessions import session_id_of


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
