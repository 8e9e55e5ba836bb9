"""The proxy routes as a lean ASGI handler: read the body, validate, route, relay.

``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages`` (Anthropic) bypass the
web framework: a Quart route costs measurably more per request, and owning the ASGI
conversation lets the request's scope own its upstream stream from the first byte (no
window between opening the upstream and the framework starting to iterate the body).
Every problem is answered in the API's own error shape; nothing here raises to the server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any

from .activity import ActivityTracker
from .auth import is_authorized
from .backends.base import UpstreamRequest, header_value
from .backends.instance import Backends
from .errors import (
    Api,
    BadRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    ProxyError,
    Unauthorized,
    error_body,
)
from .relay import JSON_HEADERS, Attempt, Call, Receive, Send, relay
from .routing import route
from .sessions import SESSION_HEADER, session_id_of

log = logging.getLogger(__name__)

UNAUTHORIZED = (
    "This proxy needs an API key: send one of its client keys as "
    "'Authorization: Bearer <key>' or 'x-api-key: <key>'."
)
PROXY_PATHS = {"/v1/chat/completions": Api.OPENAI, "/v1/messages": Api.ANTHROPIC}

# Request headers never forwarded upstream: hop-by-hop ones, ones the HTTP client sets,
# the client's credentials (the instance's own key is sent instead), and ours.
_DROP_REQUEST_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
        b"authorization",
        b"x-api-key",
        b"api-key",
        b"cookie",
        SESSION_HEADER.encode(),
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-real-ip",
    }
)


class _Disconnected(Exception):
    """The client hung up while sending its body."""


async def read_body(headers: list[tuple[bytes, bytes]], receive: Receive, limit: int) -> bytes:
    """The request body, read no further than ``limit`` bytes.

    Raises:
        PayloadTooLarge: the declared or actual size is over ``limit``.
        _Disconnected: the client hung up first.
    """
    for name, value in headers:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadRequest("Content-Length is not a number.") from None
            if declared > limit:
                raise PayloadTooLarge(f"Request body over the limit of {limit} bytes.")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Request body over the limit of {limit} bytes.")
            parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def parse_payload(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body.

    Raises:
        BadRequest: not JSON, not an object, or no string ``model``.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("The request needs a 'model': a non-empty string.")
    return payload


def _encode(payload: dict[str, Any]) -> bytes:
    """``payload`` as compact JSON; non-ASCII kept as UTF-8 where it can be."""
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        # A lone surrogate escape ("\ud800") has no UTF-8 form: keep it escaped.
        return json.dumps(payload, separators=(",", ":")).encode()


class ProxyRoutes:
    """The ASGI handler of the two proxy routes."""

    def __init__(
        self,
        backends: Backends,
        tracker: ActivityTracker | None,
        *,
        max_request_body: int,
        default_backend: str | None,
        client_keys: tuple[bytes, ...] = (),
    ) -> None:
        self.backends = backends
        self.tracker = tracker
        self.max_request_body = max_request_body
        self.default_backend = default_backend
        self.in_flight: set[Attempt] = set()
        self.client_keys = client_keys

    def prepare(
        self, api: Api, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[Call, tuple[str, ...]]:
        """Validate and route a request; returns the call and the candidate instances.

        Raises:
            ProxyError: the request cannot be served (its status and message say why).
        """
        content_type = header_value(headers, b"content-type")
        if content_type is not None and "json" not in content_type.lower():
            raise BadRequest(f"Content-Type must be application/json, not {content_type!r}.")
        payload = parse_payload(body)
        model: str = payload["model"]
        session_id, in_body = session_id_of(header_value(headers, SESSION_HEADER.encode()), payload)
        chosen = route(
            model,
            api,
            self.backends.targets(),
            default_backend=self.default_backend,
            rate_limited=lambda name: self.backends[name].is_rate_limited(),
        )
        if chosen.upstream_model != model or in_body:
            payload["model"] = chosen.upstream_model
            payload.pop("session_id", None)
            body = _encode(payload)
        forwarded = [(k, v) for k, v in headers if k not in _DROP_REQUEST_HEADERS]
        if content_type is None:
            forwarded.append((b"content-type", b"application/json"))
        streaming = payload.get("stream") is True
        call = Call(
            api=api,
            session_id=session_id,
            model=chosen.upstream_model,
            streaming=streaming,
            upstream=UpstreamRequest(api=api, body=body, headers=forwarded, streaming=streaming),
        )
        return call, chosen.candidates

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        api = PROXY_PATHS[scope["path"]]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        try:
            if not is_authorized(headers, self.client_keys):
                raise Unauthorized(UNAUTHORIZED)
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"Use POST for {scope['path']}.")
            body = await read_body(headers, receive, self.max_request_body)
            call, names = self.prepare(api, headers, body)
        except _Disconnected:
            return
        except ProxyError as exc:
            await send_error(send, api, exc)
            return
        candidates = [self.backends[name] for name in names]
        await relay(call, candidates, receive, send, self.tracker, self.in_flight)

    def cancel_in_flight(self) -> int:
        """End every request still relaying (the shutdown deadline); returns how many.

        Each ends with 503, or an error event if its stream had started.
        """
        for attempt in self.in_flight:
            attempt.shut_down()
        return len(self.in_flight)


async def send_error(send: Send, api: Api, exc: ProxyError) -> None:
    """Answer ``exc`` as a complete JSON response in ``api``'s shape."""
    body = error_body(api, exc)
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", b"POST"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
