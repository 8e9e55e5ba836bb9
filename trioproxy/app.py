"""``create_app``: the one place where the proxy's parts are wired together."""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .activity import ActivityTracker, set_activity_tracker
from .auth import is_authorized
from .backends.instance import Backends
from .diagnostics import activity_summary, diagnostics_json, is_loopback, model_list
from .errors import Api, Unauthorized, error_body, error_payload
from .proxy import PROXY_PATHS, UNAUTHORIZED, ProxyRoutes
from .relay import Receive, Send
from .settings import Settings

log = logging.getLogger(__name__)


class TrioProxyApp:
    """The ASGI application: the proxy routes lean, everything else through Quart-Trio.

    Attributes:
        settings, backends, tracker (None when tracking is off), quart, proxy.
    """

    def __init__(
        self,
        settings: Settings,
        backends: Backends,
        tracker: ActivityTracker | None,
        quart: QuartTrio,
        proxy: ProxyRoutes,
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.tracker = tracker
        self.quart = quart
        self.proxy = proxy

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in PROXY_PATHS:
            await self.proxy(scope, receive, send)
        else:
            await self.quart(scope, receive, send)  # type: ignore[arg-type]


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")


def create_app(settings: Settings) -> TrioProxyApp:
    """Build the proxy for ``settings``: backends, tracker (if enabled), routes, lifespan."""
    backends = Backends(settings)
    tracker = (
        ActivityTracker(
            stale_timeout=settings.activity_stale_timeout, instances=tuple(backends.names())
        )
        if settings.enable_activity_tracking
        else None
    )
    client_keys = tuple(k.value.encode() for k in settings.client_keys)
    quart = QuartTrio("trioproxy")
    # Quart's own timeouts would silently cut long requests; the proxy owns its timeouts.
    quart.config["RESPONSE_TIMEOUT"] = None
    quart.config["BODY_TIMEOUT"] = None
    quart.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = None
    # '/v1//models' is a 404 in JSON, not a redirect with an HTML body.
    quart.url_map.merge_slashes = False
    proxy = ProxyRoutes(
        backends,
        tracker,
        max_request_body=settings.max_request_body,
        default_backend=settings.default_backend,
        client_keys=client_keys,
    )

    @quart.before_serving
    async def start() -> None:
        await backends.discover_models()
        quart.nursery.start_soon(backends.run_health_checks)
        # Always set: a proxy running without tracking answers None.
        set_activity_tracker(tracker)
        if tracker is not None:
            quart.nursery.start_soon(tracker.run_sweeper)

    @quart.after_serving
    async def stop() -> None:
        set_activity_tracker(None)
        with trio.CancelScope(shield=True):
            await backends.aclose()

    def _forbidden() -> Response | None:
        if is_loopback(request.scope.get("client")):
            return None
        payload = error_payload(
            Api.OPENAI,
            403,
            "Diagnostics are only served to clients on the proxy's own host (loopback).",
            error_type="permission_error",
            code="forbidden",
        )
        return _json(payload, 403)

    @quart.get("/v1/diagnostics")
    async def get_diagnostics() -> Response:
        return _forbidden() or Response(
            diagnostics_json(backends, tracker), content_type="application/json"
        )

    @quart.get("/v1/diagnostics/activity")
    async def get_activity() -> Response:
        return _forbidden() or _json(activity_summary(tracker))

    @quart.get("/v1/models")
    async def get_models() -> Response:
        api = Api.ANTHROPIC if "anthropic-version" in request.headers else Api.OPENAI
        if not is_authorized(request.scope["headers"], client_keys):
            body = error_body(api, Unauthorized(UNAUTHORIZED))
            return Response(body, status=401, content_type="application/json")
        return _json(model_list(backends, api))

    @quart.get("/health")
    async def health() -> Response:
        return _json({"status": "ok"})

    @quart.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        payload = error_payload(
            Api.OPENAI,
            status,
            f"{exc.name}: {request.method} {request.path}",
            error_type="invalid_request_error",
            code=exc.name.lower().replace(" ", "_"),
        )
        return _json(payload, status)

    return TrioProxyApp(settings, backends, tracker, quart, proxy)
