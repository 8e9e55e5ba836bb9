"""Sessions: ``nox`` runs tests, lint and typecheck; ``nox -s bench`` runs the benchmark;
``nox -s clients`` runs real third-party client tools through the proxy.

Every session runs on Python 3.11, the version the project declares (``requires-python``,
ruff's ``target-version``, mypy's ``python_version``): a machine that has it runs the
same checks as any other, whatever its own ``python3`` is. A machine without it fails
loudly rather than skipping the sessions and reporting success, which is what nox does
for a missing interpreter unless ``error_on_missing_interpreters`` is set.

The linters are pinned, so a new release changes no verdict until it is adopted here on
purpose (bump with the versions in the development venv).
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
# Stubs change what mypy reports just as mypy does.
STUBS = ("types-PyYAML==6.0.12.20261122",)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The pytest suite (trio mode), against real sockets on loopback."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: style, imports, and the ASYNC rules."""
    session.install(RUFF)
    paths = ("trioproxy", "tests", "scripts", "bench", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy, strict, on the package, the tests and the bench (pyproject's ``files``)."""
    session.install("-e", ".[test]", MYPY, *STUBS)
    session.run("mypy", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark of issue 6 (not a default session): writes docs/performance.md.

    Needs nginx and wrk (``apt-get install -y nginx-light wrk``; it says so and exits 2
    without them). ``nox -s bench -- --quick`` for a short run; see docs/performance.md.
    """
    session.install("-e", ".")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(python=PYTHON)
def clients(session: nox.Session) -> None:
    """Real client tools through a real trioproxy (not a default session: needs Node.js and
    downloads): the Codex CLI, Claude Code, ``llm``, langchain-openai and litellm.

    The Python tools (pinned in tests/clients/requirements.txt) go into this session's
    environment; the npm tools (pinned in tests/clients/tools.py) into
    ``.nox/clients-npm`` on first use, reused while their version is there. A tool that
    cannot be installed skips, saying why. ``nox -s clients -- -k codex`` runs one.
    """
    session.install("-e", ".[test]")
    # A tool pip cannot install (no registry, a yanked pin) skips its test, saying so; the
    # rest still run. One pin at a time: pip resolves a whole file before installing any
    # of it, so one bad pin would leave every tool out.
    for line in Path("tests/clients/requirements.txt").read_text().splitlines():
        pin = line.split("#", 1)[0].strip()
        if pin:
            session.run("python", "-m", "pip", "install", pin, success_codes=[0, 1])
    session.run("pytest", "tests/clients", *session.posargs)
