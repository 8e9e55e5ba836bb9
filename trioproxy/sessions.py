"""Which session a request belongs to (pure)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

SESSION_HEADER = "x-session-id"
MAX_SESSION_ID = 200
# Our own generator, seeded from os.urandom: code that seeds the global ``random`` (tests,
# libraries) cannot make the proxy's ids repeat.
_IDS = random.Random()


def valid_session_id(value: str) -> bool:
    """1 to 200 printable ASCII characters: safe to echo back as a header value."""
    return 0 < len(value) <= MAX_SESSION_ID and all(" " <= c <= "~" for c in value)


def new_session_id() -> str:
    """A fresh random session id: 32 hex digits (128 random bits)."""
    # A session id is a label, not a credential: it only groups requests in the
    # diagnostics. A Mersenne Twister seeded from os.urandom makes ids that never repeat
    # in practice without the system call per request that uuid4 or secrets cost, which
    # showed up in the hot path's profile.
    return f"{_IDS.getrandbits(128):032x}"


def session_id_of(
    header: str | None,
    payload: dict[str, Any],
    *,
    generate: Callable[[], str] = new_session_id,
) -> tuple[str, bool]:
    """The session id of a request, and whether the body carried one.

    The ``x-session-id`` header wins; else a top-level string ``session_id`` field of the
    body; else a new random id. A body ``session_id`` is reported so the caller removes
    it before forwarding. Values that are blank, overlong or not printable ASCII are
    ignored (they could not be echoed back as a header unchanged).
    """
    from_body = "session_id" in payload
    if header is not None and valid_session_id(header.strip()):
        return header.strip(), from_body
    value = payload.get("session_id")
    if isinstance(value, str) and valid_session_id(value.strip()):
        return value.strip(), from_body
    return generate(), from_body
