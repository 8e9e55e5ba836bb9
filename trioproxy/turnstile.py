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

#: Tasks let through per turn of the event loop. Each one let through takes several more
#: turns to end its connection (its request unwinds, its sockets close), so a turn holds
#: the work of several times this many, and anything else the loop serves meanwhile
#: waits that long per turn it needs: ``GET /v1/diagnostics``, about 8. After 5,000
#: streams hung up at once (``bench/release.py --pauses``, 2026-12-02), with 32 the poll
#: took 100 ms (p50) during the release, with 4 20 to 30 ms, while the release took 10
#: to 20 % longer (1.2 s); 2 was no better for the poll and slower again. A count that
#: adapted to the turns' length did no better either (2026-12-01): the release is
#: CPU-bound whatever the count.
PER_TURN = 4


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
