"""One proxied request, from a routed call to the last byte handed to the client.

Each attempt (one per instance tried, at most MAX_ATTEMPTS) is one Trio nursery whose
cancel scope owns everything the attempt opened: the upstream response (``async with``,
so it is closed on every way out) and the task that watches for the client hanging up.
That task starts with a stream, or once the connector says the exchange may take long
(it queues, dials, or has waited 0.1 s for the backend): a quick JSON answer is relayed
without it, since a task costs more than the rest of such a relay.
The tracker registration (when tracking is on) encloses the nursery, so the bytes of an
error answer sent after a cancellation are still counted. Nothing outlives the attempt.

Three things cancel an attempt's scope, through its :class:`Attempt` handle, which
records why: the client hanging up (``http.disconnect``: nothing more is sent), the stale
sweeper (504, or an SSE error event once the stream started) and the shutdown deadline
(503, or an error event).

An attempt that gets a 429, or cannot connect, before any byte reached the client hands
the request to the next candidate instance; a pinned request has one candidate.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import trio

from .activity import ActivityTracker, RequestMeter
from .backends.base import Headers, UpstreamRequest, header_value
from .backends.instance import BackendInstance
from .errors import (
    Api,
    ProxyError,
    ShuttingDown,
    UpstreamError,
    UpstreamTimeout,
    error_body,
    sse_error_event,
)
from .ratelimit import retry_after_seconds

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_ATTEMPTS = 3

# Response headers that belong to one HTTP hop, or that our server sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"date",
        b"server",
    }
)
JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True, slots=True)
class Call:
    """A validated, routed request ready to go upstream."""

    api: Api
    session_id: str
    model: str  # as sent upstream
    streaming: bool
    upstream: UpstreamRequest


class ClientOut:
    """The client side of the response: what was sent, and the bytes handed over."""

    __slots__ = ("_send", "_session", "ended", "is_sse", "meter", "started")

    def __init__(self, send: Send, session_id: str) -> None:
        self._send = send
        self._session = (b"x-session-id", session_id.encode())
        self.meter: RequestMeter | None = None
        self.started = False
        self.ended = False
        self.is_sse = False

    async def start(self, status: int, headers: Headers) -> None:
        out = [(k, v) for k, v in headers if k not in HOP_BY_HOP]
        out.append(self._session)
        self.is_sse = any(
            k == b"content-type" and v.startswith(b"text/event-stream") for k, v in out
        )
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": out})

    async def body(self, chunk: bytes) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        if self.meter is not None:
            self.meter.add_tx(len(chunk))

    async def end(self) -> None:
        self.ended = True
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def fail(self, api: Api, exc: ProxyError) -> None:
        """End the response with ``exc``: a JSON error, or an SSE error event once started."""
        if self.ended:
            return
        if not self.started:
            await self.start(exc.status, JSON_HEADERS)
            await self.body(error_body(api, exc))
        elif not self.is_sse:
            # A JSON body cut short cannot be mended. Ending it without its last message
            # makes the server close the connection, so the client sees it was cut.
            self.ended = True
            return
        else:
            await self.body(sse_error_event(api, exc))
        await self.end()


class _Retry(Exception):
    """This attempt failed before any byte reached the client; try the next instance."""


class _Stop(enum.Enum):
    """Why an attempt's scope was cancelled from outside."""

    DISCONNECT = "the client hung up"
    STALE = "the stale sweeper"
    SHUTDOWN = "the shutdown deadline"


class Attempt:
    """The cancel handle of one attempt: whoever cancels it says why.

    The tracker's sweeper calls :meth:`cancel_as_stale`, the shutdown deadline
    :meth:`shut_down`, the disconnect watcher :meth:`disconnect`. The first reason wins;
    the relay reads it after the attempt's scope has unwound.
    """

    __slots__ = ("reason", "scope")

    def __init__(self) -> None:
        self.reason: _Stop | None = None
        self.scope: trio.CancelScope | None = None

    def _stop(self, reason: _Stop) -> None:
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()

    def cancel_as_stale(self) -> None:
        """Cancel as stale (the tracker's sweeper)."""
        self._stop(_Stop.STALE)

    def shut_down(self) -> None:
        """Cancel at the shutdown deadline."""
        self._stop(_Stop.SHUTDOWN)

    def disconnect(self) -> None:
        """Cancel because the client hung up."""
        self._stop(_Stop.DISCONNECT)


async def _exchange(
    call: Call,
    instance: BackendInstance,
    out: ClientOut,
    meter: RequestMeter | None,
    on_wait: Callable[[], None],
    *,
    may_retry: bool,
) -> None:
    """Send ``call`` to ``instance`` and relay the answer chunk by chunk.

    Raises:
        _Retry: a 429 or a connection failure, and another instance may take the call.
    """
    try:
        async with instance.connector.open(call.upstream, on_wait=on_wait) as response:
            instance.record_success()
            if response.status == 429:
                retry = header_value(response.headers, b"retry-after")
                instance.mark_rate_limited(retry_after_seconds(retry, time.time()))
                log.warning("backend %s is rate limited (429)", instance.name)
                if may_retry:
                    raise _Retry
            if response.status >= 400 and meter is not None:
                meter.fail()
            await out.start(response.status, response.headers)
            if meter is None:
                async for chunk in response.aiter_raw():
                    await out.body(chunk)
            else:
                async for chunk in response.aiter_raw():
                    meter.add_rx(len(chunk))
                    await out.body(chunk)
            await out.end()
    except UpstreamError as raw:
        # Name the backend for the client, the diagnostics and the log alike.
        exc = type(raw)(f"Backend '{instance.name}': {raw.message}")
        if not out.started:
            instance.record_failure(exc.message)
        log.warning("request failed: %s", exc.message)
        if may_retry and exc.failover_safe and not out.started:
            raise _Retry from raw
        if meter is not None:
            meter.fail()
        await out.fail(call.api, exc)


async def _watch_disconnect(receive: Receive, attempt: Attempt, out: ClientOut) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # A client that hangs up after the last byte ended nothing early.
            if not out.ended:
                attempt.disconnect()
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
        )
    )
    in_flight.add(attempt)
    try:
        with registration as meter:
            out.meter = meter
            retry: _Retry | None = None
            # The attempt's one scope: the nursery's. The watcher, the sweeper and the
            # shutdown deadline cancel it through ``attempt``, which records why.
            async with trio.open_nursery() as nursery:
                attempt.scope = nursery.cancel_scope
                if attempt.reason is not None:
                    nursery.cancel_scope.cancel()
                watching = False

                def watch() -> None:
                    # Watching for the client hanging up takes a task of its own, which
                    # costs more than a quick answer's whole relay: so it starts only
                    # once the exchange may take long (the connector says when), and
                    # at once for a stream.
                    nonlocal watching
                    if not watching:
                        watching = True
                        nursery.start_soon(_watch_disconnect, receive, attempt, out)

                if call.streaming:
                    watch()
                try:
                    await _exchange(call, instance, out, meter, watch, may_retry=may_retry)
                except _Retry as exc:
                    # Raised out of the nursery it would arrive wrapped in a group.
                    retry = exc
                if watching:
                    nursery.cancel_scope.cancel()  # the watcher is no longer needed
            reason = attempt.reason
            if retry is not None and reason is None:
                if meter is not None:
                    meter.fail()
                raise retry
            if reason is None or out.ended:
                # Not cancelled, or cancelled once the answer was complete: nothing to add.
                return
            if reason is _Stop.DISCONNECT:
                if meter is not None:
                    meter.mark_cancelled()
                return
            error: ProxyError
            if reason is _Stop.STALE:
                assert tracker is not None
                error = UpstreamTimeout(
                    f"No data in either direction for {tracker.stale_timeout:g} s; "
                    "the request was cancelled as stale."
                )
            else:
                if meter is not None:
                    meter.mark_cancelled()
                error = ShuttingDown("The proxy is shutting down.")
            await out.fail(call.api, error)
    finally:
        out.meter = None
        in_flight.discard(attempt)


async def relay(
    call: Call,
    candidates: Sequence[BackendInstance],
    receive: Receive,
    send: Send,
    tracker: ActivityTracker | None,
    in_flight: set[Attempt],
) -> None:
    """Serve ``call`` through the first of ``candidates`` that answers.

    Errors of the backend reach the client as a JSON error or an SSE error event;
    a client that hangs up cancels everything the request opened, at once.
    """
    out = ClientOut(send, call.session_id)
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
