"""What a request leaves for the garbage collector: nothing, and no collection for a view.

hypercorn's objects of a connection refer to each other in cycles; ``ProxyTCPServer``
cuts them when the connection ends, so reference counting frees a connection as it
closes — after thousands of streams hang up, the one full collection that finds their
garbage would otherwise scan hundreds of thousands of objects. These tests run with the
collector off, so whatever is still in memory after the connections closed is what only
a collection would free. The diagnostics document is built with the collector paused
(``gcpolicy.collector_paused``): these tests count the collections that start meanwhile.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio.testing
from hypercorn.protocol.h11 import H11Protocol

from tests.proxyutil import hang_up_mid_stream, mock_spec, released, running_proxy
from trioproxy.activity import ActivityTracker
from trioproxy.backends.instance import Backends
from trioproxy.diagnostics import diagnostics, diagnostics_json
from trioproxy.gcpolicy import collector_paused
from trioproxy.serving import ProxyTCPServer
from trioproxy.settings import Settings

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def connections_in_memory() -> int:
    """hypercorn connection objects still allocated (served, closed or not)."""
    return sum(isinstance(o, ProxyTCPServer | H11Protocol) for o in gc.get_objects())


async def test_closed_connections_are_freed_without_a_collection(collector_off: None) -> None:
    async with (
        trio.open_nursery() as nursery,
        running_proxy(
            nursery, backends=(mock_spec(chunks=50, delay=0.2),), enable_activity_tracking=True
        ) as proxy,
    ):
        assert connections_in_memory() == 0
        for _ in range(5):
            # Each client its own connection: answered (the proxy route, a Quart route), closed.
            async with httpx.AsyncClient(base_url=proxy.openai_url) as client:
                assert (await client.post("/chat/completions", json=CHAT)).status_code == 200
                assert (await client.get("/models")).status_code == 200  # a Quart route
        for _ in range(5):
            await hang_up_mid_stream(proxy.url)
        await released(proxy.app.tracker)
        assert connections_in_memory() == 0


def collections_during(action: Any) -> int:
    """How many collections start while ``action()`` runs."""
    started = 0

    def count(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        started += phase == "start"

    gc.callbacks.append(count)
    try:
        action()
    finally:
        gc.callbacks.remove(count)
    return started


@pytest.fixture
def eager_collector() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(10, 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def test_no_collection_starts_while_the_collector_is_paused(eager_collector: None) -> None:
    def allocate() -> None:
        kept = [{"n": n} for n in range(1_000)]
        assert len(kept) == 1_000

    assert collections_during(allocate) > 0  # the threshold alone would start many
    inside: list[int] = []

    def paused() -> None:
        with collector_paused():
            assert not gc.isenabled()
            inside.append(collections_during(allocate))

    paused()
    assert inside == [0]
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off_after_a_pause() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_the_diagnostics_document_starts_no_collection_per_row(eager_collector: None) -> None:
    settings = Settings(backends=(mock_spec("mock.1"),), enable_activity_tracking=True)
    backends = Backends(settings)
    tracker = ActivityTracker(instances=backends.names())
    scopes = [trio.CancelScope() for _ in range(300)]
    tracks = [
        tracker.track("mock.1", f"session-{n}", model="m", streaming=True, handle=scope)
        for n, scope in enumerate(scopes)
    ]
    for track in tracks:
        track.__enter__()
    try:
        document: list[bytes] = []
        unpaused = collections_during(lambda: orjson.dumps(diagnostics(backends, tracker)))
        paused = collections_during(lambda: document.append(diagnostics_json(backends, tracker)))
        # Unpaused, the 300 rows start one every ten allocations; paused, only what the
        # count left by the code around the build may start once the collector is back.
        assert unpaused >= 20
        assert paused <= 5
        assert document[0].count(b'"session_id"') == 300
    finally:
        for track in tracks:
            track.__exit__(None, None, None)
