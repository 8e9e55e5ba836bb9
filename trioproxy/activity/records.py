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

from dataclasses import dataclass, field
from typing import Protocol

import trio

from .snapshot import LIFETIME_FIELDS, OUTCOME_COUNTERS, ConnectionType, LifetimeCounters, Outcome


class StaleHandle(Protocol):
    """What the sweeper ends a stale request through (``handle=`` of ``track()``)."""

    def cancel_as_stale(self) -> None:
        """Cancel the request's scope because it went stale; called at most once."""


class _ScopeHandle:
    """A plain ``trio.CancelScope`` as a :class:`StaleHandle`."""

    __slots__ = ("_scope",)

    def __init__(self, scope: trio.CancelScope) -> None:
        self._scope = scope

    def cancel_as_stale(self) -> None:
        self._scope.cancel()


def stale_handle(handle: StaleHandle | trio.CancelScope) -> StaleHandle:
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
    model: str
    started_at: float
    last_activity: float
    bytes_rx: int = 0
    bytes_tx: int = 0
    # An insertion-ordered set of the requests in flight: O(1) removal by identity.
    meters: dict[RequestMeter, None] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class InstanceRecord:
    """One backend instance: its live connections by session id, and its counters."""

    name: str
    # Insertion order is creation order, which is oldest first: a connection that ends
    # and comes back is a new entry at the end.
    connections: dict[str, ConnectionRecord] = field(default_factory=dict)
    lifetime: LifetimeRecord = field(default_factory=LifetimeRecord)


class RequestMeter:
    """Meters one tracked request; handed out by ``ActivityTracker.track()``.

    ``add_rx``/``add_tx`` are the per-chunk path: O(1), a few integer additions and one
    clock read, no lock and no logging. They must be called on the Trio thread, inside
    the ``track()`` block that produced the meter.
    """

    __slots__ = (
        "_bytes_rx",
        "_bytes_tx",
        "_cancelled",
        "_connection",
        "_failed",
        "_handle",
        "_lifetime",
        "_stale",
        "instance",
        "session_id",
    )

    def __init__(
        self,
        instance: str,
        session_id: str,
        connection: ConnectionRecord,
        lifetime: LifetimeRecord,
        handle: StaleHandle,
    ) -> None:
        self.instance = instance
        self.session_id = session_id
        self._connection: ConnectionRecord | None = connection
        self._lifetime = lifetime.counts
        self._handle = handle
        self._stale = False
        self._failed = False
        self._cancelled = False
        self._bytes_rx = 0
        self._bytes_tx = 0

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
            connection.bytes_rx += nbytes
            connection.last_activity = trio.current_time()
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
            connection.bytes_tx += nbytes
            connection.last_activity = trio.current_time()
            self._lifetime[BYTES_TX] += nbytes
            self._bytes_tx += nbytes
        elif nbytes < 0:
            raise ValueError(f"negative byte count: {nbytes}")

    def fail(self) -> None:
        """Mark the request as ended in error, without raising.

        For failures the relay handles itself — an upstream cut answered with an error
        event, say — so the request counts in ``lifetime.errors`` when its ``track()``
        block exits, however it exits (unless the sweeper cancelled it as stale).
        """
        self._failed = True

    def mark_cancelled(self) -> None:
        """Mark the request as cancelled by the proxy (shutdown), without raising.

        For a cancellation the relay catches itself to end the response properly; the
        request counts in ``lifetime.cancelled`` (unless it failed or went stale first).
        """
        self._cancelled = True

    def __repr__(self) -> str:
        return (
            f"<RequestMeter {self.instance}/{self.session_id}"
            f" rx={self._bytes_rx} tx={self._bytes_tx} stale={self._stale}>"
        )


def cancel_as_stale(meter: RequestMeter) -> bool:
    """Mark ``meter``'s request stale and cancel it; False if it already was stale."""
    if meter._stale:
        return False
    meter._stale = True
    meter._handle.cancel_as_stale()
    return True


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
