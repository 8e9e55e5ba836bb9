"""The coding agents through a real trioproxy: the Codex CLI and Claude Code.

Each test runs the real tool once on "say hi" against a trioproxy process (through the
recording relay of ``recorder.py``) and checks what a user would: the tool printed the
backend's reply and exited 0. Then what the operator sees: a diagnostics poll while the
request was in flight showed it under the tool's own session id, with its ``endpoint``
(and, through the translation, ``translated`` and the backend's API), and the lifetime
counters counted every request the tool sent, all completed. A tool's home and config
live in the test's temporary directory; its environment holds nothing of the caller's,
its update checks and telemetry are off, and all its traffic stays on loopback.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

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
from tests.fake_upstream import DEFAULT_TEXT, FakeUpstream, Scenario
from trioproxy.backends.mock import REPLY

TOOL_TIMEOUT = 120

CODEX_CONFIG = """\
model = "mock-model"
model_provider = "trioproxy"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[model_providers.trioproxy]
name = "trioproxy"
base_url = "{base_url}"
env_key = "TRIOPROXY_CLIENTS_CODEX_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


def _workdir(tmp_path: Path) -> Path:
    # Not the repository: the agents read instructions (AGENTS.md, CLAUDE.md) where they run.
    work = tmp_path / "work"
    work.mkdir()
    return work


def _report(report: list[str], tool: ClientTool, proxy: ClientProxy, case: str) -> None:
    report += [f"{tool.name} ({case}) sent: {request.summary()}" for request in proxy.sent]


async def test_codex_exec_answers_through_the_proxy(
    nursery: trio.Nursery, tmp_path: Path, codex_cli: ClientTool, client_report: list[str]
) -> None:
    async with client_proxy(nursery, tmp_path, MOCK_CONFIG) as proxy:
        codex_home = tmp_path / "codex-home"
        codex_home.mkdir()
        (codex_home / "config.toml").write_text(CODEX_CONFIG.format(base_url=proxy.url + "/v1"))
        env = tool_env(
            tmp_path / "home",
            CODEX_HOME=str(codex_home),
            TRIOPROXY_CLIENTS_CODEX_KEY="sk-dummy-codex",
        )
        argv = [*codex_cli.argv, "exec", "--strict-config", "--skip-git-repo-check", "say hi"]
        run = await proxy.run_tool(argv, env=env, cwd=_workdir(tmp_path), limit=TOOL_TIMEOUT)
        _report(client_report, codex_cli, proxy, "mock")
        assert run.returncode == 0, proxy.failure(run)
        assert REPLY in run.stdout, proxy.failure(run)

        posts = [request for request in proxy.sent if request.method == "POST"]
        assert [request.target for request in posts] == ["/v1/responses"], proxy.failure(run)
        session = posts[0].header("session-id") or posts[0].header("session_id")
        assert session, proxy.failure(run)
        printed = re.search(r"session id: (\S+)", run.stderr)
        if printed is not None:
            assert printed.group(1) == session
        proxy.in_flight(instance="mock.1", session_id=session, endpoint="responses")
        final = instance_of(await proxy.diagnostics(), "mock.1")
        lifetime = assert_lifetime_clean(final, requests=len(posts))
        assert lifetime["bytes_rx"] == lifetime["bytes_tx"]


def _claude_env(tmp_path: Path, base_url: str, model: str | None = None) -> dict[str, str]:
    home = tmp_path / "home"
    variables = {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-ant-dummy-claude-code",
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
    }
    if model is not None:
        # Any background call for the small model goes to the same alias.
        variables["ANTHROPIC_DEFAULT_HAIKU_MODEL"] = model
        variables["ANTHROPIC_SMALL_FAST_MODEL"] = model
    return tool_env(home, **variables)


def _posts(proxy: ClientProxy) -> list[str]:
    return [urlsplit(r.target).path for r in proxy.sent if r.method == "POST"]


async def test_claude_code_answers_through_the_proxy(
    nursery: trio.Nursery, tmp_path: Path, claude_code: ClientTool, client_report: list[str]
) -> None:
    session = str(uuid.uuid4())
    async with client_proxy(nursery, tmp_path, MOCK_CONFIG) as proxy:
        argv = [*claude_code.argv, "-p", "--session-id", session, "say hi"]
        env = _claude_env(tmp_path, proxy.url)
        run = await proxy.run_tool(argv, env=env, cwd=_workdir(tmp_path), limit=TOOL_TIMEOUT)
        _report(client_report, claude_code, proxy, "mock")
        assert run.returncode == 0, proxy.failure(run)
        assert REPLY in run.stdout, proxy.failure(run)

        posts = _posts(proxy)
        assert "/v1/messages" in posts, proxy.failure(run)
        assert set(posts) <= {"/v1/messages", "/v1/messages/count_tokens"}, posts
        for request in proxy.sent:
            assert request.header("x-claude-code-session-id") in (session, None), request
        proxy.in_flight(instance="mock.1", session_id=session, endpoint="messages")
        final = instance_of(await proxy.diagnostics(), "mock.1")
        lifetime = assert_lifetime_clean(final, requests=len(posts))
        assert lifetime["bytes_rx"] == lifetime["bytes_tx"]


# The model name Claude Code is started with, which the proxy's alias sends to the
# OpenAI-type backend. Not a Claude model's name: Claude Code then sends the body it
# sends for models it does not know, today's default shape (mid-conversation system
# message included).
ALIAS = "claude-through-trioproxy"
TRANSLATING_CONFIG = """\
backends:
  - type: openai
    base_url: {base_url}/v1
    api_key_env: TRIOPROXY_CLIENTS_UPSTREAM_KEY
    models: [gpt-fake]
aliases:
  {alias}: "openai.1:gpt-fake"
"""


async def test_claude_code_answers_from_an_openai_backend_through_translation(
    nursery: trio.Nursery,
    tmp_path: Path,
    claude_code: ClientTool,
    fake: FakeUpstream,
    client_report: list[str],
) -> None:
    fake.default = Scenario(chunks=12, delay=0.25)
    session = str(uuid.uuid4())
    config = TRANSLATING_CONFIG.format(base_url=fake.base_url, alias=ALIAS)
    upstream_key = {"TRIOPROXY_CLIENTS_UPSTREAM_KEY": "sk-upstream-key"}
    async with client_proxy(nursery, tmp_path, config, env=upstream_key) as proxy:
        argv = [*claude_code.argv, "-p", "--model", ALIAS, "--session-id", session, "say hi"]
        env = _claude_env(tmp_path, proxy.url, model=ALIAS)
        run = await proxy.run_tool(argv, env=env, cwd=_workdir(tmp_path), limit=TOOL_TIMEOUT)
        _report(client_report, claude_code, proxy, "translated")
        # A 400 from the translation names the field; the bodies Claude Code sent are
        # saved with the failure, to read what it was.
        assert run.returncode == 0, proxy.failure(run)
        assert DEFAULT_TEXT in run.stdout, proxy.failure(run)

        posts = _posts(proxy)
        assert "/v1/messages" in posts, proxy.failure(run)
        proxy.in_flight(
            instance="openai.1",
            session_id=session,
            endpoint="messages",
            translated=True,
            backend_api="openai",
        )
        upstream = [r for r in fake.requests if r.method == "POST"]
        assert [r.path for r in upstream] == ["/v1/chat/completions"] * len(upstream)
        assert len(upstream) == posts.count("/v1/messages"), proxy.failure(run)
        for request in upstream:
            assert request.json["model"] == "gpt-fake"
            assert request.json["stream"] is True
            assert request.headers["authorization"] == "Bearer sk-upstream-key"
        final = instance_of(await proxy.diagnostics(), "openai.1")
        lifetime = assert_lifetime_clean(final, requests=len(posts))
        # Both sides exact: the backend's chat chunks in, the translated events out.
        assert lifetime["bytes_rx"] == fake.bytes_sent
        assert lifetime["bytes_tx"] != lifetime["bytes_rx"]
