"""Driving a real client tool against a real trioproxy process, and what the proxy saw.

``async with client_proxy(nursery, tmp_path, config) as proxy:`` runs ``python -m
trioproxy -c <config> --port 0 --enable-activity-tracking`` with a :class:`RecordingRelay`
in front of it; the tool is pointed at ``proxy.url`` (the relay). ``await
proxy.run_tool(argv, ...)`` runs the tool to its end within a timeout while a task polls
``/v1/diagnostics`` (on the proxy itself) and keeps every connection it saw, so a test
can assert what was in flight while the tool's request was: the session id, the
``endpoint``, whether it was translated. Every process is ended by its own PID when the
block ends (a tool with the process group it leads, whose id is that PID).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests.clients.recorder import RecordingRelay, SentRequest
from tests.proxyprocess import ProxyProcess, trioproxy_process

# Seconds between diagnostics polls while a tool runs: a cadence, not a synchronisation;
# the mock's streams (MOCK_CONFIG) stay in flight for seconds.
POLL_INTERVAL = 0.05
# The embedded mock answering slowly enough to be seen in flight: 12 pieces 0.25 s apart.
MOCK_CONFIG = "backends:\n  - type: mock\n    chunks: 12\n    chunk_delay: 0.25\n"
OUTPUT_SHOWN = 4000


@dataclass(frozen=True)
class ToolRun:
    """How a tool ended and what it printed."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        """Its command, exit code and (the ends of) its output, for a failure message."""
        return (
            f"$ {' '.join(self.argv)}\nexit code {self.returncode}\n"
            f"--- stdout ---\n{self.stdout[-OUTPUT_SHOWN:]}\n"
            f"--- stderr ---\n{self.stderr[-OUTPUT_SHOWN:]}"
        )


@dataclass
class ClientProxy:
    """A trioproxy process with a recording relay in front; see the module docstring."""

    process: ProxyProcess
    url: str
    relay: RecordingRelay
    saved_to: Path
    seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sent(self) -> list[SentRequest]:
        """The requests the tool sent, in order."""
        return self.relay.requests

    async def diagnostics(self) -> dict[str, Any]:
        """``GET /v1/diagnostics`` on the proxy itself (not through the relay)."""
        async with httpx.AsyncClient() as client:
            response = await client.get(self.process.url + "/v1/diagnostics")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def run_tool(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        limit: float,
    ) -> ToolRun:
        """Run ``argv`` to its end while the diagnostics are polled into :attr:`seen`.

        After ``limit`` seconds the tool is killed and the test fails, showing what the
        tool had printed (which a ``fail_after`` around the call would lose).
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._poll)
            run = await _run(argv, env=env, cwd=cwd, limit=limit)
            nursery.cancel_scope.cancel()
        return run

    async def _poll(self) -> None:
        async with httpx.AsyncClient(base_url=self.process.url) as client:
            while True:
                response = await client.get("/v1/diagnostics")
                for entry in response.json()["instances"]:
                    for connection in entry["activity"]["connections"]:
                        self.seen.append({"instance": entry["name"], **connection})
                await trio.sleep(POLL_INTERVAL)

    def in_flight(self, **expected: Any) -> dict[str, Any]:
        """The first polled connection whose fields have the ``expected`` values."""
        for connection in self.seen:
            if all(connection.get(key) == value for key, value in expected.items()):
                return connection
        shown = sorted({_brief(c) for c in self.seen}) or ["nothing"]
        pytest.fail(f"no connection with {expected} was seen in flight; seen: {shown}")

    def failure(self, run: ToolRun) -> str:
        """What a failure message needs: the tool's output, what it sent (each body also
        saved to a file in :attr:`saved_to`), and the proxy's log."""
        self.saved_to.mkdir(parents=True, exist_ok=True)
        for number, request in enumerate(self.sent):
            (self.saved_to / f"{number:02d}.body").write_bytes(request.body)
        sent = "\n".join(request.summary() for request in self.sent) or "nothing"
        log = self.process.log.decode(errors="replace")[-OUTPUT_SHOWN:]
        return (
            f"{run.describe()}\n--- sent (bodies in {self.saved_to}) ---\n{sent}\n"
            f"--- proxy log ---\n{log}"
        )


def _brief(connection: Mapping[str, Any]) -> str:
    keys = ("instance", "session_id", "endpoint", "translated", "backend_api")
    return ", ".join(f"{key}={connection.get(key)}" for key in keys)


@asynccontextmanager
async def client_proxy(
    nursery: trio.Nursery,
    tmp_path: Path,
    config: str,
    *,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[ClientProxy]:
    """A trioproxy process on ``config`` (YAML) with activity tracking, behind a relay.

    The nursery is the caller's (the relay and the proxy's log reader run in it): one
    hidden in here would wrap the block's exceptions in groups.
    """
    proxy_env = {**os.environ, **(env or {})}
    async with trioproxy_process(
        tmp_path, config, "--enable-activity-tracking", env=proxy_env
    ) as process:
        # The proxy logs on stderr (a pipe): read it as it comes, so it never blocks.
        nursery.start_soon(process.read_rest)
        port = urlsplit(process.url).port
        assert port is not None
        relay = RecordingRelay(port)
        url = await nursery.start(relay.serve)
        try:
            yield ClientProxy(process, url, relay, tmp_path / "sent")
        finally:
            relay.stop()


async def _drain(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    while data := await stream.receive_some():
        into += data


async def _run(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, limit: float) -> ToolRun:
    stdout, stderr = bytearray(), bytearray()
    process = await trio.lowlevel.open_process(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        # Its own process group, whose id is its PID: what it starts itself (the Codex
        # CLI's node launcher starts the native binary) ends with it.
        start_new_session=True,
    )
    try:
        with trio.move_on_after(limit) as deadline:
            async with trio.open_nursery() as nursery:
                assert process.stdout is not None and process.stderr is not None
                nursery.start_soon(_drain, process.stdout, stdout)
                nursery.start_soon(_drain, process.stderr, stderr)
                await process.wait()
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await process.wait()
    returncode = process.returncode
    assert returncode is not None  # waited for above, or killed and waited for
    run = ToolRun(
        tuple(argv),
        returncode,
        stdout.decode(errors="replace"),
        stderr.decode(errors="replace"),
    )
    if deadline.cancelled_caught:
        pytest.fail(f"{argv[0]} did not finish within {limit} s\n{run.describe()}")
    return run


def tool_env(home: Path, **variables: str) -> dict[str, str]:
    """A tool's whole environment: a fresh HOME, PATH, and ``variables``, nothing else.

    Nothing of the caller's environment leaks in (no real API key, no proxy settings), and
    nothing the tool writes lands outside ``home``.
    """
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **variables,
    }


def assert_lifetime_clean(instance: Mapping[str, Any], *, requests: int) -> Mapping[str, int]:
    """The instance's lifetime counters: ``requests`` requests, all completed, none lost."""
    lifetime: Mapping[str, int] = instance["activity"]["lifetime"]
    assert lifetime["requests"] == requests, lifetime
    assert lifetime["completed"] == requests, lifetime
    assert (lifetime["errors"], lifetime["cancelled"], lifetime["stale"]) == (0, 0, 0), lifetime
    assert lifetime["bytes_tx"] > 0, lifetime
    return lifetime


def instance_of(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The entry of instance ``name`` in a diagnostics document."""
    entry: Mapping[str, Any] = next(i for i in document["instances"] if i["name"] == name)
    return entry
