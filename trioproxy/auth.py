"""Client authentication with proxy keys (pure).

When proxy keys are configured, every proxy route wants one of them in
``Authorization: Bearer <key>`` or ``x-api-key: <key>`` — what the ``openai`` and
``anthropic`` SDKs send as their ``api_key``. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence


def presented_keys(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """The keys a request presents, from ``authorization`` (Bearer) and ``x-api-key``."""
    keys = []
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                keys.append(token.strip())
        elif name == b"x-api-key" and value.strip():
            keys.append(value.strip())
    return keys


def is_authorized(headers: Iterable[tuple[bytes, bytes]], allowed: Sequence[bytes]) -> bool:
    """Whether a presented key is one of ``allowed`` (always true when none are set)."""
    if not allowed:
        return True
    found = False
    for key in presented_keys(headers):
        for candidate in allowed:
            # Compare against every key so timing says nothing about which one matched.
            found |= hmac.compare_digest(key, candidate)
    return found


def bearer_key_is(headers: Iterable[tuple[bytes, bytes]], allowed: Sequence[bytes]) -> bool:
    """Whether an ``Authorization: Bearer`` key is one of ``allowed`` (false when none are).

    For the admin routes, which take no ``x-api-key``. Compared in constant time.
    """
    found = False
    for name, value in headers:
        if name != b"authorization":
            continue
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            continue
        for candidate in allowed:
            found |= hmac.compare_digest(token.strip(), candidate)
    return found
