"""Finding stale connections and cancelling their requests, once or periodically.

The sweeper only marks and cancels: each cancelled request's scope unwinds through its
``track()`` block, and that exit removes the record — never the sweeper — so a record
disappears exactly when its request does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import NoReturn

import trio

from .records import InstanceRecord, cancel_as_stale

logger = logging.getLogger(__name__)

MAX_SWEEP_PERIOD = 30.0
MIN_SWEEP_PERIOD = 0.25


def sweep_period(stale_timeout: float) -> float:
    """Return how often to sweep: ``min(30, max(0.25, stale_timeout / 4))`` seconds.

    A quarter of the timeout bounds how late a stale request is cancelled (at most one
    period past the timeout), without waking more than four times per timeout.
    """
    return min(MAX_SWEEP_PERIOD, max(MIN_SWEEP_PERIOD, stale_timeout / 4))


def cancel_stale(instances: Iterable[InstanceRecord], now: float, stale_timeout: float) -> int:
    """Cancel every request that has seen no byte for ``stale_timeout`` or more.

    Staleness is per request: a stalled request is cancelled even while another request
    of its session streams on (the connection's own ``last_activity`` is the view's).
    ``now`` is a Trio clock reading. Requests already cancelled by an earlier sweep
    (still unwinding) are not counted again. Must run on the Trio thread: the records'
    dicts change only there, so iterating them needs no lock.

    Returns:
        How many requests this call cancelled.
    """
    cancelled = 0
    for instance in instances:
        for connection in instance.connections.values():
            for meter in list(connection.meters):
                idle = now - meter.last_activity
                if idle < stale_timeout:
                    continue
                why = f"no byte in either direction for {idle:.1f} s"
                if cancel_as_stale(meter, why):
                    cancelled += 1
                    logger.warning(
                        "cancelling stale request: instance=%s session=%s model=%s idle=%.1fs",
                        instance.name,
                        connection.session_id,
                        meter.model,
                        idle,
                    )
    return cancelled


async def run_periodically(
    sweep: Callable[[], object],
    period: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Call ``sweep()`` every ``period`` seconds of Trio's clock, until cancelled.

    ``task_status.started()`` is called once the loop is running. Errors raised by
    ``sweep`` propagate and end the loop.
    """
    task_status.started()
    while True:
        await trio.sleep(period)
        sweep()
