"""Hundreds of concurrent streams through one proxy: every byte, in order, and exact books.

The proxy (activity tracking on) relays 300 streams at once to the fake upstream, half
OpenAI, half Anthropic, each with its own model name and session id. The test runs under
a frozen ``MockClock``: the fake sends each stream's opening events at once and then
sleeps before every content piece, so with time standing still all 300 streams are held
open, mid-body, for as long as the test looks at the diagnostics. Turning on autojump
then lets them all run to their end. (The thousands belong to the benchmark.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
import trio.testing

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyutil import anthropic_spec, instance, openai_spec, running_proxy
from tests.streams import raw_chunks

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
STREAMS = 300
BATCH = 50  # connections the clients open at once, so the test ramps up in steps
SCENARIO = Scenario(chunks=5, delay=1.0)


@dataclass
class Stream:
    number: int
    path: str
    model: str
    session: str
    status: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    received: bytearray = field(default_factory=bytearray)

    @property
    def body(self) -> dict[str, Any]:
        content = f"stream {self.number}"
        return {
            "model": self.model,
            "stream": True,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": content}],
        }

    def upstream_index(self) -> int:
        """Which of the fake's recorded requests this stream is, from its request id."""
        name = "x-request-id" if self.path == CHAT else "request-id"
        return int(self.headers[name].removeprefix("req_fake-"))


async def test_hundreds_of_concurrent_streams_arrive_whole_and_the_books_balance(
    nursery: trio.Nursery, fake: FakeUpstream, mock_clock: trio.testing.MockClock
) -> None:
    fake.default = SCENARIO
    async with running_proxy(
        nursery,
        enable_activity_tracking=True,
        backends=(openai_spec(fake.base_url), anthropic_spec(fake.base_url)),
    ) as proxy:
        streams = [
            Stream(n, CHAT, f"gpt-load-{n}", f"load-session-{n}")
            if n % 2 == 0
            else Stream(n, MESSAGES, f"claude-load-{n}", f"load-session-{n}")
            for n in range(STREAMS)
        ]
        first_events = trio.Semaphore(0)
        release = trio.Event()

        async def run(client: httpx.AsyncClient, stream: Stream) -> None:
            async with client.stream(
                "POST",
                proxy.url + stream.path,
                json=stream.body,
                headers={"x-session-id": stream.session},
            ) as response:
                stream.status = response.status_code
                stream.headers = response.headers
                async with raw_chunks(response) as chunks:
                    stream.received += await anext(chunks)
                    first_events.release()
                    await release.wait()
                    async for chunk in chunks:
                        stream.received += chunk

        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            async with trio.open_nursery() as clients:
                for start in range(0, STREAMS, BATCH):
                    batch = streams[start : start + BATCH]
                    for stream in batch:
                        clients.start_soon(run, client, stream)
                    for _ in batch:
                        await first_events.acquire()

                # All 300 are mid-stream, held by the fake's first content delay (time is frozen).
                assert fake.in_flight == STREAMS
                doc = await proxy.diagnostics()
                live = doc["global_activity"]
                assert live["total_active_connections"] == STREAMS
                for name, path in (("openai.1", CHAT), ("anthropic.1", MESSAGES)):
                    activity = instance(doc, name)["activity"]
                    assert activity["active_connections"] == STREAMS // 2
                    connections = activity["connections"]
                    assert {c["session_id"] for c in connections} == {
                        s.session for s in streams if s.path == path
                    }
                    assert {c["model"] for c in connections} == {
                        s.model for s in streams if s.path == path
                    }
                    for conn in connections:
                        assert conn["connection_type"] == "streaming"
                        assert conn["requests"] == 1
                        assert 0 < conn["bytes_tx"] <= conn["bytes_rx"]
                assert 0 < live["total_bytes_tx"] <= live["total_bytes_rx"] <= fake.bytes_sent
                # Lifetime counts requests as they start and bytes as they flow.
                assert live["lifetime"]["requests"] == STREAMS
                assert live["lifetime"]["bytes_rx"] == live["total_bytes_rx"]
                assert live["lifetime"]["bytes_tx"] == live["total_bytes_tx"]

                release.set()
                mock_clock.autojump_threshold = 0

            # Every client got exactly the bytes its own upstream request was answered with.
            indexes = set()
            for stream in streams:
                assert stream.status == 200, stream.received[:300]
                assert stream.headers["x-session-id"] == stream.session
                index = stream.upstream_index()
                indexes.add(index)
                assert fake.requests[index].json["model"] == stream.model
                assert fake.requests[index].json["messages"] == stream.body["messages"]
                assert "x-session-id" not in fake.requests[index].headers
                expected = fake.stream_body(index, SCENARIO)
                assert len(expected) == fake.body_bytes_for(index)
                assert bytes(stream.received) == expected, stream.number
                final = b"data: [DONE]\n\n" if stream.path == CHAT else b"event: message_stop\n"
                assert final in stream.received[-60:]
            assert len(indexes) == STREAMS == len(fake.requests)

            # Every request released its record; the lifetime counters are exact.
            await trio.testing.wait_all_tasks_blocked()
            doc = await proxy.diagnostics()
        activity = doc["global_activity"]
        assert activity["total_active_connections"] == 0
        assert activity["total_bytes_rx"] == activity["total_bytes_tx"] == 0
        assert all(i["activity"]["connections"] == [] for i in doc["instances"])
        received = sum(len(s.received) for s in streams)
        assert fake.bytes_sent == received  # the proxy relays bodies unchanged
        assert activity["lifetime"] == {
            "requests": STREAMS,
            "bytes_rx": fake.bytes_sent,
            "bytes_tx": received,
            "completed": STREAMS,
            "errors": 0,
            "cancelled": 0,
            "stale": 0,
        }
        for name in ("openai.1", "anthropic.1"):
            assert instance(doc, name)["activity"]["lifetime"]["requests"] == STREAMS // 2
