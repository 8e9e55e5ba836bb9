"""Tests of stale detection: ``tracker.sweep()`` and the periodic ``run_sweeper``.

Every test runs on ``MockClock(autojump_threshold=0)`` (the ``autojump_clock``
fixture): sleeps are virtual, so the timeouts below take no real time, and the clock
jumps exactly to each deadline. Requests start at whole seconds so that idle times are
exact in floating point. Services are started with ``nursery.start``, never a sleep.
"""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing

from trioproxy.activity import ActivityTracker, LifetimeCounters, RequestMeter

START = 100.0  # a whole second at which each test's first request registers


async def idle_request(
    tracker: ActivityTracker,
    session_id: str = "s",
    *,
    task_status: trio.TaskStatus[RequestMeter] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A request that registers, reports its meter and then waits for bytes forever."""
    with (
        trio.CancelScope() as scope,
        tracker.track("a", session_id, model="m", streaming=True, handle=scope) as meter,
    ):
        task_status.started(meter)
        await trio.sleep_forever()


@pytest.mark.parametrize(
    ("timeout", "period"),
    [(10_000.0, 30.0), (120.0, 30.0), (10.0, 2.5), (1.0, 0.25), (0.5, 0.25), (0.01, 0.25)],
)
def test_sweep_period(timeout: float, period: float) -> None:
    assert ActivityTracker(stale_timeout=timeout).sweep_period == period


def test_sweep_outside_trio_raises() -> None:
    with pytest.raises(RuntimeError):
        ActivityTracker().sweep()


async def test_stale_at_the_timeout_and_not_before(autojump_clock: trio.testing.MockClock) -> None:
    tracker = ActivityTracker(stale_timeout=10.0)
    await trio.sleep_until(START)
    with (
        trio.CancelScope() as scope,
        tracker.track("a", "s", model="m", streaming=True, handle=scope) as meter,
    ):
        await trio.sleep_until(START + 9.9)
        assert tracker.sweep() == 0
        assert not meter.stale
        await trio.sleep_until(START + 10.0)
        assert tracker.sweep() == 1
        assert meter.stale
        await trio.lowlevel.checkpoint()
        pytest.fail("the stale request was not cancelled")  # pragma: no cover
    assert scope.cancelled_caught
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(requests=1, stale=1)


@pytest.mark.parametrize("direction", ["rx", "tx"])
async def test_a_byte_resets_the_idle_timer(
    autojump_clock: trio.testing.MockClock, direction: str
) -> None:
    tracker = ActivityTracker(stale_timeout=10.0)
    await trio.sleep_until(START)
    with (
        trio.CancelScope() as scope,
        tracker.track("a", "s", model="m", streaming=True, handle=scope) as meter,
    ):
        await trio.sleep_until(START + 8.0)
        (meter.add_rx if direction == "rx" else meter.add_tx)(1)
        await trio.sleep_until(START + 17.0)  # 17 s since registration, 9 s since the byte
        assert tracker.sweep() == 0
        await trio.sleep_until(START + 18.0)
        assert tracker.sweep() == 1
        await trio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert meter.stale


async def test_the_record_is_removed_by_the_scope_exit_not_the_sweep(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tracker = ActivityTracker(stale_timeout=10.0)
    with (
        trio.CancelScope() as scope,
        tracker.track("a", "s", model="m", streaming=True, handle=scope) as meter,
    ):
        try:
            await trio.sleep(10.0)
            assert tracker.sweep() == 1
            await trio.sleep_forever()
        finally:
            # Cleanup while unwinding (closing the upstream, say): still tracked, and
            # a second sweep does not count the request again.
            with trio.CancelScope(shield=True):
                await trio.sleep(5.0)
                (conn,) = tracker.instance_snapshot("a").connections
                assert conn.requests == 1
                assert tracker.sweep() == 0
    assert meter.stale
    instance = tracker.instance_snapshot("a")
    assert instance.connections == ()
    assert instance.lifetime == LifetimeCounters(requests=1, stale=1)


async def test_every_request_of_a_stale_connection_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tracker = ActivityTracker(stale_timeout=10.0)
    async with trio.open_nursery() as nursery:
        first = await nursery.start(idle_request, tracker, "shared")
        second = await nursery.start(idle_request, tracker, "shared")
        other = await nursery.start(idle_request, tracker, "other")
        await trio.sleep(5.0)
        other.add_tx(1)  # keeps "other" alive
        await trio.sleep(5.0)
        assert tracker.sweep() == 2
        assert (first.stale, second.stale, other.stale) == (True, True, False)
        await trio.testing.wait_all_tasks_blocked()
        assert [c.session_id for c in tracker.instance_snapshot("a").connections] == ["other"]
        nursery.cancel_scope.cancel()  # ends "other" as a cancellation
    lifetime = tracker.instance_snapshot("a").lifetime
    assert lifetime == LifetimeCounters(requests=3, bytes_tx=1, stale=2, cancelled=1)


@pytest.mark.parametrize(
    ("stale_timeout", "phase"), [(10.0, 0.0), (10.0, 1.25), (10.0, 2.4), (0.5, 0.1), (1000.0, 17.0)]
)
async def test_run_sweeper_cancels_within_one_period_after_the_timeout(
    autojump_clock: trio.testing.MockClock, stale_timeout: float, phase: float
) -> None:
    tracker = ActivityTracker(stale_timeout=stale_timeout)
    ended = trio.Event()
    ended_at = 0.0

    async def relay(*, task_status: trio.TaskStatus[RequestMeter]) -> None:
        nonlocal ended_at
        await idle_request(tracker, task_status=task_status)
        ended_at = trio.current_time()
        ended.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(tracker.run_sweeper)
        await trio.sleep(phase)  # where the request falls between two sweeps
        started_at = trio.current_time()
        meter = await nursery.start(relay)

        await trio.sleep_until(started_at + stale_timeout * 0.99)
        assert not ended.is_set()
        assert not meter.stale
        assert tracker.instance_snapshot("a").active_connections == 1

        await ended.wait()
        assert meter.stale
        assert stale_timeout <= ended_at - started_at <= stale_timeout + tracker.sweep_period
        assert tracker.instance_snapshot("a").lifetime.stale == 1
        nursery.cancel_scope.cancel()


async def test_run_sweeper_spares_a_request_that_keeps_sending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tracker = ActivityTracker(stale_timeout=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(tracker.run_sweeper)
        with (
            trio.CancelScope() as scope,
            tracker.track("a", "s", model="m", streaming=True, handle=scope) as meter,
        ):
            for _ in range(20):  # a slow stream: one byte every 9.5 s for 190 s
                await trio.sleep(9.5)
                meter.add_rx(1)
            last_byte = trio.current_time()
            await trio.sleep_forever()
        assert scope.cancelled_caught and meter.stale
        assert 10.0 <= trio.current_time() - last_byte <= 10.0 + tracker.sweep_period
        nursery.cancel_scope.cancel()
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(
        requests=1, bytes_rx=20, stale=1
    )


class RelayHandle:
    """A handle shaped like the relay's: notes why, then cancels the request's scope."""

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.calls = 0

    def cancel_as_stale(self) -> None:
        self.calls += 1
        self.scope.cancel()

    def cancel_by_operator(self) -> None:
        self.scope.cancel()


async def test_the_sweeper_ends_a_request_through_its_handle_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tracker = ActivityTracker(stale_timeout=10.0)
    with trio.CancelScope() as scope:
        handle = RelayHandle(scope)
        with tracker.track("a", "s", model="m", streaming=True, handle=handle) as meter:
            await trio.sleep(10.0)
            assert tracker.sweep() == 1
            assert tracker.sweep() == 0  # already cancelled as stale: not again
            assert handle.calls == 1
            await trio.lowlevel.checkpoint()
            pytest.fail("the stale request was not cancelled")  # pragma: no cover
    assert scope.cancelled_caught
    assert meter.stale
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(requests=1, stale=1)
