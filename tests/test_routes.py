"""The route table: one row per client path, and the shape of errors by path (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trioproxy.errors import Api
from trioproxy.routes import BY_ENDPOINT, BY_PATH, ROUTES, Endpoint, api_of_path, counterpart


@pytest.mark.parametrize(
    ("path", "api", "endpoint", "openai", "anthropic", "streams"),
    [
        ("/v1/chat/completions", Api.OPENAI, "chat.completions", "/chat/completions", None, True),
        ("/v1/responses", Api.OPENAI, "responses", "/responses", None, True),
        ("/v1/embeddings", Api.OPENAI, "embeddings", "/embeddings", None, False),
        ("/v1/completions", Api.OPENAI, "completions", "/completions", None, True),
        ("/v1/messages", Api.ANTHROPIC, "messages", None, "/v1/messages", True),
        (
            "/v1/messages/count_tokens",
            Api.ANTHROPIC,
            "count_tokens",
            None,
            "/v1/messages/count_tokens",
            False,
        ),
    ],
)
def test_every_route_is_one_row(
    path: str, api: Api, endpoint: str, openai: str | None, anthropic: str | None, streams: bool
) -> None:
    row = BY_PATH[path]
    assert (row.api, row.endpoint.value, row.streams) == (api, endpoint, streams)
    assert row.upstream_path(Api.OPENAI) == openai
    assert row.upstream_path(Api.ANTHROPIC) == anthropic


def test_the_table_has_one_row_per_path_and_per_endpoint() -> None:
    assert len(BY_PATH) == len(ROUTES) == len(BY_ENDPOINT) == len(Endpoint)


def test_chat_and_messages_are_each_others_counterpart() -> None:
    chat, messages = BY_PATH["/v1/chat/completions"], BY_PATH["/v1/messages"]
    assert counterpart(chat) is messages
    assert counterpart(messages) is chat
    assert counterpart(BY_PATH["/v1/responses"]) is None


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("/v1/messages", Api.ANTHROPIC),
        ("/v1/messages/count_tokens", Api.ANTHROPIC),
        ("/v1/messages/batches", Api.ANTHROPIC),
        ("/v1/messagesx", Api.OPENAI),
        ("/v1/chat/completions", Api.OPENAI),
        ("/v1/nowhere", Api.OPENAI),
        ("/", Api.OPENAI),
    ],
)
def test_errors_take_the_shape_of_the_paths_api(path: str, api: Api) -> None:
    assert api_of_path(path) is api


def test_the_documented_route_table_is_the_code() -> None:
    """docs/configuration.md's Routes table lists exactly the route table's rows."""
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    section = doc.split("## Routes", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `POST ")
    ]
    assert [row[0] for row in rows] == [f"`POST {route.path}`" for route in ROUTES]
    for row, route in zip(rows, ROUTES, strict=True):
        assert row[1] == route.api.value.capitalize().replace("Openai", "OpenAI")
        assert row[2] == f"`{route.endpoint.value}`"
        for cell, api in ((row[3], Api.OPENAI), (row[4], Api.ANTHROPIC)):
            native = route.upstream_path(api)
            other = counterpart(route)
            if native is not None:
                assert cell == f"`{{base_url}}{native}`"
            elif other is not None and other.upstream_path(api) is not None:
                assert cell == f"translated to `{{base_url}}{other.upstream_path(api)}`"
            else:
                assert cell == "—"
        assert row[5] == ("yes" if route.streams else "no")
