"""Faults on the wire, each on real sockets: what an upstream or a client sends that HTTP
(or JSON) does not allow, and what the proxy makes of it.

The upstream here writes raw bytes (``tests/h11server.py``'s ``send_raw``), so it can send
what no well-behaved server would: both framing headers, a 100 KB head, a stream cut in the
middle of an event. Clients are raw sockets, httpx or the real SDKs.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anthropic
import h11
import httpx
import openai
import pytest
import trio

from tests.fake_upstream import FakeUpstream
from tests.h11server import H11Server, ServerConn
from tests.proxyutil import (
    CLIENT_KEY,
    RunningProxy,
    anthropic_spec,
    mock_spec,
    openai_spec,
    running_proxy,
)

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
Reply = Callable[[ServerConn, h11.Request], Awaitable[None]]


@asynccontextmanager
async def raw_upstream(nursery: trio.Nursery, reply: Reply) -> AsyncIterator[str]:
    """An upstream whose every answer is ``reply``; yields its root URL."""

    async def handle(conn: ServerConn, request: h11.Request, body: bytes) -> None:
        await reply(conn, request)
        await conn.close()

    server = H11Server(handle)
    port = await nursery.start(server.serve)
    yield f"http://127.0.0.1:{port}"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def post(proxy: RunningProxy, path: str, body: dict[str, object]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(proxy.url + path, json=body)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert "Error in ASGI Framework" not in caplog.text


# --- the upstream's framing ------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_with_content_length_and_chunked_is_a_502_before_the_body(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    payload = b'{"id": "x", "object": "chat.completion", "choices": []}'

    async def reply(conn: ServerConn, request: h11.Request) -> None:
        await conn.send_raw(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: 10\r\ntransfer-encoding: chunked\r\n\r\n"
            + chunk(payload)
            + b"0\r\n\r\n"
        )

    async with (
        raw_upstream(nursery, reply) as base,
        running_proxy(nursery, backends=(openai_spec(base),)) as proxy,
    ):
        response = await post(proxy, CHAT, {"model": "gpt-fake", "stream": stream, "messages": []})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_protocol_error"
    assert "both Transfer-Encoding and Content-Length" in error["message"]
    no_tracebacks(caplog)


async def test_the_upstreams_framing_and_hop_by_hop_headers_are_never_relayed(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    payload = b'{"id": "x", "object": "chat.completion", "choices": []}'

    async def reply(conn: ServerConn, request: h11.Request) -> None:
        await conn.send_raw(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n"
            b"trailer: x-checksum\r\nx-upstream: kept\r\n\r\n%s" % (len(payload), payload)
        )

    async with (
        raw_upstream(nursery, reply) as base,
        running_proxy(nursery, backends=(openai_spec(base),)) as proxy,
    ):
        host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
        body = b'{"model": "gpt-fake", "messages": []}'
        async with await trio.open_tcp_stream(host, int(port)) as client:
            await client.send_all(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\nconnection: close\r\n"
                b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            answer = b""
            while data := await client.receive_some():
                answer += data
    head = answer.partition(b"\r\n\r\n")[0]
    names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:]]
    assert b"x-upstream" in names
    assert b"keep-alive" not in names and b"trailer" not in names
    # One framing header, our server's own, and the body it frames is the upstream's.
    assert names.count(b"content-length") + names.count(b"transfer-encoding") == 1
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(answer)
    relayed = b""
    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
        if isinstance(event, h11.Data):
            relayed += event.data
    assert relayed == payload
    no_tracebacks(caplog)


async def test_a_translated_answer_is_framed_by_its_own_length_not_the_upstreams(
    nursery: trio.Nursery, fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    # The fake answers with a Content-Length; translated, the body changes length, so a
    # relayed upstream Content-Length would cut it (or break the server's framing).
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        response = await post(
            proxy, MESSAGES, {"model": "openai.1:gpt-fake", "max_tokens": 5, "messages": []}
        )
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "message"
    no_tracebacks(caplog)


async def test_a_translated_answer_encoded_though_identity_was_asked_is_a_502_saying_so(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    answer = gzip.compress(b'{"id": "x", "object": "chat.completion", "choices": []}')

    async def compressed(conn: ServerConn, request: h11.Request) -> None:
        await conn.send_raw(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(answer), answer)
        )

    async with (
        raw_upstream(nursery, compressed) as url,
        running_proxy(nursery, backends=(openai_spec(url),)) as proxy,
    ):
        response = await post(
            proxy, MESSAGES, {"model": "openai.1:gpt-fake", "max_tokens": 5, "messages": []}
        )
    assert response.status_code == 502
    assert response.json()["type"] == "error"
    assert "encoded its answer (gzip) though asked for identity" in response.text
    no_tracebacks(caplog)


@pytest.mark.parametrize(("size", "writes"), [(67, "one write"), (100, "1 KB writes")])
async def test_an_upstream_head_over_64_kib_is_a_502(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, size: int, writes: str
) -> None:
    fillers = [b"x-filler-%03d: %s\r\n" % (i, b"f" * 1000) for i in range(size)]
    start = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    end = b"content-length: 2\r\n\r\n{}"

    async def reply(conn: ServerConn, request: h11.Request) -> None:
        # 67 KB in one write: the proxy reads it in two receives of at most 64 KiB, so h11
        # (whose limit bounds a head still incomplete after a receive) takes it whole and
        # only the proxy's own check of the head sees it. 100 KB in small writes: h11's
        # limit on the incomplete head does.
        if writes == "one write":
            await conn.send_raw(start + b"".join(fillers) + end)
        else:
            for piece in [start, *fillers, end]:
                await conn.send_raw(piece)

    async with (
        raw_upstream(nursery, reply) as base,
        running_proxy(nursery, backends=(openai_spec(base),)) as proxy,
    ):
        response = await post(proxy, CHAT, {"model": "gpt-fake", "messages": []})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_protocol_error"
    no_tracebacks(caplog)


# --- a stream cut in the middle of an event --------------------------------------------

OPENAI_EVENTS = [
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-fake",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"%d"},'
    b'"finish_reason":null}]}\n\n' % i
    for i in range(3)
]
ANTHROPIC_EVENTS = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message",'
    b'"role":"assistant","content":[],"model":"claude-fake","stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":0}}}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hello"}}\n\n',
]


def cut_stream(events: list[bytes], partial: int) -> Reply:
    """Two whole events, ``partial`` bytes of the third, then a close mid-body."""

    async def reply(conn: ServerConn, request: h11.Request) -> None:
        await conn.send_raw(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for event in events[:2]:
            await conn.send_raw(chunk(event))
        await conn.send_raw(chunk(events[2][:partial]))

    return reply


@pytest.mark.parametrize("partial", [2, 40])
async def test_a_cut_mid_event_makes_the_openai_sdk_raise_its_api_error(
    nursery: trio.Nursery, partial: int
) -> None:
    async with (
        raw_upstream(nursery, cut_stream(OPENAI_EVENTS, partial)) as base,
        running_proxy(nursery, backends=(openai_spec(base),)) as proxy,
        openai.AsyncOpenAI(base_url=proxy.openai_url, api_key=CLIENT_KEY, max_retries=0) as sdk,
    ):
        stream = await sdk.chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        pieces = []
        with pytest.raises(openai.APIError) as info:
            async for piece in stream:
                pieces.append(piece.choices[0].delta.content)
    assert pieces == ["0", "1"]
    assert "connection lost mid-response" in str(info.value) or "broke HTTP" in str(info.value)


# The anthropic SDK raises an error event from inside its own SSE loop, leaving that loop's
# generators (AsyncStream._iter_events and the SSEDecoder's beneath it) suspended; the test
# has no handle on them.
@pytest.mark.filterwarnings("ignore:Async generator 'anthropic\\._streaming\\.:ResourceWarning")
@pytest.mark.parametrize("partial", [2, 40])
async def test_a_cut_mid_event_makes_the_anthropic_sdk_raise_its_api_error(
    nursery: trio.Nursery, partial: int
) -> None:
    async with (
        raw_upstream(nursery, cut_stream(ANTHROPIC_EVENTS, partial)) as base,
        running_proxy(nursery, backends=(anthropic_spec(base),)) as proxy,
        anthropic.AsyncAnthropic(base_url=proxy.url, api_key=CLIENT_KEY, max_retries=0) as sdk,
    ):
        texts = []
        with pytest.raises(anthropic.APIStatusError) as info:
            async with sdk.messages.stream(
                model="claude-fake", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                async for text in stream.text_stream:
                    texts.append(text)
    # The two whole events came through (neither carries text); the third never did.
    assert texts == []
    assert "connection lost mid-response" in str(info.value) or "broke HTTP" in str(info.value)


# --- what clients send ------------------------------------------------------------------


async def raw_exchange(proxy: RunningProxy, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything the proxy answers, up to its close."""
    host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
    answer = b""
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(data)
        with trio.fail_after(30):
            while chunk_ := await stream.receive_some():
                answer += chunk_
    return answer


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/ws", "/"])
async def test_a_websocket_upgrade_is_a_400_without_a_traceback(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, path: str, tmp_path: Path
) -> None:
    log_file = tmp_path / "access.log"
    async with running_proxy(
        nursery, backends=(mock_spec(),), access_log="json", access_log_file=str(log_file)
    ) as proxy:
        answer = await raw_exchange(
            proxy,
            f"GET {path} HTTP/1.1\r\nhost: proxy\r\nupgrade: websocket\r\n"
            "connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "sec-websocket-version: 13\r\n\r\n".encode(),
        )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["error"]["code"] == "websocket_not_supported"
    no_tracebacks(caplog)
    # Its access line, as every refusal has (it had none).
    (line,) = [json.loads(text) for text in log_file.read_text().splitlines()]
    assert (line["method"], line["path"], line["status"], line["outcome"]) == (
        "GET",
        path,
        400,
        "refused",
    )
    assert line["bytes_tx"] == len(body)


async def test_absolute_form_targets_are_routed_by_their_path(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        body = b'{"model": "gpt-fake", "messages": []}'
        chat = await raw_exchange(
            proxy,
            b"POST http://proxy.example/v1/chat/completions HTTP/1.1\r\nhost: proxy.example\r\n"
            b"connection: close\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body),
        )
        models = await raw_exchange(
            proxy,
            b"GET http://proxy.example/v1/models HTTP/1.1\r\nhost: proxy.example\r\n"
            b"connection: close\r\n\r\n",
        )
    assert chat.startswith(b"HTTP/1.1 200 ")
    assert fake.requests[-1].path == "/v1/chat/completions"
    assert models.startswith(b"HTTP/1.1 200 ")
    assert b'"gpt-fake"' in models


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "gpt-fake", "messages": [], "temperature": NaN}',
        b'{"model": "gpt-fake", "messages": [], "temperature": Infinity}',
        b'{"model": "gpt-fake", "messages": [], "top_p": -Infinity}',
        '{"model": "gpt-fake", "messages": []}'.encode("utf-16"),
        '{"model": "gpt-fake", "messages": []}'.encode("utf-16-le"),
        '{"model": "gpt-fake", "messages": []}'.encode("utf-32"),
    ],
    ids=["NaN", "Infinity", "-Infinity", "utf-16", "utf-16-le", "utf-32"],
)
@pytest.mark.parametrize("path", [CHAT, MESSAGES])
async def test_json_that_is_not_rfc_8259_in_utf_8_is_a_400_and_never_forwarded(
    nursery: trio.Nursery, fake: FakeUpstream, body: bytes, path: str
) -> None:
    async with (
        running_proxy(
            nursery, backends=(openai_spec(fake.base_url), anthropic_spec(fake.base_url))
        ) as proxy,
        httpx.AsyncClient() as client,
    ):
        response = await client.post(
            proxy.url + path, content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    if path == MESSAGES:
        assert response.json()["error"]["type"] == "invalid_request_error"
    else:
        assert response.json()["error"]["code"] == "bad_request"
    assert fake.requests == []


# --- HTTP/2 is not spoken ----------------------------------------------------------------


async def test_the_http2_preface_is_a_505_and_the_proxy_serves_on(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        answer = await raw_exchange(proxy, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0" * 4096)
        # Refused before hypercorn's HTTP/2 stack sees it: that stack ended the whole
        # process (a KeyError) on a large request body it had answered early.
        assert answer.startswith(b"HTTP/1.1 505 ")
        body = answer.partition(b"\r\n\r\n")[2]
        assert json.loads(body)["error"]["code"] == "http_version_not_supported"
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.get(proxy.url + "/v1/models")).status_code == 200
    no_tracebacks(caplog)


async def test_an_upgrade_to_h2c_is_ignored_and_served_in_http_1_1(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        answer = await raw_exchange(
            proxy,
            b"GET /v1/models HTTP/1.1\r\nhost: proxy\r\nconnection: Upgrade, HTTP2-Settings\r\n"
            b"upgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
            b"connection: close\r\n\r\n",
        )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["object"] == "list"
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nhost: p\r\nx-big: " + b"x" * 70_000 + b"\r\n\r\n", 431,
         "headers_too_large"),
    ],
)  # fmt: skip
async def test_a_request_that_is_not_http_gets_a_json_error_and_the_proxy_serves_on(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, request_bytes: bytes, status: int,
    code: str,
) -> None:  # fmt: skip
    # hypercorn's own answer to these had an empty body.
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        answer = await raw_exchange(proxy, request_bytes)
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.get(proxy.url + "/v1/models")).status_code == 200
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert json.loads(body)["error"]["code"] == code
    no_tracebacks(caplog)
