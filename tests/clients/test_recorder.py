"""The recording relay the client tests put in front of the proxy: bytes through unchanged,
every request of a keep-alive connection recorded, a chunked body reassembled."""

from __future__ import annotations

import json

import httpx
import trio

from tests.clients.recorder import RecordingRelay
from tests.fake_upstream import FakeUpstream
from tests.streams import ChunkedUpload


async def test_the_relay_passes_requests_through_and_records_each(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    relay = RecordingRelay(int(fake.base_url.rsplit(":", 1)[1]))
    url = await nursery.start(relay.serve)
    payload = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
    piece = b'{"model": "gpt-fake", "messages": []}'
    async with httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/v1/chat/completions?x=1", json=payload, headers={"a": "b"})
        request = client.build_request(
            "POST", "/v1/chat/completions", headers={"transfer-encoding": "chunked"}
        )
        request.stream = ChunkedUpload(1, piece)
        second = await client.send(request)
    relay.stop()

    assert first.status_code == second.status_code == 200
    assert first.json()["choices"][0]["message"]["role"] == "assistant"
    # Relayed unchanged: the fake's answers arrived whole, both on one connection to it.
    assert len(first.content) + len(second.content) == fake.bytes_sent
    assert [r.connection for r in fake.requests] == [0, 0]

    sent = relay.requests
    assert [(r.method, r.target) for r in sent] == [
        ("POST", "/v1/chat/completions?x=1"),
        ("POST", "/v1/chat/completions"),
    ]
    assert sent[0].header("a") == "b" and sent[0].json() == payload
    assert sent[1].body == piece and sent[1].header("transfer-encoding") == "chunked"
    assert [r.body for r in sent] == [r.body for r in fake.requests]
    summary = sent[0].summary()
    assert summary.startswith("POST /v1/chat/completions?x=1 | headers: host, ")
    assert summary.endswith("| body: model, messages")
    assert json.dumps(payload) not in summary
