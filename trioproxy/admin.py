"""The operator's routes: diagnostics, recent requests, cancel, and ``/metrics``.

Who may use them is decided by the socket peer, never by forwarding headers: a client
on the proxy's own host (loopback), or — when the operator configured admin keys — a
client presenting one as ``Authorization: Bearer <key>`` (compared in constant time).
Client keys never open these routes, and admin keys never open the proxy routes. Anyone
else gets 403 with a JSON error and nothing more.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from .activity import ActivityTracker
from .auth import bearer_key_is
from .backends.instance import Backends
from .diagnostics import activity_summary, diagnostics_json, is_loopback, recent_document
from .errors import Api, error_payload
from .metrics import exposition, metrics_registry

FORBIDDEN = (
    "The diagnostics and /metrics are only served to clients on the proxy's own host "
    "(loopback), or with an admin key as 'Authorization: Bearer <key>'."
)
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")


def _error(status: int, message: str, error_type: str, code: str) -> Response:
    return _json(error_payload(Api.OPENAI, message, error_type=error_type, code=code), status)


def add_admin_routes(
    quart: QuartTrio,
    backends: Backends,
    tracker: ActivityTracker | None,
    admin_keys: tuple[bytes, ...],
) -> None:
    """Serve the operator's routes on ``quart`` (see the module docstring for access)."""
    registry = metrics_registry(backends, tracker)

    def refused() -> Response | None:
        if is_loopback(request.scope.get("client")):
            return None
        if admin_keys and bearer_key_is(request.scope["headers"], admin_keys):
            return None
        return _error(403, FORBIDDEN, "permission_error", "forbidden")

    @quart.get("/v1/diagnostics")
    async def get_diagnostics() -> Response:
        return refused() or Response(
            diagnostics_json(backends, tracker), content_type="application/json"
        )

    @quart.get("/v1/diagnostics/activity")
    async def get_activity() -> Response:
        return refused() or _json(activity_summary(tracker))

    @quart.get("/v1/diagnostics/recent")
    async def get_recent() -> Response:
        no = refused()
        if no is not None:
            return no
        limit_text = request.args.get("limit")
        limit: int | None = None
        if limit_text is not None:
            try:
                limit = int(limit_text)
            except ValueError:
                limit = -1
            if limit < 0:
                message = f"limit must be an integer of 0 or more, not {limit_text!r}."
                return _error(400, message, "invalid_request_error", "bad_request")
        return _json(recent_document(tracker, limit, request.args.get("instance")))

    @quart.post("/v1/diagnostics/cancel")
    async def cancel() -> Response:
        no = refused()
        if no is not None:
            return no
        try:
            body = json.loads(await request.get_data())
            instance, session = body["instance"], body["session_id"]
            if not isinstance(instance, str) or not isinstance(session, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            message = 'The body must be {"instance": "<name>", "session_id": "<id>"}.'
            return _error(400, message, "invalid_request_error", "bad_request")
        cancelled = tracker.cancel(instance, session) if tracker is not None else 0
        if not cancelled:
            why = "" if tracker is not None else " (activity tracking is off)"
            message = f"No active connection of session {session!r} on instance {instance!r}{why}."
            return _error(404, message, "invalid_request_error", "not_found")
        return _json({"instance": instance, "session_id": session, "cancelled": cancelled})

    @quart.get("/metrics")
    async def metrics() -> Response:
        return refused() or Response(exposition(registry), content_type=_PROMETHEUS)
