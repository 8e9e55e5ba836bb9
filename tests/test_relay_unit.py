"""The relay in memory, against a scripted connector (as httpx tests use MockTransport).

No sockets: each test drives :func:`trioproxy.relay.relay` with an ASGI ``receive`` and
``send`` of its own and a connector whose answer it scripts chunk by chunk, so every
way a request can end is reached deterministically (MockClock for anything timed).
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing

from trioproxy.activity import ActivityTracker
from trioproxy.backends.base import UpstreamRequest
from trioproxy.backends.instance import BackendInstance
from trioproxy.cancellation import Attempt, Ending, Stop, ending
from trioproxy.client_out import ClientOut, event_end, next_sequence_number
from trioproxy.errors import UpstreamConnectFailed, UpstreamError, UpstreamProtocolError
from trioproxy.hangup import Hangup
from trioproxy.relay import Call, relay
from trioproxy.routes import BY_PATH, ProxyRoute
from trioproxy.settings import BackendSpec, ConnectorType

SSE = [(b"content-type", b"text/event-stream")]
JSON = [(b"content-type", b"application/json")]
CHAT = BY_PATH["/v1/chat/completions"]
MESSAGES = BY_PATH["/v1/messages"]
RESPONSES = BY_PATH["/v1/responses"]


# -- pure decisions ---------------------------------------------------------------------


def test_every_ending_is_its_own_value() -> None:
    # Enum members with equal values are aliases: two endings must never be one.
    assert len(set(Ending)) == len(Ending.__members__)


@pytest.mark.parametrize(
    ("reason", "complete", "retry", "expected"),
    [
        (None, False, False, Ending.DONE),
        (None, True, False, Ending.DONE),
        (None, False, True, Ending.RETRY),
        (Stop.DISCONNECT, False, False, Ending.HUNG_UP),
        (Stop.DISCONNECT, True, False, Ending.DONE),
        (Stop.STALE, False, False, Ending.STALE),
        (Stop.STALE, True, False, Ending.DONE),
        (Stop.STALE, False, True, Ending.STALE),
        (Stop.SHUTDOWN, False, False, Ending.SHUTDOWN),
        (Stop.SHUTDOWN, False, True, Ending.SHUTDOWN),
        (Stop.SHUTDOWN, True, False, Ending.DONE),
        (Stop.OPERATOR, False, False, Ending.OPERATOR),
        (Stop.OPERATOR, True, False, Ending.DONE),
    ],
)
def test_what_follows_an_attempt(
    reason: Stop | None, complete: bool, retry: bool, expected: Ending
) -> None:
    assert ending(reason, complete=complete, retry=retry) is expected


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"", 0),
        (b"data: 1", 0),
        (b"data: 1\n\n", 9),
        (b"data: 1\n\ndata: 2", 9),
        (b"data: 1\r\n\r\ndata: 2\r\n", 11),
        (b"data: 1\r\rdata", 9),
        (b"data: 1\n\ndata: 2\r\n\r\n", 20),
        (b"event: a\ndata: 1\n", 0),
        (b"data: 1\r\n\r", 0),
    ],
)
def test_the_end_of_the_last_complete_event(data: bytes, end: int) -> None:
    assert event_end(data) == end


@pytest.mark.parametrize(
    ("sent", "number"),
    [
        (b"", 0),
        (b'data: {"type":"x","sequence_number":4}\n\n', 5),
        (b'data: {"sequence_number": 1}\n\ndata: {"sequence_number":12}\n\n', 13),
    ],
)
def test_a_responses_error_event_follows_the_last_number(sent: bytes, number: int) -> None:
    assert next_sequence_number(sent) == number


# -- a scripted connector ------------------------------------------------------------------

Step = bytes | UpstreamError | trio.Event  # a chunk, a failure, or a wait for the test


@dataclass
class Script:
    """One upstream answer: status, headers and the body's steps, in order."""

    status: int = 200
    headers: Sequence[tuple[bytes, bytes]] = tuple(SSE)
    steps: Sequence[Step] = ()
    refuse: UpstreamError | None = None  # raised on opening instead of answering
    before_head: trio.Event | None = None  # waited for before the head is answered


@dataclass
class ScriptedConnector:
    scripts: list[Script]
    opened: list[UpstreamRequest] = field(default_factory=list)
    closed: int = 0

    async def aclose(self) -> None:
        pass

    async def list_models(self) -> list[str]:
        return []

    @asynccontextmanager
    async def open(self, request: UpstreamRequest) -> AsyncIterator[_ScriptedResponse]:
        self.opened.append(request)
        script = self.scripts.pop(0)
        try:
            if script.refuse is not None:
                raise script.refuse
            if script.before_head is not None:
                await script.before_head.wait()
            yield _ScriptedResponse(script)
        finally:
            self.closed += 1  # the exchange is over, however it ended


class _ScriptedResponse:
    def __init__(self, script: Script) -> None:
        self.status = script.status
        self.headers = script.headers
        self._steps = list(script.steps)

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        for step in self._steps:
            if isinstance(step, trio.Event):
                await step.wait()
            elif isinstance(step, UpstreamError):
                raise step
            else:
                yield step


def instance(
    name: str, *scripts: Script, kind: ConnectorType = ConnectorType.OPENAI
) -> tuple[BackendInstance, ScriptedConnector]:
    connector = ScriptedConnector(list(scripts))
    spec = BackendSpec(name=name, type=kind, base_url="http://x/v1")
    return BackendInstance(spec, connector), connector


@dataclass
class Client:
    """The ASGI side of one request: what the app sent, and a hang-up the test triggers
    (:meth:`leave`), which ``receive()`` says and ``hangup`` (our server's way) tells."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    hang_up: trio.Event = field(default_factory=trio.Event)
    sent_some: trio.Event = field(default_factory=trio.Event)
    hangup: Hangup = field(default_factory=Hangup)

    def leave(self) -> None:
        self.hang_up.set()
        self.hangup.fire()

    async def receive(self) -> dict[str, Any]:
        await self.hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Any) -> None:
        self.messages.append(message)
        if message.get("body"):
            self.sent_some.set()

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    @property
    def finished(self) -> bool:
        return self.messages[-1].get("more_body") is False


def call(route: ProxyRoute = CHAT, *, streaming: bool = True, query: bytes = b"") -> Call:
    return Call(
        route=route,
        session_id="s-1",
        model="m",
        streaming=streaming,
        body=b'{"model":"m"}',
        headers=[],
        query=query,
    )


async def run(
    the_call: Call,
    instances: Sequence[BackendInstance],
    client: Client,
    tracker: ActivityTracker | None = None,
    in_flight: set[Attempt] | None = None,
    *,
    told: bool = False,
) -> None:
    """Relay ``the_call``; with ``told``, the hang-up comes by the client's ``hangup`` (as
    from our server), else only by ``receive()`` (as from another server)."""
    await relay(
        the_call,
        instances,
        client.receive,
        ClientOut(client.send, the_call.session_id),
        tracker,
        set() if in_flight is None else in_flight,
        client.hangup if told else None,
    )


# -- relaying -------------------------------------------------------------------------------


async def test_event_stream_split_anywhere_reaches_the_client_event_by_event() -> None:
    events = b'data: {"a":1}\n\ndata: {"b":2}\r\n\r\ndata: [DONE]\n\n'
    chunks = [events[:5], events[5:16], events[16:17], events[17:40], events[40:]]
    inst, _ = instance("o", Script(steps=chunks))
    client = Client()
    tracker = ActivityTracker(instances=("o",))
    await run(call(), [inst], client, tracker)
    sent = [m["body"] for m in client.messages[1:] if m.get("body")]
    assert b"".join(sent) == events
    # Every chunk handed over ends on an event boundary.
    assert all(event_end(chunk) == len(chunk) for chunk in sent)
    life = tracker.get_global_snapshot().lifetime
    assert (life.bytes_rx, life.bytes_tx, life.errors) == (len(events), len(events), 0)


async def test_a_clean_end_after_a_partial_event_still_relays_every_byte() -> None:
    body = b"data: 1\n\ndata: no blank line at the end"
    inst, _ = instance("o", Script(steps=[body[:12], body[12:]]))
    client = Client()
    await run(call(), [inst], client)
    assert client.body == body and client.finished


@pytest.mark.parametrize("cut_at", [2, 20, 40])
async def test_a_cut_mid_event_delivers_complete_events_then_the_error_event(cut_at: int) -> None:
    first = b'data: {"id":"chatcmpl-x","object":"chat.completion.chunk"}\n\n'
    partial = b'data: {"id":"chatcmpl-x","object":"chat.completion.chunk","choices":[]}'[:cut_at]
    cut = UpstreamProtocolError("connection lost mid-response", backend="o")
    inst, _ = instance("o", Script(steps=[first, partial, cut]))
    client = Client()
    tracker = ActivityTracker(instances=("o",))
    await run(call(), [inst], client, tracker)
    assert client.status == 200 and client.finished
    error = (
        b'data: {"error": {"message": "Backend \'o\': connection lost mid-response", '
        b'"type": "upstream_error", "code": "upstream_protocol_error"}}\n\n'
    )
    assert client.body == first + error
    life = tracker.get_global_snapshot().lifetime
    assert life.bytes_rx == len(first) + len(partial)  # received, counted, never sent
    assert life.bytes_tx == len(client.body)
    assert life.errors == 1


async def test_a_responses_stream_cut_ends_with_the_responses_error_event() -> None:
    first = b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'
    delta = b'event: response.output_text.delta\ndata: {"sequence_number":1,"delta":"Hi"}\n\n'
    inst, _ = instance(
        "o", Script(steps=[first, delta, b"event: resp", UpstreamProtocolError("cut")])
    )
    client = Client()
    await run(call(RESPONSES), [inst], client)
    rest = client.body[len(first + delta) :]
    assert rest.startswith(b"event: error\ndata: ")
    assert b'"type": "error"' in rest and b'"sequence_number": 2' in rest
    assert b'"code": "upstream_protocol_error"' in rest
    # Then the terminal event, which Codex reads its error from.
    _, failed, end = rest.split(b"\n\n")
    assert end == b"" and failed.startswith(b"event: response.failed\ndata: ")
    terminal = json.loads(failed.split(b"data: ", 1)[1])
    assert (terminal["sequence_number"], terminal["response"]["status"]) == (3, "failed")
    assert terminal["response"]["error"]["code"] == "upstream_protocol_error"


async def test_an_anthropic_stream_cut_ends_with_its_error_event() -> None:
    start = b'event: message_start\ndata: {"type":"message_start"}\n\n'
    steps: list[Step] = [start, b"event: content_block_delta\nda", UpstreamProtocolError("cut")]
    inst, _ = instance("o", Script(steps=steps), kind=ConnectorType.ANTHROPIC)
    client = Client()
    await run(call(MESSAGES), [inst], client)
    assert client.body.startswith(start + b'event: error\ndata: {"type": "error", "error": {')


async def test_framing_and_hop_headers_of_the_upstream_hop_are_not_relayed() -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
        (b"transfer-encoding", b"chunked"),
        (b"connection", b"keep-alive"),
        (b"date", b"x"),
        (b"server", b"nginx"),
        (b"x-request-id", b"abc"),
    ]
    inst, _ = instance("o", Script(headers=headers, steps=[b"{}"]))
    client = Client()
    await run(call(streaming=False), [inst], client)
    assert client.headers == [
        (b"content-type", b"application/json"),
        (b"x-request-id", b"abc"),
        (b"x-session-id", b"s-1"),
    ]


async def test_the_query_string_and_the_dialects_path_go_upstream() -> None:
    inst, connector = instance("o", Script(steps=[b"{}"]))
    await run(call(RESPONSES, streaming=False, query=b"?api-version=2024-10-21"), [inst], Client())
    assert connector.opened[0].path == "/responses?api-version=2024-10-21"


async def test_a_429_fails_over_to_the_next_instance_before_any_byte() -> None:
    limited = Script(status=429, headers=[(b"retry-after", b"7")], steps=[b"{}"])
    first, _ = instance("a", limited)
    second, _ = instance("b", Script(headers=JSON, steps=[b'{"ok":1}']))
    client = Client()
    tracker = ActivityTracker(instances=("a", "b"))
    await run(call(streaming=False), [first, second], client, tracker)
    assert (client.status, client.body) == (200, b'{"ok":1}')
    assert first.is_rate_limited()
    snapshot = tracker.get_global_snapshot()
    assert snapshot.instance("a").lifetime.errors == 1
    assert snapshot.instance("b").lifetime.errors == 0


async def test_a_connection_failure_fails_over_and_the_last_one_is_answered_502() -> None:
    refused = Script(refuse=UpstreamConnectFailed("refused", backend="a"))
    first, _ = instance("a", refused)
    second, _ = instance("b", Script(refuse=UpstreamConnectFailed("refused", backend="b")))
    client = Client()
    await run(call(streaming=False), [first, second], client)
    assert client.status == 502
    assert b"Backend 'b': refused" in client.body
    assert first.validation_errors == ["Backend 'a': refused"]


# -- cancellations ----------------------------------------------------------------------------


async def test_an_attempt_cancels_the_scope_it_is_bound_to_whenever_it_is_stopped() -> None:
    early, late = Attempt(), Attempt()
    early.cancel_as_stale()  # before its nursery exists: cancelled as it is bound
    early.bind(before := trio.CancelScope())
    late.bind(after := trio.CancelScope())
    assert not after.cancel_called
    late.disconnect()
    late.shut_down()  # the first reason wins
    assert (before.cancel_called, early.reason) == (True, Stop.STALE)
    assert (after.cancel_called, late.reason) == (True, Stop.DISCONNECT)


@pytest.mark.parametrize("told", [True, False], ids=["told", "received"])
async def test_a_hang_up_mid_stream_closes_the_upstream_and_counts_cancelled(
    told: bool, autojump_clock: trio.testing.MockClock
) -> None:
    never = trio.Event()
    inst, connector = instance("o", Script(steps=[b"data: 1\n\n", never]))
    client = Client()
    tracker = ActivityTracker(instances=("o",))
    # On the mock clock a relay that misses the hang-up fails at once instead of hanging.
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(run, call(), [inst], client, tracker, told=told))
            await client.sent_some.wait()
            client.leave()
    assert connector.closed == 1
    assert not client.finished  # nothing more was sent to a client that is gone
    assert tracker.get_global_snapshot().lifetime.cancelled == 1
    assert tracker.get_global_snapshot().total_active_connections == 0


@pytest.mark.parametrize("told", [True, False], ids=["told", "received"])
async def test_a_hang_up_after_the_last_byte_changes_nothing(told: bool) -> None:
    inst, _ = instance("o", Script(steps=[b"data: 1\n\n"]))
    client = Client()
    tracker = ActivityTracker(instances=("o",))
    last_byte = ClientOut.end

    async def end_then_leave(out: ClientOut) -> None:
        await last_byte(out)
        client.leave()  # as our server does: the stream closes with the last byte

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ClientOut, "end", end_then_leave)
        await run(call(), [inst], client, tracker, told=told)
    assert client.finished
    life = tracker.get_global_snapshot().lifetime
    assert (life.requests, life.cancelled, life.errors) == (1, 0, 0)


@pytest.mark.parametrize(
    ("streaming", "started", "status", "tail"),
    [
        (False, False, 504, b'"type": "timeout_error"'),
        (True, True, 200, b"cancelled as stale."),
    ],
)
async def test_a_stale_request_is_answered_and_counted_stale(
    streaming: bool, started: bool, status: int, tail: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    never = trio.Event()
    if started:
        script = Script(steps=[b"data: 1\n\n", never])
    else:
        script = Script(headers=JSON, before_head=never, steps=[b"{}"])
    inst, connector = instance("o", script)
    client = Client()
    tracker = ActivityTracker(stale_timeout=3, instances=("o",))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tracker.run_sweeper)
        await run(call(streaming=streaming), [inst], client, tracker)
        nursery.cancel_scope.cancel()
    assert client.status == status and client.finished
    assert tail in client.body
    assert connector.closed == 1
    life = tracker.get_global_snapshot().lifetime
    assert (life.stale, life.cancelled, life.errors) == (1, 0, 0)


@pytest.mark.parametrize(("started", "status"), [(False, 503), (True, 200)])
async def test_the_shutdown_deadline_answers_503_or_an_error_event(
    started: bool, status: int
) -> None:
    never = trio.Event()
    if started:
        script = Script(steps=[b"data: 1\n\n", never])
    else:
        script = Script(headers=JSON, before_head=never, steps=[b"{}"])
    inst, connector = instance("o", script)
    client = Client()
    in_flight: set[Attempt] = set()
    tracker = ActivityTracker(instances=("o",))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, call(), [inst], client, tracker, in_flight)
        await trio.testing.wait_all_tasks_blocked()
        assert len(in_flight) == 1
        for attempt in in_flight:
            attempt.shut_down()
    assert client.status == status and client.finished
    assert b"The proxy is shutting down." in client.body
    assert connector.closed == 1 and not in_flight
    assert tracker.get_global_snapshot().lifetime.cancelled == 1
