"""A backend's error, in a response body or inside a stream, in the client API's shape.

The message is the backend's own, read from whatever shape it used (OpenAI's
``{"error": {"message"}}``, Anthropic's ``{"type": "error", "error": {...}}``, vLLM's
top-level ``message``, FastAPI's ``detail``); a body that is not JSON gives its text,
shortened. The error type follows the HTTP status, since both APIs tie their types to
it; going to an OpenAI client the Anthropic type is kept as ``code``
(``overloaded_error``), since OpenAI has no word for it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..errors import Api

MAX_TEXT = 500

ANTHROPIC_TYPE_FOR_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
STATUS_FOR_ANTHROPIC_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
OPENAI_TYPE_FOR_STATUS = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
    504: "timeout_error",
}
STATUS_FOR_OPENAI_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "requests": 429,
    "tokens": 429,
    "server_error": 500,
    "timeout_error": 504,
}


def anthropic_type(status: int) -> str:
    if status in ANTHROPIC_TYPE_FOR_STATUS:
        return ANTHROPIC_TYPE_FOR_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def openai_type(status: int) -> str:
    if status in OPENAI_TYPE_FOR_STATUS:
        return OPENAI_TYPE_FOR_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


def _shorten(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _message_and_type(error: object) -> tuple[str | None, str | None, object]:
    """The message, type and code an error object of either API (or a near one) holds."""
    if not isinstance(error, dict):
        return None, None, None
    inner = error.get("error")
    if isinstance(inner, dict):
        message, kind = inner.get("message"), inner.get("type")
        code = inner.get("code")
    elif isinstance(inner, str):
        message, kind, code = inner, None, None
    else:
        message = error.get("message", error.get("detail"))
        kind, code = error.get("type"), error.get("code")
        if kind == "error":
            kind = None
    if message is not None and not isinstance(message, str):
        message = orjson.dumps(message).decode()
    return message, kind if isinstance(kind, str) else None, code


def _read(status: int, body: bytes) -> tuple[str, str | None]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = _shorten(body.decode("utf-8", "replace"))
        if text:
            return f"the backend answered HTTP {status}: {text}", None
        return f"the backend answered HTTP {status} without details", None
    message, kind, _ = _message_and_type(parsed)
    if message:
        return message, kind
    return f"the backend answered HTTP {status}: {_shorten(body.decode('utf-8', 'replace'))}", kind


def anthropic_payload(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": anthropic_type(status), "message": message}}


def openai_payload(status: int, message: str, code: object) -> dict[str, Any]:
    return {"error": {"message": message, "type": openai_type(status), "param": None, "code": code}}


def translate_error(client_api: Api, status: int, body: bytes) -> bytes:
    """The error body for a client of ``client_api`` for a backend's error answer of the
    other API: ``status`` stays, the backend's message is kept, the body may be anything."""
    message, kind = _read(status, body)
    if client_api is Api.ANTHROPIC:
        return orjson.dumps(anthropic_payload(status, message))
    return orjson.dumps(openai_payload(status, message, kind))


def anthropic_stream_error(error: dict[str, Any]) -> bytes:
    """The Messages ``error`` event for an error object inside a chat stream."""
    message, kind, code = _message_and_type(error)
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        status = code
    else:
        status = STATUS_FOR_OPENAI_TYPE.get(kind or "", 500)
    payload = anthropic_payload(status, message or "the backend's stream failed")
    return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"


def openai_stream_error(error: dict[str, Any]) -> bytes:
    """The chat stream's error event for an ``error`` event inside a Messages stream."""
    message, kind, _ = _message_and_type(error)
    status = STATUS_FOR_ANTHROPIC_TYPE.get(kind or "", 500)
    payload = openai_payload(status, message or "the backend's stream failed", kind)
    return b"data: " + orjson.dumps(payload) + b"\n\n"
