"""Reading ``GET /v1/diagnostics`` and ``/recent`` documents: into the snapshot types, or
one clear error.

Rules: the documents are decoded JSON from ``tests/documents.py``, changed in one place
per malformed case; each case names the offending field by its path.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from tests.documents import (
    LONG_SESSION,
    T0,
    no_connections,
    several_backends,
    some_finished,
    tracking_off,
)
from trioproxy.activity import (
    ConnectionActivity,
    FinishedRequest,
    GlobalSnapshot,
    InstanceActivity,
    LifetimeCounters,
    MalformedDocument,
)
from trioproxy.inspect.document import Diagnostics, Instance, RecentRequests

parse = Diagnostics.from_dict


def test_parse_gives_frozen_dataclasses() -> None:
    parsed = parse(several_backends())
    assert [i.name for i in parsed.instances] == ["openai.1", "anthropic.1", "mock.1"]
    first = parsed.instances[0].activity
    assert first is not None
    assert first.connections[0] == ConnectionActivity(
        session_id=LONG_SESSION,
        connection_type="streaming",
        started_at=T0 - 12.34,
        duration_seconds=12.34,
        model="gpt-4o",
        bytes_rx=1536,
        bytes_tx=1500,
        requests=1,
        last_activity_at=T0 - 0.4,
        idle_seconds=0.4,
        endpoint="chat.completions",
        time_to_first_byte_seconds=0.25,
        upstream_status=200,
        translated=False,
        backend_api="openai",
    )
    activities = tuple(i.activity for i in parsed.instances if i.activity is not None)
    assert [a.name for a in activities] == ["openai.1", "anthropic.1", "mock.1"]
    assert parsed.global_activity == GlobalSnapshot(
        timestamp=T0,
        total_active_connections=3,
        total_bytes_rx=1536 + 300 + 3 * 1024 * 1024 + 512 * 1024,
        total_bytes_tx=1500 + 300 + 3 * 1024 * 1024,
        lifetime=LifetimeCounters(21, 27000, 26400, 12, 3, 6, 0),
        instances=activities,
    )
    assert parsed.global_activity.instance("mock.1") == InstanceActivity(
        name="mock.1", lifetime=LifetimeCounters(7, 9000, 8800, 4, 1, 2, 0)
    )
    assert isinstance(parsed.instances[0], Instance)
    assert parsed.instances[0].models == ("m1", "m2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.timestamp = 0.0  # type: ignore[misc]


def test_parse_tracking_off() -> None:
    parsed = parse(tracking_off())
    assert not parsed.activity_tracking_enabled
    assert parsed.global_activity is None
    assert all(i.activity is None for i in parsed.instances)


def test_parse_ignores_unknown_fields() -> None:
    data = no_connections()
    data["added_in_a_later_version"] = {"x": 1}
    data["instances"][0]["region"] = "eu"
    assert parse(data).instances[0].name == "openai.1"


def _broken(change: Any) -> dict[str, Any]:
    data = several_backends()
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "the document: expected an object"),
        ("hello", "the document: expected an object"),
        ({"hello": "world"}, "timestamp: missing"),
        (_broken(lambda d: d.pop("instances")), "instances: missing"),
        (_broken(lambda d: d.update(timestamp="now")), "timestamp: expected a number"),
        (_broken(lambda d: d.update(timestamp=math.nan)), "timestamp: expected a finite"),
        (_broken(lambda d: d.update(timestamp=1e20)), "timestamp: not a representable time"),
        (
            _broken(lambda d: d.update(activity_tracking_enabled=1)),
            "activity_tracking_enabled: expected true or false",
        ),
        (_broken(lambda d: d.update(instances={})), "instances: expected a list"),
        (_broken(lambda d: d["instances"].append(3)), "instances[3]: expected an object"),
        (
            _broken(lambda d: d["instances"][1].update(activity=[])),
            "instances[1].activity: expected an object",
        ),
        (
            _broken(lambda d: d["instances"][0]["activity"]["connections"][1].pop("bytes_rx")),
            "instances[0].activity.connections[1].bytes_rx: missing",
        ),
        (
            _broken(lambda d: d["instances"][0]["activity"]["connections"][0].update(bytes_tx=-1)),
            "instances[0].activity.connections[0].bytes_tx: expected a non-negative integer",
        ),
        (
            _broken(
                lambda d: d["instances"][0]["activity"]["connections"][0].update(requests=True)
            ),
            "instances[0].activity.connections[0].requests: expected a non-negative integer",
        ),
        (
            _broken(lambda d: d["instances"][0].update(models=["a", 1])),
            "instances[0].models: expected a list of strings",
        ),
        (
            _broken(lambda d: d["global_activity"]["lifetime"].pop("stale")),
            "global_activity.lifetime.stale: missing",
        ),
    ],
)
def test_parse_rejects_other_shapes(data: object, message: str) -> None:
    with pytest.raises(MalformedDocument) as caught:
        parse(data)
    assert str(caught.value).startswith(message)


def test_parse_recent_requests() -> None:
    parsed = RecentRequests.from_dict(some_finished())
    assert parsed.timestamp == T0 and parsed.activity_tracking_enabled
    assert [r.outcome for r in parsed.recent] == ["completed", "stale", "cancelled", "error"]
    assert parsed.recent[2] == FinishedRequest(
        instance="openai.1",
        session_id="stuck",
        endpoint="chat.completions",
        model="gpt-4o",
        started_at=T0 - 60 - 42.0,
        duration_seconds=42.0,
        time_to_first_byte_seconds=0.05,
        upstream_status=200,
        bytes_rx=2048,
        bytes_tx=2048,
        outcome="cancelled",
        reason="operator",
        error=None,
        translated=False,
        backend_api="openai",
    )
    assert parsed.recent[3].upstream_status is None and parsed.recent[3].translated


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("recent"), "recent: missing"),
        (lambda d: d["recent"][1].pop("outcome"), "recent[1].outcome: missing"),
        (lambda d: d["recent"][0].update(bytes_rx=-2), "recent[0].bytes_rx: expected a non-neg"),
        (lambda d: d["recent"][3].update(translated="yes"), "recent[3].translated: expected true"),
    ],
)
def test_parse_recent_rejects_other_shapes(change: Any, message: str) -> None:
    data = some_finished()
    change(data)
    with pytest.raises(MalformedDocument) as caught:
        RecentRequests.from_dict(data)
    assert str(caught.value).startswith(message)
