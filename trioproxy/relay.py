"""One proxied request, from a routed call to the last byte handed to the client.

Each attempt (one per instance tried, at most MAX_ATTEMPTS) owns one cancel scope,
:attr:`Attempt.scope`, created with it. Inside it a nursery holds everything the attempt
opened: the upstream response (``async with``, so it is closed on every way out) and the
task that watches for the client hanging up. That task starts with a stream, or once the
connector says the exchange may take long (it queues, dials, or has waited 0.1 s for the
backend): a quick JSON answer is relayed without it, since a task costs more than the
rest of such a relay. The tracker registration (when tracking is on) encloses the scope,
so the bytes of an error answer sent after a cancellation are still counted. Nothing
outlives the attempt.

Three things cancel an attempt's scope, through its :class:`Attempt` handle, which
records why (:class:`Stop`): the client hanging up (nothing more is sent), the stale
sweeper (504, or an SSE error event once the stream started) and the shutdown deadline
(503, or an error event). What the relay does once the scope has unwound is the pure
decision :func:`ending`.

Server-Sent Events are relayed event by event: bytes after the last complete event
boundary wait until their event completes, so a backend that cuts its stream mid-event
never hands the client a partial event, and an error event follows complete events only.

An attempt that gets a 429, or cannot connect, before any byte reached the client hands
the request to the next candidate instance; a pinned request has one candidate.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import trio

from .activity import ActivityTracker, RequestMeter
from .backends.base import UpstreamRequest, UpstreamResponse
from .backends.instance import BackendInstance
from .crossing import Crossing, crossing_request
from .errors import (
    Api,
    CancelledByOperator,
    ProxyError,
    ShuttingDown,
    StreamShape,
    UpstreamError,
    UpstreamTimeout,
    error_body,
    sse_error_event,
)
from .headers import RESPONSE_DROP, SESSION_HEADER, Headers, header_value
from .ratelimit import retry_after_seconds
from .routes import ProxyRoute, upstream_route
from .routing import backend_api
from .translate import StreamTranslator

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_ATTEMPTS = 3
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_CONTENT_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")


@dataclass(frozen=True, slots=True)
class Call:
    """A validated, routed request ready to go upstream.

    ``body`` and ``headers`` are what a backend of the client's API gets (model
    rewritten, our own and hop-by-hop headers removed), ``payload`` the same body parsed
    (translated for a backend of the other API); ``query`` is the client's query string
    with its ``?`` (empty when there was none), appended unchanged to the upstream path.
    """

    route: ProxyRoute
    session_id: str
    model: str  # as sent upstream
    streaming: bool
    body: bytes
    headers: Headers
    query: bytes = b""
    payload: Mapping[str, Any] = field(default_factory=dict)
    default_max_tokens: int = 4096  # for an Anthropic backend of a client that set none

    @property
    def api(self) -> Api:
        """The API the client speaks, which shapes every error it gets."""
        return self.route.api

    def upstream_request(
        self, instance: BackendInstance
    ) -> tuple[UpstreamRequest, Crossing | None]:
        """What to send to ``instance``, and how its answer is translated (None: as is).

        Raises:
            BadRequest: the instance speaks the other API and the request cannot be
                translated faithfully.
        """
        api = backend_api(instance.spec.type)
        query = self.query.decode("latin-1")
        if api is None or (path := self.route.upstream_path(api)) is None:
            backend_route = upstream_route(self.route, api) if api is not None else None
            if api is not None and backend_route is not None:
                return crossing_request(
                    self.route,
                    backend_route,
                    api,
                    self.payload,
                    self.headers,
                    query=query,
                    streaming=self.streaming,
                    default_max_tokens=self.default_max_tokens,
                )
            path = self.route.path  # the mock: it answers by endpoint
        request = UpstreamRequest(
            endpoint=self.route.endpoint,
            path=path + query,
            body=self.body,
            headers=self.headers,
            streaming=self.streaming,
        )
        return request, None


class Phase(enum.Enum):
    """How far the client's response has got; one value instead of flags that must agree."""

    PENDING = "nothing sent yet"
    JSON = "head sent, a body that is not an event stream"
    SSE = "head sent, a Server-Sent Events body"
    CLOSED = "nothing more will be sent"


class ClientOut:
    """The client side of one request's response, and what the access log says of it.

    It spans the request's attempts: its phase, the status the client got, the body bytes
    received from backends (``rx``) and handed to the client (``tx``), the first byte's
    time, the instance that answered, how the request ended (``outcome``, ``reason``,
    ``error``). While an attempt is tracked, ``meter`` is its tracker meter, to which
    bytes, failures and cancellations are passed on.
    """

    __slots__ = (
        "_send",
        "_session",
        "error",
        "first_byte",
        "instance",
        "last",
        "meter",
        "outcome",
        "phase",
        "reason",
        "rx",
        "status",
        "tx",
    )

    def __init__(self, send: Send, session_id: str) -> None:
        self._send = send
        self._session = (SESSION_HEADER, session_id.encode())
        self.meter: RequestMeter | None = None
        self.phase = Phase.PENDING
        #: The last body chunk sent, for numbering a Responses error event after it.
        self.last = b""
        self.status: int | None = None
        self.rx = 0
        self.tx = 0
        #: ``trio.current_time()`` of the first body byte from a backend.
        self.first_byte: float | None = None
        self.instance: str | None = None
        self.outcome = "completed"
        self.reason: str | None = None
        self.error: str | None = None

    @property
    def started(self) -> bool:
        """Whether the response head has been sent (so the status can no longer change)."""
        return self.phase is not Phase.PENDING

    @property
    def complete(self) -> bool:
        """Whether the response has ended: nothing an interruption could still spoil."""
        return self.phase is Phase.CLOSED

    async def start(self, status: int, headers: Headers) -> None:
        out = [(k, v) for k, v in headers if k not in RESPONSE_DROP]
        out.append(self._session)
        sse = any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in out)
        self.phase = Phase.SSE if sse else Phase.JSON
        self.status = status
        await self._send({"type": "http.response.start", "status": status, "headers": out})

    def received(self, nbytes: int) -> None:
        """Count ``nbytes`` body bytes received from the backend."""
        if self.first_byte is None:
            self.first_byte = trio.current_time()
        self.rx += nbytes
        if self.meter is not None:
            self.meter.add_rx(nbytes)

    async def body(self, chunk: bytes) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        self.last = chunk
        self.tx += len(chunk)
        if self.meter is not None:
            self.meter.add_tx(len(chunk))

    async def end(self) -> None:
        self.phase = Phase.CLOSED
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def failed(self, message: str) -> None:
        """The request ended (or will end) in error: the access log's and the meter's."""
        self.outcome = "error"
        if self.error is None:
            self.error = message
        if self.meter is not None:
            self.meter.fail(message)

    def cancelled(self, reason: str) -> None:
        """The request was cancelled: by the ``client``, at ``shutdown``, an ``operator``."""
        self.outcome = "cancelled"
        self.reason = reason
        if self.meter is not None:
            self.meter.mark_cancelled(reason)

    async def fail(self, route: ProxyRoute, exc: ProxyError) -> None:
        """End the response with ``exc``: a JSON error, or an SSE error event once started.

        Both in the shape of ``route``'s API (a Responses stream ends with the Responses
        API's own error event, numbered after the last event sent).
        """
        phase = self.phase
        if phase is Phase.CLOSED:
            return
        if phase is Phase.PENDING:
            await self.start(exc.status, JSON_HEADERS)
            await self.body(error_body(route.api, exc))
        elif phase is Phase.JSON:
            # A JSON body cut short cannot be mended. Ending it without its last message
            # makes the server close the connection, so the client sees it was cut.
            self.phase = Phase.CLOSED
            return
        else:
            number = next_sequence_number(self.last) if route.stream_errors is _RESPONSES else 0
            await self.body(sse_error_event(route.stream_errors, exc, sequence_number=number))
        await self.end()


_RESPONSES = StreamShape.RESPONSES
_SEQUENCE = re.compile(rb'"sequence_number"\s*:\s*(\d+)')


def next_sequence_number(sent: bytes) -> int:
    """The Responses event number after the last one in ``sent`` (0 if none is there)."""
    numbers = _SEQUENCE.findall(sent)
    return int(numbers[-1]) + 1 if numbers else 0


_BOUNDARIES = (b"\n\n", b"\r\n\r\n", b"\r\r")


def event_end(data: bytes) -> int:
    """The offset just past the last complete Server-Sent Event in ``data`` (0: none).

    An event ends with a blank line: ``\\n\\n``, ``\\r\\r`` or ``\\r\\n\\r\\n``.
    """
    end = 0
    for boundary in _BOUNDARIES:
        at = data.rfind(boundary)
        if at >= 0 and at + len(boundary) > end:
            end = at + len(boundary)
    return end


async def relay_body(
    chunks: AsyncIterator[bytes],
    out: ClientOut,
    translator: StreamTranslator | None = None,
) -> None:
    """Hand every body chunk to the client as it arrives; event streams event by event.

    Bytes of an event stream after its last complete event wait for the rest of their
    event (received, and counted as received, but not sent); if the body ends cleanly
    they are sent as they are, so the relay stays byte for byte. An upstream error
    propagates with them unsent. With a ``translator`` the client gets what it makes of
    each chunk; once the client's stream has ended (the backend's last event, or its
    error event) the rest of the body is read and counted but not sent. A request whose
    translated stream ended in error is marked failed.
    """
    held = b""
    sse = translator is None and out.phase is Phase.SSE
    async for chunk in chunks:
        out.received(len(chunk))
        if translator is not None:
            chunk = translator.feed(chunk)
            if translator.done:
                break
            if not chunk:
                continue
        elif sse:
            if held:
                chunk = held + chunk
            # Whole events per read are the rule: one check, and no search, for them.
            if chunk.endswith(b"\n\n"):
                held = b""
            else:
                cut = event_end(chunk)
                held = chunk[cut:]
                chunk = chunk[:cut]
                if not chunk:
                    continue
        await out.body(chunk)
    else:
        chunk = b""
    if translator is not None:
        # What the last chunk ended (the loop broke on it), or the translation's end.
        held = chunk if translator.done else translator.finish()
        if translator.failed:
            out.failed("the translated stream ended with an error")
    if held:
        await out.body(held)
    if translator is not None:
        # The client's stream has ended; what the backend still sends (its `[DONE]`,
        # say) is read and counted, so bytes_rx stays exact and the connection reusable.
        async for chunk in chunks:
            out.received(len(chunk))


async def _read_all(chunks: AsyncIterator[bytes], out: ClientOut) -> bytes:
    """A whole body (one to be translated), counted as received as it arrives."""
    parts = []
    async for chunk in chunks:
        out.received(len(chunk))
        parts.append(chunk)
    return b"".join(parts)


async def _relay_translated(
    crossing: Crossing,
    response: UpstreamResponse,
    out: ClientOut,
) -> None:
    """Relay an answer of the other API: a stream translated as it arrives, else whole.

    Raises:
        UpstreamProtocolError: a 2xx body that is not the backend API's answer.
    """
    status = response.status
    headers = [(k, v) for k, v in response.headers if k != b"content-type"]
    is_sse = any(
        k == b"content-type" and v.startswith(b"text/event-stream") for k, v in response.headers
    )
    if status < 400 and is_sse:
        await out.start(status, [*headers, SSE_CONTENT_TYPE])
        await relay_body(response.aiter_raw(), out, crossing.stream())
        return
    body = await _read_all(response.aiter_raw(), out)
    answer = crossing.answer(body) if status < 400 else crossing.error(status, body)
    await out.start(status, [*headers, *JSON_HEADERS])
    await out.body(answer)


class _Retry(Exception):
    """This attempt failed before any byte reached the client; try the next instance."""


class Stop(enum.Enum):
    """Why an attempt's scope was cancelled from outside."""

    DISCONNECT = "the client hung up"
    STALE = "the stale sweeper"
    SHUTDOWN = "the shutdown deadline"
    OPERATOR = "an operator (POST /v1/diagnostics/cancel)"


class Attempt:
    """The cancel handle of one attempt: whoever cancels it says why.

    The tracker calls :meth:`cancel_as_stale` (its sweeper) and :meth:`cancel_by_operator`
    (an operator's cancel), the shutdown deadline :meth:`shut_down`, the disconnect
    watcher :meth:`disconnect`. The first reason wins;
    the relay reads it after the attempt's scope has unwound.
    """

    __slots__ = ("reason", "scope")

    def __init__(self) -> None:
        self.reason: Stop | None = None
        self.scope = trio.CancelScope()

    def _stop(self, reason: Stop) -> None:
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()

    def cancel_as_stale(self) -> None:
        """Cancel as stale (the tracker's sweeper)."""
        self._stop(Stop.STALE)

    def cancel_by_operator(self) -> None:
        """Cancel because an operator asked to (the tracker's cancel)."""
        self._stop(Stop.OPERATOR)

    def shut_down(self) -> None:
        """Cancel at the shutdown deadline."""
        self._stop(Stop.SHUTDOWN)

    def disconnect(self) -> None:
        """Cancel because the client hung up."""
        self._stop(Stop.DISCONNECT)


class Ending(enum.Enum):
    """What the relay does once an attempt's scope has unwound."""

    DONE = "nothing more to do"
    RETRY = "hand the request to the next instance"
    HUNG_UP = "count the request cancelled; the client is gone, send nothing"
    STALE = "end the response with 504 or an error event; counted stale"
    SHUTDOWN = "end the response with 503 or an error event; counted cancelled (shutdown)"
    OPERATOR = "end the response with 503 or an error event; counted cancelled (operator)"


_ENDING_OF_STOP = {
    Stop.DISCONNECT: Ending.HUNG_UP,
    Stop.STALE: Ending.STALE,
    Stop.SHUTDOWN: Ending.SHUTDOWN,
    Stop.OPERATOR: Ending.OPERATOR,
}


def ending(reason: Stop | None, *, complete: bool, retry: bool) -> Ending:
    """Decide what follows an attempt (pure).

    Args:
        reason: why the attempt's scope was cancelled, or None if it was not.
        complete: whether the client's response had already ended.
        retry: whether the attempt asked to hand the request to the next instance.
    """
    if reason is None:
        return Ending.RETRY if retry else Ending.DONE
    if complete:
        # Cancelled once the answer was complete: nothing to add or count.
        return Ending.DONE
    return _ENDING_OF_STOP[reason]


async def _exchange(
    call: Call,
    request: UpstreamRequest,
    crossing: Crossing | None,
    instance: BackendInstance,
    out: ClientOut,
    meter: RequestMeter | None,
    on_wait: Callable[[], None],
    *,
    may_retry: bool,
) -> None:
    """Send ``request`` to ``instance`` and relay the answer chunk by chunk.

    ``crossing`` translates the answer of an instance of the other API.

    Raises:
        _Retry: a 429 or a connection failure, and another instance may take the call.
    """
    try:
        async with instance.connector.open(request, on_wait=on_wait) as response:
            instance.record_success()
            status = response.status
            if meter is not None:
                meter.set_status(status)
            if status == 429:
                retry = header_value(response.headers, b"retry-after")
                instance.mark_rate_limited(retry_after_seconds(retry, time.time()))
                log.warning("backend %s is rate limited (429)", instance.name)
                if may_retry:
                    raise _Retry
            if status >= 400:
                out.failed(f"the backend answered HTTP {status}")
            if crossing is None:
                await out.start(status, response.headers)
                await relay_body(response.aiter_raw(), out)
            else:
                await _relay_translated(crossing, response, out)
            await out.end()
    except UpstreamError as exc:
        exc.of_backend(instance.name)
        if not out.started:
            instance.record_failure(exc.message)
        log.warning("request failed: %s", exc.message)
        if may_retry and exc.failover_safe and not out.started:
            raise _Retry from exc
        out.failed(exc.message)
        await out.fail(call.route, exc)


class _Watch:
    """Starts, at most once, the task that notices the client hanging up."""

    __slots__ = ("_attempt", "_nursery", "_out", "_receive", "started")

    def __init__(
        self, nursery: trio.Nursery, receive: Receive, attempt: Attempt, out: ClientOut
    ) -> None:
        self._nursery = nursery
        self._receive = receive
        self._attempt = attempt
        self._out = out
        self.started = False

    def __call__(self) -> None:
        # Watching takes a task of its own, which costs more than a quick answer's whole
        # relay: so it starts only once the exchange may take long (the connector says
        # when), and at once for a stream.
        if not self.started:
            self.started = True
            self._nursery.start_soon(self._watch)

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                # A client that hangs up after the last byte ended nothing early.
                if not self._out.complete:
                    self._attempt.disconnect()
                return


async def _attempt(
    call: Call,
    instance: BackendInstance,
    out: ClientOut,
    receive: Receive,
    tracker: ActivityTracker | None,
    in_flight: set[Attempt],
    *,
    may_retry: bool,
) -> None:
    """One try at one instance.

    Raises:
        _Retry: hand the call to the next instance.
    """
    # What the access log says is of the last attempt.
    out.instance, out.outcome, out.reason, out.error = instance.name, "completed", None, None
    try:
        request, crossing = call.upstream_request(instance)
    except ProxyError as exc:  # a request the other API cannot take faithfully
        out.failed(exc.message)
        await out.fail(call.route, exc)
        return
    attempt = Attempt()
    registration: AbstractContextManager[RequestMeter | None] = (
        nullcontext()
        if tracker is None
        else tracker.track(
            instance.name,
            call.session_id,
            model=call.model,
            streaming=call.streaming,
            handle=attempt,
            endpoint=call.route.endpoint.value,
            translated=crossing is not None,
            backend_api=(crossing.backend_api if crossing is not None else call.api).value,
        )
    )
    in_flight.add(attempt)
    try:
        with registration as meter:
            out.meter = meter
            retry = False
            with attempt.scope:
                async with trio.open_nursery() as nursery:
                    watch = _Watch(nursery, receive, attempt, out)
                    if call.streaming:
                        watch()
                    try:
                        await _exchange(
                            call,
                            request,
                            crossing,
                            instance,
                            out,
                            meter,
                            watch,
                            may_retry=may_retry,
                        )
                    except _Retry:
                        # Raised out of the nursery it would arrive wrapped in a group.
                        retry = True
                    if watch.started:
                        nursery.cancel_scope.cancel()  # the watcher is no longer needed
            end = ending(attempt.reason, complete=out.complete, retry=retry)
            if end is Ending.DONE:
                return
            if end is Ending.RETRY:
                out.failed("failed over to the next backend")
                raise _Retry
            if end is Ending.HUNG_UP:
                out.cancelled("client")
                return
            error: ProxyError
            if end is Ending.STALE:
                assert tracker is not None
                error = UpstreamTimeout(
                    f"No data in either direction for {tracker.stale_timeout:g} s; "
                    "the request was cancelled as stale."
                )
                out.outcome = "stale"
            elif end is Ending.OPERATOR:
                error = CancelledByOperator("An operator of the proxy cancelled this request.")
                # The tracker has marked its meter; the access log learns it here.
                out.outcome, out.reason = "cancelled", "operator"
            else:
                out.cancelled("shutdown")
                error = ShuttingDown("The proxy is shutting down.")
            await out.fail(call.route, error)
    finally:
        out.meter = None
        in_flight.discard(attempt)


async def relay(
    call: Call,
    candidates: Sequence[BackendInstance],
    receive: Receive,
    out: ClientOut,
    tracker: ActivityTracker | None,
    in_flight: set[Attempt],
) -> None:
    """Serve ``call`` through the first of ``candidates`` that answers, answering on ``out``.

    Errors of the backend reach the client as a JSON error or an SSE error event;
    a client that hangs up cancels everything the request opened, at once. ``out`` says
    afterwards what happened (status, bytes, instance, outcome).
    """
    tried = candidates[:MAX_ATTEMPTS]
    for number, instance in enumerate(tried, start=1):
        try:
            await _attempt(
                call, instance, out, receive, tracker, in_flight, may_retry=number < len(tried)
            )
        except _Retry:
            log.info("failing over from %s", instance.name)
            continue
        return
