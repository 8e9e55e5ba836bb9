"""The inspect tool in a real terminal: a tmux pane on a private tmux server.

Another process's screen offers nothing to wait on but the screen itself, so
``Pane.wait_for`` polls ``capture-pane`` (under the caller's deadline).
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "inspect_activity.py"


class Pane:
    """The tool running in a 100x30 tmux pane, on a private tmux server.

    The tool runs under ``sh``, which prints ``exit status N`` when it ends and then
    keeps the pane open, so the last screen and the status can be read at leisure. The
    shell traps SIGINT (a no-op handler, reset in the child), so Ctrl+C reaches only
    the tool's handling and the shell lives on to report.
    """

    WRAPPER = 'trap : INT; "$@"; echo "exit status $?"; exec sleep 600'

    def __init__(self) -> None:
        self._tmux = ["tmux", "-L", f"trioproxy-test-{uuid.uuid4().hex[:12]}", "-f", "/dev/null"]

    async def tmux(self, *args: str) -> str:
        # Panes inherit the server's environment: drop a size set for the test runner's
        # own terminal (pytest may export COLUMNS/LINES), which rich would prefer.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        result = await trio.run_process(
            [*self._tmux, *args], capture_stdout=True, capture_stderr=True, env=env
        )
        return result.stdout.decode()

    async def start(self, command: list[str]) -> None:
        # The pane gets its final size first, then the tool: it reads the size once.
        await self.tmux("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "sleep 600")
        await self.tmux("respawn-pane", "-k", "-t", "t", "sh", "-c", self.WRAPPER, "sh", *command)

    async def screen(self) -> str:
        return await self.tmux("capture-pane", "-p", "-t", "t")

    async def wait_for(self, predicate: Callable[[str], bool]) -> str:
        """Poll the screen until ``predicate`` holds for it (under the test's deadline)."""
        # The screen of another process: nothing to wait on but the screen itself.
        while not predicate(screen := await self.screen()):  # noqa: ASYNC110
            await trio.sleep(0.05)
        return screen

    async def exit_status(self) -> tuple[int, str]:
        """Wait for the tool to end; its exit status and the screen before the report."""
        screen = await self.wait_for(lambda s: "exit status " in s)
        before, _, after = screen.partition("exit status ")
        return int(after.split()[0]), before

    async def cursor_visible(self) -> bool:
        return (await self.tmux("display-message", "-p", "-t", "t", "#{cursor_flag}")) == "1\n"

    async def stop(self) -> None:
        await self.tmux("kill-server")


async def pane_runner() -> AsyncIterator[Callable[..., Awaitable[Pane]]]:
    """Yield a function that starts the tool in a new tmux pane; stops tmux afterwards.

    Use as a fixture body: ``run_in_pane = pytest.fixture(pane_runner)``.
    """
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    panes: list[Pane] = []

    async def run(*args: str) -> Pane:
        pane = Pane()
        panes.append(pane)
        await pane.start([sys.executable, str(SCRIPT), *args])
        return pane

    yield run
    with trio.CancelScope(shield=True):
        for pane in panes:
            await pane.stop()


def header_values(screen: str) -> str | None:
    """The header panel's values line (counts, totals, time), if it is on the screen."""
    lines = screen.splitlines()
    for i, line in enumerate(lines[:-1]):
        if "Active Connections" in line:
            return lines[i + 1]
    return None
