"""One worker's place among its siblings: the channel it answers on, and its admin view.

A :class:`Cluster` is made by the worker process (:mod:`trioproxy.workers.worker`) and
handed to ``serve()``, which gives it to ``create_app``. The app then

* answers its admin routes from :class:`ClusterView`: it asks every sibling over the
  channel for its part (within :data:`~trioproxy.workers.channel.DEADLINE`), adds its
  own, and merges (:mod:`trioproxy.workers.merge`); a cancel goes to every worker, since
  any of them may hold requests of the connection;
* runs :meth:`Cluster.run` in its nursery: the channel's server, which answers the
  siblings' requests (:meth:`Cluster.answer`), and the sharing of backend state
  (:mod:`trioproxy.workers.shared`).

Each report of this worker's lifetime counts (its part of ``/metrics`` and of
``/v1/diagnostics``) also writes them to its counts file, which a restarted worker takes
on (:mod:`trioproxy.workers.carry`), so that no sum drops when a worker dies.

The channel's requests are JSON objects with an ``op``: ``diagnostics``, ``activity``,
``recent`` (``limit``, ``instance``), ``metrics``, ``cancel`` (``instance``,
``session_id``), ``backend_states`` and ``share_backends`` (``states``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial
from typing import Any

import orjson
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..activity import ActivityTracker
from ..activity.snapshot import InstanceMetrics
from ..admin import Cancelled
from ..backends.instance import Backends
from ..diagnostics import diagnostics, off_loop_if_large, recent_document
from ..gcpolicy import collector_paused
from ..metrics import ProxyCollector, activity_families
from .carry import CountsFile
from .channel import ask_all, serve_channel, socket_path
from .merge import (
    Document,
    activity_part,
    merge_activity,
    merge_diagnostics,
    merge_metrics,
    merge_recent,
    metrics_to_dict,
)
from .plan import read_roster
from .shared import SharedBackends

log = logging.getLogger(__name__)


class Cluster:
    """Worker ``worker`` of ``count``, serving ``listen_fd``, its siblings' sockets in
    ``runtime_dir``."""

    def __init__(self, worker: int, count: int, runtime_dir: str, listen_fd: int) -> None:
        self.worker = worker
        self.count = count
        self.runtime_dir = runtime_dir
        self.listen_fd = listen_fd
        self.siblings = {
            other: socket_path(runtime_dir, other) for other in range(count) if other != worker
        }
        self._backends: Backends | None = None
        self._tracker: ActivityTracker | None = None
        self._shared: SharedBackends | None = None
        self._counts = CountsFile(runtime_dir, worker)

    def view(self, backends: Backends, tracker: ActivityTracker | None) -> ClusterView:
        """The admin routes' view of every worker."""
        return ClusterView(self, backends, tracker)

    async def run(
        self,
        backends: Backends,
        tracker: ActivityTracker | None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Answer the siblings and share backend state, until cancelled.

        ``started()`` once the channel listens and the backend state of a sibling (if
        one answers) is taken on.
        """
        self._backends, self._tracker = backends, tracker
        if tracker is not None:
            # Before anything is served or reported: an earlier run's counts come first.
            self._counts.take_on(tracker)
        shared = self._shared = SharedBackends(backends, self.siblings)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                serve_channel, socket_path(self.runtime_dir, self.worker), self.answer
            )
            await shared.catch_up()
            nursery.start_soon(shared.run)
            task_status.started()

    def metrics_part(self) -> Document:
        """This worker's part of the merged ``/metrics``, its counts saved as reported."""
        part = _metrics_part(self._tracker)
        self._counts_reported()
        return part

    async def diagnostics_part(self) -> Document:
        """This worker's part of the merged ``/v1/diagnostics`` (:func:`worker_document`),
        its counts saved as reported.

        Raises:
            RuntimeError: before :meth:`run` was given the backends.
        """
        backends, tracker = self._backends, self._tracker
        if backends is None:
            raise RuntimeError("diagnostics_part() before run()")
        document = await off_loop_if_large(tracker, partial(worker_document, backends, tracker))
        self._counts_reported()
        return document

    def _counts_reported(self) -> None:
        """Save this worker's counts, just reported (:mod:`trioproxy.workers.carry`): after
        building the report, so that what is saved is never below it."""
        if self._tracker is not None:
            try:
                self._counts.save(self._tracker)
            except OSError as exc:
                # The report still goes: only a later restart's sums would be lower.
                log.warning("this worker's counts could not be saved: %s", exc)

    async def answer(self, request: Any) -> Any:
        """A sibling's request (see the module docstring) → this worker's answer.

        Raises:
            ValueError: not a request of the channel.
        """
        backends, tracker, shared = self._backends, self._tracker, self._shared
        if backends is None or shared is None or not isinstance(request, dict):
            raise ValueError(f"not a channel request: {request!r}")
        op = request.get("op")
        if op == "diagnostics":
            return await self.diagnostics_part()
        if op == "activity":
            return _activity_part(tracker)
        if op == "recent":
            return recent_document(tracker, request["limit"], request["instance"])
        if op == "metrics":
            return self.metrics_part()
        if op == "cancel":
            cancelled = tracker.cancel(request["instance"], request["session_id"]) if tracker else 0
            return {"cancelled": cancelled}
        if op == "backend_states":
            return shared.states()
        if op == "share_backends":
            shared.adopt(request["states"])
            return {"ok": True}
        raise ValueError(f"unknown channel op {op!r}")


def worker_document(backends: Backends, tracker: ActivityTracker | None) -> Document:
    """One worker's part of the merged ``GET /v1/diagnostics``: its own document, each
    connection with ``latest_started_at`` (built with the collector paused, as
    :func:`~trioproxy.diagnostics.diagnostics_json` builds one)."""
    with collector_paused():
        return diagnostics(backends, tracker, latest_started=True)


def _activity_part(tracker: ActivityTracker | None) -> Document:
    return activity_part(tracker.sessions() if tracker is not None else None)


def _metrics_part(tracker: ActivityTracker | None) -> Document:
    if tracker is None:
        return {"instances": [], "sessions": {}}
    sessions, _, _ = tracker.sessions()
    return {"instances": [metrics_to_dict(m) for m in tracker.metrics()], "sessions": sessions}


class _MergedCollector(Collector):
    """``/metrics`` of all workers: this worker's backend gauges and the merged activity."""

    def __init__(
        self,
        backends: Backends,
        tracker: ActivityTracker | None,
        activity: list[InstanceMetrics],
        unreachable: int,
    ) -> None:
        self._own = ProxyCollector(backends, None)
        self._tracking = tracker is not None
        self._activity = activity
        self._unreachable = unreachable

    def collect(self) -> Iterator[Metric]:
        yield from self._own.collect()
        if self._tracking:
            yield from activity_families(self._activity)
        yield GaugeMetricFamily(
            "trioproxy_workers_unreachable",
            "Worker processes that did not answer this scrape in time (their last known "
            "counts are in the sums).",
            value=self._unreachable,
        )


class ClusterView:
    """The admin routes' answers for all workers (see the module docstring)."""

    def __init__(
        self, cluster: Cluster, backends: Backends, tracker: ActivityTracker | None
    ) -> None:
        self._cluster = cluster
        self._backends = backends
        self._tracker = tracker
        # Each sibling's latest active sessions, which a scrape that misses it counts on.
        self._last_sessions: dict[int, Document] = {}

    @property
    def tracking(self) -> bool:
        return self._tracker is not None

    async def _gather(self, request: Document) -> tuple[dict[int, Any], list[int]]:
        return await ask_all(self._cluster.siblings, request)

    async def diagnostics(self) -> bytes:
        worker = self._cluster.worker
        own: dict[int, Document] = {}

        async def own_document() -> None:
            # Built while the siblings build theirs, each on its own core: with thousands
            # of streams each document takes tens of milliseconds.
            own[worker] = await self._cluster.diagnostics_part()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(own_document)
            documents, unreachable = await self._gather({"op": "diagnostics"})
        documents.update(own)
        roster = read_roster(self._cluster.runtime_dir)

        def merged() -> bytes:
            with collector_paused():  # as diagnostics_json: a large document for a moment
                return orjson.dumps(merge_diagnostics(worker, documents, unreachable, roster))

        return await off_loop_if_large(self._tracker, merged)

    async def activity(self) -> dict[str, Any]:
        parts, unreachable = await self._gather({"op": "activity"})
        parts[self._cluster.worker] = _activity_part(self._tracker)
        return merge_activity(self._cluster.worker, parts, unreachable)

    async def recent(self, limit: int | None, instance: str | None) -> dict[str, Any]:
        # The newest ``--activity-history`` of them all, as one process remembers: each
        # worker keeps that many, so the newest of all are among their newest.
        most = self._tracker.history_size if self._tracker is not None else 0
        limit = most if limit is None else min(limit, most)
        request = {"op": "recent", "limit": limit, "instance": instance}
        documents, unreachable = await self._gather(request)
        documents[self._cluster.worker] = recent_document(self._tracker, limit, instance)
        return merge_recent(self._cluster.worker, documents, unreachable, limit)

    async def cancel(self, instance: str, session_id: str) -> Cancelled:
        tracker = self._tracker
        own = tracker.cancel(instance, session_id) if tracker is not None else 0
        request = {"op": "cancel", "instance": instance, "session_id": session_id}
        answers, unreachable = await self._gather(request)
        cancelled = own + sum(answer["cancelled"] for answer in answers.values())
        return Cancelled(
            cancelled, {"worker": self._cluster.worker, "workers_unreachable": unreachable}
        )

    async def metrics(self) -> bytes:
        parts, unreachable = await self._gather({"op": "metrics"})
        for worker, part in parts.items():
            self._last_sessions[worker] = part["sessions"]
        for worker in unreachable:
            # Its counts as saved at its latest report to anyone (or its earlier run's):
            # never below what any scrape was told, so no sum goes backwards, which
            # Prometheus would read as a counter reset. (What this worker last heard from
            # it would be: another worker may have been told more since, and a worker
            # that just started has heard nothing.)
            saved = CountsFile(self._cluster.runtime_dir, worker).read()
            if saved is not None:
                parts[worker] = {
                    "instances": [metrics_to_dict(m) for m in saved],
                    "sessions": self._last_sessions.get(worker, {}),
                }
        parts[self._cluster.worker] = self._cluster.metrics_part()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            _MergedCollector(self._backends, self._tracker, merge_metrics(parts), len(unreachable))
        )
        return generate_latest(registry)
