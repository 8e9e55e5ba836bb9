"""A request's hang-up told by our server (``trioproxy.hangup``, ``serving.ProxyTaskGroup``).

The relay learns that its client hung up from the request's ``Hangup``, which our server
fires as it queues ``http.disconnect``: no task of the app waits on ``receive()`` for it.
"""

from __future__ import annotations

import hypercorn.trio.tcp_server
import pytest
import trio

import trioproxy.serving
from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyutil import (
    connect_to_served,
    openai_spec,
    released,
    running_proxy,
    serve_lifespan,
)
from trioproxy.asgi import Receive, Scope, Send
from trioproxy.hangup import HANGUP, Hangup, hangup_of
from trioproxy.serving import install_tcp_server

GUARD = 20  # seconds


def test_a_listener_is_told_once_and_at_once_if_the_client_is_already_gone() -> None:
    calls: list[str] = []
    hangup = Hangup()
    hangup.listen(lambda: calls.append("first"))
    hangup.fire()
    hangup.fire()
    assert (hangup.gone, calls) == (True, ["first"])
    hangup.listen(lambda: calls.append("late"))  # listening after the hang-up
    assert calls == ["first", "late"]


def test_a_listener_that_stopped_listening_is_not_told() -> None:
    calls: list[str] = []
    hangup = Hangup()
    hangup.listen(lambda: calls.append("gone"))
    hangup.listen(None)
    hangup.fire()
    assert (hangup.gone, calls) == (True, [])


def test_only_our_servers_hangup_is_found_in_a_scope() -> None:
    hangup = Hangup()
    assert hangup_of({HANGUP: hangup}) is hangup
    assert hangup_of({}) is None
    assert hangup_of({HANGUP: "something else"}) is None


async def test_our_server_fires_a_requests_hangup_with_no_task_receiving(
    nursery: trio.Nursery,
) -> None:
    told = trio.Event()
    listening = trio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        hangup = hangup_of(scope)
        assert hangup is not None
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        hangup.listen(told.set)
        listening.set()
        await told.wait()  # never receive(): only the Hangup can say the client left

    stream, stop = await connect_to_served(nursery, app)
    await stream.send_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200")
    await listening.wait()
    await stream.aclose()
    with trio.fail_after(GUARD):  # a guard against hanging, not a timing
        await told.wait()
    stop.set()


class Gate:
    """A turnstile whose turn does not come until the test opens it."""

    def __init__(self) -> None:
        self.waiting = 0
        self.opened = trio.Event()

    async def through(self) -> None:
        self.waiting += 1
        await self.opened.wait()


async def test_a_relay_sends_nothing_more_once_its_clients_end_is_read(
    nursery: trio.Nursery, fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Thousands hung up at once wait their turn to be told; meanwhile their relays must
    # not go on reading from the backend and sending to no one.
    gate = Gate()
    monkeypatch.setattr(trioproxy.serving, "turnstile", lambda: gate)
    rest = trio.Event()
    fake.default = Scenario(chunks=5, hold=rest)
    async with running_proxy(
        nursery, backends=(openai_spec(fake.base_url),), enable_activity_tracking=True
    ) as proxy:
        tracker = proxy.app.tracker
        assert tracker is not None
        host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        body = b'{"model": "gpt-fake", "stream": true, "messages": []}'
        await stream.send_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        with trio.fail_after(GUARD):  # guards against hanging, not timings
            got = b""
            # Both events the fake sends before it holds (the role, the first piece): the
            # relay has nothing left to send when the client closes. ("content" alone
            # was found in the head's content-type, and a close before the second event
            # was relayed let the relay's write see the hang-up before the read did.)
            while got.count(b"\n\n") < 2:
                got += await stream.receive_some(65536)
            await stream.aclose()
            await trio.testing.wait_all_tasks_blocked()  # the last send is counted
            assert gate.waiting == 1  # the proxy has read the end of its input
            sent_before = fake.bytes_sent
            _, rx, tx = tracker.totals()
            rest.set()  # the backend sends the rest of its answer
            while fake.bytes_sent == sent_before:
                await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
            assert tracker.totals()[0] == 1  # not yet told
            # What arrived after the end of the client's input was not sent on.
            assert tracker.totals()[2] == tx and rx <= tracker.totals()[1]
            gate.opened.set()
            await released(tracker)
        assert (await proxy.diagnostics())["global_activity"]["lifetime"]["cancelled"] == 1


def test_serving_refuses_a_hypercorn_whose_task_group_is_not_where_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_tcp_server()
    monkeypatch.setattr(hypercorn.trio.tcp_server, "TaskGroup", type("Other", (), {}))
    with pytest.raises(RuntimeError, match="TaskGroup is not hypercorn's TaskGroup"):
        install_tcp_server()
