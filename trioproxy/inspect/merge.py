"""One refresh of one or several proxies, merged into what the view shows; pure.

A refresh gives a :class:`ProxyAnswer` per proxy URL: its documents, or the error that
stands for them. A :class:`Screen` is the answers of one refresh, with the RX rates
computed from the refresh before (:func:`rx_rates`) in watch mode. From it come the
rows of the live table (:func:`entries`: proxies in the order given, then instances
in the proxy's order, each one's connections oldest first), the finished requests
(:func:`finished`: newest first over every proxy), and the header's sums
(:func:`totals`: over the proxies that answered with activity tracking on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from trioproxy.activity.snapshot import ConnectionActivity, FinishedRequest, LifetimeCounters

from .document import Diagnostics, RecentRequests
from .fetch import InspectError, TrackingDisabled
from .formatting import proxy_labels

#: How many finished requests the view shows by default (``--recent``).
DEFAULT_RECENT = 10

#: A connection across proxies: (proxy URL, instance name, session id).
ConnectionKey = tuple[str, str, str]


def tracking_disabled(base_url: str | None = None) -> str:
    """The sentence for a proxy without activity tracking, saying how to turn it on."""
    where = f"the proxy at {base_url}" if base_url else "this proxy"
    return (
        f"Activity tracking is disabled on {where}; restart it with "
        "--enable-activity-tracking, ENABLE_ACTIVITY_TRACKING=1 in its environment, "
        "or enable_activity_tracking: true in its config file."
    )


@dataclass(frozen=True, slots=True)
class ProxyAnswer:
    """One proxy's answer to one refresh.

    ``data`` is the diagnostics JSON as decoded and ``diagnostics`` its parsed form, or
    both None and ``problem`` says why. ``recent`` is its finished requests, if they were
    asked for and came; ``recent_problem`` says why they did not.
    """

    url: str
    data: object = None
    diagnostics: Diagnostics | None = None
    problem: InspectError | None = None
    recent: RecentRequests | None = None
    recent_problem: InspectError | None = None

    @property
    def failure(self) -> InspectError | None:
        """Why this proxy adds nothing to the view: no answer, or tracking off; or None."""
        if self.problem is not None:
            return self.problem
        if self.diagnostics is not None and not self.diagnostics.activity_tracking_enabled:
            return TrackingDisabled(tracking_disabled(self.url))
        return None


@dataclass(frozen=True, slots=True)
class Entry:
    """One connection as the live table lists it.

    ``proxy`` is the short name of its proxy (None with a single proxy); ``rx_rate`` the
    bytes per second from its backend since the refresh before (None: not known).
    """

    backend: str
    connection: ConnectionActivity
    proxy: str | None = None
    rx_rate: float | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """One finished request as the recent table lists it (``proxy`` as in :class:`Entry`)."""

    request: FinishedRequest
    proxy: str | None = None

    @property
    def ended_at(self) -> float:
        return self.request.started_at + self.request.duration_seconds


@dataclass(frozen=True)
class Screen:
    """The answers of one refresh, in the order of the URLs given.

    ``rates`` are the RX rates by connection (None in one-shot mode, where a rate cannot
    be known); ``recent`` how many finished requests to show (0: none).
    """

    answers: tuple[ProxyAnswer, ...]
    rates: Mapping[ConnectionKey, float] | None = None
    recent: int = DEFAULT_RECENT

    @property
    def several(self) -> bool:
        """Whether the screen merges several proxies (and so has a Proxy column)."""
        return len(self.answers) > 1

    @cached_property
    def labels(self) -> dict[str, str]:
        """The short name of each proxy URL."""
        urls = [answer.url for answer in self.answers]
        return dict(zip(urls, proxy_labels(urls), strict=True))

    @property
    def answering(self) -> list[ProxyAnswer]:
        """The answers that have activity to show."""
        return [a for a in self.answers if a.failure is None and a.diagnostics is not None]


def entries(screen: Screen) -> list[Entry]:
    """The live table's rows (see the module docstring for the order)."""
    result = []
    for answer in screen.answering:
        assert answer.diagnostics is not None
        proxy = screen.labels[answer.url] if screen.several else None
        for instance in answer.diagnostics.instances:
            for connection in instance.activity.connections if instance.activity else ():
                key = (answer.url, instance.name, connection.session_id)
                rate = screen.rates.get(key) if screen.rates is not None else None
                result.append(Entry(instance.name, connection, proxy, rate))
    return result


def finished(screen: Screen) -> list[Finished]:
    """The latest ``screen.recent`` finished requests over every proxy, newest first."""
    result = [
        Finished(request, screen.labels[answer.url] if screen.several else None)
        for answer in screen.answering
        if answer.recent is not None
        for request in answer.recent.recent
    ]
    result.sort(key=lambda f: f.ended_at, reverse=True)
    return result[: screen.recent]


@dataclass(frozen=True, slots=True)
class Totals:
    """The header's sums over the proxies that answered; ``lifetime`` None when none of
    them gave lifetime counters, ``timestamp`` None when none answered."""

    active: int
    bytes_rx: int
    bytes_tx: int
    lifetime: LifetimeCounters | None
    timestamp: float | None


def totals(screen: Screen) -> Totals:
    """Active connections, bytes in flight and lifetime counters, summed over the
    proxies that answered; each proxy's from its global activity, else its instances'."""
    active = rx = tx = 0
    lifetime: LifetimeCounters | None = None
    timestamps = []
    for answer in screen.answering:
        diagnostics = answer.diagnostics
        assert diagnostics is not None
        timestamps.append(diagnostics.timestamp)
        g = diagnostics.global_activity
        if g is not None:
            active += g.total_active_connections
            rx += g.total_bytes_rx
            tx += g.total_bytes_tx
            lifetime = g.lifetime if lifetime is None else lifetime + g.lifetime
            continue
        for activity in (i.activity for i in diagnostics.instances if i.activity is not None):
            active += activity.active_connections
            rx += activity.total_bytes_rx
            tx += activity.total_bytes_tx
    return Totals(active, rx, tx, lifetime, max(timestamps, default=None))


def rx_rates(
    previous: Mapping[str, Diagnostics], current: Sequence[ProxyAnswer]
) -> dict[ConnectionKey, float]:
    """Bytes per second from the backend, per connection, between two documents of its
    proxy: ``previous`` by proxy URL (the last one each gave), ``current`` this refresh.

    Times are the documents' own timestamps (the proxy's clock). A connection gets no
    rate if it is new, if it started again under the same key (another ``started_at``),
    or if its proxy's clock did not move forward.
    """
    rates: dict[ConnectionKey, float] = {}
    for answer in current:
        before, now = previous.get(answer.url), answer.diagnostics
        if before is None or now is None or now.timestamp <= before.timestamp:
            continue
        elapsed = now.timestamp - before.timestamp
        earlier = {
            (instance.name, c.session_id): c
            for instance in before.instances
            for c in (instance.activity.connections if instance.activity else ())
        }
        for instance in now.instances:
            for c in instance.activity.connections if instance.activity else ():
                old = earlier.get((instance.name, c.session_id))
                if old is not None and old.started_at == c.started_at:
                    rates[(answer.url, instance.name, c.session_id)] = (
                        max(0, c.bytes_rx - old.bytes_rx) / elapsed
                    )
    return rates
