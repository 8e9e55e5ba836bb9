"""A worker's large document for its siblings is built off the event loop, a small one on it.

``off_loop_if_large`` serves the cluster's documents (``trioproxy.workers.cluster``),
whose rows are new each time; this process's own ``GET /v1/diagnostics`` reuses its rows
on the loop instead (``tests/test_reused_rows.py``). Whether it was built off the loop
is what a task that only yields sees: it runs while the document is built on a thread,
and cannot while it is built on the loop (the build has no checkpoint).
"""

from __future__ import annotations

from contextlib import ExitStack
from functools import partial

import orjson
import pytest
import trio

from tests.proxyutil import mock_spec
from trioproxy.activity import ActivityTracker
from trioproxy.backends.instance import Backends
from trioproxy.diagnostics import OFF_LOOP_CONNECTIONS, diagnostics_json, off_loop_if_large
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
            document = orjson.loads(
                await off_loop_if_large(tracker, partial(diagnostics_json, backends, tracker))
            )
            during = turns - before
            nursery.cancel_scope.cancel()
    activity = document["instances"][0]["activity"]
    assert activity["active_connections"] == connections
    assert activity["total_bytes_rx"] == sum(range(connections))
    assert (during > 0) is off_loop
