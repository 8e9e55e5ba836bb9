"""The activity tracker: registrations, the stale sweep and snapshots.

A request is tracked for exactly as long as its ``track()`` block runs: entering
registers it, leaving releases it — completion, exception or cancellation alike — so no
record outlives its request and none is lost early. Requests of one session on one
instance share a connection record, which lives until the last of them ends.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, NoReturn

import trio

from .clock import EpochClock
from .records import (
    DURATION_BUCKETS,
    REQUESTS,
    TTFB_BUCKETS,
    UNREGISTERED,
    CancelHandle,
    ConnectionRecord,
    InstanceRecord,
    RequestMeter,
    cancel_by_operator,
    cancel_handle,
    detach,
    error_message,
    reason,
)
from .snapshot import (
    LIFETIME_FIELDS,
    ConnectionActivity,
    FinishedRequest,
    GlobalSnapshot,
    InstanceActivity,
    InstanceMetrics,
    LifetimeCounters,
    Outcome,
)
from .sweeper import cancel_stale, run_periodically, sweep_period

logger = logging.getLogger(__name__)

DEFAULT_STALE_TIMEOUT = 300.0
DEFAULT_HISTORY = 200

# A finished request as the history keeps it: its meter (which no longer changes once
# released), its outcome, start (epoch), duration and first-byte time, so a release
# costs one small tuple; `recent()` makes the FinishedRequest objects.
_Finished = tuple[RequestMeter, Outcome, float, float, float | None]


class ActivityTracker:
    """Live, exact activity of every tracked request, per backend instance.

    ``ActivityTracker()`` on its own is usable and empty. Registration, metering and
    sweeping happen on the Trio thread of one Trio run; snapshots may be taken from any
    thread. A ``threading.Lock`` is held only while a request registers or is released
    and while a snapshot copies the records — never per chunk.

    Args:
        stale_timeout: seconds without a body byte in either direction after which a
            connection's requests are cancelled by :meth:`sweep`.
        instances: instance names to report (with zeros) before they see traffic; other
            names are added on first use.
        history: how many finished requests :meth:`recent` remembers (0: none).

    Raises:
        ValueError: ``stale_timeout`` is not a positive, finite number, or ``history``
            is negative.
    """

    def __init__(
        self,
        *,
        stale_timeout: float = DEFAULT_STALE_TIMEOUT,
        instances: Iterable[str] = (),
        history: int = DEFAULT_HISTORY,
    ) -> None:
        if not (math.isfinite(stale_timeout) and stale_timeout > 0):
            raise ValueError(f"stale_timeout must be a positive number, got {stale_timeout!r}")
        if history < 0:
            raise ValueError(f"history must not be negative, got {history!r}")
        self._stale_timeout = float(stale_timeout)
        self._clock = EpochClock()
        self._lock = threading.Lock()
        # Registration order is the order snapshots report instances in.
        self._instances = {name: InstanceRecord(name) for name in instances}
        self._history: deque[_Finished] = deque(maxlen=history)

    @property
    def stale_timeout(self) -> float:
        """Seconds of idleness after which a connection is stale."""
        return self._stale_timeout

    @property
    def sweep_period(self) -> float:
        """Seconds between sweeps of :meth:`run_sweeper`."""
        return sweep_period(self._stale_timeout)

    def track(
        self,
        instance: str,
        session_id: str,
        *,
        model: str,
        streaming: bool,
        handle: CancelHandle | trio.CancelScope,
        endpoint: str = "chat.completions",
        translated: bool = False,
        backend_api: str = "",
    ) -> AbstractContextManager[RequestMeter]:
        """Track one request for the duration of a ``with`` block.

        Entering registers the request (``lifetime.requests`` counts it) on connection
        ``(instance, session_id)`` and yields its :class:`RequestMeter`; leaving releases
        it and counts how it ended: ``stale`` if the sweeper cancelled it, else
        ``errors`` if ``meter.fail()`` was called or an exception other than
        ``trio.Cancelled`` left the block, else ``cancelled`` if ``trio.Cancelled`` did
        (alone or as a group of only ``Cancelled``, as a cancelled nursery raises it).
        Exceptions are never swallowed. After the block, the meter's ``add_*`` raise.

        Args:
            instance: backend instance name.
            session_id: the request's session id.
            model: the model as sent to the backend.
            streaming: whether the answer is streamed (fixes the connection's type if
                this is its first request).
            handle: the request's own ``trio.CancelScope``, or a :class:`CancelHandle`
                whose ``cancel_as_stale()`` / ``cancel_by_operator()`` cancel that scope
                (and may note why, as the relay does to answer its client); the tracker
                calls one of them at most once. The scope must enclose the work the
                request does, so the cancellation unwinds through it.
            endpoint: what the request asks for (``chat.completions``, ``responses``…).
            translated: whether the backend speaks the other API.
            backend_api: the API of the backend (``openai``, ``anthropic``).

        Raises:
            RuntimeError: entered outside a Trio run, or entered twice.
        """
        return _Tracking(
            self,
            RequestMeter(
                instance,
                session_id,
                None,
                UNREGISTERED,
                cancel_handle(handle),
                started=0.0,
                model=model,
                endpoint=endpoint,
                translated=translated,
                backend_api=backend_api,
            ),
            streaming,
        )

    def cancel(self, instance: str, session_id: str) -> int:
        """Cancel every request of connection ``(instance, session_id)``, as an operator.

        Each request's handle gets ``cancel_by_operator()`` (the relay answers its client
        with an error saying so); each counts as ``cancelled`` with reason ``operator``
        when its ``track()`` block exits, which removes the record. Call on the Trio
        thread.

        Returns:
            How many requests were cancelled (0: no such connection is active).
        """
        record = self._instances.get(instance)
        connection = record.connections.get(session_id) if record is not None else None
        if connection is None:
            return 0
        cancelled = sum(cancel_by_operator(meter) for meter in list(connection.meters))
        if cancelled:
            logger.warning(
                "operator cancelled %d request(s): instance=%s session=%s",
                cancelled,
                instance,
                session_id,
            )
        return cancelled

    @property
    def history_size(self) -> int:
        """How many finished requests :meth:`recent` remembers at most."""
        return self._history.maxlen or 0

    def recent(
        self, limit: int | None = None, instance: str | None = None
    ) -> list[FinishedRequest]:
        """The latest finished requests, newest first (of ``instance`` only, if given).

        At most ``limit`` of them (all that are remembered when None). Safe to call from
        any thread.
        """
        with self._lock:
            kept = list(self._history)
        out: list[FinishedRequest] = []
        for meter, ended, started_at, duration, ttfb in reversed(kept):
            if instance is not None and meter.instance != instance:
                continue
            if limit is not None and len(out) >= limit:
                break
            out.append(
                FinishedRequest(
                    meter.instance,
                    meter.session_id,
                    meter.endpoint,
                    meter.model,
                    started_at,
                    duration,
                    ttfb,
                    meter.status,
                    meter.bytes_rx,
                    meter.bytes_tx,
                    ended.value,
                    reason(meter, ended),
                    error_message(meter),
                    meter.translated,
                    meter.backend_api,
                )
            )
        return out

    def metrics(self) -> list[InstanceMetrics]:
        """Per instance: in-flight counts, lifetime counters and the two histograms.

        What ``/metrics`` serves, read when scraped. Safe to call from any thread.
        """
        with self._lock:
            return [
                InstanceMetrics(
                    name=record.name,
                    active_connections=len(record.connections),
                    active_requests=sum(len(c.meters) for c in record.connections.values()),
                    lifetime=record.lifetime.freeze(),
                    durations=record.durations.freeze(),
                    first_bytes=record.first_bytes.freeze(),
                )
                for record in self._instances.values()
            ]

    def carry(self, counted: Iterable[InstanceMetrics]) -> None:
        """Add counts made elsewhere to the lifetime counters and histograms: an earlier
        incarnation's of this worker (:mod:`trioproxy.workers.carry`). Their in-flight
        counts are ignored. Safe to call from any thread.

        Raises:
            ValueError: a histogram of ``counted`` has other buckets than the tracker's
                (then nothing is added).
        """
        counted = list(counted)
        for metrics in counted:
            for bounds, more in (
                (DURATION_BUCKETS, metrics.durations),
                (TTFB_BUCKETS, metrics.first_bytes),
            ):
                if more.bounds != bounds or len(more.counts) != len(bounds) + 1:
                    raise ValueError(f"{metrics.name}: a carried histogram of other buckets")
        with self._lock:
            for metrics in counted:
                record = self._instances.get(metrics.name)
                if record is None:
                    record = self._instances[metrics.name] = InstanceRecord(metrics.name)
                lifetime = record.lifetime.counts
                for index, name in enumerate(LIFETIME_FIELDS):
                    lifetime[index] += getattr(metrics.lifetime, name)
                for histogram, more in (
                    (record.durations, metrics.durations),
                    (record.first_bytes, metrics.first_bytes),
                ):
                    histogram.counts = [
                        a + b for a, b in zip(histogram.counts, more.counts, strict=True)
                    ]
                    histogram.total += more.total

    def sweep(self) -> int:
        """Cancel every request of every connection idle for ``stale_timeout`` or more.

        Each such request gets ``meter.stale == True`` and its handle's
        ``cancel_as_stale()`` called, once; its record is removed when its ``track()``
        block exits. Call on the Trio thread.

        Returns:
            How many requests were cancelled by this call.

        Raises:
            RuntimeError: called outside a Trio run.
        """
        now = self._clock.trio_now()
        return cancel_stale(self._instances.values(), now, self._stale_timeout)

    async def run_sweeper(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Sweep every :attr:`sweep_period` seconds until cancelled.

        Start it with ``await nursery.start(tracker.run_sweeper)``; ``started()`` is
        called once the loop runs. It never returns; cancel its nursery to stop it.
        """
        await run_periodically(self.sweep, self.sweep_period, task_status=task_status)

    def get_global_snapshot(self) -> GlobalSnapshot:
        """Return an immutable snapshot of every instance and their sums.

        Safe to call from any thread. Inside Trio the timestamp follows Trio's clock;
        elsewhere it is ``time.time()``.
        """
        now, offset = self._clock.now()
        with self._lock:
            instances = tuple(
                _freeze_instance(record, now, offset) for record in self._instances.values()
            )
        return GlobalSnapshot(
            timestamp=now,
            total_active_connections=sum(i.active_connections for i in instances),
            total_bytes_rx=sum(i.total_bytes_rx for i in instances),
            total_bytes_tx=sum(i.total_bytes_tx for i in instances),
            lifetime=sum((i.lifetime for i in instances), LifetimeCounters()),
            instances=instances,
        )

    def snapshot_dicts(
        self, *, latest_started: bool = False, reuse_rows: bool = False
    ) -> tuple[float, dict[str, dict[str, Any]], dict[str, Any]]:
        """What :meth:`get_global_snapshot` returns, as plain JSON objects, for speed.

        Returns ``(timestamp, {instance name: InstanceActivity.to_dict()},
        GlobalSnapshot.to_dict())`` without building the snapshot objects: the
        diagnostics document lists every connection, thousands of them with thousands of
        streams, on every poll. The connections are those of one instant; from the Trio
        thread their bytes are too, from another thread each row's are as it is built
        (the totals are the rows' sums). Safe to call from any thread.

        With ``latest_started``, each connection also has ``latest_started_at``: when its
        latest request registered (epoch seconds). It is no field of the document: the
        merge of several workers' documents reads it to tell whose request is the latest
        (:mod:`trioproxy.workers.merge`) and removes it.

        With ``reuse_rows`` (on the Trio thread only), each connection's row is the one
        the last such snapshot made, its times and bytes brought up to date, unless
        something else in it changed since: a quarter of the cost of new rows, for the
        diagnostics document, which encodes them at once. The rows belong to the
        tracker: read them before the next checkpoint, and never change them.

        Raises:
            RuntimeError: ``reuse_rows`` outside the Trio thread, or with
                ``latest_started``.
        """
        make_row = _connection_row
        if reuse_rows:
            if latest_started or not trio.lowlevel.in_trio_run():
                raise RuntimeError("reuse_rows is for the Trio thread, without latest_started")
            make_row = _reused_row
        now, offset = self._clock.now()
        lifetime = LifetimeCounters()
        # Under the lock only the shallow copy (which connections there are, and the
        # counts); the rows are built from it. A snapshot taken from another thread (a
        # large diagnostics document is) holds a request's registration up only that long.
        with self._lock:
            copied = [
                (name, list(record.connections.values()), record.lifetime.freeze())
                for name, record in self._instances.items()
            ]
        instances = {}
        for name, connections, counts in copied:
            instances[name] = _instance_dict(connections, counts, now, offset, make_row)
            if latest_started:
                for row, connection in zip(
                    instances[name]["connections"], connections, strict=True
                ):
                    row["latest_started_at"] = connection.latest.started + offset
            lifetime += counts
        totals = {
            "total_active_connections": sum(a["active_connections"] for a in instances.values()),
            "total_bytes_rx": sum(a["total_bytes_rx"] for a in instances.values()),
            "total_bytes_tx": sum(a["total_bytes_tx"] for a in instances.values()),
            "lifetime": lifetime.to_dict(),
        }
        return now, instances, totals

    def sessions(self) -> tuple[dict[str, list[str]], int, int]:
        """``({instance: [session ids of its active connections]}, bytes_rx, bytes_tx)``,
        the byte sums over every active connection, all under one lock.

        What a worker tells its siblings for the merged ``/v1/diagnostics/activity`` and
        ``/metrics`` (a connection on two workers is one), without copying a connection.
        Safe to call from any thread.
        """
        rx = tx = 0
        with self._lock:
            out = {}
            for name, record in self._instances.items():
                out[name] = list(record.connections)
                for connection in record.connections.values():
                    rx += connection.bytes_rx
                    tx += connection.bytes_tx
        return out, rx, tx

    def connection_count(self) -> int:
        """Active connections over all instances (safe to call from any thread)."""
        with self._lock:
            return sum(len(record.connections) for record in self._instances.values())

    def totals(self) -> tuple[int, int, int]:
        """``(total_active_connections, total_bytes_rx, total_bytes_tx)`` of all instances.

        The sums :meth:`get_global_snapshot` reports, without copying a single connection:
        for pollers of ``GET /v1/diagnostics/activity``, which stay cheap with thousands
        of streams in flight. Safe to call from any thread.
        """
        active = rx = tx = 0
        with self._lock:
            for record in self._instances.values():
                active += len(record.connections)
                for connection in record.connections.values():
                    rx += connection.bytes_rx
                    tx += connection.bytes_tx
        return active, rx, tx

    def instance_snapshot(self, name: str) -> InstanceActivity:
        """Return an immutable snapshot of instance ``name``; zeros if it has no traffic.

        Safe to call from any thread. An unknown name is not added to the tracker.
        """
        now, offset = self._clock.now()
        with self._lock:
            record = self._instances.get(name)
            if record is None:
                return InstanceActivity(name=name)
            return _freeze_instance(record, now, offset)

    def _register(self, meter: RequestMeter, streaming: bool) -> None:
        now = self._clock.trio_now()
        meter.started = now
        meter._last_activity = now
        session_id = meter.session_id
        with self._lock:
            record = self._instances.get(meter.instance)
            if record is None:
                record = self._instances[meter.instance] = InstanceRecord(meter.instance)
            connection = record.connections.get(session_id)
            if connection is None:
                connection = ConnectionRecord(
                    session_id=session_id,
                    connection_type="streaming" if streaming else "non_streaming",
                    started_at=now,
                    last_activity=now,
                    latest=meter,
                )
                record.connections[session_id] = connection
            else:
                connection.latest = meter
                connection.last_activity = now
                connection.row = None
            meter._connection = connection
            meter._lifetime = record.lifetime.counts
            connection.meters[meter] = None
            record.lifetime.counts[REQUESTS] += 1
        logger.debug(
            "tracking request: instance=%s session=%s model=%s",
            meter.instance,
            session_id,
            meter.model,
        )

    def _release(self, meter: RequestMeter, exc: BaseException | None) -> None:
        connection, outcome = detach(meter, exc)
        now, offset = self._clock.now()
        duration = now - offset - meter.started
        first_byte = meter.first_byte
        ttfb = None if first_byte is None else first_byte - meter.started
        finished: _Finished = (meter, outcome, meter.started + offset, duration, ttfb)
        with self._lock:
            record = self._instances[meter.instance]
            del connection.meters[meter]
            connection.row = None
            if not connection.meters:
                del record.connections[meter.session_id]
            elif connection.latest is meter:
                # The latest request still in flight, not one that has ended.
                connection.latest = next(reversed(connection.meters))
            record.lifetime.count(outcome)
            record.durations.observe(duration)
            if ttfb is not None:
                record.first_bytes.observe(ttfb)
            self._history.append(finished)
        logger.debug(
            "released request: instance=%s session=%s outcome=%s rx=%d tx=%d",
            meter.instance,
            meter.session_id,
            outcome.value,
            meter.bytes_rx,
            meter.bytes_tx,
        )


class _Tracking(AbstractContextManager[RequestMeter]):
    """The ``with`` block of one tracked request; single use."""

    __slots__ = ("_entered", "_meter", "_streaming", "_tracker")

    def __init__(self, tracker: ActivityTracker, meter: RequestMeter, streaming: bool) -> None:
        self._tracker = tracker
        self._meter = meter
        self._streaming = streaming
        self._entered = False

    def __enter__(self) -> RequestMeter:
        if self._entered:
            raise RuntimeError("a track() block can be entered only once")
        self._entered = True
        self._tracker._register(self._meter, self._streaming)
        return self._meter

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._entered, "__exit__ without __enter__"
        self._tracker._release(self._meter, exc)


def _freeze_instance(record: InstanceRecord, now: float, offset: float) -> InstanceActivity:
    """Copy ``record`` into an :class:`InstanceActivity`; the caller holds the lock.

    ``now`` is epoch seconds; ``offset`` turns the records' Trio times into epoch
    seconds (see :func:`_connection_row`).
    """
    connections = tuple(
        ConnectionActivity(**_connection_row(c, now, offset)) for c in record.connections.values()
    )
    return InstanceActivity(
        name=record.name,
        active_connections=len(connections),
        connections=connections,
        total_bytes_rx=sum(c.bytes_rx for c in connections),
        total_bytes_tx=sum(c.bytes_tx for c in connections),
        lifetime=record.lifetime.freeze(),
    )


_Row = Callable[[ConnectionRecord, float, float], dict[str, Any]]


def _instance_dict(
    connections: list[ConnectionRecord],
    lifetime: LifetimeCounters,
    now: float,
    offset: float,
    row: _Row,
) -> dict[str, Any]:
    """``_freeze_instance(...).to_dict()`` of an instance whose active connections are
    ``connections`` and whose counts are ``lifetime``, without the snapshot objects; each
    connection's row is ``row(connection, now, offset)``. The totals are the sums of the
    rows, so they agree with them even while another thread meters bytes."""
    rows = [row(c, now, offset) for c in connections]
    return {
        "active_connections": len(rows),
        "connections": rows,
        "total_bytes_rx": sum(row["bytes_rx"] for row in rows),
        "total_bytes_tx": sum(row["bytes_tx"] for row in rows),
        "lifetime": lifetime.to_dict(),
    }


def _connection_row(record: ConnectionRecord, now: float, offset: float) -> dict[str, Any]:
    """The JSON object of one connection: the fields of :class:`ConnectionActivity`.

    Durations are clamped at zero: a snapshot from another thread reads ``time.time()``,
    which may lag the Trio-derived times slightly (or a lot, under a mock clock). Called
    per connection per snapshot — thousands of times with thousands of streams — hence
    a dict literal and conditionals rather than max().
    """
    started_at = record.started_at + offset
    last_activity_at = record.last_activity + offset
    duration = now - started_at
    idle = now - last_activity_at
    latest = record.latest
    first_byte = latest.first_byte
    return {
        "session_id": record.session_id,
        "connection_type": record.connection_type,
        "started_at": started_at,
        "duration_seconds": duration if duration > 0.0 else 0.0,
        "model": latest.model,
        "bytes_rx": record.bytes_rx,
        "bytes_tx": record.bytes_tx,
        "requests": len(record.meters),
        "last_activity_at": last_activity_at,
        "idle_seconds": idle if idle > 0.0 else 0.0,
        "endpoint": latest.endpoint,
        "time_to_first_byte_seconds": None if first_byte is None else first_byte - latest.started,
        "upstream_status": latest.status,
        "translated": latest.translated,
        "backend_api": latest.backend_api,
        # Set by the merge of several workers' documents (trioproxy.workers.merge).
        "workers": None,
    }


def _reused_row(record: ConnectionRecord, now: float, offset: float) -> dict[str, Any]:
    """:func:`_connection_row` of ``record``: the one it holds, its times and bytes
    updated, or a new one it then holds (Trio thread only, see ``reuse_rows``)."""
    row = record.row
    if row is None:
        row = record.row = _connection_row(record, now, offset)
        return row
    last_activity_at = record.last_activity + offset
    duration = now - row["started_at"]
    idle = now - last_activity_at
    row["duration_seconds"] = duration if duration > 0.0 else 0.0
    row["bytes_rx"] = record.bytes_rx
    row["bytes_tx"] = record.bytes_tx
    row["last_activity_at"] = last_activity_at
    row["idle_seconds"] = idle if idle > 0.0 else 0.0
    return row


_current_tracker: ActivityTracker | None = None


def get_activity_tracker() -> ActivityTracker | None:
    """Return the running proxy's tracker in this process, or None when tracking is off."""
    return _current_tracker


def set_activity_tracker(tracker: ActivityTracker | None) -> None:
    """Make ``tracker`` the one :func:`get_activity_tracker` returns (None to clear).

    Called by the app at start-up and shutdown.
    """
    global _current_tracker
    _current_tracker = tracker
