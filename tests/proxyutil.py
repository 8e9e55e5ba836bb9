"""Starting the real proxy app in a test's nursery, and backend specs for the fakes.

The app is served by hypercorn's Trio worker on 127.0.0.1 with an OS-assigned port;
``await start_proxy(nursery, ...)`` returns once it is listening. The test's nursery
ending (pytest-trio cancels it) stops it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import httpx
import hypercorn.trio
import trio

from trioproxy.app import TrioProxyApp, create_app
from trioproxy.server import hypercorn_config
from trioproxy.settings import BackendSpec, ConnectorType, Secret, Settings

BACKEND_KEY = "sk-backend-key-0123456789"
CLIENT_KEY = "sk-client-key-should-never-be-forwarded"


@dataclass
class RunningProxy:
    """A proxy serving in a test: its base URL and the app (backends, tracker)."""

    url: str
    app: TrioProxyApp

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    async def diagnostics(self) -> dict[str, Any]:
        """``GET /v1/diagnostics`` on a client of its own (asserting 200)."""
        async with httpx.AsyncClient() as client:
            response = await client.get(self.url + "/v1/diagnostics")
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]


def instance(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The entry of instance ``name`` in a diagnostics document."""
    return next(i for i in doc["instances"] if i["name"] == name)


async def start_proxy(nursery: trio.Nursery, **settings: Any) -> RunningProxy:
    """Serve a proxy built from ``Settings(**settings)`` on 127.0.0.1, port 0."""
    config = replace(Settings(), **{"host": "127.0.0.1", "port": 0, **settings})
    app = create_app(config)
    binds: list[str] = await nursery.start(
        hypercorn.trio.serve,
        app,  # type: ignore[arg-type]
        hypercorn_config(config),
    )
    return RunningProxy(binds[0], app)


def openai_spec(
    base: str,
    name: str = "openai.1",
    models: tuple[str, ...] | None = ("gpt-fake",),
    key: str | None = BACKEND_KEY,
) -> BackendSpec:
    """An OpenAI-style backend at the fake whose root URL is ``base``.

    ``models`` defaults to a list so no discovery request precedes the test's own;
    pass None to have the proxy discover them.
    """
    return BackendSpec(
        name=name,
        type=ConnectorType.OPENAI,
        base_url=base + "/v1",
        api_key_env="FAKE_OPENAI_KEY",
        api_key=Secret(key) if key else None,
        models=models,
    )


def anthropic_spec(
    base: str,
    name: str = "anthropic.1",
    models: tuple[str, ...] | None = ("claude-fake",),
    key: str | None = BACKEND_KEY,
) -> BackendSpec:
    """An Anthropic-style backend at the fake whose root URL is ``base``."""
    return BackendSpec(
        name=name,
        type=ConnectorType.ANTHROPIC,
        base_url=base,
        api_key_env="FAKE_ANTHROPIC_KEY",
        api_key=Secret(key) if key else None,
        models=models,
    )


def mock_spec(name: str = "mock.1", chunks: int = 4, delay: float = 0.0) -> BackendSpec:
    return BackendSpec(
        name=name, type=ConnectorType.MOCK, mock_chunks=chunks, mock_chunk_delay=delay
    )
