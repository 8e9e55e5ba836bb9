"""Epoch timestamps driven by Trio's clock.

Records keep their times in Trio's clock (``trio.current_time()``), so that staleness
follows whatever clock the run uses — the real one in production, ``MockClock`` in
tests — and a per-chunk update costs one clock read. Snapshots turn those times into
epoch seconds with one offset, ``time.time() - trio.current_time()``, taken the first
time the tracker is used inside Trio.
"""

from __future__ import annotations

import time

import trio


class EpochClock:
    """Converts Trio clock readings to epoch seconds for one tracker.

    The offset is captured once, inside the Trio run that first uses it; a tracker
    therefore belongs to one Trio run. Outside a Trio thread, :meth:`now` falls back to
    ``time.time()``.
    """

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset: float | None = None

    def trio_now(self) -> float:
        """Return ``trio.current_time()``, capturing the epoch offset on first use.

        Raises:
            RuntimeError: called outside a Trio run (from ``trio.current_time``).
        """
        now = trio.current_time()
        if self._offset is None:
            self._offset = time.time() - now
        return now

    def now(self) -> tuple[float, float]:
        """Return ``(epoch now, offset)`` for a snapshot taken from any thread.

        In a Trio thread "now" is derived from Trio's clock, elsewhere it is
        ``time.time()``. Before any use inside Trio there are no Trio times to convert
        and the offset is 0.0.
        """
        if trio.lowlevel.in_trio_run():
            trio_now = self.trio_now()
            # trio_now() has just set the offset; the assert only narrows the type.
            assert self._offset is not None
            return trio_now + self._offset, self._offset
        return time.time(), self._offset or 0.0
