"""Graceful shutdown of a real ``trioproxy`` process on SIGTERM and SIGINT."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

CONFIG = """
backends:
  - type: mock
    chunks: 30
    chunk_delay: 0.05
"""


async def start_process(
    tmp_path: Path, *args: str
) -> tuple[trio.Process, str, trio.abc.ReceiveStream]:
    config = tmp_path / "trioproxy.yaml"
    config.write_text(CONFIG)
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trioproxy", "--port", "0", "-c", str(config), *args],
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    log = b""
    with trio.fail_after(30):
        while (match := re.search(rb"trioproxy on (http://\S+);", log)) is None:
            data = await proc.stderr.receive_some()
            assert data, log.decode()
            log += data
    return proc, match.group(1).decode().rstrip(";"), proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_lets_running_streams_finish_and_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    proc, url, stderr = await start_process(tmp_path, "--shutdown-grace", "20")
    try:
        body = {"model": "mock-model", "stream": True, "messages": []}
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("POST", url + "/v1/chat/completions", json=body) as response,
        ):
            chunks = response.aiter_raw()
            received = await anext(chunks)
            proc.send_signal(signum)
            async for chunk in chunks:
                received += chunk
        assert received.endswith(b"data: [DONE]\n\n")
        with trio.fail_after(30):
            code = await proc.wait()
        assert code == 0
        rest = b""
        while data := await stderr.receive_some():
            rest += data
        assert b"Traceback" not in rest
        # Nothing listens any more.
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(url + "/health")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_streams_past_the_grace_period_end_with_an_error_event_and_exit_0(
    tmp_path: Path,
) -> None:
    proc, url, _ = await start_process(tmp_path, "--shutdown-grace", "0.3")
    try:
        body = {"model": "mock-model", "stream": True, "messages": []}
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("POST", url + "/v1/chat/completions", json=body) as response,
        ):
            chunks = response.aiter_raw()
            received = await anext(chunks)
            proc.send_signal(signal.SIGTERM)
            async for chunk in chunks:
                received += chunk
        assert b"data: [DONE]" not in received
        last = received.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        assert last.startswith(b"data: ")
        assert json.loads(last[len(b"data: ") :])["error"]["code"] == "shutting_down"
        with trio.fail_after(30):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
