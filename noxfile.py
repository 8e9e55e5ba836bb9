"""Sessions: ``nox`` runs tests, lint and typecheck; ``nox -s bench`` runs the benchmark."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The pytest suite (trio mode), against real sockets on loopback."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: style, imports, and the ASYNC rules."""
    session.install("ruff")
    paths = ("trioproxy", "tests", "scripts", "bench", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict on the package."""
    session.install("-e", ".", "mypy", "types-PyYAML")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark of issue 6 (not a default session): writes docs/performance.md.

    Needs nginx and wrk (``apt-get install -y nginx-light wrk``; it says so and exits 2
    without them). ``nox -s bench -- --quick`` for a short run; see docs/performance.md.
    """
    session.install("-e", ".")
    session.run("python", "bench/run.py", *session.posargs)
