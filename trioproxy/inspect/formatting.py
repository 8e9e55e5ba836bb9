"""Formatting of the view's values: bytes, durations, clock times and client text; pure.

Bytes are shown 1024-based (1 KB = 1024 B): in the header by :func:`format_bytes`
(``1.5 KB``), in the tables by :func:`format_bytes_short` (``1.5K``), which keeps a
table of a dozen columns within 80 terminal columns. Durations read ``12.3s``,
``4m 05s``, ``1h 02m`` (:func:`format_duration`); a time to first byte under a second
is in milliseconds (:func:`format_ttfb`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

import httpx

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


def format_bytes_short(count: float) -> str:
    """``512B``, ``1.5K``, ``12.0M``, ``3.2G``: :func:`format_bytes` without the space and
    the ``B`` of the multiples; a fraction of a byte (a rate) is dropped."""
    if count < 1024:
        return f"{int(count)}B"
    return format_bytes(int(count)).replace(" ", "").removesuffix("B")


def format_ttfb(seconds: float | None, missing: str = "") -> str:
    """A time to first byte: ``3ms``, ``250ms`` under a second, then as a duration
    (``1.2s``); ``missing`` when there is none (yet)."""
    if seconds is None:
        return missing
    millis = round(max(0.0, seconds) * 1000)
    if millis < 1000:
        return f"{millis}ms"
    return format_duration(seconds)


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


#: The short names of the endpoints (the ``endpoint`` field) in the tables.
ENDPOINTS = {
    "chat.completions": "chat",
    "responses": "resp",
    "messages": "msgs",
    "embeddings": "embed",
    "completions": "compl",
    "count_tokens": "count",
}

#: Follows the backend of a translated request: the backend speaks the other API.
TRANSLATED = "⇄"


def short_endpoint(endpoint: str) -> str:
    """``chat``, ``msgs`` …: the endpoint's short name; an unknown one as it is (printable)."""
    return ENDPOINTS.get(endpoint) or printable(endpoint)


def backend_name(instance: str, translated: bool) -> str:
    """The instance's name (printable), followed by :data:`TRANSLATED` when the request
    is translated to its API."""
    name = printable(instance)
    return name + TRANSLATED if translated else name


def _host_port(url: httpx.URL, *, short_host: bool) -> str:
    host = url.host
    if short_host and not _is_ip(host):
        host = host.split(".", 1)[0]
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(url.scheme)
    return host if url.port in (None, default) else f"{host}:{url.port}"


def _is_ip(host: str) -> bool:
    return ":" in host or host.replace(".", "").isdigit()


def proxy_labels(urls: list[str]) -> list[str]:
    """Short names of several proxies' base URLs, for the ``Proxy`` column; distinct.

    The shortest of these forms that tells every URL apart: the host's first label and
    the port (``proxy-a:8000``; an IP address stays whole, a default port is left out),
    the whole host and the port, then those with the path, then the URL itself.
    """
    parsed = [httpx.URL(url) for url in urls]
    forms: list[Callable[[httpx.URL], str]] = [
        lambda u: _host_port(u, short_host=True),
        lambda u: _host_port(u, short_host=False),
        lambda u: _host_port(u, short_host=False) + u.path.rstrip("/"),
        str,
    ]
    for form in forms:
        labels = [printable(form(url)) for url in parsed]
        if len(set(labels)) == len(labels):
            return labels
    return [printable(url) for url in urls]
