"""Run trioproxy with its garbage-collector pauses logged (for the concurrency scenarios).

``python bench/gcwatch.py <trioproxy arguments>`` is ``python -m trioproxy`` plus a
``gc.callbacks`` hook that appends one line per collection that paused the process for
1 ms or more, and per full (generation 2) collection, to the file named by
``BENCH_GC_LOG``: ``<time.monotonic()> <generation> <pause seconds> <collected>``.
The hook costs a few microseconds per collection; the pauses it reports stop every
request in the process, so they show up whole in chunk delays and diagnostics latency.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any


def main() -> int:
    """Install the hook, then run trioproxy's own ``main``."""
    log = open(os.environ["BENCH_GC_LOG"], "a", buffering=1)  # noqa: SIM115 (process-long)
    started = 0.0

    def hook(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
            return
        pause = time.perf_counter() - started
        if pause >= 0.001 or info["generation"] == 2:
            log.write(
                f"{time.monotonic():.6f} {info['generation']} {pause:.6f} {info['collected']}\n"
            )

    gc.callbacks.append(hook)
    from trioproxy.cli import main as proxy_main

    return proxy_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
