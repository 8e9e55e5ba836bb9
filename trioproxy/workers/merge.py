"""Several workers' documents → the one document a client sees (pure).

Each function takes what the workers that answered sent (by worker number) and the
numbers of those that did not, and returns the document of the whole proxy, in the shape
of one process's plus the fields that say which workers it covers:

* :func:`merge_diagnostics` — ``GET /v1/diagnostics``. Connections keep the keying rule
  across workers: the requests of one session to one instance are one connection,
  wherever they run. Its ``requests`` and bytes are summed, ``started_at`` is the earliest
  (and ``connection_type`` that of the worker it started on), ``last_activity_at`` the
  latest, the latest request's fields (``model``, ``endpoint``, first byte, status,
  translation) come from the worker whose latest request registered last (each worker's
  ``latest_started_at``, which the merge removes), and ``workers`` lists the workers it is
  on. Durations are taken again against the answer's ``timestamp``. Lifetime counters are
  summed. The instances' own fields (rate limit, health, models) are the answering
  worker's: the workers share those within a second (:mod:`trioproxy.workers.shared`).
* :func:`merge_activity` — ``GET /v1/diagnostics/activity``: connections counted by key.
* :func:`merge_recent` — ``GET /v1/diagnostics/recent``: newest first, each row saying
  its ``worker``.
* :func:`merge_metrics` — what ``/metrics`` reports per instance: counters and histogram
  buckets summed, connections counted by key.

A worker that did not answer in time is listed in ``workers_unreachable`` — its requests
are missing from the sums, and the document says so rather than being silently short.

Nothing here does I/O or imports Trio; the table tests in ``tests/test_workers_merge.py``
state the rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..activity.snapshot import (
    LIFETIME_FIELDS,
    ConnectionActivity,
    HistogramCounts,
    InstanceMetrics,
    LifetimeCounters,
)

#: The fields of a connection's JSON object, in order.
CONNECTION_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ConnectionActivity))
#: The fields of a connection that describe its latest request.
LATEST_FIELDS = (
    "model",
    "endpoint",
    "time_to_first_byte_seconds",
    "upstream_status",
    "translated",
    "backend_api",
)
#: What each worker's rows carry for the merge alone.
LATEST_STARTED = "latest_started_at"

Document = dict[str, Any]


def _workers_fields(answering: int, unreachable: Iterable[int]) -> Document:
    return {"worker": answering, "workers_unreachable": sorted(unreachable)}


def _sum_lifetimes(lifetimes: Iterable[Mapping[str, int]]) -> Document:
    total = dict.fromkeys(LIFETIME_FIELDS, 0)
    for lifetime in lifetimes:
        for name in LIFETIME_FIELDS:
            total[name] += lifetime[name]
    return total


def merge_connections(rows: Iterable[tuple[int, Mapping[str, Any]]], now: float) -> list[Document]:
    """One connection per session of the ``(worker, row)`` pairs of one instance.

    ``rows`` are connection objects, each with ``latest_started_at``; the result lists
    the merged connections oldest first, in the fields' order, ``workers`` ascending,
    durations against ``now``. See the module docstring for the rule.

    A worker's rows come in the fields' order with ``latest_started_at`` last (as
    ``snapshot_dicts`` makes them and the channel keeps them), and then each merged
    connection is its first row's copy, updated in place: thousands of rows are merged
    on every poll of a proxy with thousands of streams. A row in any other order (an
    older worker's) is put in order at the end.
    """
    merged: dict[str, dict[str, Any]] = {}
    for worker, row in rows:
        into = merged.get(row["session_id"])
        if into is None:
            into = merged[row["session_id"]] = dict(row)
            into["workers"] = [worker]
            continue
        into["workers"].append(worker)
        into["requests"] += row["requests"]
        into["bytes_rx"] += row["bytes_rx"]
        into["bytes_tx"] += row["bytes_tx"]
        if row["started_at"] < into["started_at"]:
            into["started_at"] = row["started_at"]
            into["connection_type"] = row["connection_type"]
        if row["last_activity_at"] > into["last_activity_at"]:
            into["last_activity_at"] = row["last_activity_at"]
        if row[LATEST_STARTED] > into[LATEST_STARTED]:
            into[LATEST_STARTED] = row[LATEST_STARTED]
            for name in LATEST_FIELDS:
                into[name] = row[name]
    out = sorted(merged.values(), key=lambda c: c["started_at"])
    for index, connection in enumerate(out):
        duration = now - connection["started_at"]
        idle = now - connection["last_activity_at"]
        connection["duration_seconds"] = duration if duration > 0.0 else 0.0
        connection["idle_seconds"] = idle if idle > 0.0 else 0.0
        connection.pop(LATEST_STARTED, None)
        connection["workers"].sort()
        if tuple(connection) != CONNECTION_FIELDS:
            out[index] = {name: connection[name] for name in CONNECTION_FIELDS}
    return out


def merge_diagnostics(
    answering: int,
    documents: Mapping[int, Document],
    unreachable: Iterable[int],
    roster: Sequence[Mapping[str, Any]],
) -> Document:
    """The ``GET /v1/diagnostics`` document of every worker in ``documents``.

    ``documents[answering]`` is the answering worker's own document; ``roster`` is the
    supervisor's record of the workers (``worker``, ``pid``, ``started_at``,
    ``restarts``), which becomes the ``workers`` section.
    """
    own = documents[answering]
    now = own["timestamp"]
    by_worker = sorted(documents.items())
    instances = []
    for entry in own["instances"]:
        name = entry["name"]
        activity = entry["activity"]
        if activity is not None:
            parts = [
                (worker, inst["activity"])
                for worker, doc in by_worker
                for inst in doc["instances"]
                if inst["name"] == name and inst["activity"] is not None
            ]
            rows = merge_connections(
                ((worker, row) for worker, part in parts for row in part["connections"]), now
            )
            activity = {
                "active_connections": len(rows),
                "connections": rows,
                "total_bytes_rx": sum(row["bytes_rx"] for row in rows),
                "total_bytes_tx": sum(row["bytes_tx"] for row in rows),
                "lifetime": _sum_lifetimes(part["lifetime"] for _, part in parts),
            }
        instances.append({**entry, "activity": activity})
    global_activity = None
    if own["global_activity"] is not None:
        activities = [i["activity"] for i in instances if i["activity"] is not None]
        global_activity = {
            "total_active_connections": sum(a["active_connections"] for a in activities),
            "total_bytes_rx": sum(a["total_bytes_rx"] for a in activities),
            "total_bytes_tx": sum(a["total_bytes_tx"] for a in activities),
            "lifetime": _sum_lifetimes(a["lifetime"] for a in activities),
        }
    return {
        "timestamp": now,
        "activity_tracking_enabled": own["activity_tracking_enabled"],
        "instances": instances,
        "global_activity": global_activity,
        **_workers_fields(answering, unreachable),
        "workers": [dict(row) for row in roster],
    }


def activity_part(sessions: tuple[Mapping[str, list[str]], int, int] | None) -> Document:
    """What one worker contributes to :func:`merge_activity`, from its tracker's
    :meth:`~trioproxy.activity.ActivityTracker.sessions` (None: tracking is off): its
    connections' session ids per instance and their bytes."""
    if sessions is None:
        return {"sessions": None, "total_bytes_rx": 0, "total_bytes_tx": 0}
    ids, rx, tx = sessions
    return {"sessions": dict(ids), "total_bytes_rx": rx, "total_bytes_tx": tx}


def _distinct_connections(parts: Iterable[Mapping[str, Any]]) -> int:
    keys = {
        (name, session)
        for part in parts
        if part["sessions"] is not None
        for name, sessions in part["sessions"].items()
        for session in sessions
    }
    return len(keys)


def merge_activity(
    answering: int, parts: Mapping[int, Document], unreachable: Iterable[int]
) -> Document:
    """The ``GET /v1/diagnostics/activity`` document of the workers' :func:`activity_part`."""
    enabled = parts[answering]["sessions"] is not None
    return {
        "enabled": enabled,
        "total_active_connections": _distinct_connections(parts.values()),
        "total_bytes_rx": sum(p["total_bytes_rx"] for p in parts.values()),
        "total_bytes_tx": sum(p["total_bytes_tx"] for p in parts.values()),
        **_workers_fields(answering, unreachable),
    }


def _ended_at(row: Mapping[str, Any]) -> float:
    ended: float = row["started_at"] + row["duration_seconds"]
    return ended


def merge_recent(
    answering: int,
    documents: Mapping[int, Document],
    unreachable: Iterable[int],
    limit: int | None,
) -> Document:
    """The ``GET /v1/diagnostics/recent`` document of the workers' own ones.

    Rows are newest first by when they ended, each with its ``worker``; at most ``limit``
    (all of them when None).
    """
    own = documents[answering]
    rows = [
        {**row, "worker": worker}
        for worker, doc in sorted(documents.items())
        for row in doc["recent"]
    ]
    rows.sort(key=_ended_at, reverse=True)
    return {
        "timestamp": own["timestamp"],
        "activity_tracking_enabled": own["activity_tracking_enabled"],
        "recent": rows if limit is None else rows[:limit],
        **_workers_fields(answering, unreachable),
    }


def metrics_to_dict(metrics: InstanceMetrics) -> Document:
    """One instance's :class:`InstanceMetrics` as a JSON object, for the channel."""
    return dataclasses.asdict(metrics)


def metrics_from_dict(data: Mapping[str, Any]) -> InstanceMetrics:
    """The inverse of :func:`metrics_to_dict` (for a document a sibling sent)."""

    def histogram(value: Mapping[str, Any]) -> HistogramCounts:
        return HistogramCounts(tuple(value["bounds"]), tuple(value["counts"]), value["total"])

    return InstanceMetrics(
        name=data["name"],
        active_connections=data["active_connections"],
        active_requests=data["active_requests"],
        lifetime=LifetimeCounters(**data["lifetime"]),
        durations=histogram(data["durations"]),
        first_bytes=histogram(data["first_bytes"]),
    )


def _sum_histograms(histograms: Sequence[HistogramCounts]) -> HistogramCounts:
    first = histograms[0]
    if any(h.bounds != first.bounds for h in histograms):
        raise ValueError("histograms with different buckets cannot be summed")
    counts = tuple(map(sum, zip(*(h.counts for h in histograms), strict=True)))
    return HistogramCounts(first.bounds, counts, sum(h.total for h in histograms))


def merge_metrics(parts: Mapping[int, Document]) -> list[InstanceMetrics]:
    """Every instance's metrics summed over the workers, in the first worker's order.

    Each part is ``{"instances": [metrics_to_dict(...)], "sessions": {instance: [ids]}}``
    (one worker's); ``active_connections`` counts connections by key, as the diagnostics
    do, everything else is the sum.
    """
    by_name: dict[str, list[InstanceMetrics]] = {}
    for _, part in sorted(parts.items()):
        for data in part["instances"]:
            metrics = metrics_from_dict(data)
            by_name.setdefault(metrics.name, []).append(metrics)
    out = []
    for name, each in by_name.items():
        sessions = {
            session for part in parts.values() for session in part["sessions"].get(name, ())
        }
        out.append(
            InstanceMetrics(
                name=name,
                active_connections=len(sessions),
                active_requests=sum(m.active_requests for m in each),
                lifetime=sum((m.lifetime for m in each), LifetimeCounters()),
                durations=_sum_histograms([m.durations for m in each]),
                first_bytes=_sum_histograms([m.first_bytes for m in each]),
            )
        )
    return out
