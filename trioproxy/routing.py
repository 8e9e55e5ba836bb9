"""Which backend instance serves a model string on a route (pure).

``"<instance>:<model>"`` pins an instance; ``"<type>:<model>"`` picks the first instance
of that connector type; any other prefix is part of the model name (Ollama's
``llama3.1:8b``). A bare model goes to the first instance, in config order, that serves
the route, lists the model and is not rate limited; else to ``default_backend``; else to
the first instance that serves the route.

An instance serves a route when its API has an upstream path for it in the route table
(:mod:`trioproxy.routes`), or when the route's counterpart in its API has one: the
request is then translated (Messages ⇄ Chat Completions). Instances that serve a route
in the client's own API are preferred to those that translate. The mock serves every
route natively.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import Api, BadRequest, NotFound
from .routes import ProxyRoute, upstream_route
from .settings import ConnectorType


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


def backend_api(connector: ConnectorType) -> Api | None:
    """The API an instance of ``connector`` speaks; None for the mock, which speaks both."""
    if connector is ConnectorType.OPENAI:
        return Api.OPENAI
    if connector is ConnectorType.ANTHROPIC:
        return Api.ANTHROPIC
    return None


def serves_natively(connector: ConnectorType, route: ProxyRoute) -> bool:
    """Whether an instance of ``connector`` answers ``route`` in the client's own API."""
    api = backend_api(connector)
    return api is None or route.upstream_path(api) is not None


def serves(connector: ConnectorType, route: ProxyRoute) -> bool:
    """Whether an instance of ``connector`` answers ``route``, natively or translated."""
    api = backend_api(connector)
    return api is None or upstream_route(route, api) is not None


def speaks(connector: ConnectorType, api: Api) -> bool:
    """Whether an instance of ``connector`` speaks ``api`` (the mock speaks both)."""
    own = backend_api(connector)
    return own is None or own is api


def _cannot_serve(
    target: RouteTarget, route: ProxyRoute, targets: Sequence[RouteTarget]
) -> BadRequest:
    own = backend_api(target.type)
    able = [t.name for t in targets if serves(t.type, route)]
    advice = (
        f"name an instance that serves it, e.g. '{able[0]}:<model>'"
        if able
        else "no configured backend serves it"
    )
    kind = target.type.value
    article = "an" if kind[:1] in "aeiou" else "a"
    return BadRequest(
        f"Backend '{target.name}' is {article} {kind} backend and speaks the "
        f"{own.value if own else 'other'} API, which has no POST {route.path}: {advice}."
    )


def route(
    model: str,
    request_route: ProxyRoute,
    targets: Sequence[RouteTarget],
    *,
    default_backend: str | None = None,
    rate_limited: Callable[[str], bool] = lambda name: False,
) -> Route:
    """Pick the instance(s) for ``model`` on ``request_route``.

    Instances that speak the request's API come first; instances of the other API serve
    it translated (Messages ⇄ Chat Completions) where the route has a counterpart.

    Raises:
        BadRequest: the model names an instance (or type) that cannot serve the route.
        NotFound: no instance serves the route, or the prefix is a type none has.
    """
    prefix, sep, rest = model.partition(":")
    if sep and rest:
        by_name = next((t for t in targets if t.name == prefix), None)
        if by_name is not None:
            if not serves(by_name.type, request_route):
                raise _cannot_serve(by_name, request_route, targets)
            return Route((by_name.name,), rest, pinned=True)
        if prefix in {c.value for c in ConnectorType}:
            of_type = [t for t in targets if t.type.value == prefix]
            usable = [t for t in of_type if serves(t.type, request_route)]
            if usable:
                return Route((usable[0].name,), rest, pinned=True)
            if of_type:
                raise _cannot_serve(of_type[0], request_route, targets)
            raise NotFound(f"No backend of type '{prefix}' is configured.")

    native = [t for t in targets if serves_natively(t.type, request_route)]
    translated = [t for t in targets if serves(t.type, request_route) and t not in native]
    serving = native + translated
    if not serving:
        raise NotFound(
            f"No configured backend speaks the {request_route.api.value} API; "
            f"POST {request_route.path} cannot be served."
        )
    listing = [t.name for t in serving if model in t.models and not rate_limited(t.name)]
    if listing:
        return Route(tuple(listing), model, pinned=False)
    if default_backend is not None:
        default = next((t for t in serving if t.name == default_backend), None)
        if default is not None:
            return Route((default.name,), model, pinned=False)
    return Route((serving[0].name,), model, pinned=False)
