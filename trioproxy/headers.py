"""HTTP header rules of the relay (pure): lookup, and what never crosses the proxy.

Request headers are forwarded upstream unchanged except for :data:`REQUEST_DROP`;
response headers come back unchanged except for :data:`RESPONSE_DROP`. Names are the
lower-case bytes the ASGI server and h11 hand us.
"""

from __future__ import annotations

from collections.abc import Sequence

Headers = Sequence[tuple[bytes, bytes]]

#: Our own session header: consumed by the proxy, echoed to the client, never forwarded.
SESSION_HEADER = b"x-session-id"

# Headers that belong to one HTTP hop (RFC 9110 §7.6.1) and the framing of that hop:
# the next hop frames its own message.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)

#: Request headers never forwarded upstream: hop-by-hop ones, ones the upstream client
#: sets itself, the client's credentials (the instance's own key is sent instead),
#: cookies, ours, and forwarding headers that would let a client speak for the proxy.
REQUEST_DROP = HOP_BY_HOP | {
    b"host",
    b"expect",
    b"authorization",
    b"x-api-key",
    b"api-key",
    b"cookie",
    SESSION_HEADER,
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"x-real-ip",
}

#: Response headers never relayed to the client: hop-by-hop and framing ones (our server
#: frames the client's response itself), and the ones our server sets.
RESPONSE_DROP = HOP_BY_HOP | {b"date", b"server"}


def header_value(headers: Headers, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case) in ``headers``, or None."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None
