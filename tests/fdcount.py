"""Counting a process's open descriptors, and waiting for the count to come down.

Nothing announces that a descriptor was closed — not to another process, and not to a
test in the same one — so :func:`wait_for_fds` polls ``/proc/PID/fd``; its guard fails
a test whose count never comes down instead of hanging it.
"""

from __future__ import annotations

import os

import trio

POLL = 0.01  # seconds between looks at /proc


def open_fds(pid: int | str = "self") -> int:
    """How many descriptors process ``pid`` has open (Linux ``/proc``)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


async def wait_for_fds(at_most: int, *, within: float, pid: int | str = "self") -> None:
    """Return once ``pid`` has at most ``at_most`` descriptors open.

    Raises:
        trio.TooSlowError: it still had more after ``within`` seconds.
    """
    with trio.fail_after(within):
        while open_fds(pid) > at_most:  # noqa: ASYNC110 - no event exists to wait on
            await trio.sleep(POLL)
