"""The diagnostics and model-list payloads (pure), and the loopback rule.

Diagnostics are served to loopback peers only — judged by the socket peer address in
the ASGI scope, never by ``X-Forwarded-For``, ``X-Real-IP`` or ``Forwarded``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import trio

from .activity import ActivityTracker, InstanceActivity
from .backends.instance import Backends
from .errors import Api
from .gcpolicy import collector_paused


def is_loopback_address(host: str) -> bool:
    """Whether ``host`` is an address in 127.0.0.0/8 or ::1 (or v4-mapped); pure."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def is_loopback(client: Any) -> bool:
    """Whether the ASGI ``client`` (host, port) is a loopback peer."""
    return bool(client) and is_loopback_address(str(client[0]))


def diagnostics(
    backends: Backends,
    tracker: ActivityTracker | None,
    *,
    latest_started: bool = False,
    reuse_rows: bool = False,
) -> dict[str, Any]:
    """The ``GET /v1/diagnostics`` document.

    Built from :meth:`ActivityTracker.snapshot_dicts` (the snapshot as plain JSON
    objects) and encoded with orjson by :func:`diagnostics_json`: with thousands of
    streams in flight the document is megabytes, built on the event loop.
    ``latest_started`` is passed on (a worker's document for its siblings' merge).
    """
    timestamp, activities, global_activity = (
        tracker.snapshot_dicts(latest_started=latest_started, reuse_rows=reuse_rows)
        if tracker is not None
        else (time.time(), None, None)
    )
    instances = []
    for inst in backends:
        retry = inst.retry_after_seconds()
        activity = None
        if activities is not None:
            activity = activities.get(inst.name) or InstanceActivity(inst.name).to_dict()
        instances.append(
            {
                "name": inst.name,
                "connector_type": inst.spec.type.value,
                "is_rate_limited": retry is not None,
                "retry_after_seconds": round(retry, 3) if retry is not None else None,
                "is_functional": inst.is_functional,
                "validation_errors": inst.validation_errors,
                "models": list(inst.models),
                "activity": activity,
            }
        )
    return {
        "timestamp": timestamp,
        "activity_tracking_enabled": tracker is not None,
        "instances": instances,
        "global_activity": global_activity,
    }


T = TypeVar("T")

#: Connections beyond which a document of new rows (a worker's, for the cluster) is built
#: on a thread, off the event loop: at thousands of streams it takes tens of milliseconds,
#: which on the loop would delay every stream's chunks by as much; a small one is quicker
#: than the hop to a thread. This process's own document reuses its rows on the loop.
OFF_LOOP_CONNECTIONS = 256


async def off_loop_if_large(tracker: ActivityTracker | None, build: Callable[[], T]) -> T:
    """``build()`` (a document of the tracker's connections), on a worker thread once the
    tracker holds more than :data:`OFF_LOOP_CONNECTIONS` connections, else here."""
    if tracker is not None and tracker.connection_count() > OFF_LOOP_CONNECTIONS:
        return await trio.to_thread.run_sync(build)
    return build()


async def diagnostics_document(backends: Backends, tracker: ActivityTracker | None) -> bytes:
    """:func:`diagnostics_json` of this process, on the event loop, its rows reused."""
    return diagnostics_json(backends, tracker, reuse_rows=True)


def diagnostics_json(
    backends: Backends, tracker: ActivityTracker | None, *, reuse_rows: bool = False
) -> bytes:
    """The ``GET /v1/diagnostics`` document as JSON bytes (built with the collector paused:
    its rows are garbage a moment later, and collections while they are built doubled
    its cost with thousands of streams in flight). ``reuse_rows``: see
    :meth:`ActivityTracker.snapshot_dicts` (on the Trio thread only)."""
    with collector_paused():
        return orjson.dumps(diagnostics(backends, tracker, reuse_rows=reuse_rows))


def activity_summary(tracker: ActivityTracker | None) -> dict[str, Any]:
    """The ``GET /v1/diagnostics/activity`` document."""
    if tracker is None:
        return {
            "enabled": False,
            "total_active_connections": 0,
            "total_bytes_rx": 0,
            "total_bytes_tx": 0,
        }
    active, rx, tx = tracker.totals()
    return {
        "enabled": True,
        "total_active_connections": active,
        "total_bytes_rx": rx,
        "total_bytes_tx": tx,
    }


def _model_object(api: Api, model: str, owner: str) -> dict[str, Any]:
    """One model in ``api``'s shape (``owned_by`` is the instance for OpenAI clients)."""
    if api is Api.ANTHROPIC:
        return {
            "type": "model",
            "id": model,
            "display_name": model,
            "created_at": "1970-01-01T00:00:00Z",
        }
    return {"id": model, "object": "model", "created": 0, "owned_by": owner}


def _model_rows(backends: Backends, api: Api) -> list[tuple[str, str]]:
    """(model, owner) of every model a client of ``api`` can ask for: every instance's
    (an instance of the other API serves it translated) and the config's aliases."""
    rows = [(model, inst.name) for inst in backends for model in inst.models]
    rows += [(alias, "alias") for alias in backends.settings.aliases]
    return rows


def model_entry(backends: Backends, api: Api, model_id: str) -> dict[str, Any] | None:
    """``GET /v1/models/{id}`` in ``api``'s shape, or None when no instance lists it.

    ``model_id`` is a listed model, or ``<instance>:<model>`` for one instance's model.
    """
    rows = _model_rows(backends, api)
    for model, owner in rows:
        if model == model_id:
            return _model_object(api, model, owner)
    prefix, sep, rest = model_id.partition(":")
    for model, owner in rows:
        if sep and owner == prefix and model == rest:
            return _model_object(api, model_id, owner)
    return None


def recent_document(
    tracker: ActivityTracker | None, limit: int | None = None, instance: str | None = None
) -> dict[str, Any]:
    """The ``GET /v1/diagnostics/recent`` document: finished requests, newest first."""
    recent = tracker.recent(limit, instance) if tracker is not None else []
    return {
        "timestamp": time.time(),
        "activity_tracking_enabled": tracker is not None,
        "recent": [finished.to_dict() for finished in recent],
    }


def model_list(backends: Backends, api: Api) -> dict[str, Any]:
    """``GET /v1/models`` in ``api``'s shape: every instance's models that speak it."""
    rows = _model_rows(backends, api)
    if api is Api.ANTHROPIC:
        data = [_model_object(api, m, owner) for m, owner in rows]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    return {"object": "list", "data": [_model_object(api, m, name) for m, name in rows]}
