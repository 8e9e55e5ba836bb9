"""The tracker's live, mutable records; private to ``trioproxy.activity``.

Who touches what, and why no lock is needed for most of it:

* byte counters and ``last_activity`` are written per chunk by the request's own
  :class:`~trioproxy.activity.meter.RequestMeter`, on the Trio thread, without a lock;
* the ``connections`` and ``meters`` dicts change only under the tracker's lock, when a
  request registers or is released, so a snapshot taken under that lock from another
  thread never iterates a dict that is changing size;
* times are Trio clock readings; :class:`~trioproxy.activity.clock.EpochClock` turns
  them into epoch seconds when a snapshot is taken.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .snapshot import ConnectionType, LifetimeCounters

if TYPE_CHECKING:
    from .meter import RequestMeter


class Outcome(enum.Enum):
    """How a request ended; decides which lifetime counter, if any, it adds to."""

    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"
    STALE = "stale"


@dataclass(slots=True)
class LifetimeRecord:
    """Mutable lifetime counters of one instance."""

    requests: int = 0
    bytes_rx: int = 0
    bytes_tx: int = 0
    errors: int = 0
    cancelled: int = 0
    stale: int = 0

    def count(self, outcome: Outcome) -> None:
        """Add one ended request to the counter ``outcome`` maps to."""
        if outcome is Outcome.ERROR:
            self.errors += 1
        elif outcome is Outcome.CANCELLED:
            self.cancelled += 1
        elif outcome is Outcome.STALE:
            self.stale += 1

    def freeze(self) -> LifetimeCounters:
        """Return an immutable copy."""
        return LifetimeCounters(
            requests=self.requests,
            bytes_rx=self.bytes_rx,
            bytes_tx=self.bytes_tx,
            errors=self.errors,
            cancelled=self.cancelled,
            stale=self.stale,
        )


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
