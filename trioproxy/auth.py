"""Client authentication with proxy keys (pure).

When proxy keys are configured, every proxy route wants one of them in
``Authorization: Bearer <key>`` or ``x-api-key: <key>`` — what the ``openai`` and
``anthropic`` SDKs send as their ``api_key``. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence


def _bearer(value: bytes) -> bytes | None:
    """The key of an ``Authorization: Bearer <key>`` value, else None."""
    scheme, _, token = value.strip().partition(b" ")
    token = token.strip()
    return token if scheme.lower() == b"bearer" and token else None


def presented_keys(
    headers: Iterable[tuple[bytes, bytes]], *, bearer_only: bool = False
) -> list[bytes]:
    """The keys a request presents, from ``authorization`` (Bearer) and ``x-api-key``
    (not with ``bearer_only``)."""
    keys = []
    for name, value in headers:
        if name == b"authorization":
            if (token := _bearer(value)) is not None:
                keys.append(token)
        elif name == b"x-api-key" and not bearer_only and value.strip():
            keys.append(value.strip())
    return keys


def _one_of(keys: Iterable[bytes], allowed: Sequence[bytes]) -> bool:
    found = False
    for key in keys:
        for candidate in allowed:
            # Compare against every key so timing says nothing about which one matched.
            found |= hmac.compare_digest(key, candidate)
    return found


def is_authorized(headers: Iterable[tuple[bytes, bytes]], allowed: Sequence[bytes]) -> bool:
    """Whether a presented key is one of ``allowed`` (always true when none are set)."""
    return not allowed or _one_of(presented_keys(headers), allowed)


def bearer_key_is(headers: Iterable[tuple[bytes, bytes]], allowed: Sequence[bytes]) -> bool:
    """Whether an ``Authorization: Bearer`` key is one of ``allowed`` (false when none are).

    For the admin routes, which take no ``x-api-key``. Compared in constant time.
    """
    return _one_of(presented_keys(headers, bearer_only=True), allowed)
