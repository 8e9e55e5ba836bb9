"""The shape every stream translator has: fed the backend's bytes, it returns the client's.

A translator is made for one streamed answer and used from one task:

- :meth:`StreamTranslator.feed` takes the backend's body bytes as they arrive (split
  anywhere) and returns the client-shaped bytes to send now: every event the completed
  upstream events cause, nothing held back but an upstream event still incomplete;
- :meth:`StreamTranslator.finish` is called at the end of the backend's body and returns
  what the client API needs to end properly (an upstream that ended without its last
  event gets the client API's error event instead);
- :meth:`StreamTranslator.fail` ends the stream with an error the proxy decided on (a cut
  connection, a timeout, shutdown), in the client API's own SSE error shape.

An upstream error event, or a backend that breaks the stream's rules, ends the client's
stream with its error event inside ``feed``. Once :attr:`StreamTranslator.done` is true
the client's stream has ended and every call returns ``b""``, so the relay may stop
reading the backend.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from ..errors import (
    Api,
    ProxyError,
    StreamShape,
    UpstreamError,
    UpstreamProtocolError,
    sse_error_event,
)
from .sse import SSEEvent, SSEParser


class Phase(enum.Enum):
    FRESH = "fresh"  # nothing sent to the client yet
    STREAMING = "streaming"  # the client's answer has started
    FINISHED = "finished"  # the backend said why it stopped; the client's end is still due
    ENDED = "ended"  # the client's stream ended properly
    FAILED = "failed"  # the client's stream ended with an error event


class StreamTranslator:
    """Base of the translators: the parser, the phases and the ways to end."""

    api: ClassVar[Api]

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._phase = Phase.FRESH

    @property
    def done(self) -> bool:
        """Whether the client's stream has ended, properly or with an error event."""
        return self._phase in (Phase.ENDED, Phase.FAILED)

    @property
    def failed(self) -> bool:
        """Whether the client's stream ended with an error event."""
        return self._phase is Phase.FAILED

    def feed(self, data: bytes) -> bytes:
        """The client's bytes for this piece of the backend's body."""
        if self.done:
            return b""
        out: list[bytes] = []
        try:
            for event in self._parser.feed(data):
                self._handle(event, out)
                if self.done:
                    break
        except UpstreamError as exc:
            out.append(self._error(exc))
        return b"".join(out)

    def finish(self) -> bytes:
        """The client's last bytes once the backend's body has ended."""
        if self.done:
            return b""
        if self._phase is Phase.FINISHED:
            out: list[bytes] = []
            self._close(out)
            self._phase = Phase.ENDED
            return b"".join(out)
        return self._error(
            UpstreamProtocolError("the backend's stream ended before its last event")
        )

    def fail(self, exc: ProxyError) -> bytes:
        """The client's error event for ``exc``; ``b""`` if the stream already ended."""
        if self.done:
            return b""
        return self._error(exc)

    def _error(self, exc: ProxyError) -> bytes:
        self._phase = Phase.FAILED
        return sse_error_event(StreamShape.of_api(self.api), exc)

    def _upstream_error(self, event: bytes, out: list[bytes]) -> None:
        """Pass on the backend's own error event, already in the client's shape."""
        self._phase = Phase.FAILED
        out.append(event)

    def _handle(self, event: SSEEvent, out: list[bytes]) -> None:
        raise NotImplementedError

    def _close(self, out: list[bytes]) -> None:
        """Append what ends the client's stream after the backend said why it stopped."""
        raise NotImplementedError
