"""Graceful shutdown of a real ``trioproxy`` process on SIGTERM and SIGINT."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
import trio

from tests.proxyprocess import trioproxy_process
from tests.streams import raw_chunks

CONFIG = """
backends:
  - type: mock
    chunks: 30
    chunk_delay: 0.05
"""
STREAM = {"model": "mock-model", "stream": True, "messages": []}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_lets_running_streams_finish_and_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    async with trioproxy_process(tmp_path, CONFIG, "--shutdown-grace", "20") as proxy:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("POST", proxy.url + "/v1/chat/completions", json=STREAM) as response,
            raw_chunks(response) as chunks,
        ):
            received = await anext(chunks)
            proxy.proc.send_signal(signum)
            async for chunk in chunks:
                received += chunk
        assert received.endswith(b"data: [DONE]\n\n")
        with trio.fail_after(30):
            assert await proxy.proc.wait() == 0
        assert b"Traceback" not in await proxy.read_rest()
        # Nothing listens any more.
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(proxy.url + "/health")


async def test_streams_past_the_grace_period_end_with_an_error_event_and_exit_0(
    tmp_path: Path,
) -> None:
    async with trioproxy_process(tmp_path, CONFIG, "--shutdown-grace", "0.3") as proxy:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("POST", proxy.url + "/v1/chat/completions", json=STREAM) as response,
            raw_chunks(response) as chunks,
        ):
            received = await anext(chunks)
            proxy.proc.send_signal(signal.SIGTERM)
            async for chunk in chunks:
                received += chunk
        assert b"data: [DONE]" not in received
        last = received.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        assert last.startswith(b"data: ")
        assert json.loads(last[len(b"data: ") :])["error"]["code"] == "shutting_down"
        with trio.fail_after(30):
            assert await proxy.proc.wait() == 0
        assert b"shutdown grace over: ending 1 request(s)" in await proxy.read_rest()
