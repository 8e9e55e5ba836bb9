"""A worker's counts carried to its next incarnation (``trioproxy.workers.carry``).

Real trackers with real tracked requests, and the counts file in the test's temporary
directory: what one tracker saved, a fresh one takes on, as a restarted worker does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.test_tracker import request
from trioproxy.activity import ActivityTracker, LifetimeCounters
from trioproxy.activity.snapshot import HistogramCounts, InstanceMetrics
from trioproxy.workers.carry import CountsFile


def by_name(tracker: ActivityTracker) -> dict[str, InstanceMetrics]:
    return {m.name: m for m in tracker.metrics()}


async def test_a_new_incarnation_counts_on_from_what_the_last_one_saved(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    before = ActivityTracker()
    with request(before, "a", "s1") as meter:
        meter.add_rx(100)
        await trio.sleep(0.3)
        meter.add_tx(90)
    with request(before, "b", "s2", streaming=False) as meter:
        meter.add_rx(7)
        meter.add_tx(7)
    counts = CountsFile(str(tmp_path), 1)
    counts.save(before)
    saved = by_name(before)

    after = ActivityTracker()
    counts.take_on(after)
    assert by_name(after) == saved
    # And it goes on counting from there.
    with request(after, "a", "s3") as meter:
        meter.add_rx(5)
    grown = by_name(after)["a"]
    assert grown.lifetime == saved["a"].lifetime + LifetimeCounters(
        requests=1, bytes_rx=5, completed=1
    )
    assert grown.durations.count == saved["a"].durations.count + 1


async def test_requests_in_flight_at_the_last_save_count_as_errors(tmp_path: Path) -> None:
    before = ActivityTracker()
    counts = CountsFile(str(tmp_path), 0)
    with request(before, "a", "done") as meter:
        meter.add_rx(10)
    with request(before, "a", "cut") as meter:
        meter.add_rx(3)
        counts.save(before)  # the worker is killed here: this request never ends
    after = ActivityTracker()
    counts.take_on(after)
    (carried,) = after.metrics()
    assert carried.lifetime == LifetimeCounters(requests=2, bytes_rx=13, completed=1, errors=1)
    assert (carried.active_connections, carried.active_requests) == (0, 0)
    assert after.connection_count() == 0


def test_no_file_is_no_counts(tmp_path: Path) -> None:
    tracker = ActivityTracker()
    CountsFile(str(tmp_path), 3).take_on(tracker)
    assert tracker.metrics() == []


BUCKETS_OF_ANOTHER_VERSION = (
    b'[{"name": "a", "active_connections": 0, "active_requests": 0, "lifetime": {}, '
    b'"durations": {"bounds": [1.0], "counts": [0, 1], "total": 0.5}, '
    b'"first_bytes": {"bounds": [1.0], "counts": [0, 1], "total": 0.5}}]'
)


@pytest.mark.parametrize(
    "content", [b"{not json", b'[{"name": "a"}]', b"7", BUCKETS_OF_ANOTHER_VERSION]
)
def test_an_unreadable_file_is_logged_and_counting_starts_from_zero(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    counts = CountsFile(str(tmp_path), 0)
    Path(counts.path).write_bytes(content)
    tracker = ActivityTracker()
    with caplog.at_level(logging.WARNING, logger="trioproxy.workers.carry"):
        counts.take_on(tracker)
    assert tracker.metrics() == []
    assert "saved counts of" in caplog.text


async def test_a_save_replaces_the_file_whole(tmp_path: Path) -> None:
    tracker = ActivityTracker()
    counts = CountsFile(str(tmp_path), 0)
    for session in ("one", "two"):
        with request(tracker, "a", session):
            pass
        counts.save(tracker)
    assert os.listdir(tmp_path) == ["worker-0.counts.json"]
    after = ActivityTracker()
    counts.take_on(after)
    assert by_name(after)["a"].lifetime.completed == 2


async def test_carried_histograms_must_have_the_same_buckets() -> None:
    tracker = ActivityTracker()
    with request(tracker, "a", "s"):
        pass
    (metrics,) = tracker.metrics()
    odd = dataclasses.replace(metrics, durations=HistogramCounts((1.0,), (0, 1), 0.5))
    other = ActivityTracker()
    with pytest.raises(ValueError, match="buckets"):
        other.carry([metrics, odd])
    assert other.metrics() == []  # nothing of it, not even the part that fitted
