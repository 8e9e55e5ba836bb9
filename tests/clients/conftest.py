"""The real client tools of ``nox -s clients``, installed once and found by fixtures.

These tests are not part of the default run (``--ignore=tests/clients`` in pyproject's
``addopts``); ``nox -s clients`` runs them, or ``pytest tests/clients`` by hand. Each tool
is a session fixture, synchronous so that its skip keeps its reason (pytest-trio drops
the reason of a skip raised inside an async test):

* the npm tools (Codex CLI, Claude Code) are installed on first use at the pinned version
  into ``.nox/clients-npm`` (``TRIOPROXY_CLIENTS_NPM_PREFIX`` overrides it), and reused
  while that version is there; without npm, or when npm cannot install them (no registry),
  their tests skip saying why;
* the Python tools are pinned in ``tests/clients/requirements.txt`` and installed by the
  nox session into its own environment; where they are missing, their tests skip.

The versions in use, and one line per request each tool sent, are printed at the end of
the run under "client tools".
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NPM_PREFIX = Path(os.environ.get("TRIOPROXY_CLIENTS_NPM_PREFIX") or ROOT / ".nox" / "clients-npm")
# Pinned: a new release may change what the tool sends, and that should change this
# test only when it is adopted here on purpose.
CODEX = ("@openai/codex", "0.171.0", "codex")
CLAUDE_CODE = ("@anthropic-ai/claude-code", "2.1.332", "claude")
# Seconds: a first install downloads two native binaries of some 400 MB unpacked each.
NPM_INSTALL_TIMEOUT = 900
VERSION_TIMEOUT = 60

REPORT = pytest.StashKey[list[str]]()


@dataclass(frozen=True)
class ClientTool:
    """An installed tool: its name, the version in use, and the command that runs it."""

    name: str
    version: str
    argv: tuple[str, ...]


@pytest.fixture(scope="session")
def client_report(pytestconfig: pytest.Config) -> list[str]:
    """Lines for the "client tools" section printed at the end of the run."""
    return pytestconfig.stash.setdefault(REPORT, [])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(REPORT, [])
    if lines:
        terminalreporter.section("client tools")
        for line in lines:
            terminalreporter.write_line(line)


def _npm_installed_version(package: str) -> str | None:
    manifest = NPM_PREFIX / "node_modules" / package / "package.json"
    try:
        version = json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return version if isinstance(version, str) else None


def _head(text: str, lines: int = 4) -> str:
    # npm says what went wrong first (its error code, the failed fetch), then a stack.
    return "\n".join(text.strip().splitlines()[:lines])


def _npm_tool(spec: tuple[str, str, str], report: list[str]) -> ClientTool:
    package, version, command = spec
    if _npm_installed_version(package) != version:
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(
                f"{package}: npm is not installed (Debian: apt-get install nodejs npm; "
                ".ci/run does it)"
            )
        NPM_PREFIX.mkdir(parents=True, exist_ok=True)
        argv = [npm, "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund"]
        try:
            done = subprocess.run(
                [*argv, "--loglevel=error", f"{package}@{version}"],
                capture_output=True,
                text=True,
                timeout=NPM_INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm could not install {package}@{version} in {NPM_INSTALL_TIMEOUT} s")
        if done.returncode != 0:
            pytest.skip(
                f"npm could not install {package}@{version} (exit {done.returncode}):\n"
                + _head(done.stderr or done.stdout)
            )
    binary = NPM_PREFIX / "node_modules" / ".bin" / command
    shown = subprocess.run(
        [str(binary), "--version"],
        capture_output=True,
        text=True,
        timeout=VERSION_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if version not in shown.stdout:
        # Installed but not runnable: a defect to see, not a skip.
        pytest.fail(f"{binary} --version printed {shown.stdout!r} {shown.stderr!r}")
    report.append(f"{package} {version}: {shown.stdout.strip()}")
    return ClientTool(package, version, (str(binary),))


def _python_tool(distribution: str, report: list[str]) -> str:
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(
            f"{distribution} is not installed in this environment (`nox -s clients` installs "
            "tests/clients/requirements.txt: see what pip said there)"
        )
    report.append(f"{distribution} {version} (Python {sys.version.split()[0]})")
    return version


@pytest.fixture(scope="session")
def codex_cli(client_report: list[str]) -> ClientTool:
    """The OpenAI Codex CLI (npm ``@openai/codex``)."""
    return _npm_tool(CODEX, client_report)


@pytest.fixture(scope="session")
def claude_code(client_report: list[str]) -> ClientTool:
    """Claude Code (npm ``@anthropic-ai/claude-code``)."""
    return _npm_tool(CLAUDE_CODE, client_report)


@pytest.fixture(scope="session")
def llm_cli(client_report: list[str]) -> ClientTool:
    """Simon Willison's ``llm`` command (PyPI ``llm``), from this environment."""
    version = _python_tool("llm", client_report)
    return ClientTool("llm", version, (str(Path(sysconfig.get_path("scripts")) / "llm"),))


@pytest.fixture(scope="session")
def langchain_openai(client_report: list[str]) -> ClientTool:
    """langchain-openai's ``ChatOpenAI``, driven by ``drivers/langchain_chat.py``."""
    version = _python_tool("langchain-openai", client_report)
    driver = Path(__file__).parent / "drivers" / "langchain_chat.py"
    return ClientTool("langchain-openai", version, (sys.executable, str(driver)))


@pytest.fixture(scope="session")
def litellm_sdk(client_report: list[str]) -> ClientTool:
    """The litellm SDK's ``completion``, driven by ``drivers/litellm_completion.py``."""
    version = _python_tool("litellm", client_report)
    driver = Path(__file__).parent / "drivers" / "litellm_completion.py"
    return ClientTool("litellm", version, (sys.executable, str(driver)))
