"""The merge of several workers' documents (``trioproxy.workers.merge``): table tests.

Pure functions over plain documents, so no process and no clock is involved; the
documents are built the way a worker builds its own (``connection``, ``document``).
"""

from __future__ import annotations

from typing import Any

import pytest

from trioproxy.activity import ConnectionActivity
from trioproxy.activity.snapshot import HistogramCounts, InstanceMetrics, LifetimeCounters
from trioproxy.workers.merge import (
    CONNECTION_FIELDS,
    activity_part,
    merge_activity,
    merge_connections,
    merge_diagnostics,
    merge_metrics,
    merge_recent,
    metrics_from_dict,
    metrics_to_dict,
)

NOW = 1000.0


def connection(session: str = "s", **fields: Any) -> dict[str, Any]:
    """A worker's connection row (with the merge's ``latest_started_at``)."""
    row: dict[str, Any] = {
        "session_id": session,
        "connection_type": "streaming",
        "started_at": 900.0,
        "duration_seconds": 0.0,
        "model": "m",
        "bytes_rx": 10,
        "bytes_tx": 9,
        "requests": 1,
        "last_activity_at": 950.0,
        "idle_seconds": 0.0,
        "endpoint": "chat.completions",
        "time_to_first_byte_seconds": 0.5,
        "upstream_status": 200,
        "translated": False,
        "backend_api": "openai",
        "workers": None,
        "latest_started_at": 900.0,
    }
    row.update(fields)
    return row


def lifetime(requests: int = 0, bytes_rx: int = 0, bytes_tx: int = 0, **outcomes: int) -> Any:
    return LifetimeCounters(requests, bytes_rx, bytes_tx, **outcomes).to_dict()


def activity(rows: list[dict[str, Any]], life: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "active_connections": len(rows),
        "connections": rows,
        "total_bytes_rx": sum(r["bytes_rx"] for r in rows),
        "total_bytes_tx": sum(r["bytes_tx"] for r in rows),
        "lifetime": life or lifetime(),
    }


def instance(name: str, act: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "connector_type": "openai",
        "is_rate_limited": False,
        "retry_after_seconds": None,
        "is_functional": True,
        "validation_errors": [],
        "models": ["m"],
        "activity": act,
    }
    entry.update(fields)
    return entry


def document(*instances: dict[str, Any], now: float = NOW) -> dict[str, Any]:
    tracking = all(i["activity"] is not None for i in instances)
    return {
        "timestamp": now,
        "activity_tracking_enabled": tracking,
        "instances": list(instances),
        "global_activity": {"placeholder": True} if tracking else None,
    }


MERGE_CASES = [
    pytest.param(
        [(0, connection("a")), (1, connection("b", started_at=800.0))],
        [
            {"session_id": "b", "workers": [1], "started_at": 800.0},
            {"session_id": "a", "workers": [0], "started_at": 900.0},
        ],
        id="two sessions stay two connections, oldest first",
    ),
    pytest.param(
        [
            (1, connection(requests=2, bytes_rx=100, bytes_tx=90)),
            (0, connection(requests=1, bytes_rx=5, bytes_tx=4)),
        ],
        [{"workers": [0, 1], "requests": 3, "bytes_rx": 105, "bytes_tx": 94}],
        id="one session on two workers is one connection, counts summed",
    ),
    pytest.param(
        [
            (0, connection(started_at=900.0, connection_type="streaming")),
            (1, connection(started_at=850.0, connection_type="non_streaming")),
        ],
        [{"started_at": 850.0, "connection_type": "non_streaming", "duration_seconds": 150.0}],
        id="started_at is the earliest, and the type is that first request's",
    ),
    pytest.param(
        [
            (0, connection(last_activity_at=990.0)),
            (1, connection(last_activity_at=960.0)),
        ],
        [{"last_activity_at": 990.0, "idle_seconds": 10.0}],
        id="last_activity_at is the latest; idle against the answer's time",
    ),
    pytest.param(
        [
            # Worker 0's request is the busier one (the latest byte), but worker 1's
            # request registered last: its fields are the latest request's.
            (0, connection(last_activity_at=999.0, latest_started_at=900.0, model="old")),
            (
                1,
                connection(
                    last_activity_at=980.0,
                    latest_started_at=979.0,
                    model="new",
                    endpoint="responses",
                    time_to_first_byte_seconds=None,
                    upstream_status=None,
                    translated=True,
                    backend_api="anthropic",
                ),
            ),
        ],
        [
            {
                "model": "new",
                "endpoint": "responses",
                "time_to_first_byte_seconds": None,
                "upstream_status": None,
                "translated": True,
                "backend_api": "anthropic",
                "last_activity_at": 999.0,
            }
        ],
        id="the latest request's fields come from the worker whose request is latest",
    ),
    pytest.param(
        [(1, connection(model="one")), (0, connection(model="zero"))],
        [{"model": "one", "workers": [0, 1]}],
        id="a tie keeps the first seen",
    ),
    pytest.param(
        [(0, connection(started_at=1001.0, last_activity_at=1002.0))],
        [{"duration_seconds": 0.0, "idle_seconds": 0.0}],
        id="durations are never negative",
    ),
]


@pytest.mark.parametrize(("rows", "expected"), MERGE_CASES)
def test_merge_connections(rows: list[Any], expected: list[dict[str, Any]]) -> None:
    merged = merge_connections(rows, NOW)
    assert len(merged) == len(expected)
    for got, want in zip(merged, expected, strict=True):
        assert list(got) == list(CONNECTION_FIELDS)
        assert {key: got[key] for key in want} == want
        # What the merge leaves is a connection of the document, as a reader reads it.
        assert ConnectionActivity.from_dict(got).workers == tuple(got["workers"])


def test_merged_connections_are_in_the_fields_order_whatever_order_the_rows_came_in() -> None:
    # An older worker's rows: no "workers", and keys in another order.
    older = dict(reversed(list(connection("a").items())))
    del older["workers"]
    own = connection("b", started_at=950.0)
    merged = merge_connections([(1, older), (0, own), (1, connection("b"))], NOW)
    assert [list(row) for row in merged] == [list(CONNECTION_FIELDS)] * 2
    assert [(row["session_id"], row["workers"]) for row in merged] == [("a", [1]), ("b", [0, 1])]
    assert "latest_started_at" in own  # the workers' own rows are left as they were


def test_merged_diagnostics_sum_counters_and_keep_the_answering_workers_instance_fields() -> None:
    zero = document(
        instance(
            "a",
            activity([connection("s", bytes_rx=10)], lifetime(3, 100, 90, completed=2)),
            is_rate_limited=True,
            retry_after_seconds=5.0,
        ),
        instance("b", activity([], lifetime(1, 1, 1, errors=1))),
    )
    one = document(
        instance(
            "a",
            activity(
                [connection("s", bytes_rx=7), connection("t", bytes_rx=1)],
                lifetime(4, 50, 40, cancelled=1),
            ),
        ),
        instance("b", activity([connection("u")], lifetime(2, 5, 5, stale=1))),
        now=999.0,
    )
    roster = [{"worker": 0, "pid": 10, "started_at": 1.0, "restarts": 0}]
    merged = merge_diagnostics(1, {0: zero, 1: one}, [2], roster)
    assert merged["timestamp"] == 999.0
    assert (merged["worker"], merged["workers_unreachable"], merged["workers"]) == (1, [2], roster)
    a, b = merged["instances"]
    # Rate limit and health as the answering worker (1) sees them.
    assert (a["is_rate_limited"], a["retry_after_seconds"]) == (False, None)
    assert [c["session_id"] for c in a["activity"]["connections"]] == ["s", "t"]
    assert a["activity"]["connections"][0]["bytes_rx"] == 17
    assert a["activity"]["active_connections"] == 2
    assert a["activity"]["total_bytes_rx"] == 18
    assert a["activity"]["lifetime"] == lifetime(7, 150, 130, completed=2, cancelled=1)
    assert b["activity"]["lifetime"] == lifetime(3, 6, 6, errors=1, stale=1)
    assert merged["global_activity"] == {
        "total_active_connections": 3,
        "total_bytes_rx": 18 + 10,
        "total_bytes_tx": 9 * 3 + 9,
        "lifetime": lifetime(10, 156, 136, completed=2, errors=1, cancelled=1, stale=1),
    }


def test_merged_diagnostics_with_tracking_off_have_no_activity() -> None:
    off = document(instance("a", None))
    merged = merge_diagnostics(0, {0: off, 1: off}, [], [])
    assert merged["activity_tracking_enabled"] is False
    assert merged["instances"][0]["activity"] is None
    assert merged["global_activity"] is None


@pytest.mark.parametrize(
    ("parts", "connections"),
    [
        pytest.param({0: {"a": ["s"]}, 1: {"a": ["s"]}}, 1, id="one session on two workers"),
        pytest.param({0: {"a": ["s"]}, 1: {"b": ["s"]}}, 2, id="one session, two instances"),
        pytest.param({0: {"a": ["s", "t"]}, 1: {"a": []}}, 2, id="two sessions on one worker"),
    ],
)
def test_merged_activity_counts_connections_by_key(
    parts: dict[int, dict[str, list[str]]], connections: int
) -> None:
    documents = {
        worker: {"sessions": sessions, "total_bytes_rx": 3, "total_bytes_tx": 2}
        for worker, sessions in parts.items()
    }
    assert merge_activity(0, documents, [5]) == {
        "enabled": True,
        "total_active_connections": connections,
        "total_bytes_rx": 6,
        "total_bytes_tx": 4,
        "worker": 0,
        "workers_unreachable": [5],
    }


def test_activity_part_of_a_worker_and_of_one_without_tracking() -> None:
    part = activity_part(({"a": ["s", "t"]}, 20, 18))
    assert part == {"sessions": {"a": ["s", "t"]}, "total_bytes_rx": 20, "total_bytes_tx": 18}
    off = activity_part(None)
    assert merge_activity(0, {0: off, 1: off}, [])["enabled"] is False


def finished(session: str, started_at: float, duration: float) -> dict[str, Any]:
    return {"session_id": session, "started_at": started_at, "duration_seconds": duration}


@pytest.mark.parametrize(
    ("limit", "sessions"),
    [(None, ["late-end", "b1", "a1", "b0"]), (2, ["late-end", "b1"]), (0, [])],
)
def test_merged_recent_is_newest_first_by_end_and_says_the_worker(
    limit: int | None, sessions: list[str]
) -> None:
    def recent(*rows: dict[str, Any]) -> dict[str, Any]:
        return {"timestamp": NOW, "activity_tracking_enabled": True, "recent": list(rows)}

    zero = recent(finished("late-end", 10.0, 100.0), finished("a1", 50.0, 5.0))
    one = recent(finished("b1", 60.0, 1.0), finished("b0", 20.0, 1.0))
    merged = merge_recent(1, {0: zero, 1: one}, [], limit)
    assert [row["session_id"] for row in merged["recent"]] == sessions
    workers = {"late-end": 0, "a1": 0, "b1": 1, "b0": 1}
    assert all(row["worker"] == workers[row["session_id"]] for row in merged["recent"])
    assert (merged["worker"], merged["workers_unreachable"]) == (1, [])


def metrics(
    name: str, requests: int, counts: tuple[int, ...], total: float, active: int = 0
) -> InstanceMetrics:
    histogram = HistogramCounts((0.1, 1.0), counts, total)
    return InstanceMetrics(
        name=name,
        active_connections=active,
        active_requests=active,
        lifetime=LifetimeCounters(requests=requests, bytes_rx=requests * 10),
        durations=histogram,
        first_bytes=histogram,
    )


def test_metrics_are_sums_over_workers_and_connections_are_counted_by_key() -> None:
    parts = {
        0: {
            "instances": [metrics_to_dict(metrics("a", 2, (1, 1, 0), 0.6, active=2))],
            "sessions": {"a": ["s", "t"]},
        },
        1: {
            "instances": [
                metrics_to_dict(metrics("a", 3, (0, 2, 1), 4.0, active=1)),
                metrics_to_dict(metrics("b", 1, (1, 0, 0), 0.05)),
            ],
            "sessions": {"a": ["s"], "b": []},
        },
    }
    a, b = merge_metrics(parts)
    assert (a.name, a.active_connections, a.active_requests) == ("a", 2, 3)
    assert a.lifetime == LifetimeCounters(requests=5, bytes_rx=50)
    assert a.durations == HistogramCounts((0.1, 1.0), (1, 3, 1), 4.6)
    assert a.first_bytes.count == 5
    assert b == metrics("b", 1, (1, 0, 0), 0.05)


def test_metrics_survive_the_channel() -> None:
    one = metrics("a", 2, (1, 1, 0), 0.6, active=1)
    assert metrics_from_dict(metrics_to_dict(one)) == one


def test_histograms_of_different_buckets_are_not_summed() -> None:
    odd = InstanceMetrics(
        "a",
        0,
        0,
        LifetimeCounters(),
        HistogramCounts((5.0,), (0, 0), 0.0),
        HistogramCounts((5.0,), (0, 0), 0.0),
    )
    parts = {
        0: {"instances": [metrics_to_dict(metrics("a", 0, (0, 0, 0), 0.0))], "sessions": {}},
        1: {"instances": [metrics_to_dict(odd)], "sessions": {}},
    }
    with pytest.raises(ValueError, match="different buckets"):
        merge_metrics(parts)
