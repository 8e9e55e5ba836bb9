"""``GET /metrics``: the proxy's activity in the Prometheus text format (prometheus-client).

A custom collector reads the tracker and the instances when scraped, so a scrape costs
the request path nothing: the counters are the tracker's own (``lifetime``, exactly),
the histograms are the tracker's per-instance buckets, observed once per request as it
ends. Every series is labelled ``instance``. With tracking off only the backend gauges
and ``trioproxy_info`` are served, and the request path keeps no metrics at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import __version__
from .activity import ActivityTracker
from .activity.snapshot import (
    LIFETIME_FIELDS,
    OUTCOME_COUNTERS,
    HistogramCounts,
    InstanceMetrics,
)
from .backends.instance import Backends

#: The ``outcome`` label of ``trioproxy_requests_total``, and the lifetime counter of each.
#: Derived from the lifetime counters, so a new outcome's counter is served without an edit.
OUTCOMES = {outcome.value: LIFETIME_FIELDS[i] for outcome, i in OUTCOME_COUNTERS.items()}


def _buckets(histogram: HistogramCounts) -> list[tuple[str, float]]:
    """Prometheus' cumulative ``(le, count)`` buckets, ending with ``+Inf``."""
    out, running = [], 0
    for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
        running += count
        out.append((repr(float(bound)), float(running)))
    out.append(("+Inf", float(histogram.count)))
    return out


def activity_families(instances: Sequence[InstanceMetrics]) -> Iterator[Metric]:
    """The tracker's series for ``instances``."""
    connections = GaugeMetricFamily(
        "trioproxy_active_connections",
        "Connections (instance, session) with a request in flight.",
        labels=["instance"],
    )
    requests = GaugeMetricFamily(
        "trioproxy_active_requests", "Requests in flight.", labels=["instance"]
    )
    ended = CounterMetricFamily(
        "trioproxy_requests", "Requests that ended, by outcome.", labels=["instance", "outcome"]
    )
    received = CounterMetricFamily(
        "trioproxy_received_bytes",
        "Response body bytes received from the backend.",
        labels=["instance"],
    )
    sent = CounterMetricFamily(
        "trioproxy_sent_bytes", "Response body bytes handed to clients.", labels=["instance"]
    )
    durations = HistogramMetricFamily(
        "trioproxy_request_duration_seconds",
        "Seconds from a request's registration to its end.",
        labels=["instance"],
    )
    first_bytes = HistogramMetricFamily(
        "trioproxy_time_to_first_byte_seconds",
        "Seconds from a request's registration to the first body byte from the backend.",
        labels=["instance"],
    )
    for inst in instances:
        label = [inst.name]
        connections.add_metric(label, inst.active_connections)
        requests.add_metric(label, inst.active_requests)
        lifetime = inst.lifetime
        for outcome, counter in OUTCOMES.items():
            ended.add_metric([inst.name, outcome], getattr(lifetime, counter))
        received.add_metric(label, lifetime.bytes_rx)
        sent.add_metric(label, lifetime.bytes_tx)
        durations.add_metric(label, _buckets(inst.durations), inst.durations.total)
        first_bytes.add_metric(label, _buckets(inst.first_bytes), inst.first_bytes.total)
    yield from (connections, requests, ended, received, sent, durations, first_bytes)


class ProxyCollector(Collector):
    """Reads the instances (and the tracker, when there is one) at each scrape."""

    def __init__(self, backends: Backends, tracker: ActivityTracker | None) -> None:
        self._backends = backends
        self._tracker = tracker

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("trioproxy", "The proxy's version.")
        info.add_metric([], {"version": __version__})
        yield info
        up = GaugeMetricFamily(
            "trioproxy_backend_up",
            "1 while the instance can serve (is_functional in the diagnostics).",
            labels=["instance"],
        )
        limited = GaugeMetricFamily(
            "trioproxy_backend_rate_limited",
            "1 while a 429's Retry-After window is open.",
            labels=["instance"],
        )
        for inst in self._backends:
            up.add_metric([inst.name], 1.0 if inst.is_functional else 0.0)
            limited.add_metric([inst.name], 1.0 if inst.is_rate_limited() else 0.0)
        yield up
        yield limited
        if self._tracker is not None:
            yield from activity_families(self._tracker.metrics())


def metrics_registry(backends: Backends, tracker: ActivityTracker | None) -> CollectorRegistry:
    """A registry of the proxy's own (not the process-wide default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(backends, tracker))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry's series in the Prometheus text exposition format."""
    return generate_latest(registry)
