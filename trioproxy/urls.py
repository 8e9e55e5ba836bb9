"""Backend base URLs: which ones the proxy takes, and how one is shown (pure).

A base URL is an ``http://`` or ``https://`` origin with an optional path. Credentials
(``user:password@``), a query (``?key=…``) or a fragment are refused at start-up: the
upstream pool sends neither (every request to such a backend would fail), and a key
belongs in the variable ``api_key_env`` names, where it is sent the way the backend
expects and never shown.

Wherever a base URL is shown — start-up errors, diagnostics, error bodies, log lines —
it goes through :func:`shown_url`, so whatever secret a URL given anyway holds never
reaches a screen.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

HIDDEN = "***"


def shown_url(url: str) -> str:
    """``url`` with its userinfo, query values and fragment replaced by ``***``.

    The query's names stay (``?key=***&api-version=***``), so the reader can tell what
    was there; a URL with none of the three comes back as it is.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1/v1": nothing to tell apart in it, so nothing shown
        return HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        names = [name for name, _ in parse_qsl(query, keep_blank_values=True)]
        query = "&".join(f"{name}={HIDDEN}" for name in names) if names else HIDDEN
    fragment = HIDDEN if parts.fragment else ""
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def base_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a backend's base URL, or None if nothing is.

    The words complete a sentence that starts with where the URL came from ("key
    'backends[0].base_url' …", "environment variable OPENAI_BASE_URL …") and show the URL
    only through :func:`shown_url`.
    """
    try:
        parts = urlsplit(url)  # ValueError: an unclosed "[" of an IPv6 host
        port = parts.port  # ValueError: a port that is not a number or out of range
    except ValueError:
        valid = False
    else:
        valid = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and port != 0
            and " " not in parts.netloc
            and not parts.netloc.endswith(":")
        )
    shown = repr(shown_url(url))
    if not valid:
        return f"must be an http:// or https:// URL, not {shown}"
    if "@" in parts.netloc:
        return (
            f"must not contain credentials (user:password@), as {shown} does; put the "
            "backend's key in the variable that api_key_env names"
        )
    if parts.query or parts.fragment:
        return (
            f"must not contain a query (?…) or a fragment (#…), as {shown} does: the proxy "
            "does not send them upstream"
        )
    return None
