"""The operator's routes: diagnostics, recent requests, cancel, and ``/metrics``.

Who may use them is decided by the socket peer, never by forwarding headers: a client
on the proxy's own host (loopback), or — when the operator configured admin keys — a
client presenting one as ``Authorization: Bearer <key>`` (compared in constant time).
Client keys never open these routes, and admin keys never open the proxy routes. Anyone
else gets 403 with a JSON error and nothing more.

What the routes answer comes from an :class:`AdminView`: :class:`LocalView` (this
process's tracker and instances), or with ``--workers N`` the worker's view of all its
siblings (:class:`trioproxy.workers.cluster.ClusterView`), which adds the fields that say
which workers the answer covers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from quart import Response, request
from quart_trio import QuartTrio

from .activity import ActivityTracker
from .auth import bearer_key_is
from .backends.instance import Backends
from .diagnostics import activity_summary, diagnostics_document, is_loopback, recent_document
from .errors import Api, error_payload
from .metrics import exposition, metrics_registry

FORBIDDEN = (
    "The diagnostics and /metrics are only served to clients on the proxy's own host "
    "(loopback), or with an admin key as 'Authorization: Bearer <key>'."
)
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def json_response(payload: Any, status: int = 200) -> Response:
    """``payload`` as a JSON response (the Quart routes' answers)."""
    return Response(json.dumps(payload), status=status, content_type="application/json")


def _error(status: int, message: str, error_type: str, code: str) -> Response:
    return json_response(
        error_payload(Api.OPENAI, message, error_type=error_type, code=code), status
    )


@dataclass(frozen=True, slots=True)
class Cancelled:
    """What ``POST /v1/diagnostics/cancel`` did: how many requests it cancelled, and
    (with workers) the ``fields`` its answer adds."""

    cancelled: int
    fields: dict[str, Any]


class AdminView(Protocol):
    """Where the operator's routes get their answers (see the module docstring)."""

    @property
    def tracking(self) -> bool:
        """Whether activity tracking is on."""

    async def diagnostics(self) -> bytes:
        """The ``GET /v1/diagnostics`` document, as JSON."""

    async def activity(self) -> dict[str, Any]:
        """The ``GET /v1/diagnostics/activity`` document."""

    async def recent(self, limit: int | None, instance: str | None) -> dict[str, Any]:
        """The ``GET /v1/diagnostics/recent`` document."""

    async def cancel(self, instance: str, session_id: str) -> Cancelled:
        """Cancel connection ``(instance, session_id)`` as an operator."""

    async def metrics(self) -> bytes:
        """``/metrics`` in the Prometheus text format."""


class LocalView:
    """The view of one process: its own tracker (None when off) and instances."""

    def __init__(self, backends: Backends, tracker: ActivityTracker | None) -> None:
        self._backends = backends
        self._tracker = tracker
        self._registry = metrics_registry(backends, tracker)

    @property
    def tracking(self) -> bool:
        return self._tracker is not None

    async def diagnostics(self) -> bytes:
        return await diagnostics_document(self._backends, self._tracker)

    async def activity(self) -> dict[str, Any]:
        return activity_summary(self._tracker)

    async def recent(self, limit: int | None, instance: str | None) -> dict[str, Any]:
        return recent_document(self._tracker, limit, instance)

    async def cancel(self, instance: str, session_id: str) -> Cancelled:
        tracker = self._tracker
        return Cancelled(tracker.cancel(instance, session_id) if tracker is not None else 0, {})

    async def metrics(self) -> bytes:
        return exposition(self._registry)


def add_admin_routes(quart: QuartTrio, view: AdminView, admin_keys: tuple[bytes, ...]) -> None:
    """Serve the operator's routes on ``quart`` (see the module docstring for access)."""

    def refused() -> Response | None:
        if is_loopback(request.scope.get("client")):
            return None
        if admin_keys and bearer_key_is(request.scope["headers"], admin_keys):
            return None
        return _error(403, FORBIDDEN, "permission_error", "forbidden")

    @quart.get("/v1/diagnostics")
    async def get_diagnostics() -> Response:
        return refused() or Response(await view.diagnostics(), content_type="application/json")

    @quart.get("/v1/diagnostics/activity")
    async def get_activity() -> Response:
        return refused() or json_response(await view.activity())

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
        return json_response(await view.recent(limit, request.args.get("instance")))

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
        done = await view.cancel(instance, session)
        if not done.cancelled:
            why = "" if view.tracking else " (activity tracking is off)"
            unreachable = done.fields.get("workers_unreachable")
            if unreachable:
                why += f" (workers {unreachable} did not answer)"
            message = f"No active connection of session {session!r} on instance {instance!r}{why}."
            return _error(404, message, "invalid_request_error", "not_found")
        answer = {"instance": instance, "session_id": session, "cancelled": done.cancelled}
        return json_response({**answer, **done.fields})

    @quart.get("/metrics")
    async def metrics() -> Response:
        return refused() or Response(await view.metrics(), content_type=_PROMETHEUS)
