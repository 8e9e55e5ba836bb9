"""The client's side of one proxied request: what it was sent, and what it got.

:class:`ClientOut` spans a request's attempts. It sends the response head and body
through the ASGI ``send``, ends the response with an error in the route's own shape
(a JSON error before the head, an SSE error event once a stream started), and keeps
what the access log and the tracker need: the status, the body bytes received from
backends and handed to the client, the first byte's time, the instance that answered
and how the request ended. While an attempt is tracked, bytes and endings are passed
on to its meter.
"""

from __future__ import annotations

import enum
import re

import trio

from .activity import RequestMeter
from .asgi import Send
from .errors import ProxyError, StreamShape, error_body, sse_error_event
from .hangup import Hangup
from .headers import RESPONSE_DROP, SESSION_HEADER, Headers
from .routes import ProxyRoute

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_CONTENT_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")


class Phase(enum.Enum):
    """How far the client's response has got; one value instead of flags that must agree."""

    PENDING = "nothing sent yet"
    JSON = "head sent, a body that is not an event stream"
    SSE = "head sent, a Server-Sent Events body"
    CLOSED = "nothing more will be sent"


class ClientOut:
    """The client side of one request's response, and what the access log says of it.

    It spans the request's attempts: its phase, the status the client got, the body bytes
    received from backends (``rx``) and handed to the client (``tx``), the first byte's
    time, the instance that answered, how the request ended (``outcome``, ``reason``,
    ``error``). While an attempt is tracked, ``meter`` is its tracker meter, to which
    bytes, failures and cancellations are passed on.
    """

    __slots__ = (
        "_hangup",
        "_send",
        "_session",
        "error",
        "first_byte",
        "instance",
        "last",
        "meter",
        "outcome",
        "phase",
        "reason",
        "rx",
        "status",
        "tx",
    )

    def __init__(self, send: Send, session_id: str, hangup: Hangup | None = None) -> None:
        self._send = send
        self._hangup = hangup
        self._session = (SESSION_HEADER, session_id.encode())
        self.meter: RequestMeter | None = None
        self.phase = Phase.PENDING
        #: The last body chunk sent, for numbering a Responses error event after it.
        self.last = b""
        self.status: int | None = None
        self.rx = 0
        self.tx = 0
        #: ``trio.current_time()`` of the first body byte from a backend.
        self.first_byte: float | None = None
        self.instance: str | None = None
        self.outcome = "completed"
        self.reason: str | None = None
        self.error: str | None = None

    @property
    def started(self) -> bool:
        """Whether the response head has been sent (so the status can no longer change)."""
        return self.phase is not Phase.PENDING

    @property
    def ending(self) -> bool:
        """Whether the client has hung up and is about to be told so: our server has read
        the end of its input (``hangup``'s :attr:`~.hangup.Hangup.ending`)."""
        return self._hangup is not None and self._hangup.ending

    @property
    def complete(self) -> bool:
        """Whether the response has ended: nothing an interruption could still spoil."""
        return self.phase is Phase.CLOSED

    async def start(self, status: int, headers: Headers) -> None:
        out = [(k, v) for k, v in headers if k not in RESPONSE_DROP]
        out.append(self._session)
        sse = any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in out)
        self.phase = Phase.SSE if sse else Phase.JSON
        self.status = status
        await self._send({"type": "http.response.start", "status": status, "headers": out})

    def received(self, nbytes: int) -> None:
        """Count ``nbytes`` body bytes received from the backend."""
        if self.first_byte is None:
            self.first_byte = trio.current_time()
        self.rx += nbytes
        if self.meter is not None:
            self.meter.add_rx(nbytes)

    async def body(self, chunk: bytes) -> None:
        """Send ``chunk`` and count it as sent (``tx``), unless our server says its write
        failed: the client is gone, and the chunk never reached it. A send cancelled
        partway (the sweeper, an operator, the shutdown deadline, which then close the
        connection after what it holds) counts the part the connection took."""
        hangup = self._hangup
        if hangup is not None:
            hangup.cut = None
        try:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        except BaseException:
            if hangup is not None:
                self._count(_delivered(hangup, len(chunk)))
            raise
        self.last = chunk
        if hangup is not None and hangup.broken:
            return  # reset: what its buffers held never reached the client
        self._count(len(chunk))

    def _count(self, nbytes: int) -> None:
        if nbytes:
            self.tx += nbytes
            if self.meter is not None:
                self.meter.add_tx(nbytes)

    async def end(self) -> None:
        """End the response (once: a second call sends nothing)."""
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def failed(self, message: str) -> None:
        """The request ended (or will end) in error: the access log's and the meter's."""
        self.outcome = "error"
        if self.error is None:
            self.error = message
        if self.meter is not None:
            self.meter.fail(message)

    def cancelled(self, reason: str) -> None:
        """The request was cancelled: by the ``client``, at ``shutdown``, an ``operator``."""
        self.outcome = "cancelled"
        self.reason = reason
        if self.meter is not None:
            self.meter.mark_cancelled(reason)

    async def fail(self, route: ProxyRoute, exc: ProxyError) -> None:
        """End the response with ``exc``: a JSON error, or an SSE error event once started.

        Both in the shape of ``route``'s API (a Responses stream ends with the Responses
        API's own error event, numbered after the last event sent).
        """
        phase = self.phase
        if phase is Phase.CLOSED:
            return
        if phase is Phase.PENDING:
            await self.start(exc.status, JSON_HEADERS)
            await self.body(error_body(route.api, exc))
        elif phase is Phase.JSON:
            # A JSON body cut short cannot be mended. Ending it without its last message
            # makes the server close the connection, so the client sees it was cut.
            self.phase = Phase.CLOSED
            return
        else:
            number = next_sequence_number(self.last) if route.stream_errors is _RESPONSES else 0
            await self.body(sse_error_event(route.stream_errors, exc, sequence_number=number))
        await self.end()


def _delivered(hangup: Hangup, size: int) -> int:
    """Of a body chunk of ``size`` bytes whose write was cut (``hangup.cut``, if it got as
    far as the socket), the bytes the client's connection took.

    The write was the chunk as framed: as it is (a sized body), or chunked, behind its
    ``<hex size>\\r\\n`` and followed by ``\\r\\n``.
    """
    cut, hangup.cut = hangup.cut, None
    if cut is None:
        return 0
    written, framed = cut
    head = framed - size - 2 if framed > size else 0
    return max(0, min(size, written - head))


_RESPONSES = StreamShape.RESPONSES
_SEQUENCE = re.compile(rb'"sequence_number"\s*:\s*(\d+)')


def next_sequence_number(sent: bytes) -> int:
    """The Responses event number after the last one in ``sent`` (0 if none is there)."""
    numbers = _SEQUENCE.findall(sent)
    return int(numbers[-1]) + 1 if numbers else 0


_BOUNDARIES = (b"\n\n", b"\r\n\r\n", b"\r\r")


def event_end(data: bytes) -> int:
    """The offset just past the last complete Server-Sent Event in ``data`` (0: none).

    An event ends with a blank line: ``\\n\\n``, ``\\r\\r`` or ``\\r\\n\\r\\n``.
    """
    end = 0
    for boundary in _BOUNDARIES:
        at = data.rfind(boundary)
        if at >= 0 and at + len(boundary) > end:
            end = at + len(boundary)
    return end
