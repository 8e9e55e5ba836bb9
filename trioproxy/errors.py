"""The trioproxy exception tree and the error bodies of the two client APIs.

::

    ProxyError                    an answer the proxy gives instead of the backend's
    ├── ClientError               the request itself is wrong (4xx)
    │   ├── BadRequest            400: malformed JSON, missing model, wrong API for an instance
    │   ├── Unauthorized          401: missing or unknown proxy key
    │   ├── NotFound              404: no such route, or no instance speaks the API
    │   ├── MethodNotAllowed      405
    │   ├── RequestTimeout        408: the body did not arrive within ``request_body_timeout``
    │   └── PayloadTooLarge       413: body over ``max_request_body``
    ├── ShuttingDown              503: the proxy is stopping and its grace period ran out
    ├── CancelledByOperator       503: POST /v1/diagnostics/cancel ended the request
    └── UpstreamError             the backend could not be used (``backend`` names it)
        ├── UpstreamUnreachable   502
        │   ├── UpstreamConnectFailed   502: DNS, refused, reset or TLS failure while
        │   │                           connecting; an invalid base URL (safe to fail over)
        │   └── NoResponseError   502: the connection ended (EOF, reset) before any byte
        │                         of the response; a reused idle connection is retried once
        ├── UpstreamTimeout       504: no response head, or no body byte, within the read
        │   │                     timeout; cancelled as stale
        │   └── UpstreamConnectTimeout  504: connecting took over the connect timeout
        │                               (safe to fail over)
        └── UpstreamProtocolError 502: the backend broke HTTP/1.1 (malformed or oversized
                                  head, conflicting framing) or cut the body short

``failover_safe`` is true for the errors where the request provably never reached the
backend, so another instance may take it.

Lower-level errors (h11, OSError, ssl) are mapped to ``UpstreamError`` subclasses at the
backend boundary (:mod:`trioproxy.backends.h11conn`) with ``raise ... from exc``; nothing
above the backends sees them. The connector sets ``backend`` to the instance's name, so
the message the client, the log and the diagnostics see says which backend failed.
"""

from __future__ import annotations

import enum
import json
from typing import Any


class Api(enum.Enum):
    """The client-facing API a request speaks; it decides the shape of every error."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class StreamShape(enum.Enum):
    """How a started event stream of a route says it failed: each API's own error event.

    Chat Completions and legacy completions clients read a ``data:`` line whose object
    has an ``error`` key; Responses clients an ``event: error`` whose data is
    ``{"type": "error", "code", "message", ...}``; Anthropic clients an ``event: error``
    with Anthropic's error body.
    """

    OPENAI = "openai"
    RESPONSES = "responses"
    ANTHROPIC = "anthropic"

    @classmethod
    def of_api(cls, api: Api) -> StreamShape:
        """The shape of ``api``'s chat streams (Chat Completions or Messages)."""
        return cls.ANTHROPIC if api is Api.ANTHROPIC else cls.OPENAI


class ProxyError(Exception):
    """An error the proxy answers itself, with an HTTP status and an API-shaped body."""

    status: int = 500
    openai_type: str = "server_error"
    anthropic_type: str = "api_error"
    code: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(ProxyError):
    status = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class BadRequest(ClientError):
    code = "bad_request"


class Unauthorized(ClientError):
    status = 401
    openai_type = "authentication_error"
    anthropic_type = "authentication_error"
    code = "invalid_api_key"


class NotFound(ClientError):
    status = 404
    anthropic_type = "not_found_error"
    code = "not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class RequestTimeout(ClientError):
    status = 408
    code = "request_timeout"


class PayloadTooLarge(ClientError):
    status = 413
    anthropic_type = "request_too_large"
    code = "request_too_large"


class ShuttingDown(ProxyError):
    status = 503
    openai_type = "server_error"
    anthropic_type = "overloaded_error"
    code = "shutting_down"


class CancelledByOperator(ProxyError):
    status = 503
    openai_type = "server_error"
    anthropic_type = "api_error"
    code = "cancelled_by_operator"


class UpstreamError(ProxyError):
    """The backend could not be used; ``backend`` is the instance's name once known."""

    status = 502
    openai_type = "upstream_error"
    anthropic_type = "api_error"
    code = "bad_gateway"
    failover_safe = False

    def __init__(self, message: str, *, backend: str | None = None) -> None:
        super().__init__(message)
        self.detail = message
        self.backend = backend
        if backend is not None:
            self.message = f"Backend '{backend}': {message}"

    def of_backend(self, name: str) -> UpstreamError:
        """Name the backend this error came from (once; later names are ignored)."""
        if self.backend is None:
            self.backend = name
            self.message = f"Backend '{name}': {self.detail}"
            self.args = (self.message,)
        return self


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamConnectFailed(UpstreamUnreachable):
    failover_safe = True


class UpstreamTimeout(UpstreamError):
    status = 504
    openai_type = "timeout_error"
    anthropic_type = "timeout_error"
    code = "upstream_timeout"


class UpstreamConnectTimeout(UpstreamTimeout):
    failover_safe = True


class NoResponseError(UpstreamUnreachable):
    """The connection ended (EOF or reset) before a single byte of the response arrived.

    Nothing of the response was seen, so the request can be retried on a fresh
    connection; the pool does that once, and only for a connection reused from its idle
    set (a server may close an idle connection at any moment).
    """


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"


def error_payload(
    api: Api, message: str, *, error_type: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The error object of ``api`` for ``message`` (pure)."""
    if api is Api.ANTHROPIC:
        return {"type": "error", "error": {"type": error_type or "api_error", "message": message}}
    return {"error": {"message": message, "type": error_type or "server_error", "code": code}}


def error_body(api: Api, exc: ProxyError) -> bytes:
    """The JSON body answering ``exc`` in ``api``'s shape."""
    if api is Api.ANTHROPIC:
        payload = error_payload(api, exc.message, error_type=exc.anthropic_type)
    else:
        payload = error_payload(api, exc.message, error_type=exc.openai_type, code=exc.code)
    return json.dumps(payload).encode()


def sse_error_event(shape: StreamShape, exc: ProxyError, *, sequence_number: int = 0) -> bytes:
    """The Server-Sent Event that ends a started stream with ``exc``, in ``shape``.

    ``sequence_number`` numbers a Responses API event (the one after the last sent). A
    Responses stream gets its ``error`` event and then ``response.failed``, the terminal
    event the API ends a failed response with: the ``openai`` SDK reads the first, and
    Codex only the second (it passed the ``error`` event over and said only "stream
    closed before response.completed").
    """
    if shape is StreamShape.ANTHROPIC:
        return b"event: error\ndata: " + error_body(Api.ANTHROPIC, exc) + b"\n\n"
    if shape is StreamShape.RESPONSES:
        event = {
            "type": "error",
            "code": exc.code,
            "message": exc.message,
            "param": None,
            "sequence_number": sequence_number,
        }
        failed = {
            "type": "response.failed",
            "sequence_number": sequence_number + 1,
            "response": {
                "object": "response",
                "status": "failed",
                "error": {"code": exc.code, "message": exc.message},
            },
        }
        return (
            b"event: error\ndata: "
            + json.dumps(event).encode()
            + b"\n\nevent: response.failed\ndata: "
            + json.dumps(failed).encode()
            + b"\n\n"
        )
    return b"data: " + error_body(Api.OPENAI, exc) + b"\n\n"
