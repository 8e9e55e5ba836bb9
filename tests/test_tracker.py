"""Tests of the activity tracker: keying, aggregates, exit paths and snapshots.

Rules these tests follow: time comes from Trio's clock — ``MockClock`` (the
``autojump_clock`` fixture) wherever a duration matters — so nothing waits in real
time; a request has the relay's shape, its own ``trio.CancelScope`` around a
``tracker.track()`` block; every test asserts.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
import trio
import trio.lowlevel
import trio.testing

import trioproxy.activity
from trioproxy.activity import (
    ActivityTracker,
    ConnectionActivity,
    GlobalSnapshot,
    InstanceActivity,
    LifetimeCounters,
    RequestMeter,
    get_activity_tracker,
    set_activity_tracker,
)
from trioproxy.activity.records import LifetimeRecord
from trioproxy.activity.snapshot import Outcome


@contextmanager
def request(
    tracker: ActivityTracker,
    instance: str = "a",
    session_id: str = "s",
    *,
    model: str = "m",
    streaming: bool = True,
) -> Iterator[RequestMeter]:
    """One request shaped like the relay's: its own cancel scope around ``track()``."""
    with (
        trio.CancelScope() as scope,
        tracker.track(
            instance, session_id, model=model, streaming=streaming, handle=scope
        ) as meter,
    ):
        yield meter


def connections_of(tracker: ActivityTracker, instance: str) -> dict[str, ConnectionActivity]:
    """The instance's connections by session id, from a fresh snapshot."""
    return {c.session_id: c for c in tracker.instance_snapshot(instance).connections}


# --- construction and the public surface ----------------------------------------------


PACKAGE = trioproxy.activity
DOCS = Path(__file__).resolve().parents[1] / "docs" / "activity.md"


@pytest.mark.parametrize("name", PACKAGE.__all__)
def test_each_public_name_is_importable_defined_here_and_documented(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from trioproxy.activity import {name}", namespace)
    value = namespace[name]
    assert value is getattr(PACKAGE, name)
    assert name in dir(PACKAGE)
    # Defined in the package and re-exported, not borrowed from elsewhere.
    assert getattr(value, "__module__", "").startswith("trioproxy.activity.")
    doc = getattr(value, "__doc__", None) or ""
    # A dataclass without a docstring gets its signature as one: not documentation.
    assert doc.strip() and not doc.startswith(f"{name}(")


def test_all_lists_every_public_name_but_the_apps_own() -> None:
    public = {
        name
        for name in dir(PACKAGE)
        if not name.startswith("_")
        and not isinstance(getattr(PACKAGE, name), ModuleType)
        and getattr(getattr(PACKAGE, name), "__module__", "").startswith("trioproxy.activity.")
    }
    # Importable for the app, but not part of the advertised surface.
    assert PACKAGE.set_activity_tracker is set_activity_tracker
    assert "set_activity_tracker" not in PACKAGE.__all__
    assert public - {"set_activity_tracker"} == set(PACKAGE.__all__)
    assert len(PACKAGE.__all__) == len(set(PACKAGE.__all__))


def code_blocks(text: str, opening: str) -> list[str]:
    """The code blocks of ``text`` opened by a line ending in ``opening``, dedented.

    A reST ``::`` block ends at the first line that is not indented, a Markdown block
    (opened by a fence) at the closing fence.
    """
    blocks, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.rstrip().endswith(opening):
            block: list[str] = []
            for body in lines[i + 1 :]:
                fence = opening.startswith("```")
                ends = body.startswith("```") if fence else bool(body[:1].strip())
                if ends:
                    break
                block.append(body)
            blocks.append(textwrap.dedent("\n".join(block)).strip())
    return blocks


async def test_the_module_docstring_example_runs() -> None:
    (example,) = code_blocks(PACKAGE.__doc__ or "", "::")
    chunk = b'data: {"choices": []}\n\n'
    namespace: dict[str, object] = {"session_id": "s-1", "chunk": chunk}
    exec(example, namespace)
    snapshot = namespace["snapshot"]
    assert isinstance(snapshot, GlobalSnapshot)
    assert snapshot.instance("openai.1").lifetime == LifetimeCounters(
        requests=1, bytes_rx=len(chunk), bytes_tx=len(chunk), completed=1
    )


async def test_the_python_api_of_the_docs_runs(capsys: pytest.CaptureFixture[str]) -> None:
    section = DOCS.read_text().split("## Python API", 1)[1]
    (example, *_) = code_blocks(section, "```python")
    tracker = ActivityTracker(instances=("openai.1",))
    set_activity_tracker(tracker)
    try:
        with request(tracker, "openai.1", "doc-session", model="gpt-4o") as meter:
            meter.add_tx(42)
            exec(example, {})
    finally:
        set_activity_tracker(None)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "1 0 42"
    assert printed[1].split()[:4] == ["openai.1", "doc-session", "gpt-4o", "42"]


def test_the_tracking_package_has_no_terminal_code() -> None:
    # The terminal view is a client of the JSON, in trioproxy/inspect: nothing of it here.
    package = Path(trioproxy.activity.__file__).parent
    modules = [f"trioproxy.activity.{path.stem}" for path in package.glob("*.py")]
    assert "trioproxy.activity.tracker" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = {'rich', 'httpx'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_empty_tracker_outside_trio_uses_wall_clock() -> None:
    tracker = ActivityTracker()
    before = time.time()
    snap = tracker.get_global_snapshot()
    assert before <= snap.timestamp <= time.time()
    assert snap.instances == ()
    assert tracker.stale_timeout == 300.0
    assert snap.to_dict() == {
        "total_active_connections": 0,
        "total_bytes_rx": 0,
        "total_bytes_tx": 0,
        "lifetime": {
            "requests": 0,
            "bytes_rx": 0,
            "bytes_tx": 0,
            "completed": 0,
            "errors": 0,
            "cancelled": 0,
            "stale": 0,
        },
    }


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_stale_timeout_is_rejected(timeout: float) -> None:
    with pytest.raises(ValueError, match="stale_timeout"):
        ActivityTracker(stale_timeout=timeout)


def test_track_outside_trio_raises() -> None:
    tracker = ActivityTracker()
    block = tracker.track("a", "s", model="m", streaming=False, handle=trio.CancelScope())
    with pytest.raises(RuntimeError), block:
        pass  # pragma: no cover - never entered
    assert tracker.get_global_snapshot().lifetime.requests == 0


def test_current_tracker_registry() -> None:
    tracker = ActivityTracker()
    assert get_activity_tracker() is None
    set_activity_tracker(tracker)
    try:
        assert get_activity_tracker() is tracker
    finally:
        set_activity_tracker(None)
    assert get_activity_tracker() is None


async def test_preregistered_instances_report_zeros_in_order() -> None:
    tracker = ActivityTracker(instances=("openai.1", "anthropic.1"))
    snap = tracker.get_global_snapshot()
    assert [i.name for i in snap.instances] == ["openai.1", "anthropic.1"]
    assert snap.instances[1] == InstanceActivity(name="anthropic.1")
    assert snap.instances[1].to_dict() == {
        "active_connections": 0,
        "connections": [],
        "total_bytes_rx": 0,
        "total_bytes_tx": 0,
        "lifetime": LifetimeCounters().to_dict(),
    }

    # Unknown names are added on first use, after the pre-registered ones.
    with request(tracker, "mock.1"):
        pass
    names = [i.name for i in tracker.get_global_snapshot().instances]
    assert names == ["openai.1", "anthropic.1", "mock.1"]


async def test_unknown_instance_snapshot_is_zeros_and_not_added() -> None:
    tracker = ActivityTracker(instances=("a",))
    assert tracker.instance_snapshot("nope") == InstanceActivity(name="nope")
    snap = tracker.get_global_snapshot()
    assert [i.name for i in snap.instances] == ["a"]
    assert snap.instance("nope") == InstanceActivity(name="nope")


# --- keying -----------------------------------------------------------------------------


async def test_connection_is_keyed_by_instance_and_session() -> None:
    tracker = ActivityTracker()
    with (
        request(tracker, "a", "s1") as m1,
        request(tracker, "a", "s2") as m2,
        request(tracker, "b", "s1") as m3,
    ):
        m1.add_rx(1)
        m2.add_rx(10)
        m3.add_rx(100)
        a = connections_of(tracker, "a")
        b = connections_of(tracker, "b")
        assert {s: c.bytes_rx for s, c in a.items()} == {"s1": 1, "s2": 10}
        assert {s: c.bytes_rx for s, c in b.items()} == {"s1": 100}
        assert tracker.get_global_snapshot().total_active_connections == 3
    assert tracker.get_global_snapshot().total_active_connections == 0


@pytest.mark.parametrize("ends_first", ["first", "second"])
async def test_two_requests_of_one_session_are_one_connection_until_the_last_ends(
    autojump_clock: trio.testing.MockClock, ends_first: str
) -> None:
    tracker = ActivityTracker(instances=("openai.1",))
    finish = {"first": trio.Event(), "second": trio.Event()}

    async def serve(
        name: str,
        model: str,
        streaming: bool,
        nbytes: int,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with request(tracker, "openai.1", "sess", model=model, streaming=streaming) as meter:
            meter.add_rx(nbytes)
            meter.add_tx(nbytes - 1)
            task_status.started()
            await finish[name].wait()

    async with trio.open_nursery() as nursery:
        await nursery.start(serve, "first", "gpt-4o", True, 100)
        await trio.sleep(1.0)
        await nursery.start(serve, "second", "gpt-4o-mini", False, 10)

        (conn,) = tracker.instance_snapshot("openai.1").connections
        assert conn.requests == 2
        assert (conn.bytes_rx, conn.bytes_tx) == (110, 108)
        assert conn.connection_type == "streaming"  # of the first request
        assert conn.model == "gpt-4o-mini"  # of the latest request
        assert conn.duration_seconds == pytest.approx(1.0)
        started_at = conn.started_at

        # One request ends: the connection stays, with both requests' bytes
        # (the reference project lost the record here).
        finish[ends_first].set()
        await trio.testing.wait_all_tasks_blocked()
        (conn,) = tracker.instance_snapshot("openai.1").connections
        assert conn.requests == 1
        assert (conn.bytes_rx, conn.bytes_tx) == (110, 108)
        assert (conn.started_at, conn.connection_type) == (started_at, "streaming")
        # The latest request still in flight: not one that has ended (its model and
        # status would say what the connection is no longer doing).
        assert conn.model == ("gpt-4o" if ends_first == "second" else "gpt-4o-mini")

        finish["second" if ends_first == "first" else "first"].set()

    instance = tracker.instance_snapshot("openai.1")
    assert instance.connections == ()
    assert instance.lifetime == LifetimeCounters(
        requests=2, bytes_rx=110, bytes_tx=108, completed=2
    )


async def test_connection_fields_follow_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    tracker = ActivityTracker()
    with request(tracker, streaming=False) as meter:
        snap = tracker.get_global_snapshot()
        (conn,) = snap.instances[0].connections
        started_at = conn.started_at
        assert started_at == pytest.approx(snap.timestamp)
        # Before any byte, the last activity is the registration.
        assert conn.last_activity_at == pytest.approx(started_at)
        assert conn.connection_type == "non_streaming"

        await trio.sleep(5.0)
        meter.add_rx(10)
        await trio.sleep(2.0)
        snap = tracker.get_global_snapshot()
        (conn,) = snap.instances[0].connections
        assert snap.timestamp == pytest.approx(started_at + 7.0)
        assert conn.started_at == started_at
        assert conn.duration_seconds == pytest.approx(7.0)
        assert conn.last_activity_at == pytest.approx(started_at + 5.0)
        assert conn.idle_seconds == pytest.approx(2.0)

        meter.add_tx(3)  # either direction is activity
        (conn,) = tracker.instance_snapshot("a").connections
        assert conn.idle_seconds == pytest.approx(0.0)
        assert (conn.bytes_rx, conn.bytes_tx) == (10, 3)


async def test_connections_are_oldest_first(autojump_clock: trio.testing.MockClock) -> None:
    tracker = ActivityTracker()
    with request(tracker, "a", "old"):
        await trio.sleep(1.0)
        with request(tracker, "a", "new"):
            assert list(connections_of(tracker, "a")) == ["old", "new"]
            await trio.sleep(1.0)
    with request(tracker, "a", "newest"):
        await trio.sleep(1.0)
        # "old" comes back as a new connection, so it is now the newest.
        with request(tracker, "a", "old"):
            conns = tracker.instance_snapshot("a").connections
            assert [c.session_id for c in conns] == ["newest", "old"]
            assert conns[0].started_at < conns[1].started_at


async def test_new_request_on_an_idle_connection_is_activity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tracker = ActivityTracker()
    with request(tracker, model="first"):
        await trio.sleep(8.0)
        with request(tracker, model="second"):
            (conn,) = tracker.instance_snapshot("a").connections
            assert (conn.requests, conn.model) == (2, "second")
            assert conn.idle_seconds == pytest.approx(0.0)
            assert conn.duration_seconds == pytest.approx(8.0)


# --- aggregates -------------------------------------------------------------------------


async def test_aggregates_per_instance_and_global() -> None:
    tracker = ActivityTracker(instances=("a", "b", "idle"))
    with (
        request(tracker, "a", "s1") as a1,
        request(tracker, "a", "s2") as a2,
        request(tracker, "b", "s1") as b1,
    ):
        a1.add_rx(100)
        a1.add_tx(90)
        a2.add_rx(20)
        a2.add_tx(20)
        b1.add_rx(5)
        b1.add_tx(4)
        snap = tracker.get_global_snapshot()
        a, b, idle = snap.instances
        assert (a.active_connections, a.total_bytes_rx, a.total_bytes_tx) == (2, 120, 110)
        assert (b.active_connections, b.total_bytes_rx, b.total_bytes_tx) == (1, 5, 4)
        assert idle == InstanceActivity(name="idle")
        assert a.lifetime == LifetimeCounters(requests=2, bytes_rx=120, bytes_tx=110)
        assert snap.total_active_connections == 3
        assert (snap.total_bytes_rx, snap.total_bytes_tx) == (125, 114)
        assert snap.lifetime == LifetimeCounters(requests=3, bytes_rx=125, bytes_tx=114)
        assert snap.instance("b") is b

    # The totals cover active connections only; lifetime keeps everything.
    snap = tracker.get_global_snapshot()
    assert (snap.total_active_connections, snap.total_bytes_rx, snap.total_bytes_tx) == (0, 0, 0)
    assert snap.lifetime == LifetimeCounters(requests=3, bytes_rx=125, bytes_tx=114, completed=3)


async def test_lifetime_bytes_grow_as_they_flow() -> None:
    tracker = ActivityTracker()
    with request(tracker) as meter:
        total = 0
        for size in (1, 512, 0, 4096):
            meter.add_rx(size)
            meter.add_tx(size)
            total += size
            lifetime = tracker.instance_snapshot("a").lifetime
            assert (lifetime.bytes_rx, lifetime.bytes_tx) == (total, total)
        assert (meter.bytes_rx, meter.bytes_tx) == (total, total)


# --- exit paths -------------------------------------------------------------------------


async def test_completed_request_counts_completed() -> None:
    tracker = ActivityTracker()
    with request(tracker) as meter:
        meter.add_rx(3)
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(
        requests=1, bytes_rx=3, completed=1
    )
    assert tracker.instance_snapshot("a").connections == ()


async def test_fail_counts_an_error_without_raising() -> None:
    tracker = ActivityTracker()
    with request(tracker) as meter:
        meter.fail()
        assert meter.failed
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(requests=1, errors=1)


async def test_exception_counts_an_error_and_propagates() -> None:
    tracker = ActivityTracker()
    with pytest.raises(KeyError, match="boom"), request(tracker):
        raise KeyError("boom")
    snap = tracker.instance_snapshot("a")
    assert snap.lifetime == LifetimeCounters(requests=1, errors=1)
    assert snap.connections == ()


async def test_cancellation_counts_as_cancelled() -> None:
    tracker = ActivityTracker()
    with (
        trio.CancelScope() as scope,
        tracker.track("a", "s", model="m", streaming=True, handle=scope) as meter,
    ):
        scope.cancel()  # what a client disconnect does
        await trio.sleep_forever()
    assert scope.cancelled_caught
    assert not meter.stale
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(requests=1, cancelled=1)


async def test_cancelled_nursery_in_the_block_counts_as_cancelled() -> None:
    # A cancelled nursery raises a group of nothing but Cancelled: still a cancellation.
    tracker = ActivityTracker()
    with (
        trio.CancelScope() as scope,
        tracker.track("a", "s", model="m", streaming=True, handle=scope),
    ):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(trio.sleep_forever)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(requests=1, cancelled=1)


async def test_group_with_a_real_error_counts_as_error() -> None:
    async def crash() -> None:
        raise ValueError("upstream broke")

    tracker = ActivityTracker()
    with pytest.RaisesGroup(ValueError), request(tracker):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(crash)
            nursery.start_soon(trio.sleep_forever)
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(requests=1, errors=1)


async def test_fail_then_cancellation_counts_an_error() -> None:
    tracker = ActivityTracker()
    with (
        trio.CancelScope() as scope,
        tracker.track("a", "s", model="m", streaming=True, handle=scope) as meter,
    ):
        meter.fail()
        scope.cancel()
        await trio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(requests=1, errors=1)


async def test_stale_wins_over_fail(autojump_clock: trio.testing.MockClock) -> None:
    tracker = ActivityTracker(stale_timeout=10.0)
    with request(tracker) as meter:
        await trio.sleep(10.0)
        assert tracker.sweep() == 1
        meter.fail()  # say, the relay recording the 504 it answered
        await trio.lowlevel.checkpoint()
    assert meter.stale
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(requests=1, stale=1)


# --- lifetime counters: one declaration ---------------------------------------------


def test_lifetime_counters_sum_and_dict_follow_the_fields() -> None:
    names = [f.name for f in dataclasses.fields(LifetimeCounters)]
    assert names == [
        "requests",
        "bytes_rx",
        "bytes_tx",
        "completed",
        "errors",
        "cancelled",
        "stale",
    ]
    a = LifetimeCounters(*range(1, 8))
    b = LifetimeCounters(*range(10, 80, 10))
    assert a + b == LifetimeCounters(11, 22, 33, 44, 55, 66, 77)
    assert (a + b).to_dict() == dict(zip(names, (11, 22, 33, 44, 55, 66, 77), strict=True))
    assert list(LifetimeCounters().to_dict()) == names


@pytest.mark.parametrize(
    ("outcome", "counter"),
    [
        (Outcome.COMPLETED, "completed"),
        (Outcome.ERROR, "errors"),
        (Outcome.CANCELLED, "cancelled"),
        (Outcome.STALE, "stale"),
    ],
)
def test_an_outcome_adds_to_its_counter_only(outcome: Outcome, counter: str | None) -> None:
    record = LifetimeRecord()
    record.count(outcome)
    expected = {} if counter is None else {counter: 1}
    assert record.freeze() == LifetimeCounters(**expected)


# --- the meter's contract -----------------------------------------------------------------


async def test_meter_rejects_negative_counts_and_use_after_exit() -> None:
    tracker = ActivityTracker()
    with request(tracker) as meter:
        with pytest.raises(ValueError, match="negative"):
            meter.add_rx(-1)
        with pytest.raises(ValueError, match="negative"):
            meter.add_tx(-1)
    with pytest.raises(RuntimeError, match="no longer tracked"):
        meter.add_rx(1)
    with pytest.raises(RuntimeError, match="no longer tracked"):
        meter.add_tx(1)
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(requests=1, completed=1)


async def test_a_track_block_is_single_use() -> None:
    tracker = ActivityTracker()
    block = tracker.track("a", "s", model="m", streaming=True, handle=trio.CancelScope())
    with block, pytest.raises(RuntimeError, match="only once"), block:
        pass  # pragma: no cover - never entered
    assert tracker.instance_snapshot("a").lifetime == LifetimeCounters(requests=1, completed=1)
    assert tracker.instance_snapshot("a").connections == ()


async def test_zero_byte_chunk_is_not_activity(autojump_clock: trio.testing.MockClock) -> None:
    tracker = ActivityTracker()
    with request(tracker) as meter:
        await trio.sleep(3.0)
        meter.add_rx(0)
        meter.add_tx(0)
        (conn,) = tracker.instance_snapshot("a").connections
        assert conn.idle_seconds == pytest.approx(3.0)


# --- snapshots --------------------------------------------------------------------------


async def test_snapshots_are_frozen_copies() -> None:
    tracker = ActivityTracker(instances=("a",))
    with request(tracker) as meter:
        meter.add_rx(10)
        before = tracker.get_global_snapshot()
        before_instance = tracker.instance_snapshot("a")
        meter.add_rx(5)
        meter.add_tx(5)
        with request(tracker, "a", "other"):
            pass
    # Later bytes, a new connection and the end of the request changed nothing.
    (conn,) = before.instances[0].connections
    assert (conn.bytes_rx, conn.bytes_tx, conn.requests) == (10, 0, 1)
    assert (before.total_active_connections, before.total_bytes_rx) == (1, 10)
    assert before.lifetime == LifetimeCounters(requests=1, bytes_rx=10)
    assert (before_instance.active_connections, before_instance.total_bytes_rx) == (1, 10)
    assert before_instance.connections[0].bytes_rx == 10

    for frozen in (before, before.instances[0], conn, before.lifetime):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(frozen, dataclasses.fields(frozen)[0].name, None)
    assert isinstance(before.instances, tuple)
    assert isinstance(before.instances[0].connections, tuple)


async def test_to_dict_uses_the_design_field_names(autojump_clock: trio.testing.MockClock) -> None:
    tracker = ActivityTracker(instances=("a",))
    with request(tracker, model="gpt-4o") as meter:
        meter.add_rx(15360)
        meter.add_tx(14820)
        await trio.sleep(2.0)
        snap = tracker.get_global_snapshot()
    activity = snap.instances[0].to_dict()
    assert list(activity) == [
        "active_connections",
        "connections",
        "total_bytes_rx",
        "total_bytes_tx",
        "lifetime",
    ]
    (conn,) = activity["connections"]
    assert conn == {
        "session_id": "s",
        "connection_type": "streaming",
        "started_at": pytest.approx(snap.timestamp - 2.0),
        "duration_seconds": pytest.approx(2.0),
        "model": "gpt-4o",
        "bytes_rx": 15360,
        "bytes_tx": 14820,
        "requests": 1,
        "last_activity_at": pytest.approx(snap.timestamp - 2.0),
        "idle_seconds": pytest.approx(2.0),
        "endpoint": "chat.completions",
        "time_to_first_byte_seconds": 0.0,
        "upstream_status": None,
        "translated": False,
        "backend_api": "",
        "workers": None,
    }
    lifetime = {
        "requests": 1,
        "bytes_rx": 15360,
        "bytes_tx": 14820,
        "completed": 0,
        "errors": 0,
        "cancelled": 0,
        "stale": 0,
    }
    assert activity["lifetime"] == lifetime
    assert snap.to_dict() == {
        "total_active_connections": 1,
        "total_bytes_rx": 15360,
        "total_bytes_tx": 14820,
        "lifetime": lifetime,
    }


async def test_snapshot_from_a_worker_thread() -> None:
    tracker = ActivityTracker(instances=("a",))
    with request(tracker) as meter:
        meter.add_rx(42)
        meter.add_tx(40)
        snap = await trio.to_thread.run_sync(tracker.get_global_snapshot)
        instance = await trio.to_thread.run_sync(tracker.instance_snapshot, "a")
    assert (snap.total_active_connections, snap.total_bytes_rx, snap.total_bytes_tx) == (1, 42, 40)
    assert (instance.active_connections, instance.total_bytes_rx) == (1, 42)
    # Outside Trio "now" is time.time(), which the Trio-derived times agree with.
    (conn,) = snap.instances[0].connections
    assert conn.started_at == pytest.approx(time.time(), abs=5.0)
    assert 0.0 <= conn.duration_seconds < 5.0


async def test_snapshots_from_a_thread_while_requests_come_and_go() -> None:
    tracker = ActivityTracker(instances=("a", "b"))
    done = trio.Event()
    snapshots: list[GlobalSnapshot] = []
    sent = 0

    def take_snapshots() -> None:
        for _ in range(300):
            before = time.time()
            snap = tracker.get_global_snapshot()
            assert before <= snap.timestamp <= time.time()
            snapshots.append(snap)

    async def snapshotter() -> None:
        await trio.to_thread.run_sync(take_snapshots)
        done.set()

    async def churn(instance: str, sessions: int) -> None:
        nonlocal sent
        n = 0
        while not done.is_set():
            with request(tracker, instance, f"s{n % sessions}") as meter:
                meter.add_rx(n % 5 + 1)
                sent += n % 5 + 1
                await trio.lowlevel.checkpoint()
            n += 1

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(churn, "ab"[i % 2], 3)
        nursery.start_soon(churn, "c", 1)
        nursery.start_soon(snapshotter)

    assert len(snapshots) == 300
    for snap in snapshots:
        assert snap.total_active_connections == sum(len(i.connections) for i in snap.instances)
        for instance in snap.instances:
            assert instance.active_connections == len(instance.connections)
            assert all(c.requests >= 1 for c in instance.connections)
            assert len({c.session_id for c in instance.connections}) == len(instance.connections)
    final = tracker.get_global_snapshot()
    assert final.total_active_connections == 0
    assert final.lifetime.requests > 0
    assert final.lifetime.bytes_rx == sent
    assert final.lifetime.cancelled == final.lifetime.errors == 0


async def test_sessions_lists_each_instances_active_sessions_and_sums_their_bytes() -> None:
    tracker = ActivityTracker(instances=("a", "b", "idle"))
    with request(tracker, "a", "s1") as one, request(tracker, "a", "s2") as two:
        with request(tracker, "b", "s1") as three, request(tracker, "a", "s1") as four:
            for meter, rx, tx in ((one, 5, 4), (two, 7, 7), (three, 11, 0), (four, 1, 1)):
                meter.add_rx(rx)
                meter.add_tx(tx)
            sessions, rx, tx = tracker.sessions()
            snapshot = tracker.get_global_snapshot()
        finished = tracker.sessions()
    assert sessions == {"a": ["s1", "s2"], "b": ["s1"], "idle": []}
    assert (rx, tx) == (24, 12) == (snapshot.total_bytes_rx, snapshot.total_bytes_tx)
    # a/s1 stays while one of its requests runs, with the bytes of both (a connection's).
    assert finished == ({"a": ["s1", "s2"], "b": [], "idle": []}, 13, 12)
