"""Which session a request belongs to (pure).

The session of a request is, in order: the first of the session headers
(``Settings.session_headers``; by default ``x-session-id``; ``x-claude-code-session-id``,
which Claude Code sends, stable for one conversation; ``session-id`` and ``session_id``,
which the Codex CLI sends) that holds a valid id; else a top-level string ``session_id``
field of the body (removed before forwarding); else a new random id.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: The default of ``Settings.session_headers``: ours, Claude Code's, the Codex CLI's two.
DEFAULT_SESSION_HEADERS = ("x-session-id", "x-claude-code-session-id", "session-id", "session_id")
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


def header_session_id(headers: Iterable[tuple[bytes, bytes]], names: Sequence[bytes]) -> str | None:
    """The first valid session id among the headers ``names``, in the order of ``names``.

    A header that is present but blank, overlong or not printable ASCII is skipped, so
    the next one in the list (or the body) may still give the session.
    """
    found: dict[bytes, str] = {}
    for key, value in headers:
        if key in names and key not in found:
            found[key] = value.decode("latin-1").strip()
    for name in names:
        candidate = found.get(name)
        if candidate is not None and valid_session_id(candidate):
            return candidate
    return None


def session_id_of(
    header: str | None,
    payload: dict[str, Any],
    *,
    generate: Callable[[], str] = new_session_id,
) -> tuple[str, bool]:
    """The session id of a request, and whether the body carried one.

    ``header`` is what :func:`header_session_id` found (or None); else a top-level string
    ``session_id`` field of the body; else a new random id. A body ``session_id`` is
    reported so the caller removes it before forwarding. Values that are blank, overlong
    or not printable ASCII are ignored (they could not be echoed back as a header
    unchanged).
    """
    from_body = "session_id" in payload
    if header is not None and valid_session_id(header.strip()):
        return header.strip(), from_body
    value = payload.get("session_id")
    if isinstance(value, str) and valid_session_id(value.strip()):
        return value.strip(), from_body
    return generate(), from_body
