"""A TCP relay that records what a client tool sends: its requests, byte for byte.

The tools of ``nox -s clients`` talk to ``RecordingRelay``'s address, and the relay
passes every byte on to the proxy and back unchanged, so the proxy sees the tool's own
requests (the peer is still loopback). On the way in it parses the client's side of each
connection with h11 and keeps every request — method, target, headers, body — so a test
can compare the session id a tool sent with the one the diagnostics show, print what
each tool sends, and save the body of a request the proxy refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import h11
import trio

RECEIVE_SIZE = 65536
# Headers shown by value in a summary; every other header by name only (a key is a key,
# even a dummy one).
SHOWN_HEADERS = frozenset(
    {
        "anthropic-beta",
        "anthropic-version",
        "openai-beta",
        "originator",
        "session-id",
        "session_id",
        "thread-id",
        "user-agent",
        "x-claude-code-session-id",
        "x-session-id",
    }
)


@dataclass(frozen=True)
class SentRequest:
    """One request as the client sent it: header names in lower case, in order."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case), or None."""
        return next((value for key, value in self.headers if key == name), None)

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def summary(self) -> str:
        """One line: request line, headers (values of :data:`SHOWN_HEADERS` only), body fields."""
        headers = ", ".join(
            f"{key}: {value}" if key in SHOWN_HEADERS else key for key, value in self.headers
        )
        payload = self.json()
        fields = ", ".join(payload) if isinstance(payload, dict) else f"{len(self.body)} bytes"
        return f"{self.method} {self.target} | headers: {headers} | body: {fields}"


class _RequestParser:
    """The client's side of one connection, parsed into :class:`SentRequest` values."""

    def __init__(self, sink: list[SentRequest]) -> None:
        self._sink = sink
        self._h11 = h11.Connection(h11.SERVER)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._broken = False

    def feed(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            self._h11.receive_data(data)
            self._drain()
        except h11.ProtocolError:
            # Not HTTP the relay can read: it still passes the bytes on, unrecorded.
            self._broken = True

    def _drain(self) -> None:
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request, self._body = event, bytearray()
            elif isinstance(event, h11.Data):
                self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._record()
                if not self._next_cycle():
                    return
            else:
                return

    def _record(self) -> None:
        request = self._request
        assert request is not None
        headers = tuple(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in request.headers
        )
        self._sink.append(
            SentRequest(
                request.method.decode("ascii"),
                request.target.decode("latin-1"),
                headers,
                bytes(self._body),
            )
        )

    def _next_cycle(self) -> bool:
        # h11 parses the next request of a keep-alive connection only once its server
        # side has answered this one. The real answer travels the other way untouched;
        # this parser just plays an empty one to itself to reach the next cycle.
        self._h11.send(h11.Response(status_code=204, headers=[]))
        self._h11.send(h11.EndOfMessage())
        if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
            return False
        self._h11.start_next_cycle()
        return True


class RecordingRelay:
    """Relays 127.0.0.1:<any port> to ``127.0.0.1:target_port``, recording requests.

    ``url = await nursery.start(relay.serve)`` starts it; ``stop()`` closes the listener
    and every relayed connection. ``requests`` holds what clients sent, in arrival order.
    """

    def __init__(self, target_port: int) -> None:
        self.requests: list[SentRequest] = []
        self._target_port = target_port
        self._scope = trio.CancelScope()

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and relay until :meth:`stop`; ``started()`` gets the relay's base URL."""
        with self._scope:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._relay, listeners)
                task_status.started(f"http://127.0.0.1:{port}")

    def stop(self) -> None:
        """Stop listening and drop every relayed connection."""
        self._scope.cancel()

    async def _relay(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self._target_port)
        except OSError:
            await client.aclose()
            return
        parser = _RequestParser(self.requests)
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._copy, client, upstream, parser, nursery.cancel_scope)
            nursery.start_soon(self._copy, upstream, client, None, nursery.cancel_scope)

    @staticmethod
    async def _copy(
        source: trio.SocketStream,
        sink: trio.SocketStream,
        parser: _RequestParser | None,
        both: trio.CancelScope,
    ) -> None:
        try:
            while data := await source.receive_some(RECEIVE_SIZE):
                if parser is not None:
                    parser.feed(bytes(data))
                await sink.send_all(data)
            # A half-close passes on as one: the other direction may still be answering.
            await sink.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            both.cancel()
