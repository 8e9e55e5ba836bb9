"""The operator's routes: diagnostics, recent requests, cancel, and ``/metrics``.

Who may use them is decided by the socket peer, never by forwarding headers: a client
on the proxy's own host (loopback), or — when the operator configured admin keys — a
client presenting one as ``Authorization: Bearer <key>`` (compared in constant time).
Client keys never open these routes, and admin keys never open the proxy routes. Anyone
else gets 403 with a JSON error and nothing more.

The two documents pollers ask for again and again — ``GET /v1/diagnostics`` (the live
view's) and ``GET /v1/diagnostics/activity`` — are served by :class:`AdminDocuments`, plain
ASGI like the proxy routes; the other routes by Quart-Trio. A request through Quart's
request and response machinery took 14 turns of the event loop here, a plain one 5; with
thousands of streams in flight every turn is as long as the work of all the tasks ready
in it, so the answer came about three times later.

What the routes answer comes from an :class:`AdminView`: :class:`LocalView` (this
process's tracker and instances), or with ``--workers N`` the worker's view of all its
siblings (:class:`trioproxy.workers.cluster.ClusterView`), which adds the fields that say
which workers the answer covers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson
from quart import Response, request
from quart_trio import QuartTrio

from .activity import ActivityTracker
from .asgi import Receive, Scope, Send
from .auth import bearer_key_is
from .backends.instance import Backends
from .client_out import JSON_HEADERS
from .diagnostics import activity_summary, diagnostics_document, is_loopback, recent_document
from .errors import Api, error_payload
from .metrics import exposition, metrics_registry

FORBIDDEN = (
    "The diagnostics and /metrics are only served to clients on the proxy's own host "
    "(loopback), or with an admin key as 'Authorization: Bearer <key>'."
)
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
#: A ``limit`` of recent requests over this asks for them all.
MOST_RECENT = 2**31


def json_response(payload: Any, status: int = 200) -> Response:
    """``payload`` as a JSON response (the Quart routes' answers)."""
    return Response(json.dumps(payload), status=status, content_type="application/json")


def _error_body(message: str, error_type: str, code: str) -> bytes:
    """An operator's route's error, in the OpenAI shape, as JSON bytes."""
    return json.dumps(error_payload(Api.OPENAI, message, error_type=error_type, code=code)).encode()


def _error(status: int, message: str, error_type: str, code: str) -> Response:
    return Response(
        _error_body(message, error_type, code), status=status, content_type="application/json"
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


def _admitted(scope: Scope, admin_keys: tuple[bytes, ...]) -> bool:
    """Whether the request's peer may use the operator's routes (the module docstring)."""
    if is_loopback(scope.get("client")):
        return True
    return bool(admin_keys) and bearer_key_is(scope["headers"], admin_keys)


_ALLOW = b"HEAD, GET, OPTIONS"


class AdminDocuments:
    """``GET`` (and ``HEAD``, ``OPTIONS``) of the documents in :attr:`paths`, plain ASGI.

    Answers as the Quart routes would: 403 to a peer that is not admitted, 405 with
    ``Allow`` to any other method (before the peer is looked at, as routing does), and the
    JSON document with its ``Content-Length``.
    """

    def __init__(self, view: AdminView, admin_keys: tuple[bytes, ...]) -> None:
        self._view = view
        self._keys = admin_keys
        #: What each path answers: the document's JSON bytes.
        self.paths: dict[str, Callable[[], Awaitable[bytes]]] = {
            "/v1/diagnostics": view.diagnostics,
            "/v1/diagnostics/activity": self._activity,
        }

    async def _activity(self) -> bytes:
        return json.dumps(await self._view.activity()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if method == "OPTIONS":
            await _answer(send, 200, b"", allow=True)
        elif method not in ("GET", "HEAD"):
            message = f"Method Not Allowed: {method} {path}"
            body = _error_body(message, "invalid_request_error", "method_not_allowed")
            await _answer(send, 405, body, allow=True)
        elif not _admitted(scope, self._keys):
            await _answer(send, 403, _error_body(FORBIDDEN, "permission_error", "forbidden"))
        else:
            body = await self.paths[path]()
            await _answer(send, 200, body, head=method == "HEAD")


async def _answer(
    send: Send, status: int, body: bytes, *, allow: bool = False, head: bool = False
) -> None:
    """A complete JSON response (``head``: its headers only; ``allow``: with ``Allow``)."""
    headers = [*JSON_HEADERS, (b"content-length", b"%d" % len(body))]
    if allow:
        headers.append((b"allow", _ALLOW))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def add_admin_routes(
    quart: QuartTrio, view: AdminView, admin_keys: tuple[bytes, ...]
) -> AdminDocuments:
    """Serve the operator's routes on ``quart``, but for those of the returned
    :class:`AdminDocuments`, which the app serves itself (see the module docstring)."""

    def refused() -> Response | None:
        if _admitted(cast("Scope", request.scope), admin_keys):
            return None
        return _error(403, FORBIDDEN, "permission_error", "forbidden")

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
            # More than any history holds means all of it (and stays a 64-bit integer on
            # the workers' channel).
            limit = min(limit, MOST_RECENT)
        return json_response(await view.recent(limit, request.args.get("instance")))

    @quart.post("/v1/diagnostics/cancel")
    async def cancel() -> Response:
        no = refused()
        if no is not None:
            return no
        try:
            # orjson: a lone surrogate or a body nested over 1,024 deep is a JSONDecodeError
            # (a ValueError), where json.loads took the first and hit RecursionError on the
            # second.
            body = orjson.loads(await request.get_data())
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

    return AdminDocuments(view, admin_keys)
