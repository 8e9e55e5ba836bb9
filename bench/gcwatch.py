"""Run trioproxy with its pauses logged: the garbage collector's and the event loop's.

``python bench/gcwatch.py <trioproxy arguments>`` is ``python -m trioproxy`` plus two
hooks that append lines to the file named by ``BENCH_GC_LOG``:

* a ``gc.callbacks`` hook: one line per collection that paused the process for 1 ms or
  more, and per full (generation 2) collection:
  ``<time.monotonic()> <generation> <pause seconds> <collected> <CPU seconds>``;
* a Trio instrument: one line per turn of the event loop that ran for 20 ms or more
  between two waits for I/O — the time in which no socket is read, no new connection
  accepted and no timer fires: ``<time.monotonic() at its start> loop <seconds> -``.

The CPU seconds of a collection (the thread's own, ``time.thread_time()``) say how much
of its pause was the process's work: on a machine shared with other work, the rest is
time it waited for a core. (The loop's turns are too many to read that clock for each.)

Both cost microseconds per collection or per turn of the loop; the pauses they report
stop every request in the process, so they show up whole in chunk delays and
diagnostics latency.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from functools import partial
from typing import IO, Any

import trio

#: Turns of the event loop at least this long are logged.
LOOP_PAUSE = 0.02


class LoopWatch(trio.abc.Instrument):
    """Logs the turns of the event loop that ran long (see the module docstring)."""

    def __init__(self, log: IO[str]) -> None:
        self._log = log
        self._woke: float | None = None

    def after_io_wait(self, timeout: float) -> None:
        self._woke = time.monotonic()

    def before_io_wait(self, timeout: float) -> None:
        if self._woke is not None:
            busy = time.monotonic() - self._woke
            if busy >= LOOP_PAUSE:
                self._log.write(f"{self._woke:.6f} loop {busy:.6f} -\n")


def main() -> int:
    """Install the hook, then run trioproxy's own ``main``."""
    log = open(os.environ["BENCH_GC_LOG"], "a", buffering=1)  # noqa: SIM115 (process-long)
    started = started_cpu = 0.0

    def hook(phase: str, info: dict[str, Any]) -> None:
        nonlocal started, started_cpu
        if phase == "start":
            started = time.perf_counter()
            started_cpu = time.thread_time()
            return
        pause = time.perf_counter() - started
        if pause >= 0.001 or info["generation"] == 2:
            cpu = time.thread_time() - started_cpu
            log.write(
                f"{time.monotonic():.6f} {info['generation']} {pause:.6f} {info['collected']} "
                f"{cpu:.6f}\n"
            )

    gc.callbacks.append(hook)
    # The proxy's trio.run (cli.main calls it by attribute) runs with the instrument.
    trio.run = partial(trio.run, instruments=[LoopWatch(log)])  # type: ignore[assignment]
    from trioproxy.cli import main as proxy_main

    return proxy_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
