"""Server-Sent Events in both directions: an incremental parser and the two encoders.

:class:`SSEParser` reads a backend's event stream in whatever pieces the network hands
over and returns each event the moment its last line ends, following the WHATWG rules:
lines end in ``\\n``, ``\\r\\n`` or ``\\r`` (a ``\\r`` at the end of a piece is an end of
line at once; a ``\\n`` opening the next piece is then skipped), ``:`` starts a comment,
``data:`` lines of one event are joined with ``\\n``, one space after the colon is
dropped, a blank line ends the event, an event without data is not one, and a leading
byte-order mark is ignored. Lines are split as bytes, so a UTF-8 character cut between
two pieces is never decoded in halves.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import orjson

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
DONE = b"data: [DONE]\n\n"


class SSEEvent(NamedTuple):
    """One dispatched event: its ``event:`` name (``""`` when it had none) and its data."""

    event: str
    data: bytes


class SSEParser:
    """Turns the bytes of an event stream, split anywhere, into :class:`SSEEvent` values."""

    __slots__ = ("_buffer", "_data", "_event", "_first_line", "_skip_lf")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._event = b""
        self._skip_lf = False
        self._first_line = True

    @property
    def pending(self) -> bool:
        """Whether part of an event has arrived without the blank line that ends it."""
        return bool(self._buffer or self._data or self._event)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events that ``chunk`` completes, in order; the rest waits for more bytes."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        data = self._buffer + chunk if self._buffer else chunk
        events: list[SSEEvent] = []
        start = 0
        for match in _EOL.finditer(data):
            self._line(data[start : match.start()], events)
            start = match.end()
            if start == len(data) and match.group() == b"\r":
                self._skip_lf = True
        self._buffer = data[start:]
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if self._first_line:
            self._first_line = False
            if line.startswith(_BOM):
                line = line[len(_BOM) :]
        if not line:
            if self._data:
                name = self._event.decode("utf-8", "replace")
                events.append(SSEEvent(name, b"\n".join(self._data)))
            self._data = []
            self._event = b""
            return
        if line[:1] == b":":
            return
        field, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value


def anthropic_event(kind: str, payload: Any) -> bytes:
    """One Messages stream event, with the ``event:`` line Anthropic's SDKs dispatch on."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def openai_event(payload: Any) -> bytes:
    """One Chat Completions stream event: a ``data:`` line and no event name."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"
