"""The collector's policy (``trioproxy.gcpolicy``): when full collections run, and the
young and middle collections on a timer.

The rule is a pure function with a table; the task is run under
``MockClock(autojump_threshold=0)`` with the process's thresholds set as ``tune_gc`` sets
them (restored afterwards, and without ``gc.freeze()``, which would outlive the test), and
CPython's own count of full collections says whether it ran one.
"""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from tests.proxyutil import running_proxy
from trioproxy import gcpolicy
from trioproxy.gcpolicy import (
    CHECK_EVERY,
    MIDDLE_THRESHOLD,
    MIN_ENDED,
    NO_AUTOMATIC_FULL,
    TIMED_DUTY,
    TIMED_EVERY,
    YOUNG_THRESHOLD,
    full_collection_due,
    run_full_collections,
    run_timed_collections,
    timed_wait,
)


@pytest.mark.parametrize(
    ("ended", "in_flight", "before", "due"),
    [
        (0, 0, 0, False),
        (MIN_ENDED - 1, 0, 0, False),
        (MIN_ENDED, 0, 0, True),
        # 5,000 streams held: the thousand that ended are no reason to scan them all.
        (MIN_ENDED, 5_000, 5_000, False),
        (19_999, 5_000, 5_000, False),
        (20_000, 5_000, 5_000, True),
        (MIN_ENDED, 250, 250, True),
        (MIN_ENDED, 251, 251, False),
        # Thousands hanging up: not while the number in flight is still falling.
        (4_000, 900, 3_000, False),
        (5_000, 0, 900, False),
        (5_000, 0, 10, True),
        (20_000, 5_000, 4_600, True),
        (20_000, 5_000, 4_400, False),
    ],
)
def test_a_full_collection_is_due_once_ended_outnumber_four_per_one_in_flight_settled(
    ended: int, in_flight: int, before: int, due: bool
) -> None:
    assert full_collection_due(ended, in_flight, before) is due


@dataclass
class Counts:
    ended: int = 0
    in_flight_count: int = 0


@pytest.fixture
def tuned() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, NO_AUTOMATIC_FULL)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def full_collections() -> int:
    return int(gc.get_stats()[2]["collections"])


async def test_the_task_runs_a_full_collection_when_one_is_due_and_only_then(
    tuned: None, autojump_clock: trio.testing.MockClock
) -> None:
    counts = Counts(in_flight_count=5_000)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_full_collections, counts)
        before = full_collections()
        counts.ended = 10_000  # streams held: not yet
        # Half a period off the task's checks, so that each step below sees one check.
        await trio.sleep(CHECK_EVERY * 3.5)
        assert full_collections() == before
        counts.in_flight_count = 0  # they hung up
        await trio.sleep(CHECK_EVERY)
        assert full_collections() == before  # the number in flight is still changing
        await trio.sleep(CHECK_EVERY)
        assert full_collections() == before + 1
        await trio.sleep(CHECK_EVERY * 3)  # nothing ended since
        assert full_collections() == before + 1
        nursery.cancel_scope.cancel()


async def test_the_task_leaves_full_collections_to_cpython_when_it_runs_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert not gcpolicy.tuned()
    counts = Counts()
    # So that CPython starts none of its own meanwhile (the thresholds stay as they are).
    gc.disable()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_full_collections, counts)
            before = full_collections()
            counts.ended = 10 * MIN_ENDED
            await trio.sleep(CHECK_EVERY * 3)
            assert full_collections() == before
            nursery.cancel_scope.cancel()
    finally:
        gc.enable()


@pytest.fixture
def timed_only() -> Iterator[None]:
    """``tune_gc``'s thresholds, but no automatic collection at all (a young threshold
    of 0 turns them off): every collection the test counts is the task's."""
    before = gc.get_threshold()
    gc.set_threshold(0, MIDDLE_THRESHOLD, NO_AUTOMATIC_FULL)
    gc.collect()  # what earlier tests left young: the task's collections find little
    try:
        yield
    finally:
        gc.set_threshold(*before)


class Node:
    """An object the collector tracks, made into a cycle that only it frees."""

    other: Node | None = None


def garbage_cycle() -> weakref.ref[Node]:
    node = Node()
    node.other = node
    return weakref.ref(node)


def collections(generation: int) -> int:
    return int(gc.get_stats()[generation]["collections"])


async def test_young_garbage_is_collected_on_the_timer_though_nothing_is_allocated(
    timed_only: None, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(run_timed_collections)
        young, middle = collections(0), collections(1)
        cycle = garbage_cycle()
        await trio.sleep(TIMED_EVERY / 2)
        assert cycle() is not None
        await trio.sleep(TIMED_EVERY)
        assert cycle() is None  # the first period's young collection freed it
        await trio.sleep(TIMED_EVERY * 3)
        # Four periods: young, middle, young, middle.
        assert (collections(0) - young, collections(1) - middle) == (2, 2)
        nursery.cancel_scope.cancel()


async def test_the_timer_skips_its_turns_while_the_collector_is_disabled(
    timed_only: None, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(run_timed_collections)
        young, middle = collections(0), collections(1)
        gc.disable()
        try:
            cycle = garbage_cycle()
            await trio.sleep(TIMED_EVERY * 3.5)
            assert cycle() is not None
            assert (collections(0), collections(1)) == (young, middle)
        finally:
            gc.enable()
        await trio.sleep(TIMED_EVERY)
        assert cycle() is None
        nursery.cancel_scope.cancel()


async def test_no_timer_runs_unless_the_thresholds_are_tuned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert not gcpolicy.tuned()
    started = trio.current_time()
    with trio.fail_after(TIMED_EVERY * 10):
        await run_timed_collections()
    assert trio.current_time() == started


async def test_the_proxy_runs_the_timer_once_the_thresholds_are_tuned(
    timed_only: None, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_proxy(nursery) as proxy:
        cycle = garbage_cycle()
        await trio.sleep(TIMED_EVERY * 1.5)
        assert cycle() is None
        assert (await proxy.diagnostics())["global_activity"] is None  # it serves meanwhile


@pytest.mark.parametrize(
    ("took", "wait"),
    [
        (0.0, TIMED_EVERY),
        (TIMED_EVERY * TIMED_DUTY, TIMED_EVERY),
        # Each collection found much (streams that all move every few ms): fewer of them.
        (0.01, 0.01 / TIMED_DUTY),
        (0.05, 1.0),
    ],
)
def test_the_timer_waits_longer_after_a_collection_that_took_long(took: float, wait: float) -> None:
    assert timed_wait(took) == pytest.approx(wait)


async def test_the_timer_backs_off_after_a_collection_that_found_much(
    timed_only: None, autojump_clock: trio.testing.MockClock
) -> None:
    pauses: list[float] = []
    when: list[float] = []
    started = 0.0

    def timing(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started)
            when.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        await nursery.start(run_timed_collections)
        # Young and alive, as every stream's wait is when all of them move every few ms.
        alive: list[list[int]] = [[] for _ in range(500_000)]
        gc.callbacks.append(timing)
        try:
            await trio.sleep(TIMED_EVERY * 1.5)
            assert len(pauses) == 1 and timed_wait(pauses[0]) > TIMED_EVERY * 2
            # Not before the first collection's time over the duty (the task's own
            # measurement encloses the callbacks').
            await trio.sleep(pauses[0] / TIMED_DUTY - TIMED_EVERY)
            assert len(pauses) == 1
            await trio.sleep(TIMED_EVERY * 2)
            assert len(pauses) == 2
            assert when[1] - when[0] >= pauses[0] / TIMED_DUTY
        finally:
            gc.callbacks.remove(timing)
        del alive
        nursery.cancel_scope.cancel()
