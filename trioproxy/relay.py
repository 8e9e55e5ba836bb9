"""One proxied request, from a routed call to the last byte handed to the client.

Each attempt (one per instance tried, at most MAX_ATTEMPTS) owns one cancel scope, which
its :class:`~.cancellation.Attempt` handle cancels, around everything the attempt opened:
the upstream response (``async with``, so it is closed on every way out). The client
hanging up is told by the request's :class:`~.hangup.Hangup`, a callback our server fires
as it queues ``http.disconnect``, so no task waits for it; under another server one task
per request watches ``receive()`` and fires it. The tracker registration (when tracking
is on) encloses the scope, so the bytes of an error answer sent after a cancellation are
still counted. Nothing outlives the attempt.

Four things cancel an attempt's scope, through its :class:`~.cancellation.Attempt`
handle, which records why: the client hanging up (nothing more is sent), the stale
sweeper (504, or an SSE error event once the stream started), an operator (503, or an
error event) and the shutdown deadline (503, or an error event). What the relay does
once the scope has unwound is the pure decision :func:`~.cancellation.ending`. The
client's side of the response is :class:`~.client_out.ClientOut`.

Server-Sent Events are relayed event by event: bytes after the last complete event
boundary wait until their event completes, so a backend that cuts its stream mid-event
never hands the client a partial event, and an error event follows complete events only.

An attempt that gets a 429, or cannot connect, before any byte reached the client hands
the request to the next candidate instance; a pinned request has one candidate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import trio

from .activity import ActivityTracker, RequestMeter
from .asgi import Receive
from .backends.base import UpstreamRequest, UpstreamResponse
from .backends.instance import BackendInstance
from .cancellation import Attempt, Ending, ending
from .client_out import JSON_HEADERS, SSE_CONTENT_TYPE, ClientOut, Phase, event_end
from .crossing import Crossing, crossing_request
from .errors import (
    Api,
    CancelledByOperator,
    ProxyError,
    ShuttingDown,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from .hangup import Hangup
from .headers import Headers, header_value
from .ratelimit import retry_after_seconds
from .routes import ProxyRoute, upstream_route
from .routing import backend_api
from .translate import StreamTranslator

log = logging.getLogger(__name__)


MAX_ATTEMPTS = 3


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
        if out.ending:
            # The client is gone and about to be told so, which cancels this attempt:
            # relaying until then would read and send for no one. Thousands hung up at
            # once are told a few per turn of the loop, and the rest would go on.
            await trio.sleep_forever()
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
    if translator is not None and not translator.failed:
        # The client's stream has ended, so end its response before reading on: a hang-up,
        # a sweep or a failing backend from here on cannot add to or spoil it. What the
        # backend still sends (its `[DONE]`, say) is read and counted, so bytes_rx stays
        # exact and the connection reusable. (After a failed translation the rest is not
        # waited for: the connection is discarded unread.)
        await out.end()
        try:
            async for chunk in chunks:
                out.received(len(chunk))
        except UpstreamError as exc:
            log.debug("after the translated stream ended: %s", exc.message)


_TRANSLATED_DROP = frozenset({b"content-type", b"content-encoding", b"content-md5", b"etag"})


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
        UpstreamProtocolError: a 2xx body that is not the backend API's answer, or an
            answer in a content-encoding (the connector asked for identity).
    """
    status = response.status
    # The answer is the proxy's own: not the backend's type, encoding or digest of it.
    headers = [(k, v) for k, v in response.headers if k not in _TRANSLATED_DROP]
    is_sse = any(
        k == b"content-type" and v.startswith(b"text/event-stream") for k, v in response.headers
    )
    encoding = (header_value(response.headers, b"content-encoding") or "identity").strip()
    if encoding.lower() != "identity":
        # Asked for identity (the connector does, for a request to translate): a body it
        # cannot read is the backend's fault, said as such, not "not JSON".
        raise UpstreamProtocolError(
            f"the backend encoded its answer ({encoding}) though asked for identity"
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


async def _exchange(
    call: Call,
    request: UpstreamRequest,
    crossing: Crossing | None,
    instance: BackendInstance,
    out: ClientOut,
    meter: RequestMeter | None,
    *,
    may_retry: bool,
) -> None:
    """Send ``request`` to ``instance`` and relay the answer chunk by chunk.

    ``crossing`` translates the answer of an instance of the other API.

    Raises:
        _Retry: a 429 or a connection failure, and another instance may take the call.
    """
    try:
        async with instance.connector.open(request) as response:
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


async def _watch(receive: Receive, hangup: Hangup) -> None:
    """Fire ``hangup`` when ``receive()`` says the client hung up (under another server
    than ours, which tells no :class:`~.hangup.Hangup` itself)."""
    while True:
        if (await receive())["type"] == "http.disconnect":
            hangup.fire()
            return


class _Listener:
    """What a hang-up does to one attempt: cancel it, unless its answer is complete."""

    __slots__ = ("_attempt", "_out")

    def __init__(self, attempt: Attempt, out: ClientOut) -> None:
        self._attempt = attempt
        self._out = out

    def __call__(self) -> None:
        # A client that hangs up after the last byte ended nothing early.
        if not self._out.complete:
            self._attempt.disconnect()


async def _attempt(
    call: Call,
    instance: BackendInstance,
    out: ClientOut,
    hangup: Hangup,
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
            # The attempt's own scope: a hang-up (told by ``hangup``, with no task of
            # ours waiting for it), the sweeper, an operator or the shutdown cancel it.
            with trio.CancelScope() as scope:
                attempt.bind(scope)
                hangup.listen(_Listener(attempt, out))
                try:
                    await _exchange(
                        call, request, crossing, instance, out, meter, may_retry=may_retry
                    )
                except _Retry:
                    retry = True
                finally:
                    hangup.listen(None)
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
    hangup: Hangup | None = None,
) -> None:
    """Serve ``call`` through the first of ``candidates`` that answers, answering on ``out``.

    Errors of the backend reach the client as a JSON error or an SSE error event;
    a client that hangs up cancels everything the request opened, at once. Our server
    says so through ``hangup`` (:mod:`.hangup`); without one (another server), a task
    watches ``receive()`` for it. ``out`` says afterwards what happened (status, bytes,
    instance, outcome).
    """
    if hangup is not None:
        await _relay(call, candidates, out, hangup, tracker, in_flight)
        return
    hangup = Hangup()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch, receive, hangup)
        await _relay(call, candidates, out, hangup, tracker, in_flight)
        nursery.cancel_scope.cancel()  # the watcher is no longer needed


async def _relay(
    call: Call,
    candidates: Sequence[BackendInstance],
    out: ClientOut,
    hangup: Hangup,
    tracker: ActivityTracker | None,
    in_flight: set[Attempt],
) -> None:
    tried = candidates[:MAX_ATTEMPTS]
    for number, instance in enumerate(tried, start=1):
        try:
            await _attempt(
                call, instance, out, hangup, tracker, in_flight, may_retry=number < len(tried)
            )
        except _Retry:
            log.info("failing over from %s", instance.name)
            continue
        return
