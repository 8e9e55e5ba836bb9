"""Request bodies as JSON: read strictly (RFC 8259 in UTF-8), written compactly (pure)."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from .errors import BadRequest


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


# One decoder for every request: json.loads() with a keyword builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_object(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body.

    Only RFC 8259 JSON in UTF-8 is read: Python's ``json`` would also take UTF-16 and
    UTF-32 bodies and the non-standard ``NaN`` and ``Infinity``, which a backend may
    read differently or not at all.

    Raises:
        BadRequest: not UTF-8, not JSON, or not an object.
    """
    try:
        text = body.decode("utf-8")
        payload = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise BadRequest("The request body is not UTF-8 (RFC 8259 JSON).") from None
    except (ValueError, RecursionError):
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise BadRequest("The request body must be a JSON object.")
    return payload


def encode(payload: Any) -> bytes:
    """``payload`` as compact JSON; non-ASCII kept as UTF-8 where it can be."""
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        # A lone surrogate escape ("\ud800") has no UTF-8 form: keep it escaped.
        return json.dumps(payload, separators=(",", ":")).encode()
