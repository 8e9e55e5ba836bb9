"""A turnstile: at most a few tasks through per turn of the event loop.

Trio runs, in one turn of its loop, every task that became runnable since the last look
for I/O, and looks for I/O again only once they have all run. When thousands of clients
hang up at once, every one of their connections sees the end of its input in the same
turn or two, and what each then does — hand its request ``http.disconnect``, unwind the
relay, close the upstream socket, write the access-log line, close its own socket —
lands in the same few turns: seconds in which nothing else is served, not even
``GET /v1/diagnostics``, and in which every unwinding request holds its traceback, so
the collector's young generation swells to hundreds of thousands of objects.

The connection handler (:class:`~.serving.ProxyTCPServer`) passes a :class:`Turnstile`
when its input ends, before doing any of that. :meth:`Turnstile.through` parks the task;
a system task of the run lets :data:`PER_TURN` through per turn. The work is the same and
so is its total time (the loop is busy throughout), but it comes in shorter turns, and
everything else is served between them. A lone hang-up goes through within two turns.
:func:`turnstile` is the run's one instance.
"""

from __future__ import annotations

import trio

#: Tasks let through per turn of the event loop. Ending a connection whose client hung
#: up mid-stream costs most of a millisecond of the benchmark machine's CPU, spread over
#: the turns that follow. With 32, after 5,000 streams hung up the longest turn was
#: 140 to 300 ms (against about a second without the turnstile); with 16 the release
#: took a third longer, with 64 its turns were no shorter (``bench/release.py --pauses``).
#: A count that adapted to the turns' length did no better: the release is CPU-bound
#: either way, and takes longer than without the turnstile only by what the loop now
#: serves meanwhile (diagnostics polls, chunks still arriving for the queued).
PER_TURN = 32


class Turnstile:
    """Lets parked tasks through, ``per_turn`` per turn of the event loop, in order."""

    __slots__ = ("_lot", "_turning", "passed", "per_turn")

    def __init__(self, per_turn: int = PER_TURN) -> None:
        self.per_turn = per_turn
        #: Tasks let through so far.
        self.passed = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._turning = False

    @property
    def waiting(self) -> int:
        """Tasks parked now."""
        return len(self._lot)

    async def through(self) -> None:
        """Return once let through: in the next turn or a later one, in the order the
        tasks came (those let through in one turn run in Trio's order).

        Raises:
            trio.Cancelled: the task was cancelled while parked (it is not let through).
        """
        if not self._turning:
            self._turning = True
            trio.lowlevel.spawn_system_task(self._turn, name="trioproxy.turnstile")
        await self._lot.park()

    async def _turn(self) -> None:
        try:
            while self._lot:
                self.passed += len(self._lot.unpark(count=self.per_turn))
                # Those let through run in the next turn, and so does this task: the loop
                # looks for I/O before it lets the next few through.
                await trio.lowlevel.checkpoint()
        finally:
            self._turning = False


_RUN_TURNSTILE: trio.lowlevel.RunVar[Turnstile] = trio.lowlevel.RunVar("trioproxy.turnstile")


def turnstile() -> Turnstile:
    """The turnstile of the current Trio run (made on first use)."""
    try:
        return _RUN_TURNSTILE.get()
    except LookupError:
        gate = Turnstile()
        _RUN_TURNSTILE.set(gate)
        return gate
