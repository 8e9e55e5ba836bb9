"""Poll ``GET /v1/diagnostics`` from a process of its own and time each answer.

The concurrency scenarios run this while thousands of streams ramp up, are held and are
released: in another process, so that the client holding the streams (whose own event
loop timestamps every chunk) neither delays the polls nor is delayed by them. One
request every ``--interval`` seconds on one keep-alive connection, each timed from
sending the request to the last body byte, until ``--seconds`` have passed or until
SIGINT/SIGTERM (then it finishes the request in progress). Prints one JSON object:
``samples`` (``[time.monotonic() when sent, milliseconds]`` of each answer; one clock for
all processes, so the bench can tell ramp, hold and release apart), ``latency_ms`` (the
same milliseconds), ``active`` (``total_active_connections`` of each answer), ``bytes``
(size of the largest answer) and ``errors``.

Run: ``python bench/diag_probe.py --port N [--seconds S] [--interval I]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import signal
import time
from types import FrameType


class _Stop:
    requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def probe(port: int, seconds: float, interval: float, stop: _Stop) -> dict[str, object]:
    """Poll until ``seconds`` pass or ``stop`` is requested; see the module docstring."""
    samples: list[tuple[float, float]] = []
    active: list[int] = []
    size = 0
    errors = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop.requested:
        sent = time.monotonic()
        start = time.perf_counter()
        try:
            conn.request("GET", "/v1/diagnostics")
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            time.sleep(interval)
            continue
        elapsed = time.perf_counter() - start
        if response.status != 200:
            errors += 1
        else:
            samples.append((sent, elapsed * 1000))
            size = max(size, len(body))
            activity = json.loads(body).get("global_activity") or {}
            active.append(int(activity.get("total_active_connections", 0)))
        time.sleep(max(0.0, interval - elapsed))
    conn.close()
    return {
        "samples": samples,
        "latency_ms": [ms for _, ms in samples],
        "active": active,
        "bytes": size,
        "errors": errors,
    }


def main() -> None:
    """Print the probe's JSON result on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=math.inf)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()
    stop = _Stop()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(json.dumps(probe(args.port, args.seconds, args.interval, stop)))


if __name__ == "__main__":
    main()
