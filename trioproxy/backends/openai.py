"""The OpenAI dialect: any OpenAI-compatible server (OpenAI, OpenRouter, vLLM, Ollama…).

``base_url`` includes ``/v1``; the key goes in ``Authorization: Bearer``.
"""

from __future__ import annotations

from ..errors import Api
from .http import Dialect, model_ids


def _auth(key: str | None) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Bearer " + key.encode())] if key else []


OPENAI = Dialect(
    api=Api.OPENAI,
    models_path="/models",
    auth_headers=_auth,
    default_headers=(),
    parse_models=model_ids,
)
