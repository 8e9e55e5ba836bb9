"""Poll ``GET /v1/diagnostics`` for a while and report each answer's latency.

Runs as its own process so the load of the many-stream client does not skew it:
sequential requests on one keep-alive connection (``http.client``), one every
``--interval`` seconds, each timed from sending the request to the last body byte.
Prints one JSON object: ``latency_ms`` (list), ``active`` (``total_active_connections``
of each answer), ``bytes`` (size of the last answer) and ``errors``.

Run: ``python bench/diag_probe.py --port N --seconds S [--interval I]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import time


def probe(port: int, seconds: float, interval: float) -> dict[str, object]:
    """Poll for ``seconds``; see the module docstring for the result."""
    latencies: list[float] = []
    active: list[int] = []
    size = 0
    errors = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        try:
            conn.request("GET", "/v1/diagnostics")
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            time.sleep(interval)
            continue
        elapsed = time.perf_counter() - start
        if response.status != 200:
            errors += 1
        else:
            latencies.append(elapsed * 1000)
            size = len(body)
            activity = json.loads(body).get("global_activity") or {}
            active.append(int(activity.get("total_active_connections", 0)))
        time.sleep(max(0.0, interval - elapsed))
    conn.close()
    return {"latency_ms": latencies, "active": active, "bytes": size, "errors": errors}


def main() -> None:
    """Print the probe's JSON result on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()
    print(json.dumps(probe(args.port, args.seconds, args.interval)))


if __name__ == "__main__":
    main()
