"""The tracker's live, mutable records (private) and the per-request meter it hands out.

Who touches what, and why no lock is needed for most of it:

* byte counters and ``last_activity`` are written per chunk by the request's own
  :class:`RequestMeter`, on the Trio thread, without a lock;
* the ``connections`` and ``meters`` dicts change only under the tracker's lock, when a
  request registers or is released, so a snapshot taken under that lock from another
  thread never iterates a dict that is changing size;
* times are Trio clock readings; :class:`~trioproxy.activity.clock.EpochClock` turns
  them into epoch seconds when a snapshot is taken.

The tracker and the sweeper act on a meter through this module's functions
(:func:`cancel_as_stale`, :func:`detach`), never through its private attributes.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from .snapshot import (
    LIFETIME_FIELDS,
    OUTCOME_COUNTERS,
    ConnectionType,
    HistogramCounts,
    LifetimeCounters,
    Outcome,
)


class CancelHandle(Protocol):
    """What the tracker ends a request through (``handle=`` of ``track()``).

    The sweeper calls :meth:`cancel_as_stale` for a stale request, an operator's cancel
    (:meth:`ActivityTracker.cancel`) :meth:`cancel_by_operator`; each at most once, so
    the request's own code can answer its client accordingly.
    """

    def cancel_as_stale(self) -> None:
        """Cancel the request's scope because it went stale."""

    def cancel_by_operator(self) -> None:
        """Cancel the request's scope because an operator asked to."""


class _ScopeHandle:
    """A plain ``trio.CancelScope`` as a :class:`CancelHandle`."""

    __slots__ = ("_scope",)

    def __init__(self, scope: trio.CancelScope) -> None:
        self._scope = scope

    def cancel_as_stale(self) -> None:
        self._scope.cancel()

    def cancel_by_operator(self) -> None:
        self._scope.cancel()


def cancel_handle(handle: CancelHandle | trio.CancelScope) -> CancelHandle:
    """``handle`` itself, or a plain cancel scope wrapped to be one."""
    if isinstance(handle, trio.CancelScope):
        return _ScopeHandle(handle)
    return handle


class LifetimeRecord:
    """Mutable lifetime counters of one instance.

    ``counts[i]`` is the counter named ``LIFETIME_FIELDS[i]``: the fields of
    :class:`~trioproxy.activity.snapshot.LifetimeCounters` are the one declaration.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = [0] * len(LIFETIME_FIELDS)

    def count(self, outcome: Outcome) -> None:
        """Add one ended request to the counter ``outcome`` maps to, if any."""
        index = OUTCOME_COUNTERS.get(outcome)
        if index is not None:
            self.counts[index] += 1

    def freeze(self) -> LifetimeCounters:
        """Return an immutable copy."""
        return LifetimeCounters(*self.counts)


# Where the counters the meter and the tracker add to by name sit in LifetimeRecord.counts.
REQUESTS = LIFETIME_FIELDS.index("requests")
BYTES_RX = LIFETIME_FIELDS.index("bytes_rx")
BYTES_TX = LIFETIME_FIELDS.index("bytes_tx")


@dataclass(slots=True, eq=False)
class ConnectionRecord:
    """One (instance, session id) with at least one request in flight."""

    session_id: str
    connection_type: ConnectionType
    started_at: float
    last_activity: float
    # Its latest request in flight, whose model, endpoint, first byte and status the
    # view shows.
    latest: RequestMeter
    bytes_rx: int = 0
    bytes_tx: int = 0
    # An insertion-ordered set of the requests in flight: O(1) removal by identity.
    meters: dict[RequestMeter, None] = field(default_factory=dict)
    # Its diagnostics row as the last snapshot on the Trio thread built it, reused by
    # the next one (which updates only its times and bytes); None when something else in
    # it has changed since (a request registered or ended, a status or first byte came).
    row: dict[str, Any] | None = None


class Histogram:
    """Counts of observed values per bucket (upper bounds, then +Inf), and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def freeze(self) -> HistogramCounts:
        """An immutable copy: the bucket counts (not cumulative) and the sum."""
        return HistogramCounts(self.bounds, tuple(self.counts), self.total)


#: Bucket bounds (seconds) of the request-duration histogram: LLM answers take seconds
#: to minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: Bucket bounds (seconds) of the time-to-first-byte histogram.
TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True, eq=False)
class InstanceRecord:
    """One backend instance: its live connections by session id, and its counters."""

    name: str
    # Insertion order is creation order, which is oldest first: a connection that ends
    # and comes back is a new entry at the end.
    connections: dict[str, ConnectionRecord] = field(default_factory=dict)
    lifetime: LifetimeRecord = field(default_factory=LifetimeRecord)
    durations: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    first_bytes: Histogram = field(default_factory=lambda: Histogram(TTFB_BUCKETS))


class RequestMeter:
    """Meters one tracked request; handed out by ``ActivityTracker.track()``.

    ``add_rx``/``add_tx`` are the per-chunk path: O(1), a few integer additions and one
    clock read, no lock and no logging. They must be called on the Trio thread, inside
    the ``track()`` block that produced the meter. What the request is (``endpoint``,
    ``model``…) is fixed at registration; the relay reports the response head with
    :meth:`set_status` and how the request ended with :meth:`fail` or
    :meth:`mark_cancelled`.
    """

    __slots__ = (
        "_bytes_rx",
        "_bytes_tx",
        "_cancelled",
        "_connection",
        "_error",
        "_failed",
        "_first_byte",
        "_handle",
        "_last_activity",
        "_lifetime",
        "_operator",
        "_reason",
        "_stale",
        "_status",
        "backend_api",
        "endpoint",
        "instance",
        "model",
        "session_id",
        "started",
        "translated",
    )

    def __init__(
        self,
        instance: str,
        session_id: str,
        connection: ConnectionRecord | None,
        lifetime: LifetimeRecord,
        handle: CancelHandle,
        *,
        started: float,
        model: str = "",
        endpoint: str = "",
        translated: bool = False,
        backend_api: str = "",
    ) -> None:
        self.instance = instance
        self.session_id = session_id
        self.model = model
        self.endpoint = endpoint
        self.translated = translated
        self.backend_api = backend_api
        #: Trio time of the registration.
        self.started = started
        self._connection = connection
        self._lifetime = lifetime.counts
        self._handle = handle
        self._stale = False
        self._operator = False
        self._failed = False
        self._cancelled = False
        self._reason: str | None = None
        self._error: str | None = None
        self._bytes_rx = 0
        self._bytes_tx = 0
        self._last_activity = started
        self._first_byte: float | None = None
        self._status: int | None = None

    @property
    def stale(self) -> bool:
        """True once the sweeper has cancelled this request as stale.

        The relay reads it after the cancellation to answer 504 or end the stream with
        an error event rather than treat the request as a client disconnect.
        """
        return self._stale

    @property
    def failed(self) -> bool:
        """True once :meth:`fail` has been called."""
        return self._failed

    @property
    def bytes_rx(self) -> int:
        """Body bytes of this request received from the backend so far."""
        return self._bytes_rx

    @property
    def bytes_tx(self) -> int:
        """Body bytes of this request handed to the client so far."""
        return self._bytes_tx

    @property
    def last_activity(self) -> float:
        """Trio time of this request's last body byte in either direction (or start)."""
        return self._last_activity

    @property
    def first_byte(self) -> float | None:
        """Trio time of the first body byte from the backend; None before it."""
        return self._first_byte

    @property
    def status(self) -> int | None:
        """The backend's response status; None before the response head."""
        return self._status

    def add_rx(self, nbytes: int) -> None:
        """Count ``nbytes`` response body bytes received from the backend.

        A zero count is not activity and changes nothing.

        Raises:
            ValueError: ``nbytes`` is negative.
            RuntimeError: the request's ``track()`` block has already exited.
        """
        connection = self._connection
        if connection is None:
            raise RuntimeError("add_rx() on a request that is no longer tracked")
        if nbytes > 0:
            now = trio.current_time()
            connection.bytes_rx += nbytes
            connection.last_activity = now
            self._last_activity = now
            if self._first_byte is None:
                self._first_byte = now
                connection.row = None
            self._lifetime[BYTES_RX] += nbytes
            self._bytes_rx += nbytes
        elif nbytes < 0:
            raise ValueError(f"negative byte count: {nbytes}")

    def add_tx(self, nbytes: int) -> None:
        """Count ``nbytes`` response body bytes handed to the client's connection.

        A zero count is not activity and changes nothing.

        Raises:
            ValueError: ``nbytes`` is negative.
            RuntimeError: the request's ``track()`` block has already exited.
        """
        connection = self._connection
        if connection is None:
            raise RuntimeError("add_tx() on a request that is no longer tracked")
        if nbytes > 0:
            now = trio.current_time()
            connection.bytes_tx += nbytes
            connection.last_activity = now
            self._last_activity = now
            self._lifetime[BYTES_TX] += nbytes
            self._bytes_tx += nbytes
        elif nbytes < 0:
            raise ValueError(f"negative byte count: {nbytes}")

    def set_status(self, status: int) -> None:
        """Record the backend's response status (its head has arrived)."""
        self._status = status
        if self._connection is not None:
            self._connection.row = None

    def fail(self, message: str | None = None) -> None:
        """Mark the request as ended in error, without raising.

        For failures the relay handles itself — an upstream cut answered with an error
        event, say — so the request counts in ``lifetime.errors`` when its ``track()``
        block exits, however it exits (unless the sweeper cancelled it as stale).
        ``message`` is what the history shows (the first one given is kept).
        """
        self._failed = True
        if self._error is None:
            self._error = message

    def mark_cancelled(self, reason: str = "shutdown") -> None:
        """Mark the request as cancelled, without raising; ``reason`` says by whom.

        For a cancellation the relay catches itself to end the response properly
        (``client``: it hung up; ``shutdown``: the grace period ran out; ``operator``);
        the request counts in ``lifetime.cancelled`` (unless it failed or went stale).
        """
        self._cancelled = True
        if self._reason is None:
            self._reason = reason

    def __repr__(self) -> str:
        return (
            f"<RequestMeter {self.instance}/{self.session_id}"
            f" rx={self._bytes_rx} tx={self._bytes_tx} stale={self._stale}>"
        )


def cancel_as_stale(meter: RequestMeter, why: str | None = None) -> bool:
    """Mark ``meter``'s request stale and cancel it; False if it already was cancelled.

    ``why`` is what the history says of it.
    """
    if meter._stale or meter._operator:
        return False
    meter._stale = True
    if meter._error is None:
        meter._error = why
    meter._handle.cancel_as_stale()
    return True


def cancel_by_operator(meter: RequestMeter) -> bool:
    """Mark ``meter``'s request cancelled by an operator and cancel it.

    Returns False if the tracker already cancelled it (as stale, or by an operator).
    """
    if meter._stale or meter._operator:
        return False
    meter._operator = True
    meter._cancelled = True
    meter._reason = "operator"
    meter._handle.cancel_by_operator()
    return True


def reason(meter: RequestMeter, ended: Outcome) -> str | None:
    """Who cancelled a request that ended ``cancelled`` (``proxy`` if nobody said)."""
    if ended is not Outcome.CANCELLED:
        return None
    return meter._reason or "proxy"


def error_message(meter: RequestMeter) -> str | None:
    """The message :meth:`RequestMeter.fail` was given, if any."""
    return meter._error


def detach(meter: RequestMeter, exc: BaseException | None) -> tuple[ConnectionRecord, Outcome]:
    """Stop metering ``meter`` (later ``add_*`` calls raise) and classify how it ended.

    ``exc`` is what left the ``track()`` block. Returns the request's connection record
    (for the tracker to unlink it, under its lock) and the outcome, see :func:`outcome`.

    Raises:
        RuntimeError: the request was already detached.
    """
    connection = meter._connection
    if connection is None:
        raise RuntimeError("request released twice")
    meter._connection = None
    return connection, outcome(meter, exc)


def outcome(meter: RequestMeter, exc: BaseException | None) -> Outcome:
    """Classify the exit: stale, else error, else cancelled, else completed.

    ``exc`` is what left the ``track()`` block. Only ``trio.Cancelled`` — alone or as
    a group of nothing but ``Cancelled``, as a nursery raises when cancelled — counts
    as cancellation; any other exception is an error.
    """
    if meter._stale:
        return Outcome.STALE
    if meter._failed:
        return Outcome.ERROR
    if meter._cancelled:
        return Outcome.CANCELLED
    if exc is None:
        return Outcome.COMPLETED
    if isinstance(exc, trio.Cancelled):
        return Outcome.CANCELLED
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        if rest is None:
            return Outcome.CANCELLED
    return Outcome.ERROR


#: The lifetime counters of a meter not yet registered (the tracker gives it its own).
UNREGISTERED = LifetimeRecord()
