"""Immutable snapshots of the tracker's state, shaped like the diagnostics JSON.

Every type here is a frozen, slotted dataclass holding copies — later traffic never
changes a snapshot already taken. ``to_dict()`` gives exactly the field names of
DESIGN.md's ``activity`` and ``global_activity`` objects, and ``from_dict()`` reads
them back, checked, from a decoded document (a remote proxy's, as the terminal view
does), raising :class:`~trioproxy.activity.jsonfields.MalformedDocument` naming the
first offending field. Both are derived from the fields (see :mod:`.jsonfields`), so a
new connection field is one field of :class:`ConnectionActivity` (and the tracker's
value for it).

This module imports nothing from Trio: clients of the diagnostics read it alone.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from .jsonfields import (
    MAY_BE_ABSENT,
    NOT_IN_JSON,
    JsonObject,
    JsonRecord,
    read_dataclass,
    read_fields,
    to_json,
)

ConnectionType = Literal["streaming", "non_streaming"]


class Outcome(enum.Enum):
    """How a request ended; decides which lifetime counter, if any, it adds to."""

    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"
    STALE = "stale"


def _counts(outcome: Outcome) -> Any:
    """A lifetime counter that counts the requests ending with ``outcome``."""
    return field(default=0, metadata={"outcome": outcome})


@dataclass(frozen=True, slots=True)
class LifetimeCounters:
    """Counters of one instance (or, in :class:`GlobalSnapshot`, of all) since start.

    ``requests`` counts registrations; ``bytes_rx``/``bytes_tx`` count body bytes as they
    flow, including those of requests still in flight. Each ended request adds one to
    exactly one of ``completed``, ``errors``, ``cancelled`` or ``stale``, so ``requests``
    minus their sum is the requests in flight.

    The fields are the one declaration of the counters: the tracker's record, the sum,
    the JSON object and the count of an outcome (a field's ``outcome`` metadata) are
    derived from them, so a new counter is one field here.
    """

    requests: int = 0
    bytes_rx: int = 0
    bytes_tx: int = 0
    completed: int = _counts(Outcome.COMPLETED)
    errors: int = _counts(Outcome.ERROR)
    cancelled: int = _counts(Outcome.CANCELLED)
    stale: int = _counts(Outcome.STALE)

    def __add__(self, other: LifetimeCounters) -> LifetimeCounters:
        return LifetimeCounters(*map(operator.add, _counters(self), _counters(other)))

    def to_dict(self) -> dict[str, Any]:
        """Return the ``lifetime`` JSON object."""
        return dict(zip(LIFETIME_FIELDS, _counters(self), strict=True))

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> LifetimeCounters:
        """Read a ``lifetime`` JSON object; ``path`` is where it is, for messages.

        Raises:
            MalformedDocument: a counter is missing or not a non-negative integer.
        """
        return read_dataclass(cls, JsonObject(data, path))


#: The names of the lifetime counters, in field order.
LIFETIME_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LifetimeCounters))

# The counters of a LifetimeCounters as a tuple, in field order.
_counters: Callable[[LifetimeCounters], tuple[int, ...]] = operator.attrgetter(*LIFETIME_FIELDS)

#: For each outcome that has a counter, that counter's index in :data:`LIFETIME_FIELDS`.
OUTCOME_COUNTERS: dict[Outcome, int] = {
    f.metadata["outcome"]: i
    for i, f in enumerate(fields(LifetimeCounters))
    if "outcome" in f.metadata
}


@dataclass(frozen=True, slots=True)
class ConnectionActivity(JsonRecord):
    """One connection — (instance, session id) with at least one request in flight.

    Times are epoch seconds. ``started_at`` is when the connection's first request
    started; ``bytes_rx``/``bytes_tx`` include the bytes of its requests that already
    ended; ``requests`` is how many are in flight; ``last_activity_at`` is the last body
    byte in either direction, or the latest registration if that is later.

    Of its latest request: ``model`` (as sent to the backend), ``endpoint``
    (``chat.completions``, ``responses``, ``messages``, ``embeddings``, ``completions``,
    ``count_tokens``), ``time_to_first_byte_seconds`` (from its registration to the first
    body byte from the backend; None until then), ``upstream_status`` (None until the
    response head), ``translated`` (the backend speaks the other API) and
    ``backend_api`` (the API of the instance answering it).

    ``workers``: with ``--workers N`` (N > 1), the worker processes the connection's
    requests are on, by worker number — one connection even when a session's requests
    landed on several; None from a proxy of one process (and absent from an older one's
    documents).
    """

    session_id: str
    connection_type: ConnectionType
    started_at: float
    duration_seconds: float
    model: str
    bytes_rx: int
    bytes_tx: int
    requests: int
    last_activity_at: float
    idle_seconds: float
    endpoint: str
    time_to_first_byte_seconds: float | None
    upstream_status: int | None
    translated: bool
    backend_api: str
    workers: tuple[int, ...] | None = field(default=None, metadata=MAY_BE_ABSENT)


@dataclass(frozen=True, slots=True)
class InstanceActivity:
    """The activity of one backend instance: its live connections and lifetime counters.

    ``connections`` are oldest first; ``total_bytes_rx``/``total_bytes_tx`` sum over them.
    """

    name: str = field(metadata=NOT_IN_JSON)
    active_connections: int = 0
    connections: tuple[ConnectionActivity, ...] = ()
    total_bytes_rx: int = 0
    total_bytes_tx: int = 0
    lifetime: LifetimeCounters = LifetimeCounters()

    def to_dict(self) -> dict[str, Any]:
        """Return the instance's ``activity`` JSON object (the name is not part of it)."""
        return to_json(self)

    @classmethod
    def from_dict(cls, data: object, path: str = "", *, name: str) -> InstanceActivity:
        """Read instance ``name``'s ``activity`` JSON object (``path``: where it is).

        Raises:
            MalformedDocument: a field is missing or does not have its type.
        """
        return cls(name=name, **read_fields(cls, JsonObject(data, path)))


@dataclass(frozen=True, slots=True)
class GlobalSnapshot:
    """The activity of every instance at ``timestamp`` (epoch seconds), and their sums.

    ``instances`` are in registration order: pre-registered instances first, then others
    in order of first use.
    """

    timestamp: float = field(metadata=NOT_IN_JSON)
    total_active_connections: int = 0
    total_bytes_rx: int = 0
    total_bytes_tx: int = 0
    lifetime: LifetimeCounters = LifetimeCounters()
    instances: tuple[InstanceActivity, ...] = field(default=(), metadata=NOT_IN_JSON)

    def instance(self, name: str) -> InstanceActivity:
        """Return the activity of instance ``name``; zeros if it has had no traffic."""
        for activity in self.instances:
            if activity.name == name:
                return activity
        return InstanceActivity(name=name)

    def to_dict(self) -> dict[str, Any]:
        """Return the ``global_activity`` JSON object (sums only, not the instances)."""
        return to_json(self)

    @classmethod
    def from_dict(
        cls,
        data: object,
        path: str = "",
        *,
        timestamp: float,
        instances: tuple[InstanceActivity, ...] = (),
    ) -> GlobalSnapshot:
        """Read a ``global_activity`` JSON object (``path``: where it is, for messages).

        The object holds the sums only: the document's ``timestamp`` and its instances'
        activities are given.

        Raises:
            MalformedDocument: a field is missing or does not have its type.
        """
        return cls(
            timestamp=timestamp, instances=instances, **read_fields(cls, JsonObject(data, path))
        )


@dataclass(frozen=True, slots=True)
class FinishedRequest(JsonRecord):
    """One request that has ended, as ``GET /v1/diagnostics/recent`` lists it.

    Times are epoch seconds. ``outcome`` is ``completed``, ``error``, ``cancelled`` or
    ``stale``; ``reason`` says who cancelled a cancelled request (``client``: it hung up;
    ``operator``: ``POST /v1/diagnostics/cancel``; ``shutdown``: the grace period ran out)
    and is None otherwise; ``error`` is the error's message, if the request failed (or why
    it went stale); ``translated`` and ``backend_api`` as for a connection.
    """

    instance: str
    session_id: str
    endpoint: str
    model: str
    started_at: float
    duration_seconds: float
    time_to_first_byte_seconds: float | None
    upstream_status: int | None
    bytes_rx: int
    bytes_tx: int
    outcome: str
    reason: str | None
    error: str | None
    translated: bool
    backend_api: str


@dataclass(frozen=True, slots=True)
class HistogramCounts:
    """A histogram's state: ``counts[i]`` values fell at or below ``bounds[i]`` (and
    above the bound before); the last count is above every bound. ``total`` is their sum.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        """How many values were observed."""
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class InstanceMetrics:
    """What ``/metrics`` reports of one instance's activity, at one instant."""

    name: str
    active_connections: int
    active_requests: int
    lifetime: LifetimeCounters
    durations: HistogramCounts
    first_bytes: HistogramCounts
