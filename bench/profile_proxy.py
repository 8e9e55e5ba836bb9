"""Profile trioproxy on the hot path: wrk load through the proxy while py-spy samples it.

Starts nginx and one trioproxy (tracking on unless ``--tracking off``) like ``run.py``,
with the proxy running under ``py-spy record`` (``pip install py-spy``) — py-spy starts
it as its own child, because attaching to a running process needs ptrace rights some
sandboxes refuse. Drives non-streaming (or ``--stream``) requests at 32 connections
with wrk, stops the proxy with SIGINT (py-spy then writes its samples), and prints where
the samples fall: the share inside a few telling frames, own time by package, and the
top functions by own time. The collapsed stacks stay in ``--out`` for flamegraph.pl or
speedscope.

Run: ``python bench/profile_proxy.py [--seconds S] [--stream] [--tracking off] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

import nginx
import wrk
from bodies import JSON_MODEL, SSE_MODEL, completion_body, request_body, stream_body
from procs import LOOPBACK, free_port, raise_fd_limit
from run import proxy_service

# Frames whose inclusive share says where a request's time goes (substring of "func (file)").
MARKERS = (
    ("hypercorn: HTTP/1.1 protocol + h11 (server side)", "hypercorn/protocol"),
    ("hypercorn: trio TCP server (socket reads/writes)", "hypercorn/trio/tcp_server"),
    ("trioproxy relay (whole request)", "trioproxy/relay.py"),
    ("trioproxy backend connector", "trioproxy/backends/"),
    ("h11 (both sides)", "h11/"),
    ("the upstream pool (h11 client side, its sockets)", "trioproxy/backends/h11"),
    ("json", "json/"),
    ("activity tracker", "trioproxy/activity/"),
)
# Own time grouped by where the innermost frame's code lives.
PACKAGES = (
    "trioproxy/",
    "hypercorn/",
    "h11/",
    "trio/_socket",
    "trio/",
    "json/",
)


_LINE = re.compile(r":\d+\)$")


def _package(frame: str) -> str:
    for package in PACKAGES:
        if package in frame:
            return package.rstrip("/") + (" (socket syscalls)" if package == "trio/_socket" else "")
    return "other (stdlib, attrs, outcome, ...)"


def summarize(collapsed: Path, top: int = 25) -> str:
    """Own-time top functions and marker shares of a py-spy ``raw`` (collapsed) file."""
    own: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        # One entry per function, not per line.
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        by_package[_package(frames[-1])] += count
        for label, needle in MARKERS:
            if any(needle in frame for frame in frames):
                inclusive[label] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "share of samples inside:"]
    for label, _ in MARKERS:
        lines.append(f"  {inclusive[label] / total:6.1%}  {label}")
    lines += ["", "own time by package:"]
    for package, count in by_package.most_common():
        lines.append(f"  {count / total:6.1%}  {package}")
    lines += ["", f"top {top} functions by own time:"]
    for frame, count in own.most_common(top):
        lines.append(f"  {count / total:6.1%}  {frame}")
    return "\n".join(lines)


def main() -> int:
    """Profile and print the summary; 2 when nginx, wrk or py-spy is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--stream", action="store_true", help="the 40-chunk stream")
    parser.add_argument("--tracking", choices=("on", "off"), default="on")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    if not (nginx.available() and wrk.available() and shutil.which("py-spy")):
        print(
            "needs nginx, wrk (apt-get install -y nginx-light wrk) and py-spy (pip install py-spy)",
            file=sys.stderr,
        )
        return 2
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="trioproxy-profile-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        base = f"http://{LOOPBACK}:{port}"
        upstreams = {
            "json": base + nginx.JSON_PREFIX,
            "sse": base + nginx.SSE_PREFIX,
            "slow": f"http://{LOOPBACK}:1/v1",
        }
        body = workdir / "request.json"
        body.write_bytes(request_body(SSE_MODEL if args.stream else JSON_MODEL, stream=args.stream))
        kind = "stream" if args.stream else "json"
        raw = args.out / f"trioproxy-{kind}-{args.tracking}.txt"
        proxy = proxy_service(workdir, "proxy", args.tracking == "on", upstreams)
        # py-spy starts the proxy as its own child (attaching with --pid needs ptrace
        # rights some sandboxes refuse) and writes the samples when it gets SIGINT.
        proxy.argv = [
            "py-spy",
            "record",
            "--rate",
            "250",
            "--format",
            "raw",
            "-o",
            str(raw),
            "--",
            *proxy.argv,
        ]
        proxy.stop_signal = signal.SIGINT
        with nginx.service(workdir, port, completion_body(), stream_body()), proxy:
            url = f"http://{LOOPBACK}:{proxy.port}/v1/chat/completions"
            # Start-up and the warm-up are sampled too; they are short against the load.
            wrk.run(url, body, connections=args.connections, seconds=1)
            run = wrk.run(url, body, connections=args.connections, seconds=args.seconds)
    print(
        f"wrk through the proxy while sampled: {run.rps:.0f} req/s, p50 {run.p50_ms:.2f} ms, "
        f"errors {run.errors}"
    )
    print(f"collapsed stacks: {raw} (flamegraph.pl or speedscope draw them)\n")
    print(summarize(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
