"""The client tools of ``nox -s clients``: their pins, and finding or installing them.

* The npm tools (Codex CLI, Claude Code) are installed on first use at the pinned version
  into ``.nox/clients-npm`` (``TRIOPROXY_CLIENTS_NPM_PREFIX`` overrides it), and reused
  while that version is there; without npm, or when npm cannot install them (no
  registry), the caller's test skips saying why.
* The Python tools are pinned in ``tests/clients/requirements.txt`` and installed by the
  nox session into its own environment; where one is missing, its test skips.

Called from synchronous session fixtures (``conftest.py``): a skip raised inside an
async test loses its reason under pytest-trio.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
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


@dataclass(frozen=True)
class ClientTool:
    """An installed tool: its name, the version in use, and the command that runs it."""

    name: str
    version: str
    argv: tuple[str, ...]


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


def npm_tool(spec: tuple[str, str, str], report: list[str]) -> ClientTool:
    """The npm tool ``spec`` (package, version, command), installed if it is not yet.

    Skips the calling test when npm is missing or cannot install it; fails it when the
    installed command does not print its version. Adds the version to ``report``.
    """
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
    with tempfile.TemporaryDirectory() as home:
        # A home of its own: the Codex CLI sets up helpers in CODEX_HOME (~/.codex) even
        # for --version.
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": home, "CODEX_HOME": home}
        shown = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    if version not in shown.stdout:
        # Installed but not runnable: a defect to see, not a skip.
        pytest.fail(f"{binary} --version printed {shown.stdout!r} {shown.stderr!r}")
    report.append(f"{package} {version}: {shown.stdout.strip()}")
    return ClientTool(package, version, (str(binary),))


def python_tool(distribution: str, report: list[str]) -> str:
    """The installed version of ``distribution`` (added to ``report``); skips when absent."""
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(
            f"{distribution} is not installed in this environment (`nox -s clients` installs "
            "tests/clients/requirements.txt: see what pip said there)"
        )
    report.append(f"{distribution} {version} (Python {sys.version.split()[0]})")
    return version
