"""The Python tools people point at an OpenAI-compatible proxy: ``llm``, langchain-openai
and litellm, each through a real trioproxy on its embedded mock backend.

Each tool sends our ``x-session-id`` header (each has a setting for extra headers), so
the diagnostics show its requests under that session; each makes at least one streamed
request, which the mock keeps in flight long enough for a poll to see it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import trio

from tests.clients.harness import (
    MOCK_CONFIG,
    ClientProxy,
    assert_lifetime_clean,
    client_proxy,
    instance_of,
    tool_env,
)
from tests.clients.tools import ClientTool
from trioproxy.backends.mock import REPLY

# litellm alone takes some seconds to import.
TOOL_TIMEOUT = 120


async def _check(proxy: ClientProxy, session: str, requests: int) -> None:
    """The proxy saw ``requests`` chat completions under ``session``, one in flight."""
    posts = [request for request in proxy.sent if request.method == "POST"]
    assert [request.target for request in posts] == ["/v1/chat/completions"] * requests
    assert all(request.header("x-session-id") == session for request in posts)
    proxy.in_flight(instance="mock.1", session_id=session, endpoint="chat.completions")
    final = instance_of(await proxy.diagnostics(), "mock.1")
    lifetime = assert_lifetime_clean(final, requests=requests)
    assert lifetime["bytes_rx"] == lifetime["bytes_tx"]


def _report(report: list[str], tool: ClientTool, proxy: ClientProxy) -> None:
    report += [f"{tool.name} sent: {request.summary()}" for request in proxy.sent]


async def test_llm_cli_answers_through_the_proxy(
    nursery: trio.Nursery, tmp_path: Path, llm_cli: ClientTool, client_report: list[str]
) -> None:
    session = f"llm-{uuid.uuid4().hex}"
    async with client_proxy(nursery, tmp_path, MOCK_CONFIG) as proxy:
        user_path = tmp_path / "llm"
        user_path.mkdir()
        # llm reads extra OpenAI-compatible models from this file in LLM_USER_PATH; YAML
        # is a superset of JSON.
        model = {
            "model_id": "trioproxy-mock",
            "model_name": "mock-model",
            "api_base": proxy.url + "/v1",
            "headers": {"x-session-id": session},
        }
        (user_path / "extra-openai-models.yaml").write_text(json.dumps([model]))
        env = tool_env(tmp_path / "home", LLM_USER_PATH=str(user_path))
        argv = [*llm_cli.argv, "-m", "trioproxy-mock", "say hi"]
        run = await proxy.run_tool(argv, env=env, cwd=tmp_path, limit=TOOL_TIMEOUT)
        _report(client_report, llm_cli, proxy)
        assert run.returncode == 0, proxy.failure(run)
        assert REPLY in run.stdout, proxy.failure(run)
        await _check(proxy, session, requests=1)


async def test_langchain_chat_openai_invokes_and_streams_through_the_proxy(
    nursery: trio.Nursery,
    tmp_path: Path,
    langchain_openai: ClientTool,
    client_report: list[str],
) -> None:
    session = f"langchain-{uuid.uuid4().hex}"
    async with client_proxy(nursery, tmp_path, MOCK_CONFIG) as proxy:
        env = tool_env(tmp_path / "home", LANGSMITH_TRACING="false", LANGCHAIN_TRACING_V2="false")
        argv = [*langchain_openai.argv, proxy.url + "/v1", session]
        run = await proxy.run_tool(argv, env=env, cwd=tmp_path, limit=TOOL_TIMEOUT)
        _report(client_report, langchain_openai, proxy)
        assert run.returncode == 0, proxy.failure(run)
        assert f"invoke: {REPLY}" in run.stdout, proxy.failure(run)
        assert f"stream: {REPLY}" in run.stdout, proxy.failure(run)
        assert [r.json().get("stream") for r in proxy.sent] == [False, True]
        await _check(proxy, session, requests=2)


async def test_litellm_completion_through_the_proxy(
    nursery: trio.Nursery, tmp_path: Path, litellm_sdk: ClientTool, client_report: list[str]
) -> None:
    session = f"litellm-{uuid.uuid4().hex}"
    async with client_proxy(nursery, tmp_path, MOCK_CONFIG) as proxy:
        env = tool_env(tmp_path / "home", LITELLM_LOCAL_MODEL_COST_MAP="True")
        argv = [*litellm_sdk.argv, proxy.url + "/v1", session]
        run = await proxy.run_tool(argv, env=env, cwd=tmp_path, limit=TOOL_TIMEOUT)
        _report(client_report, litellm_sdk, proxy)
        assert run.returncode == 0, proxy.failure(run)
        assert f"completion: {REPLY}" in run.stdout, proxy.failure(run)
        assert f"stream: {REPLY}" in run.stdout, proxy.failure(run)
        assert [r.json().get("stream") for r in proxy.sent] == [None, True]
        await _check(proxy, session, requests=2)
