"""Why an attempt of a request was cancelled, and what follows (a pure decision).

Four things cancel an attempt's scope through its :class:`Attempt` handle, which records
why (:class:`Stop`): the client hanging up, the stale sweeper and an operator (both
through the tracker's ``CancelHandle``), and the shutdown deadline. Once the scope has
unwound, :func:`ending` says what the relay does: nothing, fail over, count a hang-up,
or answer the client with an error.
"""

from __future__ import annotations

import enum

import trio


class Stop(enum.Enum):
    """Why an attempt's scope was cancelled from outside."""

    DISCONNECT = "the client hung up"
    STALE = "the stale sweeper"
    SHUTDOWN = "the shutdown deadline"
    OPERATOR = "an operator (POST /v1/diagnostics/cancel)"


class Attempt:
    """The cancel handle of one attempt: whoever cancels it says why.

    The tracker calls :meth:`cancel_as_stale` (its sweeper) and :meth:`cancel_by_operator`
    (an operator's cancel), the shutdown deadline :meth:`shut_down`, the request's
    hang-up :meth:`disconnect`. The first reason wins; the relay reads it after the
    attempt's scope has unwound.

    The scope is the attempt's own (:meth:`bind`). A stop that comes before the scope
    is bound cancels it as it is bound.
    """

    __slots__ = ("_scope", "reason")

    def __init__(self) -> None:
        self.reason: Stop | None = None
        self._scope: trio.CancelScope | None = None

    def bind(self, scope: trio.CancelScope) -> None:
        """Make ``scope`` the one a stop cancels (cancelled at once if one came already)."""
        self._scope = scope
        if self.reason is not None:
            scope.cancel()

    def _stop(self, reason: Stop) -> None:
        if self.reason is None:
            self.reason = reason
        if self._scope is not None:
            self._scope.cancel()

    def cancel_as_stale(self) -> None:
        """Cancel as stale (the tracker's sweeper)."""
        self._stop(Stop.STALE)

    def cancel_by_operator(self) -> None:
        """Cancel because an operator asked to (the tracker's cancel)."""
        self._stop(Stop.OPERATOR)

    def shut_down(self) -> None:
        """Cancel at the shutdown deadline."""
        self._stop(Stop.SHUTDOWN)

    def disconnect(self) -> None:
        """Cancel because the client hung up."""
        self._stop(Stop.DISCONNECT)


class Ending(enum.Enum):
    """What the relay does once an attempt's scope has unwound."""

    DONE = "nothing more to do"
    RETRY = "hand the request to the next instance"
    HUNG_UP = "count the request cancelled; the client is gone, send nothing"
    STALE = "end the response with 504 or an error event; counted stale"
    SHUTDOWN = "end the response with 503 or an error event; counted cancelled (shutdown)"
    OPERATOR = "end the response with 503 or an error event; counted cancelled (operator)"


_ENDING_OF_STOP = {
    Stop.DISCONNECT: Ending.HUNG_UP,
    Stop.STALE: Ending.STALE,
    Stop.SHUTDOWN: Ending.SHUTDOWN,
    Stop.OPERATOR: Ending.OPERATOR,
}


def ending(reason: Stop | None, *, complete: bool, retry: bool) -> Ending:
    """Decide what follows an attempt (pure).

    Args:
        reason: why the attempt's scope was cancelled, or None if it was not.
        complete: whether the client's response had already ended.
        retry: whether the attempt asked to hand the request to the next instance.
    """
    if reason is None:
        return Ending.RETRY if retry else Ending.DONE
    if complete:
        # Cancelled once the answer was complete: nothing to add or count.
        return Ending.DONE
    return _ENDING_OF_STOP[reason]
