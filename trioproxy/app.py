"""``create_app``: the one place where the proxy's parts are wired together."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from . import __version__
from .accesslog import AccessLog, entry_for
from .activity import ActivityTracker, set_activity_tracker
from .admin import AdminDocuments, AdminView, LocalView, add_admin_routes, json_response
from .asgi import Asgi, Receive, Send
from .auth import is_authorized
from .backends.instance import Backends
from .client_out import JSON_HEADERS
from .diagnostics import model_entry, model_list
from .errors import Api, NotFound, Unauthorized, error_body, error_payload
from .gcpolicy import run_full_collections, run_timed_collections
from .hangup import hangup_of
from .proxy import UNAUTHORIZED, ProxyRoutes
from .routes import BY_PATH, api_of_path
from .serving import ambiguous_framing, refuse_ambiguous_framing
from .settings import Settings

if TYPE_CHECKING:
    from .workers.cluster import Cluster

_NO_WEBSOCKETS = json.dumps(
    error_payload(
        Api.OPENAI,
        "This proxy serves HTTP only: WebSocket upgrades are not supported.",
        error_type="invalid_request_error",
        code="websocket_not_supported",
    )
).encode()


def origin_form(path: str) -> str:
    """The path of a request target in absolute form (``http://host/v1/...``), else ``path``.

    RFC 9112 §3.2.2: a server must accept absolute-form targets; the route is the path.
    """
    if path.startswith(("http://", "https://")):
        _, _, rest = path.partition("://")
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return path


async def refuse_websocket(receive: Receive, send: Send) -> tuple[int | None, int]:
    """Answer a WebSocket upgrade with 400 and a JSON error (403 if the server cannot);
    the status and body bytes sent (None, 0: the client left first)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return None, 0
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 400,
            "headers": [*JSON_HEADERS, (b"content-length", b"%d" % len(_NO_WEBSOCKETS))],
        }
    )
    await send({"type": "websocket.http.response.body", "body": _NO_WEBSOCKETS})
    return 400, len(_NO_WEBSOCKETS)


class TrioProxyApp:
    """The ASGI application: the route table's paths and the polled operator's documents
    (``admin``) lean, everything else via Quart-Trio.

    Attributes:
        settings, backends, tracker (None when tracking is off), quart, proxy, admin.
    """

    #: It answers doubly framed requests itself (:func:`.serving.serve_app`), so that
    #: the refusal has its access log line.
    refuses_ambiguous_framing = True

    def __init__(
        self,
        settings: Settings,
        backends: Backends,
        tracker: ActivityTracker | None,
        quart: QuartTrio,
        proxy: ProxyRoutes,
        admin: AdminDocuments,
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.tracker = tracker
        self.quart = quart
        self.proxy = proxy
        self.admin = admin

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        handler: Asgi = self.quart  # type: ignore[assignment]
        if kind == "http":
            path = scope["path"]
            if path[:1] != "/":
                path = scope["path"] = origin_form(path)
            if ambiguous_framing(scope["headers"]):
                handler = refuse_ambiguous_framing  # and logged, as every refusal
            elif (proxy_route := BY_PATH.get(path)) is not None:
                await self.proxy(proxy_route, scope, receive, send)
                return
            elif path in self.admin.paths:
                handler = self.admin
        elif kind == "websocket":
            arrived = trio.current_time()
            if "websocket.http.response" in scope.get("extensions", {}):
                status, sent = await refuse_websocket(receive, send)
            else:
                await receive()
                # A close before the handshake: the server answers it 403.
                await send({"type": "websocket.close", "code": 1003})
                status, sent = 403, 0
            if self.proxy.access_log is not None:
                # A refusal has its line, as every other one (an upgrade is a GET).
                upgrade = {**scope, "method": "GET"}
                log = entry_for(upgrade, arrived, status=status, outcome="refused", bytes_tx=sent)
                self.proxy.access_log.write(log)
            return
        if kind == "http" and self.proxy.access_log is not None:
            await _logged(handler, scope, receive, send, self.proxy.access_log)
        else:
            await handler(scope, receive, send)


async def _logged(
    handler: Asgi, scope: MutableMapping[str, Any], receive: Receive, send: Send, log: AccessLog
) -> None:
    """Serve a request that is not a proxy route, and write its access log line."""
    arrived = trio.current_time()
    status: int | None = None
    sent = 0
    # The server sends no body in answer to HEAD, whatever the handler gives it; and a
    # write that failed (the client gone) did not reach the client either.
    head = scope["method"] == "HEAD"
    hangup = hangup_of(scope)

    async def counting_send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, sent
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)
        delivered = not head and (hangup is None or not hangup.broken)
        if message["type"] == "http.response.body" and delivered:
            sent += len(message.get("body", b""))

    try:
        await handler(scope, receive, counting_send)
    finally:
        outcome = "completed" if status is not None and status < 400 else "refused"
        log.write(entry_for(scope, arrived, status=status, outcome=outcome, bytes_tx=sent))


def create_app(settings: Settings, *, cluster: Cluster | None = None) -> TrioProxyApp:
    """Build the proxy for ``settings``: backends, tracker (if enabled), routes, lifespan.

    ``cluster``: this process is one worker of several (``--workers N``); its admin
    routes then answer for all of them, and it shares what it learns of the backends.
    """
    backends = Backends(settings)
    tracker = (
        ActivityTracker(
            stale_timeout=settings.activity_stale_timeout,
            instances=tuple(backends.names()),
            history=settings.activity_history,
        )
        if settings.enable_activity_tracking
        else None
    )
    access_log = (
        AccessLog(settings.access_log, settings.access_log_file)
        if settings.access_log != "off"
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
        session_headers=settings.session_headers,
        aliases=settings.aliases,
        default_max_tokens=settings.anthropic_default_max_tokens,
        access_log=access_log,
        request_body_timeout=settings.request_body_timeout,
    )
    view: AdminView = (
        LocalView(backends, tracker) if cluster is None else cluster.view(backends, tracker)
    )

    @quart.before_serving
    async def start() -> None:
        await backends.discover_models()
        quart.nursery.start_soon(backends.run_health_checks)
        quart.nursery.start_soon(run_full_collections, proxy)
        quart.nursery.start_soon(run_timed_collections)
        # Always set: a proxy running without tracking answers None.
        set_activity_tracker(tracker)
        if tracker is not None:
            quart.nursery.start_soon(tracker.run_sweeper)
        if cluster is not None:
            await quart.nursery.start(cluster.run, backends, tracker)

    @quart.after_serving
    async def stop() -> None:
        set_activity_tracker(None)
        if access_log is not None:
            access_log.close()
        with trio.CancelScope(shield=True):
            await backends.aclose()

    def _models_api() -> Api:
        # The Anthropic SDK sends anthropic-version on every request; OpenAI's never does.
        return Api.ANTHROPIC if "anthropic-version" in request.headers else Api.OPENAI

    def _unauthorized(api: Api) -> Response | None:
        if is_authorized(request.scope["headers"], client_keys):
            return None
        body = error_body(api, Unauthorized(UNAUTHORIZED))
        return Response(body, status=401, content_type="application/json")

    @quart.get("/v1/models")
    async def get_models() -> Response:
        api = _models_api()
        return _unauthorized(api) or json_response(model_list(backends, api))

    @quart.get("/v1/models/<path:model_id>")
    async def get_model(model_id: str) -> Response:
        api = _models_api()
        refused = _unauthorized(api)
        if refused is not None:
            return refused
        entry = model_entry(backends, api, model_id)
        if entry is None:
            missing = NotFound(f"No configured backend lists the model '{model_id}'.")
            return Response(error_body(api, missing), status=404, content_type="application/json")
        return json_response(entry)

    @quart.route("/", methods=["GET", "HEAD"])
    async def index() -> Response:
        return json_response({"name": "trioproxy", "version": __version__, "status": "ok"})

    @quart.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok"})

    @quart.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        path = request.path
        api = api_of_path(path)
        message = f"{exc.name}: {request.method} {path}"
        if api is Api.ANTHROPIC:
            error_type = "not_found_error" if status == 404 else "invalid_request_error"
            payload = error_payload(api, message, error_type=error_type)
        else:
            code = exc.name.lower().replace(" ", "_")
            payload = error_payload(api, message, error_type="invalid_request_error", code=code)
        response = json_response(payload, status)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    admin = add_admin_routes(quart, view, tuple(k.value.encode() for k in settings.admin_keys))
    return TrioProxyApp(settings, backends, tracker, quart, proxy, admin)
