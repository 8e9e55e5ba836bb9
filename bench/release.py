"""Release of many streams at once, alone and optionally under py-spy: issue 14's open part.

Starts the slow upstream and one ``trioproxy`` (tracking on, this tree), opens
``--streams`` (5,000) slow streams through it with the bench's own client, holds them a
few seconds, hangs them all up, and prints how long until ``GET
/v1/diagnostics/activity`` says no connection is left, and the proxy's CPU meanwhile.
With ``--floor`` the proxy is ``release_floor.py``, the least a Trio program can do
(``--floor -- --batched``: its variant that tells hang-ups in batches).
With ``--py-spy``, ``py-spy record`` (``pip install py-spy``; attaching needs ptrace
rights) samples the proxy from just before the hang-up for ``--spy-seconds`` and the
script prints the frames with the most samples, own and inclusive; the raw stacks stay
in ``--out``. With ``--pauses``, the proxy runs under ``gcwatch.py`` and
``diag_probe.py`` polls ``GET /v1/diagnostics`` every 0.25 s throughout; the script
prints, for the ramp, the hold and the release, the longest turn of the event loop, the
longest collection and the poll's p50 / max; the collector's and loop's log
(``gc.log``) and the polls with the phases' bounds (``pauses.json``) stay in ``--out``.

It is the fast loop for the release (a minute a try), where ``run.py``'s concurrency
scenario is the measurement of record. Extra arguments after ``--`` go to ``trioproxy``
(for example ``-- --access-log off``).

Run: ``python bench/release.py [--streams N] [--hold S] [--py-spy] [--spy-seconds S]
[--pauses] [--out DIR] [-- PROXY ARGS]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import trio
from bodies import SLOW_MODEL, request_body
from clients import ReleaseWatch, hold_streams
from procs import LOOPBACK, Service, cpu_times, free_port, python_argv, raise_fd_limit
from release_floor import floor_argv

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOLD = 3.0  # seconds the streams are held before the hang-up, by default
CHUNK_RATE = 1000  # chunks/s over all streams, as run.py's concurrency scenario
RELEASE_DEADLINE = 120.0  # seconds: a release that takes longer raises trio.TooSlowError


Phases = dict[str, tuple[float, float]]


async def release_seconds(
    port: int,
    pid: int,
    count: int,
    hold: float,
    on_hold: Callable[[], None] | None,
    phases: Phases,
) -> float:
    """Hold ``count`` streams through the proxy on ``port`` for ``hold`` seconds, call
    ``on_hold`` just before hanging up, and return the seconds until its tracker holds no
    connection. ``phases`` gets the ramp, hold and release (``time.monotonic()``)."""
    interval = count / CHUNK_RATE
    body = request_body(
        SLOW_MODEL, stream=True, bench_chunks=int(120 / interval), bench_delay=interval
    )

    started = time.monotonic()

    cpu_at_hang_up = (0.0, 0.0)

    async def while_held() -> None:
        nonlocal cpu_at_hang_up
        await trio.sleep(hold)
        if on_hold is not None:
            on_hold()
            await trio.sleep(1)  # py-spy attaches
        cpu_at_hang_up = cpu_times(pid)

    watch = ReleaseWatch(LOOPBACK, port, RELEASE_DEADLINE)

    result = await hold_streams(
        LOOPBACK,
        port,
        "/v1/chat/completions",
        [body],
        count,
        while_held=while_held,
        ramp_timeout=90,
        on_hang_up=watch.start,
    )
    # The hang-up began as the hold ended: the client then closes thousands of sockets
    # in one loop (a few tenths of a second), and the proxy releases them meanwhile.
    hung_up = result.held_until
    print(f"{result.opened:,} streams opened in {result.ramp_seconds:.1f} s", flush=True)
    print(f"the client hung up in {result.hang_up_seconds:.3f} s", flush=True)
    await trio.to_thread.run_sync(watch.join)
    released = watch.released
    if released is None:
        # A connection that never leaves is what this looks for: fail, do not hang.
        raise trio.TooSlowError(f"{watch.leftover} connections left after the deadline")
    user, system = cpu_times(pid)
    phases["proxy CPU"] = (user - cpu_at_hang_up[0], system - cpu_at_hang_up[1])
    phases["ramp"] = (started, result.held_from)
    phases["hold"] = (result.held_from, result.held_until)
    phases["release"] = (result.held_until, released)
    return released - hung_up


def top_frames(raw: Path, most: int = 25) -> None:
    """Print the frames with the most samples in py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        frames = stack.split(";")
        own[frames[-1]] += int(number)
        for frame in set(frames):
            inclusive[frame] += int(number)
    print("own samples:")
    for frame, n in own.most_common(most):
        print(f"{n:7d}  {frame}")
    print("inclusive samples (trioproxy, hypercorn, h11):")
    shown = [
        (f, n)
        for f, n in inclusive.most_common()
        if any(k in f for k in ("trioproxy", "hypercorn", "h11"))
    ]
    for frame, n in shown[:most]:
        print(f"{n:7d}  {frame}")


def print_pauses(phases: Phases, gc_log: Path, polls: list[list[float]]) -> None:
    """Per phase: the longest loop turn and collection (``gcwatch.py``'s log) and the
    diagnostics poll's p50 and max (``diag_probe.py``'s samples)."""
    loop: dict[str, float] = dict.fromkeys(phases, 0.0)
    collection = dict(loop)
    for line in gc_log.read_text().splitlines():
        when, kind, pause, *_ = line.split()
        for name, (start, end) in phases.items():
            if start <= float(when) < end:
                maxima = loop if kind == "loop" else collection
                maxima[name] = max(maxima[name], float(pause) * 1000)
    print("phase    longest loop turn ms  longest GC ms  diagnostics p50 / max ms (n)")
    for name, (start, end) in phases.items():
        ms = sorted(m for sent, m in polls if start <= sent < end)
        diag = f"{ms[len(ms) // 2]:.0f} / {ms[-1]:.0f} ({len(ms)})" if ms else "-"
        print(f"{name:8} {loop[name]:20.0f}  {collection[name]:13.0f}  {diag}")


def main() -> None:
    """Run one release and print its time (and the profile, with ``--py-spy``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--hold", type=float, default=HOLD)
    parser.add_argument("--pauses", action="store_true")
    parser.add_argument(
        "--floor", action="store_true", help="time release_floor.py's release, not trioproxy's"
    )
    parser.add_argument("--py-spy", action="store_true")
    parser.add_argument("--spy-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("proxy_args", nargs="*")
    args = parser.parse_args()
    raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="trioproxy-release-"))
    out = args.out or work
    out.mkdir(parents=True, exist_ok=True)
    slow_port, port = free_port(), free_port()
    config = work / "proxy.yaml"
    config.write_text(
        "backends:\n  - name: slow\n    type: openai\n"
        f"    base_url: http://{LOOPBACK}:{slow_port}/v1\n    models: [{SLOW_MODEL}]\n"
    )
    gc_log = out / "gc.log"
    proxy_argv = [
        sys.executable,
        *((str(HERE / "gcwatch.py"),) if args.pauses else ("-m", "trioproxy")),
        "--port",
        str(port),
        "-c",
        str(config),
        "--enable-activity-tracking",
        "--log-level",
        "warning",
        *args.proxy_args,
    ]
    if args.floor:
        proxy_argv = floor_argv(port, slow_port, *args.proxy_args)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_GC_LOG": str(gc_log)}
    slow = Service(
        "slow",
        python_argv(HERE / "slow_upstream.py", "--port", str(slow_port)),
        slow_port,
        work / "slow.log",
    )
    proxy = Service("proxy", proxy_argv, port, work / "proxy.log", env=env)
    spies: list[subprocess.Popen[bytes]] = []

    def start_spy() -> None:
        argv = ["py-spy", "record", "--pid", str(proxy.pid), "--nonblocking", "-r", "250"]
        argv += ["-d", f"{args.spy_seconds:g}", "-f", "raw", "-o", str(out / "release.txt")]
        spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    phases: Phases = {}
    with slow, proxy:
        probe = None
        if args.pauses:
            probe_argv = [sys.executable, str(HERE / "diag_probe.py"), "--port", str(port)]
            probe_argv += ["--interval", "0.25", "--seconds", "3600"]
            probe = subprocess.Popen(probe_argv, stdout=subprocess.PIPE)
        on_hold = start_spy if args.py_spy else None
        seconds = trio.run(
            release_seconds, port, proxy.pid, args.streams, args.hold, on_hold, phases
        )
        user, system = phases.pop("proxy CPU")
        print(
            f"released after {seconds:.2f} s, {user + system:.2f} s of the proxy's CPU "
            f"({user:.2f} s user, {system:.2f} s system)"
        )
        for spy in spies:
            spy.wait()
        if probe is not None:
            probe.send_signal(signal.SIGINT)
            polls = json.loads(probe.communicate(timeout=120)[0])["samples"]
            print_pauses(phases, gc_log, polls)
            (out / "pauses.json").write_text(json.dumps({"phases": phases, "polls": polls}))
            print(f"raw: {gc_log}, {out / 'pauses.json'}")
    if spies:
        top_frames(out / "release.txt")
        print(f"raw stacks: {out / 'release.txt'}")


if __name__ == "__main__":
    main()
