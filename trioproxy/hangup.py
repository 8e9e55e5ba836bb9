"""A request's hang-up, told by the server the moment it learns of it (pure).

An ASGI app learns that its client hung up from an ``http.disconnect`` message, which it
must ``receive()``: a relay that is busy waiting for its backend needs a task of its own
for that, and cancelling that task and the nursery around it when the request ends,
whichever way it ends, costs as much again. With thousands of streams that is thousands
of tasks held, and when they all hang up at once, thousands of tasks woken and nurseries
unwound in the same few turns of the event loop.

Our server (:mod:`.serving`) therefore puts a :class:`Hangup` in each request's scope,
under :data:`HANGUP`, and fires it as it queues the request's ``http.disconnect``; the
relay listens to it with a plain callback (:meth:`Hangup.listen`) and needs no task.
The message is queued as before, so everything that reads ``receive()`` still sees it.
An app served by another server finds no Hangup in its scope and watches ``receive()``
(:mod:`.relay`).

Before it is told, a hang-up can already be *ending*: the server has read the end of
the client's input, and the hang-up waits its turn (:mod:`.turnstile`) to be told. A
relay that finds it ending sends nothing more (:func:`.relay.relay_body`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: The scope key of a request's :class:`Hangup` (set by our server only).
HANGUP = "trioproxy.hangup"


class Hangup:
    """Whether one request's client has hung up, and whom to tell when it does."""

    __slots__ = ("_listener", "broken", "cut", "ending", "gone")

    def __init__(self) -> None:
        #: Whether the client has hung up.
        self.gone = False
        #: Whether the server has read the end of the client's input: the hang-up is
        #: told (:meth:`fire`) once it has passed the server's turnstile.
        self.ending = False
        #: Whether a write to the client failed (it is gone): what was being sent did
        #: not reach its connection, and nothing sent after it will
        #: (:meth:`.client_out.ClientOut.body` counts none of it as sent).
        self.broken = False
        #: ``(written, size)`` of the latest write to the client that failed or was
        #: cancelled partway (our server's), so that the bytes it did deliver are counted.
        self.cut: tuple[int, int] | None = None
        self._listener: Callable[[], None] | None = None

    def listen(self, listener: Callable[[], None] | None) -> None:
        """Call ``listener()`` when the client hangs up (at once if it has); None stops
        listening. There is one listener at a time: the request's current attempt."""
        self._listener = listener
        if listener is not None and self.gone:
            listener()

    def fire(self) -> None:
        """The client has hung up: tell the listener (the first time only)."""
        if self.gone:
            return
        self.gone = True
        if self._listener is not None:
            self._listener()


def hangup_of(scope: Mapping[str, Any]) -> Hangup | None:
    """The :class:`Hangup` our server put in ``scope``, or None under another server."""
    hangup = scope.get(HANGUP)
    return hangup if isinstance(hangup, Hangup) else None
