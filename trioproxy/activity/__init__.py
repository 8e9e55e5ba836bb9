"""Activity tracking: a live, exact view of every request in flight, per backend.

::

    import trio
    from trioproxy.activity import ActivityTracker

    tracker = ActivityTracker(stale_timeout=300.0, instances=("openai.1",))
    with trio.CancelScope() as request_scope:
        with tracker.track("openai.1", session_id, model="gpt-4o", streaming=True,
                           handle=request_scope) as meter:
            meter.add_rx(len(chunk))   # bytes from the backend
            meter.add_tx(len(chunk))   # bytes to the client
    snapshot = tracker.get_global_snapshot()   # immutable; from any thread

(run inside Trio: ``session_id`` is the request's session, ``chunk`` a piece of its body).

``handle`` is the request's cancel scope, or a :class:`CancelHandle` whose
``cancel_as_stale()`` (the sweeper, when the request goes stale) and
``cancel_by_operator()`` (:meth:`ActivityTracker.cancel`) cancel it.
``get_activity_tracker()`` returns the running proxy's tracker, or None when tracking is
off. The snapshot types read a remote proxy's diagnostics with ``from_dict()``, raising
:class:`MalformedDocument` for a document of another shape.

The snapshot types import without Trio (the terminal view needs nothing else); the
tracker, its meter and handle are imported on first use, which imports Trio.
"""

import importlib
from typing import TYPE_CHECKING

from .jsonfields import MalformedDocument as MalformedDocument
from .snapshot import ConnectionActivity as ConnectionActivity
from .snapshot import FinishedRequest as FinishedRequest
from .snapshot import GlobalSnapshot as GlobalSnapshot
from .snapshot import InstanceActivity as InstanceActivity
from .snapshot import LifetimeCounters as LifetimeCounters

if TYPE_CHECKING:
    from .records import CancelHandle as CancelHandle
    from .records import RequestMeter as RequestMeter
    from .tracker import ActivityTracker as ActivityTracker
    from .tracker import get_activity_tracker as get_activity_tracker
    from .tracker import set_activity_tracker as set_activity_tracker

__all__ = [
    "ActivityTracker",
    "CancelHandle",
    "ConnectionActivity",
    "FinishedRequest",
    "GlobalSnapshot",
    "InstanceActivity",
    "LifetimeCounters",
    "MalformedDocument",
    "RequestMeter",
    "get_activity_tracker",
]

# The names that need Trio, and their modules: imported by __getattr__ on first use.
_LAZY = {
    "ActivityTracker": ".tracker",
    "get_activity_tracker": ".tracker",
    "set_activity_tracker": ".tracker",
    "RequestMeter": ".records",
    "CancelHandle": ".records",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups no longer come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
