"""The per-request handle the relay meters bytes through."""

from __future__ import annotations

from typing import Protocol

import trio

from .records import ConnectionRecord, LifetimeRecord, Outcome


class Cancellable(Protocol):
    """What the sweeper cancels: a ``trio.CancelScope``, or any handle that cancels one."""

    def cancel(self) -> None: ...


class RequestMeter:
    """Meters one tracked request; handed out by ``ActivityTracker.track()``.

    ``add_rx``/``add_tx`` are the per-chunk path: O(1), a few integer additions and one
    clock read, no lock and no logging. They must be called on the Trio thread, inside
    the ``track()`` block that produced the meter.
    """

    __slots__ = (
        "_bytes_rx",
        "_bytes_tx",
        "_cancel_scope",
        "_cancelled",
        "_connection",
        "_failed",
        "_lifetime",
        "_stale",
        "instance",
        "session_id",
    )

    def __init__(
        self,
        instance: str,
        session_id: str,
        connection: ConnectionRecord,
        lifetime: LifetimeRecord,
        cancel_scope: Cancellable,
    ) -> None:
        self.instance = instance
        self.session_id = session_id
        self._connection: ConnectionRecord | None = connection
        self._lifetime = lifetime
        self._cancel_scope = cancel_scope
        self._stale = False
        self._failed = False
        self._cancelled = False
        self._bytes_rx = 0
        self._bytes_tx = 0

    @property
    def stale(self) -> bool:
        """True once the sweeper has cancelled this request as stale.

        The relay reads it after the cancellation to answer 504 or end the stream with
        an error event rather than treat the request as a client disconnect.
        """
        return self._stale

    @property
    def failed(self) -> bool:
        """True once :meth:`fail` has been called."""
        return self._failed

    @property
    def bytes_rx(self) -> int:
        """Body bytes of this request received from the backend so far."""
        return self._bytes_rx

    @property
    def bytes_tx(self) -> int:
        """Body bytes of this request handed to the client so far."""
        return self._bytes_tx

    def add_rx(self, nbytes: int) -> None:
        """Count ``nbytes`` response body bytes received from the backend.

        A zero count is not activity and changes nothing.

        Raises:
            ValueError: ``nbytes`` is negative.
            RuntimeError: the request's ``track()`` block has already exited.
        """
        connection = self._connection
        if connection is None:
            raise RuntimeError("add_rx() on a request that is no longer tracked")
        if nbytes > 0:
            connection.bytes_rx += nbytes
            connection.last_activity = trio.current_time()
            self._lifetime.bytes_rx += nbytes
            self._bytes_rx += nbytes
        elif nbytes < 0:
            raise ValueError(f"negative byte count: {nbytes}")

    def add_tx(self, nbytes: int) -> None:
        """Count ``nbytes`` response body bytes handed to the client's connection.

        A zero count is not activity and changes nothing.

        Raises:
            ValueError: ``nbytes`` is negative.
            RuntimeError: the request's ``track()`` block has already exited.
        """
        connection = self._connection
        if connection is None:
            raise RuntimeError("add_tx() on a request that is no longer tracked")
        if nbytes > 0:
            connection.bytes_tx += nbytes
            connection.last_activity = trio.current_time()
            self._lifetime.bytes_tx += nbytes
            self._bytes_tx += nbytes
        elif nbytes < 0:
            raise ValueError(f"negative byte count: {nbytes}")

    def fail(self) -> None:
        """Mark the request as ended in error, without raising.

        For failures the relay handles itself — an upstream cut answered with an error
        event, say — so the request counts in ``lifetime.errors`` when its ``track()``
        block exits, however it exits (unless the sweeper cancelled it as stale).
        """
        self._failed = True

    def mark_cancelled(self) -> None:
        """Mark the request as cancelled by the proxy (shutdown), without raising.

        For a cancellation the relay catches itself to end the response properly; the
        request counts in ``lifetime.cancelled`` (unless it failed or went stale first).
        """
        self._cancelled = True

    def _cancel_as_stale(self) -> bool:
        """Mark the request stale and cancel its scope; False if it already was."""
        if self._stale:
            return False
        self._stale = True
        self._cancel_scope.cancel()
        return True

    def _detach(self) -> ConnectionRecord:
        """Stop metering: later ``add_*`` calls raise. Returns the connection record."""
        connection = self._connection
        if connection is None:
            raise RuntimeError("request released twice")
        self._connection = None
        return connection

    def _outcome(self, exc: BaseException | None) -> Outcome:
        """Classify the exit: stale, else error, else cancelled, else completed.

        ``exc`` is what left the ``track()`` block. Only ``trio.Cancelled`` — alone or as
        a group of nothing but ``Cancelled``, as a nursery raises when cancelled — and
        ``GeneratorExit`` (the relay's async generator closed because its consumer, the
        client, went away) count as cancellation; anything else is an error.
        """
        if self._stale:
            return Outcome.STALE
        if self._failed:
            return Outcome.ERROR
        if self._cancelled:
            return Outcome.CANCELLED
        if exc is None:
            return Outcome.COMPLETED
        if isinstance(exc, trio.Cancelled | GeneratorExit):
            return Outcome.CANCELLED
        if isinstance(exc, BaseExceptionGroup):
            _, rest = exc.split((trio.Cancelled, GeneratorExit))
            if rest is None:
                return Outcome.CANCELLED
        return Outcome.ERROR

    def __repr__(self) -> str:
        return (
            f"<RequestMeter {self.instance}/{self.session_id}"
            f" rx={self._bytes_rx} tx={self._bytes_tx} stale={self._stale}>"
        )
