"""A large diagnostics document is built off the event loop, a small one on it.

With thousands of streams the document takes tens of milliseconds; built on the loop
that would delay every stream's chunks by as much. Whether it was built off the loop is
what a task that only yields sees: it runs while the document is built on a thread, and
cannot while it is built on the loop (the build has no checkpoint).
"""

from __future__ import annotations

from contextlib import ExitStack

import orjson
import pytest
import trio

from tests.proxyutil import mock_spec
from trioproxy.activity import ActivityTracker
from trioproxy.backends.instance import Backends
from trioproxy.diagnostics import OFF_LOOP_CONNECTIONS, diagnostics_document
from trioproxy.settings import Settings


@pytest.mark.parametrize(
    ("connections", "off_loop"),
    [(OFF_LOOP_CONNECTIONS, False), (OFF_LOOP_CONNECTIONS + 1, True)],
)
async def test_the_document_is_built_off_the_loop_beyond_the_threshold(
    connections: int, off_loop: bool
) -> None:
    backends = Backends(Settings(backends=(mock_spec("mock.1"),)))
    tracker = ActivityTracker(instances=backends.names())
    turns = 0

    async def yielding() -> None:
        nonlocal turns
        while True:
            await trio.lowlevel.checkpoint()
            turns += 1

    with ExitStack() as tracks:
        for n in range(connections):
            meter = tracks.enter_context(
                tracker.track(
                    "mock.1", f"session-{n}", model="m", streaming=True, handle=trio.CancelScope()
                )
            )
            meter.add_rx(n)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(yielding)
            await trio.lowlevel.checkpoint()  # the yielding task is running
            before = turns
            document = orjson.loads(await diagnostics_document(backends, tracker))
            during = turns - before
            nursery.cancel_scope.cancel()
    activity = document["instances"][0]["activity"]
    assert activity["active_connections"] == connections
    assert activity["total_bytes_rx"] == sum(range(connections))
    assert (during > 0) is off_loop
