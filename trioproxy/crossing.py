"""A request served by an instance of the other API: the relay's side of translation.

When routing sends an Anthropic Messages request to an OpenAI-type instance, or a Chat
Completions request to an Anthropic-type one, the relay builds the upstream request with
:func:`crossing_request` and answers through the returned :class:`Crossing`: a stream
translator for a streamed answer (fed as the bytes arrive, so nothing is buffered), the
JSON translation for a whole answer, and the error translation for a non-2xx one. What
happens to every field is :mod:`trioproxy.translate`'s (docs/translation.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .backends.base import UpstreamRequest
from .errors import Api
from .headers import Headers
from .jsonbody import encode
from .routes import ProxyRoute
from .translate import StreamTranslator, stream_translator, translate_error, translate_request
from .translate import translate_response as translate_answer

# Headers of the client's own API mean nothing to a backend of the other one.
_CLIENT_API_HEADERS = {Api.ANTHROPIC: b"anthropic-", Api.OPENAI: b"openai-"}


@dataclass(frozen=True, slots=True)
class Crossing:
    """How one translated request's answer reaches the client.

    Attributes:
        client_api: the API the client speaks.
        backend_api: the API of the instance that answers.
        request: the client's request body (the model as sent upstream), which the stream
            translator reads for the model name and the client's usage option.
    """

    client_api: Api
    backend_api: Api
    request: Mapping[str, Any]

    def stream(self) -> StreamTranslator:
        """A translator for one streamed answer (see :class:`StreamTranslator`)."""
        return stream_translator(self.client_api, self.request)

    def answer(self, body: bytes) -> bytes:
        """The client's JSON for the backend's whole 2xx answer.

        Raises:
            UpstreamProtocolError: the body is not the answer the backend's API gives.
        """
        return translate_answer(self.client_api, body)

    def error(self, status: int, body: bytes) -> bytes:
        """The backend's error body in the client's shape (the status is kept)."""
        return translate_error(self.client_api, status, body)


def crossing_request(
    client_route: ProxyRoute,
    backend_route: ProxyRoute,
    backend_api: Api,
    payload: Mapping[str, Any],
    headers: Headers,
    *,
    streaming: bool,
    default_max_tokens: int,
) -> tuple[UpstreamRequest, Crossing]:
    """The upstream request for ``payload`` translated for ``backend_route``, and its answer.

    Raises:
        BadRequest: the request cannot be translated faithfully (the message names the
            field; ``UntranslatableField``) or is malformed.
    """
    translated = translate_request(client_route.api, payload, default_max_tokens=default_max_tokens)
    prefix = _CLIENT_API_HEADERS[client_route.api]
    # Nor the client's Accept-Encoding: the proxy reads this answer to translate it (the
    # connector then asks for identity). The SDKs all accept gzip, and a backend that
    # compressed its answer was a 502 ("not JSON") or a broken stream.
    kept = [
        (name, value)
        for name, value in headers
        if not name.startswith(prefix) and name != b"accept-encoding"
    ]
    path = backend_route.upstream_path(backend_api)
    assert path is not None, "routing only crosses to a route the backend serves"
    request = UpstreamRequest(
        endpoint=backend_route.endpoint,
        # The client's query string is its own API's (Claude Code's ?beta=true): not sent.
        path=path,
        body=encode(translated),
        headers=kept,
        streaming=streaming,
    )
    return request, Crossing(client_route.api, backend_api, payload)
