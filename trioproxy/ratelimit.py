"""Reading an upstream's ``Retry-After`` (pure)."""

from __future__ import annotations

import email.utils

DEFAULT_RETRY_AFTER = 30.0
MAX_RETRY_AFTER = 3600.0


def retry_after_seconds(value: str | None, now: float) -> float:
    """Seconds to wait per a ``Retry-After`` header: delay-seconds or an HTTP date.

    ``now`` is the current epoch time (for dates). A missing or unreadable value gives
    30 s; the result is clamped to 0 to 3600 s.
    """
    if value is None:
        return DEFAULT_RETRY_AFTER
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
