"""Formatting of the view's values: bytes, durations, clock times and client text; pure.

Bytes are shown 1024-based (1 KB = 1024 B) by :func:`format_bytes`; durations as
``12.3s``, ``4m 05s``, ``1h 02m`` by :func:`format_duration`.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

#: Session ids longer than this many characters are cut and end with an ellipsis.
SESSION_WIDTH = 10


def format_bytes(count: int) -> str:
    """``512 B``, ``1.5 KB``, ``12.0 MB``, ``3.2 GB``; 1024-based (1 KB = 1024 B)."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KB", "MB"):
        value /= 1024
        if round(value, 1) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} GB"


def format_duration(seconds: float) -> str:
    """``12.3s`` under a minute, ``4m 05s`` under an hour, ``1h 02m`` beyond; never negative.

    Minutes and hours are truncated, never rounded up: ``3599.9`` is ``59m 59s``.
    """
    seconds = max(0.0, seconds)
    if seconds < 59.95:  # anything higher would print as "60.0s"
        return f"{seconds:.1f}s"
    whole = max(60, int(seconds))
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes}m {secs:02d}s"
    hours, rest = divmod(whole, 3600)
    return f"{hours}h {rest // 60:02d}m"


def printable(text: str) -> str:
    """``text`` with control and format characters shown as ``\\xNN`` / ``\\uNNNN``.

    Session ids and model names come from clients; an escape sequence among them must not
    reach the operator's terminal.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in text)


def short_session(session_id: str) -> str:
    """The first :data:`SESSION_WIDTH` characters, and ``…`` when there are more."""
    if len(session_id) <= SESSION_WIDTH:
        return session_id
    return session_id[:SESSION_WIDTH] + "…"


def format_clock(timestamp: float, tz: tzinfo | None = None) -> str:
    """``HH:MM:SS`` of an epoch timestamp, in ``tz`` (default: local time)."""
    return datetime.fromtimestamp(timestamp, tz).strftime("%H:%M:%S")
