"""A real ``trioproxy`` process for tests: started on port 0, ended by its own PID."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

STARTUP_TIMEOUT = 30


@dataclass
class ProxyProcess:
    """The process, its base URL, and what it has logged on stderr so far."""

    proc: trio.Process
    url: str
    log: bytes

    async def read_rest(self) -> bytes:
        """Everything left on stderr, up to the process's exit."""
        assert self.proc.stderr is not None
        while data := await self.proc.stderr.receive_some():
            self.log += data
        return self.log


@asynccontextmanager
async def trioproxy_process(
    tmp_path: Path,
    config: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    max_open_files: int | None = None,
) -> AsyncIterator[ProxyProcess]:
    """Run ``trioproxy -c <config> --port 0 ARGS`` until the block ends.

    Returns once it logs its listening address. Killed (by PID) if still running at the
    end of the block. ``max_open_files`` limits its descriptors (``RLIMIT_NOFILE``).
    """
    path = tmp_path / "trioproxy.yaml"
    path.write_text(config)

    def limit_files() -> None:
        if max_open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))

    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trioproxy", "--port", "0", "-c", str(path), *args],
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        preexec_fn=limit_files if max_open_files is not None else None,
    )
    try:
        assert proc.stderr is not None
        log = b""
        with trio.fail_after(STARTUP_TIMEOUT):
            while (match := re.search(rb"trioproxy on (http://\S+);", log)) is None:
                data = await proc.stderr.receive_some()
                assert data, log.decode()
                log += data
        yield ProxyProcess(proc, match.group(1).decode(), log)
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
