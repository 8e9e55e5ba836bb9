"""Routing a model string to an instance: pure, table-driven."""

from __future__ import annotations

import pytest

from trioproxy.errors import Api, BadRequest, NotFound
from trioproxy.routes import BY_PATH, ProxyRoute
from trioproxy.routing import Route, RouteTarget, route
from trioproxy.settings import ConnectorType as T

CHAT = BY_PATH["/v1/chat/completions"]
MESSAGES = BY_PATH["/v1/messages"]
RESPONSES = BY_PATH["/v1/responses"]
EMBEDDINGS = BY_PATH["/v1/embeddings"]
COUNT_TOKENS = BY_PATH["/v1/messages/count_tokens"]
BY_API = {Api.OPENAI: CHAT, Api.ANTHROPIC: MESSAGES}

TARGETS = [
    RouteTarget("openai.1", T.OPENAI, frozenset({"gpt-4o", "gpt-4o-mini"})),
    RouteTarget("local", T.OPENAI, frozenset({"llama3.1:8b", "gpt-4o"})),
    RouteTarget("anthropic.1", T.ANTHROPIC, frozenset({"claude-sonnet-4"})),
]


@pytest.mark.parametrize(
    ("model", "api", "expected"),
    [
        ("gpt-4o", Api.OPENAI, Route(("openai.1", "local"), "gpt-4o", pinned=False)),
        ("local:gpt-4o", Api.OPENAI, Route(("local",), "gpt-4o", pinned=True)),
        ("openai:gpt-4o", Api.OPENAI, Route(("openai.1",), "gpt-4o", pinned=True)),
        ("llama3.1:8b", Api.OPENAI, Route(("local",), "llama3.1:8b", pinned=False)),
        ("local:llama3.1:8b", Api.OPENAI, Route(("local",), "llama3.1:8b", pinned=True)),
        ("unknown-model", Api.OPENAI, Route(("openai.1",), "unknown-model", pinned=False)),
        ("claude-sonnet-4", Api.ANTHROPIC, Route(("anthropic.1",), "claude-sonnet-4", False)),
        ("anthropic:claude-x", Api.ANTHROPIC, Route(("anthropic.1",), "claude-x", pinned=True)),
        # Instances of the other API that list the model serve it translated.
        ("gpt-4o", Api.ANTHROPIC, Route(("openai.1", "local"), "gpt-4o", pinned=False)),
        ("claude-sonnet-4", Api.OPENAI, Route(("anthropic.1",), "claude-sonnet-4", False)),
        ("mystery", Api.ANTHROPIC, Route(("anthropic.1",), "mystery", pinned=False)),
    ],
)
def test_route_table(model: str, api: Api, expected: Route) -> None:
    assert route(model, BY_API[api], TARGETS) == expected


def test_default_backend_takes_unlisted_models() -> None:
    got = route("mystery", CHAT, TARGETS, default_backend="local")
    assert got == Route(("local",), "mystery", pinned=False)


def test_default_backend_of_the_other_api_serves_translated() -> None:
    got = route("mystery", CHAT, TARGETS, default_backend="anthropic.1")
    assert got.candidates == ("anthropic.1",)


def test_own_api_instances_come_before_translating_ones() -> None:
    both = [
        RouteTarget("anthropic.1", T.ANTHROPIC, frozenset({"shared"})),
        RouteTarget("openai.1", T.OPENAI, frozenset({"shared"})),
    ]
    assert route("shared", CHAT, both).candidates == ("openai.1", "anthropic.1")
    assert route("shared", MESSAGES, both).candidates == ("anthropic.1", "openai.1")


def test_rate_limited_instances_are_skipped_for_bare_models() -> None:
    got = route("gpt-4o", CHAT, TARGETS, rate_limited=lambda name: name == "openai.1")
    assert got.candidates == ("local",)


def test_pinned_instance_is_used_even_when_rate_limited() -> None:
    got = route("openai.1:gpt-4o", CHAT, TARGETS, rate_limited=lambda name: True)
    assert got == Route(("openai.1",), "gpt-4o", pinned=True)


@pytest.mark.parametrize(
    ("model", "api", "expected"),
    [
        (
            "anthropic.1:claude-sonnet-4",
            Api.OPENAI,
            Route(("anthropic.1",), "claude-sonnet-4", True),
        ),
        ("anthropic:claude-sonnet-4", Api.OPENAI, Route(("anthropic.1",), "claude-sonnet-4", True)),
        ("openai.1:gpt-4o", Api.ANTHROPIC, Route(("openai.1",), "gpt-4o", pinned=True)),
    ],
)
def test_naming_an_instance_of_the_other_api_is_translated(
    model: str, api: Api, expected: Route
) -> None:
    assert route(model, BY_API[api], TARGETS) == expected


def test_only_other_api_instances_serve_translated() -> None:
    only_openai = TARGETS[:2]
    assert route("claude", MESSAGES, only_openai).candidates == ("openai.1",)


def test_no_instance_serving_the_route_is_not_found() -> None:
    only_openai = TARGETS[:2]
    with pytest.raises(NotFound, match="anthropic"):
        route("claude", COUNT_TOKENS, only_openai)


def test_mock_speaks_both_apis() -> None:
    mock = [RouteTarget("mock.1", T.MOCK, frozenset({"mock-model"}))]
    assert route("x", MESSAGES, mock).candidates == ("mock.1",)
    assert route("mock.1:x", CHAT, mock) == Route(("mock.1",), "x", pinned=True)


@pytest.mark.parametrize("served", [RESPONSES, EMBEDDINGS, BY_PATH["/v1/completions"]])
def test_openai_only_routes_go_to_openai_instances(served: ProxyRoute) -> None:
    assert route("gpt-4o", served, TARGETS).candidates == ("openai.1", "local")
    assert route("claude-sonnet-4", served, TARGETS).candidates == ("openai.1",)


def test_count_tokens_goes_to_anthropic_instances() -> None:
    assert route("claude-sonnet-4", COUNT_TOKENS, TARGETS).candidates == ("anthropic.1",)
    assert route("gpt-4o", COUNT_TOKENS, TARGETS).candidates == ("anthropic.1",)


@pytest.mark.parametrize(
    ("model", "served", "advice"),
    [
        ("anthropic.1:claude-sonnet-4", RESPONSES, "'openai.1:<model>'"),
        ("anthropic:claude-sonnet-4", EMBEDDINGS, "'openai.1:<model>'"),
        ("openai.1:gpt-4o", COUNT_TOKENS, "'anthropic.1:<model>'"),
    ],
)
def test_a_route_without_counterpart_names_an_instance_to_use(
    model: str, served: ProxyRoute, advice: str
) -> None:
    with pytest.raises(
        BadRequest, match=f"no POST {served.path}: name an instance that serves it, e.g. {advice}"
    ):
        route(model, served, TARGETS)


def test_without_any_instance_for_the_route_the_error_says_so() -> None:
    only_openai = TARGETS[:2]
    with pytest.raises(BadRequest, match="count_tokens: no configured backend serves it"):
        route("openai.1:gpt-4o", COUNT_TOKENS, only_openai)
