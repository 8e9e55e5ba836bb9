"""Fixtures of ``nox -s clients``: each real client tool, and the run's report.

These tests are not part of the default run (``--ignore=tests/clients`` in pyproject's
``addopts``); ``nox -s clients`` runs them, or ``pytest tests/clients`` by hand. Each tool
is a session fixture, synchronous so that its skip keeps its reason (see ``tools.py``).
The versions in use, and one line per request each tool sent, are printed at the end of
the run under "client tools".
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import pytest

from tests.clients.tools import CLAUDE_CODE, CODEX, ClientTool, npm_tool, python_tool

REPORT = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def client_report(pytestconfig: pytest.Config) -> list[str]:
    """Lines for the "client tools" section printed at the end of the run."""
    return pytestconfig.stash.setdefault(REPORT, [])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Print the "client tools" section: the versions in use and what each tool sent."""
    lines = config.stash.get(REPORT, [])
    if lines:
        terminalreporter.section("client tools")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def codex_cli(client_report: list[str]) -> ClientTool:
    """The OpenAI Codex CLI (npm ``@openai/codex``)."""
    return npm_tool(CODEX, client_report)


@pytest.fixture(scope="session")
def claude_code(client_report: list[str]) -> ClientTool:
    """Claude Code (npm ``@anthropic-ai/claude-code``)."""
    return npm_tool(CLAUDE_CODE, client_report)


@pytest.fixture(scope="session")
def llm_cli(client_report: list[str]) -> ClientTool:
    """Simon Willison's ``llm`` command (PyPI ``llm``), from this environment."""
    version = python_tool("llm", client_report)
    return ClientTool("llm", version, (str(Path(sysconfig.get_path("scripts")) / "llm"),))


@pytest.fixture(scope="session")
def langchain_openai(client_report: list[str]) -> ClientTool:
    """langchain-openai's ``ChatOpenAI``, driven by ``drivers/langchain_chat.py``."""
    version = python_tool("langchain-openai", client_report)
    driver = Path(__file__).parent / "drivers" / "langchain_chat.py"
    return ClientTool("langchain-openai", version, (sys.executable, str(driver)))


@pytest.fixture(scope="session")
def litellm_sdk(client_report: list[str]) -> ClientTool:
    """The litellm SDK's ``completion``, driven by ``drivers/litellm_completion.py``."""
    version = python_tool("litellm", client_report)
    driver = Path(__file__).parent / "drivers" / "litellm_completion.py"
    return ClientTool("litellm", version, (sys.executable, str(driver)))
