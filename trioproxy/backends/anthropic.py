"""The Anthropic dialect: the Messages API.

``base_url`` does not include ``/v1``; the key goes in ``x-api-key`` and every request
carries ``anthropic-version`` (the client's if it sent one).
"""

from __future__ import annotations

from ..errors import Api
from .http import Dialect, model_ids

ANTHROPIC_VERSION = b"2023-06-01"


def _auth(key: str | None) -> list[tuple[bytes, bytes]]:
    return [(b"x-api-key", key.encode())] if key else []


ANTHROPIC = Dialect(
    api=Api.ANTHROPIC,
    models_path="/v1/models",
    auth_headers=_auth,
    default_headers=((b"anthropic-version", ANTHROPIC_VERSION),),
    parse_models=model_ids,
)
