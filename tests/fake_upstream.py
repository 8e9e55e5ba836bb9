"""A fake upstream LLM server for the test suite: real sockets, scripted misbehaviour.

``FakeUpstream`` is a handler on the suite's small HTTP/1.1 server (``tests/h11server.py``,
raw Trio sockets and h11, the sans-IO protocol library), so it can break HTTP on purpose at
the byte level: cut a chunked body before its terminating chunk, stall after the headers,
close without answering. It listens on 127.0.0.1 on a port the OS assigns, serves several
requests on one connection in sequence (keep-alive), and records everything it sees.

It speaks what a backend of the proxy speaks:

* ``POST /v1/chat/completions`` -- OpenAI Chat Completions: a ``chat.completion`` JSON
  answer, or with ``"stream": true`` an SSE stream of ``chat.completion.chunk`` objects
  ending in ``data: [DONE]`` (plus a usage chunk when ``stream_options.include_usage``);
* ``POST /v1/messages`` -- Anthropic Messages: a ``message`` JSON answer, or the real event
  sequence ``message_start``, ``content_block_start``, ``content_block_delta`` x N,
  ``content_block_stop``, ``message_delta``, ``message_stop``;
* ``GET /v1/models`` -- OpenAI's model list, or Anthropic's shape when the request carries
  an ``anthropic-version`` header.

Errors use each API's own body shape, so the real ``openai`` and ``anthropic`` SDKs accept
every answer. Each POST to the two chat routes consumes the next scripted ``Scenario``;
with none queued, ``FakeUpstream.default`` (a normal answer) applies.

A test starts it in its own nursery and points the proxy at it::

    fake = FakeUpstream()
    base = await nursery.start(fake.serve)         # "http://127.0.0.1:PORT", listening
    # OpenAI-style backends: base_url = base + "/v1"; Anthropic-style: base_url = base
    fake.script(Scenario(stall_after_headers=True))
    ...                                            # drive the proxy
    await fake.wait_in_flight(1)                   # the proxy's request reached us
    ...                                            # the client hangs up
    await fake.wait_closed(0)                      # and the proxy closed its upstream
    assert fake.requests[0].headers["authorization"] == "Bearer backend-key"

Counters are exact and updated before the bytes they describe reach the socket, so
whatever a client has observed is already counted: ``bytes_sent`` and
``body_bytes_for(i)`` count response payload bytes (after chunked framing is removed,
before content decoding), ``in_flight`` drops before a response's last byte is written.
Waiting is event based (``wait_in_flight``, ``wait_closed``, ``wait_requests``), and all
delays use ``trio.sleep``, so ``trio.testing.MockClock`` drives them. Answers are
deterministic: ``stream_body(i, scenario)`` is the whole stream answer to request ``i``.
"""

from __future__ import annotations

import enum
import gzip
import json
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType
from typing import Any

import h11
import trio

from tests.h11server import RECEIVE_SIZE, H11Server, ServerConn
from trioproxy.backends import mock_replies as replies

__all__ = ["DEFAULT_MODELS", "DEFAULT_TEXT", "FakeUpstream", "RecordedRequest", "Scenario"]

DEFAULT_MODELS: tuple[str, ...] = ("gpt-fake", "claude-fake")
DEFAULT_TEXT = "Hello from the fake upstream! This reply is deterministic, chunk by chunk."

_CREATED = 1_700_000_000
_OTHER_OPENAI_ROUTES = ("/v1/responses", "/v1/embeddings", "/v1/completions")


def _load(body: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(body)
    return loaded


@dataclass(frozen=True)
class Scenario:
    """How the fake answers one chat/messages request; the knobs combine freely.

    Attributes:
        text: The reply text (deterministic).
        chunks: Number of content pieces ``text`` is split into for a stream (>= 1).
        delay: Seconds (``trio.sleep``) before each content piece of a stream; a
            non-stream answer waits ``delay * chunks`` before its headers (error answers
            do not wait).
        status: 200, or an error status (400-599) answered with the API's error body.
        headers: Extra response headers (e.g. ``{"retry-after": "7"}``); a name the fake
            sets itself (``content-type``) is replaced.
        cut_after: Stream: send this many SSE events, then close the socket without the
            terminating zero-length chunk (with N >= the number of events, every event is
            sent but the terminator is still missing). Non-stream: send the full
            ``Content-Length`` header but only ``min(N, length - 1)`` body bytes, then close.
        stall_after_headers: Send the headers, then nothing, until the peer closes.
        stall_before_headers: Read the request, then send nothing until the peer closes.
        close_without_response: Read the request, then close the connection.
        body_size: Pad a non-stream JSON answer (with a ``padding`` field) to exactly this
            many bytes before content encoding, when it is bigger than the plain answer.
        gzip: ``content-encoding: gzip`` when the request's ``accept-encoding`` allows it;
            streams are compressed event by event (sync flush), so they stay incremental.
        events: A stream answer made of exactly these SSE events (one chunk each) instead
            of the generated one: for answers the generator does not make (tool calls,
            other stop reasons). The ``delay`` comes before each event.
        json: A JSON answer with exactly this body instead of the generated one.
        hold: Stream: send the events up to the first content piece, then wait until this
            event is set before the rest (a stream that stays open until the test says).
    """

    text: str = DEFAULT_TEXT
    chunks: int = 5
    delay: float = 0.0
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    cut_after: int | None = None
    stall_after_headers: bool = False
    stall_before_headers: bool = False
    close_without_response: bool = False
    body_size: int | None = None
    gzip: bool = False
    events: tuple[bytes, ...] | None = None
    json: Mapping[str, Any] | None = None
    hold: trio.Event | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.chunks < 1:
            raise ValueError(f"chunks must be >= 1, not {self.chunks}")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, not {self.delay}")
        if self.status != 200 and not 400 <= self.status <= 599:
            raise ValueError(f"status must be 200 or 400-599, not {self.status}")
        if self.cut_after is not None and self.cut_after < 0:
            raise ValueError(f"cut_after must be >= 0, not {self.cut_after}")
        if self.body_size is not None and self.body_size < 0:
            raise ValueError(f"body_size must be >= 0, not {self.body_size}")
        headers = {name.lower(): value for name, value in self.headers.items()}
        object.__setattr__(self, "headers", MappingProxyType(headers))

    def pieces(self) -> list[str]:
        """``text`` split into ``chunks`` consecutive pieces of near-equal length."""
        n = len(self.text)
        return [
            self.text[i * n // self.chunks : (i + 1) * n // self.chunks] for i in range(self.chunks)
        ]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it.

    Attributes:
        method: ``"POST"``, ``"GET"``, ...
        path: The target without its query string, e.g. ``"/v1/chat/completions"``.
        query: The query string without ``?`` (``""`` when there is none).
        headers: Lower-case names; repeated headers joined with ``", "``.
        body: The raw request body (chunked framing removed).
        json: The body parsed as JSON, or None when empty or not JSON.
        connection: Serial number (from 0) of the TCP connection that carried it.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    connection: int


class _Api(enum.Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class FakeUpstream:
    """A scripted OpenAI/Anthropic upstream on a real loopback socket; see the module doc.

    Args:
        models: Model ids ``GET /v1/models`` lists.
        default: The scenario used when no scripted one is queued; assignable later.
    """

    def __init__(
        self, models: Sequence[str] = DEFAULT_MODELS, *, default: Scenario | None = None
    ) -> None:
        self.models: list[str] = list(models)
        self.default: Scenario = default if default is not None else Scenario()
        self.requests: list[RecordedRequest] = []
        self._base_url: str | None = None
        self._queue: deque[Scenario] = deque()
        self._body_bytes: list[int] = []
        self._request_connections: list[ServerConn] = []
        self._server = H11Server(self._handle_request)
        self._in_flight = 0
        self._changed = trio.Event()

    # -- running ------------------------------------------------------------------------

    async def serve(
        self, port: int = 0, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on 127.0.0.1 (``port``; 0, the default: OS-assigned) and serve until cancelled.

        Use as ``base = await nursery.start(fake.serve)``: ``started()`` is called with
        ``"http://127.0.0.1:PORT"`` once the socket is listening. Connection-level errors
        (resets, broken pipes, malformed HTTP) close that connection only; any other
        exception is a bug in the fake and propagates to the test's nursery.
        """
        async with trio.open_nursery() as nursery:
            port = await nursery.start(self._server.serve, port)
            self._base_url = f"http://127.0.0.1:{port}"
            task_status.started(self._base_url)

    @property
    def base_url(self) -> str:
        """``"http://127.0.0.1:PORT"``; only once ``serve`` has started."""
        if self._base_url is None:
            raise RuntimeError("FakeUpstream is not serving yet")
        return self._base_url

    def script(self, *scenarios: Scenario) -> None:
        """Queue scenarios; each next chat/messages request consumes one, in order."""
        self._queue.extend(scenarios)

    # -- observing ----------------------------------------------------------------------

    @property
    def pending_scenarios(self) -> int:
        """Scripted scenarios not consumed yet."""
        return len(self._queue)

    @property
    def bytes_sent(self) -> int:
        """Response payload bytes written, over all requests (framing removed)."""
        return sum(self._body_bytes)

    def body_bytes_for(self, index: int) -> int:
        """Response payload bytes written for the ``index``-th recorded request."""
        return self._body_bytes[index]

    @property
    def active_connections(self) -> int:
        """TCP connections open now."""
        return self._server.open_now

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted since start."""
        return self._server.connections_opened

    @property
    def in_flight(self) -> int:
        """Requests received whose response is not finished (or abandoned) yet."""
        return self._in_flight

    async def wait_in_flight(self, n: int) -> None:
        """Return once exactly ``n`` requests are in flight."""
        while self._in_flight != n:
            await self._changed.wait()

    async def wait_requests(self, n: int) -> None:
        """Return once at least ``n`` requests have been recorded."""
        while len(self.requests) < n:
            await self._changed.wait()

    async def wait_closed(self, index: int) -> None:
        """Return once the connection that carried request ``index`` is closed.

        Waits for the request to arrive first; closed by either side counts.
        """
        await self.wait_requests(index + 1)
        await self._request_connections[index].closed.wait()

    # -- internals ----------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _count(self, index: int, nbytes: int) -> None:
        self._body_bytes[index] += nbytes

    def _finish(self) -> None:
        self._in_flight -= 1
        self._notify()

    async def _handle_request(self, conn: ServerConn, request: h11.Request, body: bytes) -> None:
        index = self._record(request, body, conn)
        if not await self._exchange(conn, index):
            conn.closing = True

    def _record(self, request: h11.Request, body: bytes, conn: ServerConn) -> int:
        headers: dict[str, str] = {}
        for raw_name, raw_value in request.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        path, _, query = request.target.decode("latin-1").partition("?")
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        self.requests.append(
            RecordedRequest(
                method=request.method.decode("ascii"),
                path=path,
                query=query,
                headers=headers,
                body=body,
                json=parsed,
                connection=conn.number,
            )
        )
        self._body_bytes.append(0)
        self._request_connections.append(conn)
        self._in_flight += 1
        self._notify()
        return len(self.requests) - 1

    async def _exchange(self, conn: ServerConn, index: int) -> bool:
        """Answer request ``index`` while watching for the peer to hang up.

        Returns whether the connection may serve another request.
        """
        writer = _ResponseWriter(self, conn, index)
        peer_gone = False
        keep_alive = False

        async def watch_peer(cancel_scope: trio.CancelScope) -> None:
            # EOF or a reset while we answer means the client is gone (HTTP clients do not
            # half-close); anything it sends early (pipelining) is kept for the next cycle.
            nonlocal peer_gone
            try:
                while data := await conn.stream.receive_some(RECEIVE_SIZE):
                    conn.h11.receive_data(bytes(data))
            except trio.BrokenResourceError:
                pass
            peer_gone = True
            cancel_scope.cancel()

        async def respond(cancel_scope: trio.CancelScope) -> None:
            nonlocal peer_gone, keep_alive
            try:
                keep_alive = await self._respond(writer, self.requests[index])
            except trio.BrokenResourceError:
                peer_gone = True
            cancel_scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_peer, nursery.cancel_scope)
                nursery.start_soon(respond, nursery.cancel_scope)
        finally:
            writer.finish()
        return keep_alive and not peer_gone

    async def _respond(self, writer: _ResponseWriter, request: RecordedRequest) -> bool:
        """Send the response; return False when the connection must close afterwards."""
        api = _Api.ANTHROPIC if "anthropic-version" in request.headers else _Api.OPENAI
        if request.path == "/v1/models":
            if request.method != "GET":
                return await self._send_error(writer, api, 405, "Method not allowed")
            return await self._send_json(writer, 200, {}, self._models_body(api), Scenario())
        routes = {
            "/v1/chat/completions": _Api.OPENAI,
            "/v1/messages": _Api.ANTHROPIC,
            **{path: _Api.OPENAI for path in _OTHER_OPENAI_ROUTES},
            "/v1/messages/count_tokens": _Api.ANTHROPIC,
        }
        if request.path not in routes:
            return await self._send_error(writer, api, 404, f"No route for {request.path}")
        api = routes[request.path]
        if request.method != "POST":
            return await self._send_error(writer, api, 405, "Method not allowed")

        scenario = self._queue.popleft() if self._queue else self.default
        if scenario.close_without_response:
            return False
        if scenario.stall_before_headers:
            await trio.sleep_forever()
        extra = dict(scenario.headers)
        if scenario.status != 200:
            message = f"Scripted error {scenario.status}"
            return await self._send_error(writer, api, scenario.status, message, extra, scenario)
        payload = request.json
        if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
            return await self._send_error(writer, api, 400, "Body must be JSON with a model")

        compress = scenario.gzip and _accepts_gzip(request.headers.get("accept-encoding", ""))
        if scenario.events is not None:
            scripted = [(True, event) for event in scenario.events]
            return await _send_stream(writer, extra, scripted, scenario, compress)
        if scenario.json is not None:
            return await self._send_json(writer, 200, extra, dict(scenario.json), scenario)
        if request.path in _OTHER_OPENAI_ROUTES or request.path.endswith("/count_tokens"):
            return await self._send_other(writer, request, extra, scenario, compress)
        request_id = f"fake-{writer.index}"
        if api is _Api.OPENAI:
            extra = {"x-request-id": f"req_{request_id}", **extra}
        else:
            extra = {"request-id": f"req_{request_id}", **extra}
        model = payload["model"]
        prompt_tokens = _prompt_tokens(request)
        if payload.get("stream") is True:
            events = _stream_events(api, request, writer.index, scenario)
            return await _send_stream(writer, extra, events, scenario, compress)

        if api is _Api.OPENAI:
            body = _openai_completion(request_id, model, scenario.text, prompt_tokens)
        else:
            body = _anthropic_message(request_id, model, scenario.text, prompt_tokens)
        if scenario.delay:
            await trio.sleep(scenario.delay * scenario.chunks)
        return await self._send_json(writer, 200, extra, body, scenario, compress)

    async def _send_other(
        self,
        writer: _ResponseWriter,
        request: RecordedRequest,
        headers: Mapping[str, str],
        scenario: Scenario,
        compress: bool,
    ) -> bool:
        """Responses, embeddings, legacy completions, count_tokens: the real shapes.

        The bodies are the embedded mock backend's (its shapes follow the SDKs' types),
        with this scenario's text cut into its pieces.
        """
        payload = request.json
        model, path, stream = payload["model"], request.path, payload.get("stream") is True
        if path.endswith("/count_tokens"):
            return await self._send_json(
                writer, 200, headers, _load(replies.count_tokens(payload)), scenario
            )
        if path == "/v1/embeddings":
            return await self._send_json(
                writer, 200, headers, _load(replies.embeddings(payload)), scenario
            )
        if stream:
            if path == "/v1/responses":
                chunks = replies.responses_events(model, scenario.pieces())
                # The content events are the deltas: the ones the delay comes before.
                events = [(b"output_text.delta" in c, c) for c in chunks]
            else:
                chunks = replies.completion_events(model, scenario.pieces())
                events = [(i < scenario.chunks, c) for i, c in enumerate(chunks)]
            return await _send_stream(writer, headers, events, scenario, compress)
        body = (
            replies.responses_message(model, scenario.text)
            if path == "/v1/responses"
            else replies.completion_text(model, scenario.text)
        )
        if scenario.delay:
            await trio.sleep(scenario.delay * scenario.chunks)
        return await self._send_json(writer, 200, headers, _load(body), scenario, compress)

    def stream_body(self, index: int, scenario: Scenario) -> bytes:
        """The whole SSE body a stream answer to request ``index`` with ``scenario`` has.

        Answers are deterministic, so this is exactly what the fake sent (or, for a cut or
        stalled stream, what it would have sent) for a streamed chat/messages request.
        """
        request = self.requests[index]
        api = _Api.ANTHROPIC if request.path == "/v1/messages" else _Api.OPENAI
        return b"".join(event for _, event in _stream_events(api, request, index, scenario))

    def _models_body(self, api: _Api) -> dict[str, Any]:
        if api is _Api.OPENAI:
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models
            ]
            return {"object": "list", "data": data}
        return {
            "data": [
                {
                    "type": "model",
                    "id": m,
                    "display_name": m.replace("-", " ").title(),
                    "created_at": "2025-01-01T00:00:00Z",
                }
                for m in self.models
            ],
            "has_more": False,
            "first_id": self.models[0] if self.models else None,
            "last_id": self.models[-1] if self.models else None,
        }

    async def _send_error(
        self,
        writer: _ResponseWriter,
        api: _Api,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        scenario: Scenario | None = None,
    ) -> bool:
        body = _error_body(api, status, message)
        return await self._send_json(writer, status, headers or {}, body, scenario or Scenario())

    async def _send_json(
        self,
        writer: _ResponseWriter,
        status: int,
        headers: Mapping[str, str],
        payload: dict[str, Any],
        scenario: Scenario,
        compress: bool = False,
    ) -> bool:
        body = _dumps(payload)
        if scenario.body_size is not None and status == 200 and scenario.body_size > len(body):
            padding = scenario.body_size - len(_dumps({**payload, "padding": ""}))
            body = _dumps({**payload, "padding": "x" * max(0, padding)})
        content: dict[str, str] = {"content-type": "application/json"}
        if compress:
            body = gzip.compress(body, mtime=0)
            content["content-encoding"] = "gzip"
        content["content-length"] = str(len(body))
        await writer.start(status, {**content, **headers})
        if scenario.stall_after_headers:
            await trio.sleep_forever()
        if scenario.cut_after is not None:
            await writer.send(body[: min(scenario.cut_after, len(body) - 1)])
            return False
        await writer.end(body)
        return True


class _ResponseWriter:
    """Frames one response with h11 and keeps the fake's counters ahead of the socket."""

    def __init__(self, fake: FakeUpstream, conn: ServerConn, index: int) -> None:
        self.index = index
        self._fake = fake
        self._conn = conn
        self._finished = False

    async def start(self, status: int, headers: Mapping[str, str]) -> None:
        try:
            reason = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b""
        response = h11.Response(status_code=status, headers=list(headers.items()), reason=reason)
        await self._conn.send_raw(self._conn.frame(response))

    async def send(self, payload: bytes) -> None:
        if payload:
            framed = self._conn.frame(h11.Data(data=payload))
            self._fake._count(self.index, len(payload))
            await self._conn.send_raw(framed)

    async def end(self, payload: bytes = b"") -> None:
        """Send the last payload and the end of the message in one write."""
        framed = b""
        if payload:
            framed = self._conn.frame(h11.Data(data=payload))
            self._fake._count(self.index, len(payload))
        framed += self._conn.frame(h11.EndOfMessage())
        self.finish()
        await self._conn.send_raw(framed)

    def finish(self) -> None:
        """Mark the response finished (idempotent): it no longer counts as in flight."""
        if not self._finished:
            self._finished = True
            self._fake._finish()


async def _send_stream(
    writer: _ResponseWriter,
    headers: Mapping[str, str],
    events: list[tuple[bool, bytes]],
    scenario: Scenario,
    compress: bool,
) -> bool:
    """Send SSE ``events`` (``(is_content, bytes)``) as a chunked body, one chunk each."""
    content = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    if compress:
        content["content-encoding"] = "gzip"
    content["transfer-encoding"] = "chunked"
    await writer.start(200, {**content, **headers})
    if scenario.stall_after_headers:
        await trio.sleep_forever()
    compressor = zlib.compressobj(wbits=31) if compress else None
    sent_content = False
    for number, (is_content, event) in enumerate(events):
        if scenario.cut_after is not None and number >= scenario.cut_after:
            return False
        if scenario.hold is not None and sent_content:
            await scenario.hold.wait()
        sent_content = sent_content or is_content
        if is_content and scenario.delay:
            await trio.sleep(scenario.delay)
        if compressor is not None:
            event = compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH)
        await writer.send(event)
    if scenario.cut_after is not None:
        return False  # every event went out, but never the terminating chunk
    await writer.end(compressor.flush() if compressor is not None else b"")
    return True


def _prompt_tokens(request: RecordedRequest) -> int:
    return max(1, len(request.body) // 4)


def _stream_events(
    api: _Api, request: RecordedRequest, index: int, scenario: Scenario
) -> list[tuple[bool, bytes]]:
    """The SSE events (``(is_content, bytes)``) of the stream answer to request ``index``."""
    payload = request.json
    request_id, model, prompt_tokens = f"fake-{index}", payload["model"], _prompt_tokens(request)
    if api is _Api.OPENAI:
        options = payload.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        return _openai_events(request_id, model, scenario, prompt_tokens, usage)
    return _anthropic_events(request_id, model, scenario, prompt_tokens)


def _openai_events(
    request_id: str, model: str, scenario: Scenario, prompt_tokens: int, include_usage: bool
) -> list[tuple[bool, bytes]]:
    def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            body["usage"] = None
        return body

    events = [(False, _sse(chunk({"role": "assistant", "content": ""}, None)))]
    events += [(True, _sse(chunk({"content": piece}, None))) for piece in scenario.pieces()]
    events.append((False, _sse(chunk({}, "stop"))))
    if include_usage:
        last = chunk({}, None)
        last["choices"] = []
        last["usage"] = _openai_usage(prompt_tokens, scenario.text)
        events.append((False, _sse(last)))
    events.append((False, b"data: [DONE]\n\n"))
    return events


def _anthropic_events(
    request_id: str, model: str, scenario: Scenario, prompt_tokens: int
) -> list[tuple[bool, bytes]]:
    start = _anthropic_message(request_id, model, "", prompt_tokens)
    start.update(content=[], stop_reason=None)
    start["usage"]["output_tokens"] = 1
    deltas = [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        for piece in scenario.pieces()
    ]
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": _tokens(scenario.text)},
    }
    return [
        (False, _sse({"type": "message_start", "message": start}, "message_start")),
        (
            False,
            _sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
        ),
        *[(True, _sse(delta, "content_block_delta")) for delta in deltas],
        (False, _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")),
        (False, _sse(message_delta, "message_delta")),
        (False, _sse({"type": "message_stop"}, "message_stop")),
    ]


def _openai_completion(
    request_id: str, model: str, text: str, prompt_tokens: int
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": _CREATED,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _openai_usage(prompt_tokens, text),
    }


def _anthropic_message(
    request_id: str, model: str, text: str, prompt_tokens: int
) -> dict[str, Any]:
    return {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": _tokens(text)},
    }


def _openai_usage(prompt_tokens: int, text: str) -> dict[str, int]:
    completion = _tokens(text)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


_OPENAI_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
_ANTHROPIC_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _error_body(api: _Api, status: int, message: str) -> dict[str, Any]:
    """The API's own error shape for ``status``."""
    if api is _Api.OPENAI:
        if status == 429:
            kind, code = "rate_limit_exceeded", "rate_limit_exceeded"
        elif status >= 500:
            kind, code = "server_error", None
        else:
            kind, code = _OPENAI_ERROR_TYPES.get(status, "invalid_request_error"), str(status)
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}
    default = "api_error" if status >= 500 else "invalid_request_error"
    kind = _ANTHROPIC_ERROR_TYPES.get(status, default)
    return {"type": "error", "error": {"type": kind, "message": message}}


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``accept-encoding`` value allows gzip (``gzip`` or ``*`` with q > 0)."""
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if coding.lower() not in ("gzip", "*"):
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    prefix = f"event: {event}\n".encode() if event else b""
    return prefix + b"data: " + _dumps(payload) + b"\n\n"
