"""wrk as the load generator: POST a JSON body for a fixed time, report req/s and latency.

``post.lua`` sets the method, body and content type and prints wrk's summary and latency
percentiles as one JSON line, parsed here into a :class:`WrkResult`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("post.lua")
_MARK = "BENCH-JSON "


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run: throughput and latency (milliseconds) of the completed requests.

    ``errors`` sums connect, read, write and timeout errors and non-2xx/3xx answers.
    """

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def available() -> bool:
    """Whether a ``wrk`` binary is on PATH."""
    return shutil.which("wrk") is not None


def version() -> str:
    """wrk's version word, e.g. ``4.1.0-3+b2``."""
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    words = (out.stdout + out.stderr).split()
    return words[1] if len(words) > 1 else "unknown"


def parse(output: str) -> WrkResult:
    """The :class:`WrkResult` in wrk's stdout (the line ``post.lua`` prints)."""
    for line in output.splitlines():
        if line.startswith(_MARK):
            data = json.loads(line[len(_MARK) :])
            break
    else:
        raise RuntimeError(f"no summary line in wrk output:\n{output}")
    lat = data["latency_us"]
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=sum(data["errors"].values()),
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
    )


def run(
    url: str, body_file: Path, *, connections: int, seconds: float, threads: int = 1
) -> WrkResult:
    """Run wrk against ``url`` for ``seconds`` with ``connections`` keep-alive connections.

    One wrk thread by default: on a 2-core machine the second core belongs to the server.
    """
    argv = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url,
    ]
    env = {**os.environ, "WRK_BODY_FILE": str(body_file)}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse(out.stdout)
