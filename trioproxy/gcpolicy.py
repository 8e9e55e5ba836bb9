"""Garbage collection for a process that holds thousands of streams: no pause scans them all.

CPython's collector stops the whole process while it scans a generation, at about a
microsecond per object on the benchmark's machine. Each stream in flight keeps about 200
GC-tracked objects alive (coroutines and frames of its three tasks, cancel scopes, h11
and hypercorn state), a million with 5,000 streams: a scan of all of them — a full
collection — takes a second, and with CPython's thresholds the middle generation
collects the survivors of ten young collections at once, which while thousands of
streams ramp up (when nearly everything survives) is hundreds of thousands of objects:
0.65 s pauses (docs/performance.md).

:func:`tune_gc`, called once at start-up by the proxy's process (and by each worker):

* a young collection every 700 net allocations (CPython's own default). A young
  collection scans what was allocated since the last one and is still alive, and that is
  not bounded by the threshold: each chunk a stream relays replaces the objects of its
  wait (coroutines, cancel scopes, context managers: about 30), and the old ones it frees
  count against the new, so the net count barely moves while the young generation fills
  with the waits of every stream that moved. With a threshold of 10,000 that was 90,000
  objects at 5,000 held streams (pauses of 100 to 240 ms); at 700 the collections come often
  enough that each finds a few thousand (about 10 ms), and a quick request's cost does not
  change (``bench/overhead.py``);
* the middle generation collected at every other young collection, so it never holds
  more than two young collections' survivors;
* besides, young collections on a timer, and a middle one every other time
  (:func:`run_timed_collections`, a task of the app). Held streams that relay chunks
  barely move the net count, so the young generation filled for as long as a count of
  700 took to come — 0.35 to 0.5 s with 5,000 streams relaying 1,000 chunks/s — and a
  middle collection then scanned up to 50 ms of it. Collected every
  :data:`TIMED_EVERY` (50 ms) as well, each finds a few milliseconds of it, and no more in
  all: what a young collection scans is what was allocated since the last one and is
  still alive, and a stream that moves once in seconds is scanned once either way. But
  streams that move every few milliseconds (a model's tokens) keep every stream's wait
  young and alive: a collection then scans all of them however soon it comes, and one
  every 50 ms doubled the collector's time in ``bench/run.py``'s relay scenario. So the
  timer waits, after each of its collections, at least that collection's time divided
  by :data:`TIMED_DUTY` (:func:`timed_wait`): its collections never take more than 5 %
  of the time, and where each finds much it leaves the work to CPython's own;
* no automatic full collection at all;
* what start-up allocated frozen out of every collection.

The full collections CPython no longer starts are run by :func:`run_full_collections`,
a task of the app, checking every second: once the requests that ended since the last
one outnumber four times those in flight (and are at least :data:`MIN_ENDED`), and the
number in flight has settled (within a tenth, or ten, of the last check). Garbage the
young and middle collections miss can only come from requests that ended, while a full
collection's cost grows with the requests in flight; so streams that ramp up, are held
and hang up together never meet one — it runs once they are gone, over a small heap.
Under steady churn at high concurrency it runs about every four generations of
requests in flight: a pause of about 0.2 s per thousand streams then in flight.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn, Protocol

import trio

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 700
#: The middle generation is collected once more than this many young collections ran.
MIDDLE_THRESHOLD = 1
#: A full-collection threshold no count reaches: CPython never starts one itself.
NO_AUTOMATIC_FULL = 2**31 - 1
MIN_ENDED = 1_000
ENDED_PER_IN_FLIGHT = 4
CHECK_EVERY = 1.0
#: The least time between two of the collections :func:`run_timed_collections` runs.
TIMED_EVERY = 0.05
#: The share of the time those collections may take (:func:`timed_wait`).
TIMED_DUTY = 0.05


def tune_gc() -> None:
    """Set the process's collector up as the module docstring says."""
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, NO_AUTOMATIC_FULL)
    gc.freeze()


def tuned() -> bool:
    """Whether the process's collector runs no full collection itself, as :func:`tune_gc`
    set it (not so in a test, or in an application embedding the proxy)."""
    return gc.get_threshold()[2] == NO_AUTOMATIC_FULL


@contextmanager
def collector_paused() -> Iterator[None]:
    """No collection starts inside the block (for synchronous code: no ``await`` in it).

    For a large document that lives for a moment (the diagnostics of thousands of
    connections): its objects are freed by reference counting as soon as it is encoded,
    but while it is built every 700 of them start a young collection, which scans them
    and everything else young — with thousands of streams in flight, the waits of every
    stream that moved (the module docstring). A collector that was off stays off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def full_collection_due(ended: int, in_flight: int, in_flight_before: int) -> bool:
    """Whether a full collection is due, ``ended`` requests after the last one, with
    ``in_flight`` requests running now and ``in_flight_before`` at the last check (pure)."""
    settled = abs(in_flight - in_flight_before) <= max(10, in_flight_before // 10)
    return settled and ended >= max(MIN_ENDED, ENDED_PER_IN_FLIGHT * in_flight)


class RequestCounts(Protocol):
    """What :func:`run_full_collections` reads: requests ended so far, and in flight."""

    @property
    def ended(self) -> int: ...

    @property
    def in_flight_count(self) -> int: ...


async def run_full_collections(
    counts: RequestCounts,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run a full collection whenever :func:`full_collection_due`, checking every second.

    Does nothing while CPython runs full collections itself (:func:`tune_gc` not
    called: a test, or an application embedding the proxy).
    """
    task_status.started()
    last = counts.ended
    in_flight = counts.in_flight_count
    while True:
        await trio.sleep(CHECK_EVERY)
        before, in_flight = in_flight, counts.in_flight_count
        if not tuned():
            continue
        ended = counts.ended
        if full_collection_due(ended - last, in_flight, before):
            last = ended
            started = time.perf_counter()
            found = gc.collect()
            log.debug(
                "full collection: %d unreachable objects in %.1f ms",
                found,
                (time.perf_counter() - started) * 1000,
            )


def timed_wait(took: float) -> float:
    """Seconds to wait after a timed collection that took ``took`` seconds (pure):
    :data:`TIMED_EVERY`, or more when the collection took more than :data:`TIMED_DUTY`
    of that."""
    return max(TIMED_EVERY, took / TIMED_DUTY)


async def run_timed_collections(
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Young collections on a timer, and a middle one instead every other time, whatever
    the net count of allocations says: each :func:`timed_wait` after the one before (the
    module docstring).

    Returns at once unless :func:`tune_gc` set the process's thresholds (a test, or an
    application embedding the proxy, keeps CPython's own schedule and no timer); skips a
    turn while the collector is disabled.
    """
    task_status.started()
    if not tuned():
        return
    middle = False
    wait = TIMED_EVERY
    while True:
        await trio.sleep(wait)
        if gc.isenabled():
            started = time.perf_counter()
            gc.collect(1 if middle else 0)
            wait = timed_wait(time.perf_counter() - started)
            middle = not middle
