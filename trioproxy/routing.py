"""Which backend instance serves a model string (pure).

``"<instance>:<model>"`` pins an instance; ``"<type>:<model>"`` picks the first instance
of that connector type; any other prefix is part of the model name (Ollama's
``llama3.1:8b``). A bare model goes to the first instance, in config order, that speaks
the request's API, lists the model and is not rate limited; else to ``default_backend``;
else to the first instance that speaks the API.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import Api, BadRequest, NotFound
from .settings import ConnectorType

API_PATHS = {Api.OPENAI: "/v1/chat/completions", Api.ANTHROPIC: "/v1/messages"}


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """What routing needs to know of one instance."""

    name: str
    type: ConnectorType
    models: frozenset[str]


@dataclass(frozen=True, slots=True)
class Route:
    """The chosen instances, best first, and the model to send upstream.

    ``pinned`` is true when the client named the instance, so no other may serve it.
    """

    candidates: tuple[str, ...]
    upstream_model: str
    pinned: bool


def speaks(connector: ConnectorType, api: Api) -> bool:
    """Whether an instance of ``connector`` answers ``api`` (the mock answers both)."""
    if connector is ConnectorType.MOCK:
        return True
    if api is Api.OPENAI:
        return connector is ConnectorType.OPENAI
    return connector is ConnectorType.ANTHROPIC


def _wrong_api(target: RouteTarget, api: Api) -> BadRequest:
    other = Api.ANTHROPIC if api is Api.OPENAI else Api.OPENAI
    return BadRequest(
        f"Backend '{target.name}' is a {target.type.value} backend and speaks the "
        f"{other.value} API: send this request to POST {API_PATHS[other]}."
    )


def route(
    model: str,
    api: Api,
    targets: Sequence[RouteTarget],
    *,
    default_backend: str | None = None,
    rate_limited: Callable[[str], bool] = lambda name: False,
) -> Route:
    """Pick the instance(s) for ``model`` on ``api``.

    Raises:
        BadRequest: the model names an instance (or type) of the other API.
        NotFound: no instance speaks ``api``.
    """
    prefix, sep, rest = model.partition(":")
    if sep and rest:
        by_name = next((t for t in targets if t.name == prefix), None)
        if by_name is not None:
            if not speaks(by_name.type, api):
                raise _wrong_api(by_name, api)
            return Route((by_name.name,), rest, pinned=True)
        if prefix in {c.value for c in ConnectorType}:
            of_type = [t for t in targets if t.type.value == prefix]
            usable = [t for t in of_type if speaks(t.type, api)]
            if usable:
                return Route((usable[0].name,), rest, pinned=True)
            if of_type:
                raise _wrong_api(of_type[0], api)
            raise NotFound(f"No backend of type '{prefix}' is configured.")

    speaking = [t for t in targets if speaks(t.type, api)]
    if not speaking:
        raise NotFound(
            f"No configured backend speaks the {api.value} API; "
            f"POST {API_PATHS[api]} cannot be served."
        )
    listing = [t.name for t in speaking if model in t.models and not rate_limited(t.name)]
    if listing:
        return Route(tuple(listing), model, pinned=False)
    if default_backend is not None:
        default = next((t for t in speaking if t.name == default_backend), None)
        if default is not None:
            return Route((default.name,), model, pinned=False)
    return Route((speaking[0].name,), model, pinned=False)
