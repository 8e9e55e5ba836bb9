"""Translation between the Anthropic Messages and OpenAI Chat Completions APIs.

Pure code: no I/O, no Trio. For a request whose client speaks ``client_api`` and whose
backend speaks the other API, the relay calls

- :func:`translate_request` on the client's body, and sends the result upstream;
- :func:`translate_response` on a non-streamed 2xx answer;
- :func:`stream_translator` for a streamed 2xx answer: ``feed`` it the backend's bytes as
  they arrive, send what it returns at once, call ``finish`` at the end of the body, or
  ``fail`` on an error (see :class:`StreamTranslator`);
- :func:`translate_error` on a non-2xx answer, keeping the status.

What happens to every field is in ``docs/translation.md`` (the tables there are
:data:`MESSAGES_FIELDS` and :data:`CHAT_FIELDS`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..errors import Api
from .anthropic_client import chat_request, message_body
from .anthropic_stream import AnthropicStream
from .common import UntranslatableField
from .error_shapes import translate_error
from .fields import CHAT_FIELDS, MESSAGES_FIELDS, FieldRule
from .openai_client import chat_completion_body, messages_request
from .openai_stream import OpenAIStream
from .stream import StreamTranslator


def translate_request(
    client_api: Api,
    payload: Mapping[str, Any],
    *,
    default_max_tokens: int = 4096,
    send_reasoning_effort: bool = True,
) -> dict[str, Any]:
    """The body for the backend of the other API, for the request ``payload`` of a
    ``client_api`` client (its model already the one to send upstream).

    ``default_max_tokens`` is the ``max_tokens`` an Anthropic backend gets when the
    OpenAI client set none; ``send_reasoning_effort=False`` keeps an OpenAI backend from
    getting ``reasoning_effort`` (mapped from ``thinking`` / ``output_config.effort``),
    for backends that refuse it.

    Raises:
        BadRequest: a malformed request, naming the path of the bad value.
        UntranslatableField: (a BadRequest) a field whose loss would change what the
            client gets back, or that the translation does not know, naming it.
    """
    if client_api is Api.ANTHROPIC:
        return chat_request(payload, send_reasoning_effort=send_reasoning_effort)
    return messages_request(payload, default_max_tokens=default_max_tokens)


def translate_response(client_api: Api, body: bytes, *, created: int | None = None) -> bytes:
    """The client's JSON answer for the backend's non-streamed 2xx ``body``.

    ``created`` is the chat completion's timestamp (default: now) for an OpenAI client.

    Raises:
        UpstreamProtocolError: the body is not the answer the backend's API gives.
    """
    if client_api is Api.ANTHROPIC:
        return message_body(body)
    return chat_completion_body(body, created=int(time.time()) if created is None else created)


def stream_translator(
    client_api: Api, request: Mapping[str, Any], *, created: int | None = None
) -> StreamTranslator:
    """A translator for one streamed answer to the ``client_api`` client whose request
    body (as the client sent it) was ``request``: it reads the model name (a stand-in if
    the backend names none) and, for an OpenAI client, ``stream_options.include_usage``.
    ``created`` is the chunks' timestamp (default: now)."""
    model = request.get("model")
    model = model if isinstance(model, str) else ""
    if client_api is Api.ANTHROPIC:
        return AnthropicStream(model=model)
    options = request.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return OpenAIStream(
        include_usage=include_usage,
        created=int(time.time()) if created is None else created,
        model=model,
    )


__all__ = [
    "CHAT_FIELDS",
    "MESSAGES_FIELDS",
    "AnthropicStream",
    "FieldRule",
    "OpenAIStream",
    "StreamTranslator",
    "UntranslatableField",
    "stream_translator",
    "translate_error",
    "translate_request",
    "translate_response",
]
