"""Staleness is per request (issue 11.7): a stalled request is swept on its own time even
while another request of its session, on the same connection, streams on."""

from __future__ import annotations

import trio
import trio.testing

from trioproxy.activity import ActivityTracker


async def test_a_stalled_request_is_swept_while_its_sessions_stream_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tracker = ActivityTracker(stale_timeout=3.0, instances=("a",))
    stalled_ended_at: list[float] = []

    async def streaming(*, task_status: trio.TaskStatus[None]) -> None:
        with (
            trio.CancelScope() as scope,
            tracker.track("a", "shared", model="m", streaming=True, handle=scope) as meter,
        ):
            task_status.started()
            for _ in range(20):  # a byte a second for 20 s: never idle for 3
                await trio.sleep(1)
                meter.add_rx(1)
        assert not scope.cancelled_caught

    async def stalled() -> None:
        with (
            trio.CancelScope() as scope,
            tracker.track("a", "shared", model="m", streaming=False, handle=scope),
        ):
            await trio.sleep_forever()
        assert scope.cancelled_caught
        stalled_ended_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tracker.run_sweeper)
        start = trio.current_time()
        await nursery.start(streaming)
        nursery.start_soon(stalled)
        await trio.sleep(21)
        nursery.cancel_scope.cancel()
    # Swept within one sweep period (0.75 s) of its 3 s, not when the stream ended.
    (ended,) = stalled_ended_at
    assert 3 <= ended - start <= 3 + 0.75
    life = tracker.instance_snapshot("a").lifetime
    assert (life.requests, life.stale, life.bytes_rx, life.cancelled) == (2, 1, 20, 0)
