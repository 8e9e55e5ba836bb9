"""The diagnostics document's reused rows are the rows a new snapshot would make.

``GET /v1/diagnostics`` builds its rows on the event loop and keeps each connection's row
for the next document, updating only its times and bytes (``reuse_rows``). A row must
never be stale: after every change a request can make (bytes either way, the first byte,
a status, a second request on the connection, one ending, the last ending, a new one on
the same session), the reused rows equal, field for field, the rows built anew at the
same instant, which the rest of the suite checks against the requests themselves.
"""

from __future__ import annotations

import random
from contextlib import ExitStack
from typing import Any

import pytest
import trio
import trio.testing

from trioproxy.activity import ActivityTracker, RequestMeter


def assert_reused_rows_are_fresh(tracker: ActivityTracker) -> dict[str, dict[str, Any]]:
    """Both snapshots at one instant (no checkpoint between them), compared whole."""
    _, reused, reused_global = tracker.snapshot_dicts(reuse_rows=True)
    _, fresh, fresh_global = tracker.snapshot_dicts()
    assert reused == fresh
    assert reused_global == fresh_global
    return reused


async def test_each_change_of_a_request_reaches_its_reused_row(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tracker = ActivityTracker(instances=("a",))
    scope = trio.CancelScope()
    with ExitStack() as first_block:
        first = first_block.enter_context(
            tracker.track("a", "s", model="m1", streaming=True, handle=scope)
        )
        assert_reused_rows_are_fresh(tracker)
        await trio.sleep(1.0)
        first.set_status(200)
        row = assert_reused_rows_are_fresh(tracker)["a"]["connections"][0]
        assert row["upstream_status"] == 200
        await trio.sleep(0.5)
        first.add_rx(10)  # the first byte: time to first byte appears
        row = assert_reused_rows_are_fresh(tracker)["a"]["connections"][0]
        assert row["time_to_first_byte_seconds"] == 1.5
        await trio.sleep(0.25)
        first.add_rx(5)
        first.add_tx(15)
        rows = assert_reused_rows_are_fresh(tracker)["a"]["connections"]
        assert (rows[0]["bytes_rx"], rows[0]["bytes_tx"], rows[0]["idle_seconds"]) == (15, 15, 0)
        await trio.sleep(2.0)  # only the times move
        again = assert_reused_rows_are_fresh(tracker)["a"]["connections"]
        # Bytes and times alone change nothing else: the same row object, updated.
        assert again[0] is rows[0]
        assert (again[0]["duration_seconds"], again[0]["idle_seconds"]) == (3.75, 2.0)
        with tracker.track("a", "s", model="m2", streaming=True, handle=scope) as second:
            row = assert_reused_rows_are_fresh(tracker)["a"]["connections"][0]
            assert (row["requests"], row["model"]) == (2, "m2")
            second.add_tx(1)
            assert_reused_rows_are_fresh(tracker)
        row = assert_reused_rows_are_fresh(tracker)["a"]["connections"][0]
        assert row["requests"] == 1
    assert assert_reused_rows_are_fresh(tracker)["a"]["connections"] == []
    await trio.sleep(1.0)
    with tracker.track("a", "s", model="m3", streaming=False, handle=scope):
        row = assert_reused_rows_are_fresh(tracker)["a"]["connections"][0]
        assert (row["model"], row["bytes_rx"], row["duration_seconds"]) == ("m3", 0, 0)


async def test_reused_rows_stay_fresh_through_a_random_walk_of_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Many connections, several requests each, every kind of change in a seeded random
    # order, compared after each: a row invalidated too rarely shows here.
    tracker = ActivityTracker(instances=("a", "b"))
    scope = trio.CancelScope()
    rng = random.Random(14)
    open_blocks: list[tuple[ExitStack, RequestMeter]] = []
    try:
        for step in range(600):
            choice = rng.random()
            if choice < 0.2 or not open_blocks:
                block = ExitStack()
                meter = block.enter_context(
                    tracker.track(
                        rng.choice("ab"),
                        f"s{rng.randrange(8)}",
                        model=f"m{step}",
                        streaming=rng.random() < 0.5,
                        handle=scope,
                    )
                )
                open_blocks.append((block, meter))
            elif choice < 0.35:
                block, _ = open_blocks.pop(rng.randrange(len(open_blocks)))
                block.close()
            else:
                _, meter = rng.choice(open_blocks)
                if choice < 0.45:
                    meter.set_status(rng.choice((200, 429, 500)))
                elif choice < 0.75:
                    meter.add_rx(rng.randrange(1, 100))
                else:
                    meter.add_tx(rng.randrange(1, 100))
            if rng.random() < 0.5:
                await trio.sleep(rng.choice((0.001, 0.5, 3.0)))
            assert_reused_rows_are_fresh(tracker)
    finally:
        for block, _ in open_blocks:
            block.close()
    rows = assert_reused_rows_are_fresh(tracker)
    assert [rows[name]["connections"] for name in ("a", "b")] == [[], []]


async def test_reused_rows_are_for_the_trio_thread_only() -> None:
    tracker = ActivityTracker(instances=("a",))
    with pytest.raises(RuntimeError, match="Trio thread"):
        tracker.snapshot_dicts(reuse_rows=True, latest_started=True)
    with pytest.raises(RuntimeError, match="Trio thread"):
        await trio.to_thread.run_sync(lambda: tracker.snapshot_dicts(reuse_rows=True))


async def test_a_snapshot_with_latest_started_covers_every_instance(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The worker's document for its siblings' merge: each row is the new row plus
    # latest_started_at, in every instance (not only the first one with connections).
    tracker = ActivityTracker(instances=("a", "b"))
    scope = trio.CancelScope()
    with (
        tracker.track("a", "s1", model="m1", streaming=True, handle=scope),
        tracker.track("b", "s2", model="m2", streaming=True, handle=scope),
    ):
        _, latest, _ = tracker.snapshot_dicts(latest_started=True)
        _, fresh, _ = tracker.snapshot_dicts()
    for name in ("a", "b"):
        (row,) = latest[name]["connections"]
        assert isinstance(row.pop("latest_started_at"), float)
        assert [row] == fresh[name]["connections"]
