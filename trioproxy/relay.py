"""One proxied request, from a routed call to the last byte handed to the client.

The request is one Trio scope. Inside it: a task that watches for the client hanging
up (``http.disconnect``) and cancels the scope; the tracker registration, when tracking
is on; and the upstream response, opened with ``async with`` so it is closed on every
way out. Nothing the request opened outlives the scope.

Scopes, outermost first::

    request_scope       cancelled by the client hanging up → nothing more is sent
      tracker.track()   the registration (only when tracking is on)
        exchange_scope  cancelled by the stale sweeper → 504 or an SSE error event
          connector.open(...)   the upstream response
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import trio

from .activity import ActivityTracker, RequestMeter
from .backends.base import Headers, UpstreamRequest
from .backends.instance import BackendInstance
from .errors import Api, ProxyError, UpstreamError, UpstreamTimeout, error_body, sse_error_event

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

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

    def __init__(self, send: Send, session_id: str, meter: RequestMeter | None) -> None:
        self._send = send
        self._session = (b"x-session-id", session_id.encode())
        self.meter = meter
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
            await self.start(exc.status, [(b"content-type", b"application/json")])
            await self.body(error_body(api, exc))
        elif self.is_sse:
            await self.body(sse_error_event(api, exc))
        # A JSON body cut short cannot be mended; ending it is all that is left.
        await self.end()


async def _exchange(
    call: Call, instance: BackendInstance, out: ClientOut, meter: RequestMeter | None
) -> None:
    """Send ``call`` upstream and relay the answer chunk by chunk."""
    try:
        async with instance.connector.open(call.upstream) as response:
            instance.record_success()
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
    except UpstreamError as exc:
        if meter is not None:
            meter.fail()
        if not out.started:
            instance.record_failure(exc.message)
        log.warning("request to %s failed: %s", instance.name, exc.message)
        await out.fail(call.api, exc)


async def _watch_disconnect(receive: Receive, scope: trio.CancelScope, out: ClientOut) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # A client that hangs up after the last byte ended nothing early.
            if not out.ended:
                scope.cancel()
            return


async def relay(
    call: Call,
    instance: BackendInstance,
    receive: Receive,
    send: Send,
    tracker: ActivityTracker | None,
) -> None:
    """Serve ``call`` through ``instance`` to the client behind ``send``.

    Errors of the backend reach the client as a JSON error or an SSE error event;
    a client that hangs up cancels everything the request opened, at once.
    """
    out = ClientOut(send, call.session_id, None)
    with trio.CancelScope() as request_scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_disconnect, receive, request_scope, out)
            exchange_scope = trio.CancelScope()
            if tracker is None:
                await _exchange(call, instance, out, None)
            else:
                with tracker.track(
                    instance.name,
                    call.session_id,
                    model=call.model,
                    streaming=call.streaming,
                    cancel_scope=exchange_scope,
                ) as meter:
                    out.meter = meter
                    with exchange_scope:
                        await _exchange(call, instance, out, meter)
                    if exchange_scope.cancelled_caught:
                        stale = UpstreamTimeout(
                            f"No data in either direction for {tracker.stale_timeout:g} s; "
                            "the request was cancelled as stale."
                        )
                        await out.fail(call.api, stale)
            nursery.cancel_scope.cancel()
