"""The snapshots' JSON form: ``to_dict()`` and the checked ``from_dict()`` of a document.

Rules: documents go through ``json.dumps``/``json.loads``, as a remote reader gets them;
every malformed case names the offending field by its path; no clock is involved except
the mock clock of the round-trip test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
import trio
import trio.testing

from trioproxy.activity import (
    ActivityTracker,
    ConnectionActivity,
    GlobalSnapshot,
    InstanceActivity,
    LifetimeCounters,
    MalformedDocument,
)


def through_json(value: object) -> Any:
    return json.loads(json.dumps(value))


def connection(**changes: object) -> dict[str, Any]:
    """A connection's JSON object, with ``changes`` applied (a None value removes a key)."""
    data: dict[str, Any] = {
        "session_id": "s",
        "connection_type": "streaming",
        "started_at": 1701792000.5,
        "duration_seconds": 2.5,
        "model": "gpt-4o",
        "bytes_rx": 10,
        "bytes_tx": 9,
        "requests": 1,
        "last_activity_at": 1701792002.0,
        "idle_seconds": 1.0,
        "endpoint": "responses",
        "time_to_first_byte_seconds": 0.5,
        "upstream_status": 200,
        "translated": False,
        "backend_api": "openai",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


async def test_from_dict_reads_back_what_to_dict_wrote(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tracker = ActivityTracker(instances=("a", "quiet"))
    with trio.CancelScope() as scope:
        with tracker.track("a", "s1", model="m1", streaming=True, handle=scope) as one:
            one.add_rx(100)
            await trio.sleep(1.5)
            with tracker.track("a", "s2", model="m2", streaming=False, handle=scope) as two:
                two.add_tx(7)
                await trio.sleep(0.25)
                snap = tracker.get_global_snapshot()
        with tracker.track("a", "s3", model="m3", streaming=True, handle=scope) as three:
            three.fail()
    assert snap.total_active_connections == 2

    instances = tuple(
        InstanceActivity.from_dict(through_json(i.to_dict()), f"instances[{n}]", name=i.name)
        for n, i in enumerate(snap.instances)
    )
    assert instances == snap.instances
    glob = GlobalSnapshot.from_dict(
        through_json(snap.to_dict()), timestamp=snap.timestamp, instances=instances
    )
    assert glob == snap
    for conn in snap.instances[0].connections:
        assert ConnectionActivity.from_dict(through_json(conn.to_dict())) == conn
    lifetime = tracker.get_global_snapshot().lifetime
    assert lifetime == LifetimeCounters(requests=3, bytes_rx=100, bytes_tx=7, completed=2, errors=1)
    assert LifetimeCounters.from_dict(through_json(lifetime.to_dict())) == lifetime


def test_to_dict_leaves_out_what_the_document_says_elsewhere() -> None:
    # An instance's name keys its entry; the global object holds the sums only.
    assert "name" not in InstanceActivity(name="a").to_dict()
    assert list(GlobalSnapshot(timestamp=1.0).to_dict()) == [
        "total_active_connections",
        "total_bytes_rx",
        "total_bytes_tx",
        "lifetime",
    ]


def test_from_dict_accepts_integers_for_seconds_and_ignores_unknown_keys() -> None:
    data = connection(started_at=1701792000, from_a_newer_proxy="x")
    conn = ConnectionActivity.from_dict(data)
    assert conn.started_at == 1701792000.0
    assert isinstance(conn.started_at, float)
    assert not hasattr(conn, "from_a_newer_proxy")


def test_workers_is_read_when_present_and_none_when_absent() -> None:
    # A proxy of several worker processes says which of them a connection is on; one of
    # one process says null, and an older proxy does not have the key at all.
    assert ConnectionActivity.from_dict(connection(workers=[0, 2])).workers == (0, 2)
    assert ConnectionActivity.from_dict(connection()).workers is None
    assert ConnectionActivity.from_dict({**connection(), "workers": None}).workers is None
    with_workers = ConnectionActivity.from_dict(connection(workers=[1]))
    assert ConnectionActivity.from_dict(through_json(with_workers.to_dict())) == with_workers


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (
            lambda: ConnectionActivity.from_dict(connection(workers=[0, -1])),
            "workers: expected a list of non-negative integers",
        ),
        (
            lambda: ConnectionActivity.from_dict(connection(workers=[True])),
            "workers: expected a list of non-negative integers",
        ),
        (lambda: ConnectionActivity.from_dict([]), "the document: expected an object"),
        (lambda: ConnectionActivity.from_dict("x", "c"), "c: expected an object"),
        (
            lambda: ConnectionActivity.from_dict(connection(session_id=None), "c"),
            "c.session_id: missing",
        ),
        (
            lambda: ConnectionActivity.from_dict(connection(session_id=5)),
            "session_id: expected a string",
        ),
        (
            lambda: ConnectionActivity.from_dict(connection(connection_type="chunked")),
            "connection_type: expected one of 'streaming', 'non_streaming'",
        ),
        (
            lambda: ConnectionActivity.from_dict(connection(duration_seconds="2s")),
            "duration_seconds: expected a number",
        ),
        (
            lambda: ConnectionActivity.from_dict(connection(idle_seconds=math.inf)),
            "idle_seconds: expected a finite number",
        ),
        (
            lambda: ConnectionActivity.from_dict(connection(started_at=False)),
            "started_at: expected a number",
        ),
        (
            lambda: ConnectionActivity.from_dict(connection(bytes_rx=1.5)),
            "bytes_rx: expected a non-negative integer",
        ),
        (
            lambda: LifetimeCounters.from_dict({"requests": 1}, "lifetime"),
            "lifetime.bytes_rx: missing",
        ),
        (
            lambda: InstanceActivity.from_dict(
                {**InstanceActivity(name="a").to_dict(), "connections": {}}, "act", name="a"
            ),
            "act.connections: expected a list",
        ),
        (
            lambda: InstanceActivity.from_dict(
                {**InstanceActivity(name="a").to_dict(), "connections": [connection(), 3]},
                "act",
                name="a",
            ),
            "act.connections[1]: expected an object",
        ),
        (
            lambda: GlobalSnapshot.from_dict(
                {**GlobalSnapshot(timestamp=0.0).to_dict(), "lifetime": None},
                "global_activity",
                timestamp=0.0,
            ),
            "global_activity.lifetime: expected an object",
        ),
    ],
)
def test_from_dict_names_the_field_in_error(read: Any, message: str) -> None:
    with pytest.raises(MalformedDocument) as caught:
        read()
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_snapshot_types_import_without_trio() -> None:
    # What a client of the diagnostics needs, without the 0.15 s of importing Trio.
    code = (
        "import sys\n"
        "from trioproxy.activity import ConnectionActivity, MalformedDocument\n"
        "import trioproxy.activity.snapshot\n"
        "assert 'trio' not in sys.modules, 'trio was imported'\n"
        "from trioproxy.activity import ActivityTracker\n"
        "assert 'trio' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
