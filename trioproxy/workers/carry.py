"""What a worker counted, carried across its restarts, so that no sum over workers drops.

A worker's lifetime counters and histograms live in its process. Killed and started
again, it would count from zero, and the sums every worker reports (``/metrics``, the
``lifetime`` of ``/v1/diagnostics``) would drop. Prometheus reads any drop of a counter as
a reset, and ``rate()`` and ``increase()`` then count the whole sum once more.

So each time a worker reports its counts, it writes them to ``worker-K.counts.json`` in
the runtime directory (:meth:`CountsFile.save`: a few kilobytes, replaced atomically).
It writes them after building its report: counters only grow, so what is written is
never below what is reported. A worker that starts takes on what its number's earlier
incarnations wrote last (:meth:`CountsFile.take_on`). Nothing that was reported is lost.
What a killed worker counted after its last report was never seen by anyone, and is not
counted.

The requests that were in flight at that report count as errors: they ended when their
worker died (their clients saw the connection close). ``requests`` minus the outcomes
then stays the requests in flight. They have no duration in the histograms.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading

import orjson

from ..activity import ActivityTracker
from ..activity.snapshot import LIFETIME_FIELDS, OUTCOME_COUNTERS, InstanceMetrics
from .merge import metrics_from_dict, metrics_to_dict

log = logging.getLogger(__name__)


class CountsFile:
    """Worker ``worker``'s counts in ``runtime_dir``."""

    def __init__(self, runtime_dir: str, worker: int) -> None:
        self.path = os.path.join(runtime_dir, f"worker-{worker}.counts.json")
        # One save at a time (the diagnostics' part may be built on a thread): a save that
        # read older counts must not replace the file after one that read newer ones.
        self._lock = threading.Lock()

    def save(self, tracker: ActivityTracker) -> None:
        """Write ``tracker``'s counts now. Safe to call from any thread.

        Raises:
            OSError: the file cannot be written (the runtime directory is gone).
        """
        with self._lock:
            data = orjson.dumps([metrics_to_dict(m) for m in tracker.metrics()])
            written = self.path + ".new"
            with open(written, "wb") as file:
                file.write(data)
            os.replace(written, self.path)

    def read(self) -> list[InstanceMetrics] | None:
        """The counts saved last, by this worker or an earlier incarnation of it; None if
        there are none, or they cannot be read or parsed (logged)."""
        try:
            with open(self.path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("the saved counts of a worker cannot be read: %s", exc)
            return None
        try:
            return [metrics_from_dict(entry) for entry in orjson.loads(data)]
        except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            log.warning("the saved counts of a worker are unreadable: %r", exc)
            return None

    def take_on(self, tracker: ActivityTracker) -> None:
        """Add the counts an earlier incarnation saved, if any, to ``tracker``.

        A file that cannot be read or parsed is logged and ignored: the worker then
        counts from zero, as it would with no file at all.
        """
        counted = self.read()
        if counted is None:
            return
        try:
            tracker.carry([_ended(metrics) for metrics in counted])
        except ValueError as exc:  # histograms of other buckets
            log.warning("the saved counts of this worker's earlier run do not fit: %s", exc)


def _ended(metrics: InstanceMetrics) -> InstanceMetrics:
    """``metrics`` of a worker that died: its requests in flight count as errors."""
    lifetime = metrics.lifetime
    ended = sum(getattr(lifetime, LIFETIME_FIELDS[i]) for i in OUTCOME_COUNTERS.values())
    lifetime = dataclasses.replace(lifetime, errors=lifetime.errors + lifetime.requests - ended)
    return dataclasses.replace(metrics, active_connections=0, active_requests=0, lifetime=lifetime)
