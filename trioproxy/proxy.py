"""The proxy routes as a lean ASGI handler: read the body, validate, route, relay.

Every path of the route table (:mod:`trioproxy.routes`) bypasses the web framework: a
Quart route costs measurably more per request, and owning the ASGI conversation lets the
request's scope own its upstream stream from the first byte (no window between opening
the upstream and the framework starting to iterate the body). Every problem is answered
in the route's API's own error shape; nothing here raises to the server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from .accesslog import AccessEntry, AccessLog, entry_for
from .activity import ActivityTracker
from .asgi import Receive, Send
from .auth import is_authorized
from .backends.instance import Backends
from .cancellation import Attempt
from .client_out import JSON_HEADERS, ClientOut
from .errors import (
    Api,
    BadRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    ProxyError,
    RequestTimeout,
    Unauthorized,
    error_body,
)
from .hangup import hangup_of
from .headers import REQUEST_DROP, SESSION_HEADER, Headers, header_value
from .jsonbody import encode, parse_object
from .relay import Call, relay
from .routes import ProxyRoute
from .routing import route
from .sessions import DEFAULT_SESSION_HEADERS, header_session_id, session_id_of

UNAUTHORIZED = (
    "This proxy needs an API key: send one of its client keys as "
    "'Authorization: Bearer <key>' or 'x-api-key: <key>'."
)


class _Disconnected(Exception):
    """The client hung up while sending its body."""


async def read_body(
    headers: Headers,
    receive: Receive,
    limit: int,
    timeout: float,  # noqa: ASYNC109 - the client's own deadline, answered with a 408
) -> bytes:
    """The request body, read no further than ``limit`` bytes, within ``timeout`` seconds.

    The timeout bounds the whole body, from the call (the headers are in by then), not
    each read: a client sending a byte a second holds a connection as surely as one that
    sends nothing.

    Raises:
        PayloadTooLarge: the declared or actual size is over ``limit``.
        BadRequest: a ``Content-Length`` that is not a number.
        RequestTimeout: the body was not all there within ``timeout`` seconds.
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
    body = _Body(limit)
    ready = _queued(receive)
    if ready is not None:
        # What has arrived is taken without a timer: a body sent with its headers is
        # read without the cancel scope of a deadline, which costs more than the reading.
        try:
            while not body.add(ready()):
                pass
            return body.value()
        except trio.WouldBlock:
            pass
    try:
        with trio.fail_after(timeout):
            while not body.add(await receive()):
                pass
            return body.value()
    except trio.TooSlowError:
        raise RequestTimeout(f"The request body did not arrive within {timeout:g} s.") from None


def _queued(receive: Receive) -> Callable[[], Any] | None:
    """``receive_nowait`` of the memory channel behind ``receive``, if it is one (hypercorn's
    Trio worker hands the app ``MemoryReceiveChannel.receive``); None for any other."""
    channel = getattr(receive, "__self__", None)
    if isinstance(channel, trio.MemoryReceiveChannel):
        return channel.receive_nowait
    return None


class _Body:
    """The parts of a request body read so far, checked against the limit."""

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, message: Mapping[str, Any]) -> bool:
        """Take one ASGI message; True once the body is complete.

        Raises:
            PayloadTooLarge: the body is over the limit.
            _Disconnected: the message says the client hung up.
        """
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            self.size += len(chunk)
            if self.size > self.limit:
                raise PayloadTooLarge(f"Request body over the limit of {self.limit} bytes.")
            self.parts.append(chunk)
        return not message.get("more_body", False)

    def value(self) -> bytes:
        return b"".join(self.parts)


def parse_payload(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body, with its ``model``.

    Raises:
        BadRequest: not RFC 8259 JSON in UTF-8, not an object, or no string ``model``.
    """
    payload = parse_object(body)
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("The request needs a 'model': a non-empty string.")
    return payload


class ProxyRoutes:
    """The ASGI handler of every route in the route table.

    Args:
        backends: the configured instances.
        tracker: the activity tracker, or None when tracking is off.
        max_request_body: the largest body accepted, in bytes (413 beyond).
        request_body_timeout: seconds the whole body may take to arrive (408 beyond).
        default_backend: the instance for models no instance lists.
        client_keys: proxy keys a client must present (empty: none needed).
        session_headers: the request headers that may carry a session id, in order.
        aliases: model names clients use, mapped to the model (or ``instance:model``)
            routing sees instead.
        default_max_tokens: ``max_tokens`` for a translated request to an Anthropic
            backend that set none.
        access_log: where a line per finished request goes (None: nowhere).
    """

    def __init__(
        self,
        backends: Backends,
        tracker: ActivityTracker | None,
        *,
        max_request_body: int,
        default_backend: str | None,
        client_keys: tuple[bytes, ...] = (),
        session_headers: Sequence[str] = DEFAULT_SESSION_HEADERS,
        aliases: Mapping[str, str] | None = None,
        default_max_tokens: int = 4096,
        access_log: AccessLog | None = None,
        request_body_timeout: float = 60.0,
    ) -> None:
        self.backends = backends
        self.tracker = tracker
        self.max_request_body = max_request_body
        self.default_backend = default_backend
        self.in_flight: set[Attempt] = set()
        #: Requests that have ended (answered, failed or hung up), however they ended.
        self.ended = 0
        self.client_keys = client_keys
        self.session_headers = tuple(name.lower().encode("latin-1") for name in session_headers)
        self.aliases: Mapping[str, str] = aliases or {}
        self.default_max_tokens = default_max_tokens
        self.access_log = access_log
        self.request_body_timeout = request_body_timeout

    def prepare(
        self,
        request_route: ProxyRoute,
        headers: Headers,
        body: bytes,
        query: bytes = b"",
        known: Known | None = None,
    ) -> tuple[Call, tuple[str, ...]]:
        """Validate and route a request; returns the call and the candidate instances.

        ``known`` gets the request's session and model as soon as they are known, so that
        a request refused after that (by routing) is answered and logged with them.

        Raises:
            ProxyError: the request cannot be served (its status and message say why).
        """
        content_type = header_value(headers, b"content-type")
        if content_type is not None and "json" not in content_type.lower():
            raise BadRequest(f"Content-Type must be application/json, not {content_type!r}.")
        payload = parse_payload(body)
        model: str = self.aliases.get(payload["model"], payload["model"])
        session_id, in_body = session_id_of(
            header_session_id(headers, self.session_headers), payload
        )
        if known is not None:
            known.session_id, known.model = session_id, model
        chosen = route(
            model,
            request_route,
            self.backends.targets(),
            default_backend=self.default_backend,
            rate_limited=lambda name: self.backends[name].is_rate_limited(),
        )
        if chosen.upstream_model != payload["model"] or in_body:
            payload["model"] = chosen.upstream_model
            payload.pop("session_id", None)
            body = encode(payload)
        forwarded = [(k, v) for k, v in headers if k not in REQUEST_DROP]
        if content_type is None:
            forwarded.append((b"content-type", b"application/json"))
        call = Call(
            route=request_route,
            session_id=session_id,
            model=chosen.upstream_model,
            streaming=request_route.streams and payload.get("stream") is True,
            payload=payload,
            default_max_tokens=self.default_max_tokens,
            body=body,
            headers=forwarded,
            query=b"?" + query if query else b"",
        )
        return call, chosen.candidates

    async def __call__(
        self,
        request_route: ProxyRoute,
        scope: MutableMapping[str, Any],
        receive: Receive,
        send: Send,
    ) -> None:
        """Serve one request on ``request_route``; every failure is answered, none raised.

        With an access log, one line is written when the request ends, however it ends.
        """
        arrived = trio.current_time()
        call: Call | None = None
        out: ClientOut | None = None
        status: int | None = None
        refused_tx = 0
        outcome = "refused"
        known = Known()
        try:
            call, names, status, refused_tx = await self._prepare_or_answer(
                request_route, scope, receive, send, known
            )
            if call is None:
                outcome = "cancelled" if status is None else "refused"
                return
            hangup = hangup_of(scope)
            out = ClientOut(send, call.session_id, hangup)
            candidates = [self.backends[name] for name in names]
            await relay(call, candidates, receive, out, self.tracker, self.in_flight, hangup)
            outcome = out.outcome
        except BaseException as exc:
            outcome = "cancelled" if _only_cancelled(exc) else "error"
            raise
        finally:
            self.ended += 1
            if self.access_log is not None:
                self.access_log.write(
                    _entry(
                        scope, request_route, arrived, call, out, status, outcome, refused_tx, known
                    )
                )

    async def _prepare_or_answer(
        self,
        request_route: ProxyRoute,
        scope: MutableMapping[str, Any],
        receive: Receive,
        send: Send,
        known: Known,
    ) -> tuple[Call | None, tuple[str, ...], int | None, int]:
        """The routed call, or None once the request is answered (its status and the bytes
        of its error body) or gone (None, 0). ``known`` gets its session and model once
        they are known."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        body_read = False
        try:
            if not is_authorized(headers, self.client_keys):
                raise Unauthorized(UNAUTHORIZED)
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"Use POST for {request_route.path}.")
            body = await read_body(
                headers, receive, self.max_request_body, self.request_body_timeout
            )
            body_read = True
            query = scope.get("query_string", b"")
            call, names = self.prepare(request_route, headers, body, query, known)
        except _Disconnected:
            return None, (), None, 0
        except ProxyError as exc:
            # Answered before its body was read (401, 405, 413, 408): the connection
            # cannot carry another request, so the client is told not to send one on
            # it. (Without it, one sent at once met the server's close: "Server
            # disconnected without sending a response".)
            sent = await send_error(
                send, request_route.api, exc, known.session_id, close=not body_read
            )
            return None, (), exc.status, sent
        return call, names, None, 0

    @property
    def in_flight_count(self) -> int:
        """Requests relaying now."""
        return len(self.in_flight)

    def cancel_in_flight(self) -> int:
        """End every request still relaying (the shutdown deadline); returns how many.

        Each ends with 503, or an error event if its stream had started.
        """
        for attempt in self.in_flight:
            attempt.shut_down()
        return len(self.in_flight)


@dataclass(slots=True)
class Known:
    """What is known of a request before it is routed: its session and model (as asked,
    aliases resolved), for the answer and the access log of one that is refused."""

    session_id: str | None = None
    model: str | None = None


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return False


def _entry(
    scope: MutableMapping[str, Any],
    request_route: ProxyRoute,
    arrived: float,
    call: Call | None,
    out: ClientOut | None,
    status: int | None,
    outcome: str,
    refused_tx: int,
    known: Known,
) -> AccessEntry:
    return entry_for(
        scope,
        arrived,
        # The status the client got, also when the relay raised (a shutdown's cut stream).
        status=out.status if out is not None else status,
        outcome=outcome,
        endpoint=request_route.endpoint.value,
        instance=out.instance if out is not None else None,
        model=call.model if call is not None else known.model,
        session=call.session_id if call is not None else known.session_id,
        first_byte=out.first_byte if out is not None else None,
        bytes_rx=out.rx if out is not None else 0,
        bytes_tx=out.tx if out is not None else refused_tx,
    )


async def send_error(
    send: Send, api: Api, exc: ProxyError, session_id: str | None = None, *, close: bool = False
) -> int:
    """Answer ``exc`` as a complete JSON response in ``api``'s shape (with the request's
    session as ``x-session-id`` when it is known, and ``connection: close`` with
    ``close``); returns the body's length (the bytes sent to the client, for the access
    log)."""
    body = error_body(api, exc)
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if session_id is not None:
        headers.append((SESSION_HEADER, session_id.encode()))
    if close:
        headers.append((b"connection", b"close"))
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", b"POST"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return len(body)
