"""The scenarios of the bench and their results.

* **Throughput** (:func:`throughput`): wrk POSTs for a fixed time at 1 and 32 keep-alive
  connections — the chat completion at 1 and 32 connections, the 40-chunk stream at 32 —
  against each target in turn, round after round (A B C D A B C D …), so drift on a noisy
  machine hits every target alike. Gives requests/s, latency p50/p99 and the server
  process's CPU time per request, per round.
* **Stream timing** (:func:`stream_timing`): sequential streaming requests on one
  keep-alive connection, alternating targets by round; time to the first and to the last
  body byte of the 40-chunk stream, as one client sees it without any load.
* **Concurrency** (:func:`concurrency`): thousands of slow streams from the slow upstream
  held open at once, directly and through a fresh proxy with tracking on; the proxy's RSS
  and fds, ``GET /v1/diagnostics`` latency while they run, the CPU each process burns,
  how late each chunk arrives compared with when the upstream sent it, the proxy's
  garbage-collector pauses (``gcwatch.py``), and how fast it lets go after the hang-up.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio
import wrk
from clients import HoldResult, ReleaseWatch, StreamTiming, hold_streams, stream_timings
from procs import LOOPBACK, Service, children, cpu_seconds, rss_bytes
from wrk import WrkResult

HERE = Path(__file__).resolve().parent
# Seconds between diagnostics requests while streams are held. Each answer lists every
# connection, so polling is itself load; trioproxy-inspect --watch polls every 1 s.
DIAGNOSTICS_INTERVAL = 0.5
#: Seconds after the hang-up began by which the proxy must have released every stream.
RELEASE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Target:
    """A server under test and where it answers the JSON and the SSE request."""

    key: str
    label: str
    port: int
    json_path: str
    sse_path: str
    pids: tuple[int, ...] = ()
    """The server's processes, whose CPU time is charged to it (not its upstream's)."""

    def cpu(self) -> float:
        """CPU seconds the server's processes have used so far."""
        return sum(cpu_seconds(pid) for pid in self.pids)

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"


@dataclass(frozen=True, slots=True)
class Load:
    """A throughput scenario: which body, how many connections."""

    key: str
    label: str
    stream: bool
    connections: int


LOADS = (
    Load("json1", "non-streaming, 1 connection", stream=False, connections=1),
    Load("json32", "non-streaming, 32 connections", stream=False, connections=32),
    Load("sse32", "streaming (40 chunks), 32 connections", stream=True, connections=32),
)


@dataclass
class Throughput:
    """wrk results per (load key, target key), one per round in round order.

    ``cpu_us`` holds, in the same order, the server's CPU microseconds per completed
    request: a figure a busy machine disturbs far less than requests/s.
    """

    runs: dict[tuple[str, str], list[WrkResult]] = field(default_factory=dict)
    cpu_us: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    #: Per run, the cores wrk and the upstream (nginx) used: what the load took.
    load_cores: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)

    def of(self, load: str, target: str) -> list[WrkResult]:
        return self.runs.get((load, target), [])


def throughput(
    targets: list[Target],
    bodies: dict[bool, Path],
    *,
    rounds: int,
    seconds: float,
    log: Callable[[str], None],
    loads: Sequence[Load] = LOADS,
    upstream_pids: Sequence[int] = (),
) -> Throughput:
    """Run every load against every target, ``rounds`` times, alternating targets.

    ``upstream_pids``: the processes behind the targets (nginx), whose cores each run
    used are recorded with wrk's.
    """
    result = Throughput()
    for number in range(1, rounds + 1):
        for load in loads:
            for target in targets:
                path = target.sse_path if load.stream else target.json_path
                cpu0 = target.cpu()
                up0 = sum(cpu_seconds(pid) for pid in upstream_pids)
                wrk0 = os.times()
                run = wrk.run(
                    target.url(path),
                    bodies[load.stream],
                    connections=load.connections,
                    seconds=seconds,
                )
                wrk1 = os.times()
                cpu_us = (target.cpu() - cpu0) / max(1, run.requests) * 1e6
                wrk_cores = (wrk1.children_user - wrk0.children_user) + (
                    wrk1.children_system - wrk0.children_system
                )
                up_cores = sum(cpu_seconds(pid) for pid in upstream_pids) - up0
                key = (load.key, target.key)
                result.runs.setdefault(key, []).append(run)
                result.cpu_us.setdefault(key, []).append(cpu_us)
                result.load_cores.setdefault(key, []).append(
                    (wrk_cores / run.seconds, up_cores / run.seconds)
                )
                log(
                    f"round {number}/{rounds} {load.key:6} {target.key:6} "
                    f"{run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
                    f"CPU {cpu_us:6.0f} us/req" + (f"  ERRORS {run.errors}" if run.errors else "")
                )
    return result


def warm_up(targets: list[Target], bodies: dict[bool, Path]) -> None:
    """One short wrk run per target and body: pools filled, code paths warm."""
    for target in targets:
        for stream in (False, True):
            path = target.sse_path if stream else target.json_path
            wrk.run(target.url(path), bodies[stream], connections=32, seconds=1)


def stream_timing(
    targets: list[Target],
    body: bytes,
    *,
    rounds: int,
    requests: int,
    log: Callable[[str], None],
) -> dict[str, list[list[StreamTiming]]]:
    """TTFB/TTLB of ``requests`` sequential streams per target and round (alternating)."""
    result: dict[str, list[list[StreamTiming]]] = {}
    for number in range(1, rounds + 1):
        for target in targets:
            timings = stream_timings(LOOPBACK, target.port, target.sse_path, body, requests)
            result.setdefault(target.key, []).append(timings)
            ttfb = sorted(t.ttfb for t in timings)[len(timings) // 2] * 1000
            ttlb = sorted(t.ttlb for t in timings)[len(timings) // 2] * 1000
            log(
                f"round {number}/{rounds} stream  {target.key:6} TTFB {ttfb:.3f} ms  "
                f"TTLB {ttlb:.3f} ms"
            )
    return result


#: The phases of a concurrency run, in order: the streams open, are held, are released.
PHASES = ("ramp", "hold", "release")


@dataclass
class Held:
    """One concurrency run: ``count`` streams, ``via`` the proxy (how) or ``direct``.

    CPU figures are fractions of one core over the hold window; RSS in bytes. With
    worker processes, the proxy's figures are the sums over its processes. ``phases``
    maps each of :data:`PHASES` to its ``(start, end)`` in ``time.monotonic()`` seconds;
    the diagnostics probe runs through all three, and ``loop_max_ms``/``gc_max_ms`` are
    the proxy's longest event-loop turn and garbage collection in each.
    """

    count: int
    via: str
    hold: HoldResult
    chunk_interval: float
    workers: int = 1
    rss_idle: int = 0
    rss_peak: int = 0
    fds_idle: int = 0
    fds_peak: int = 0
    fds_after: int = 0
    diag_samples: list[tuple[float, float]] = field(default_factory=list)
    diag_active: list[int] = field(default_factory=list)
    diag_bytes: int = 0
    diag_errors: int = 0
    proxy_cpu: float = math.nan
    upstream_cpu: float = math.nan
    client_cpu: float = math.nan
    release_seconds: float = math.nan
    release_slowest_poll: float = 0.0
    leftover: int = -1
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)
    loop_max_ms: dict[str, float] = field(default_factory=dict)
    gc_max_ms: dict[str, float] = field(default_factory=dict)
    gc_full: int = 0
    gc_full_max_ms: float = math.nan
    gc_paused_ms: float = math.nan
    gc_young_max_ms: float = math.nan
    gc_tracked: bool = False

    def diag_in(self, phase: str) -> list[float]:
        """Diagnostics latencies (ms) of the requests sent during ``phase``."""
        start, end = self.phases.get(phase, (math.inf, -math.inf))
        return [ms for sent, ms in self.diag_samples if start <= sent < end]

    @property
    def diag_latency_ms(self) -> list[float]:
        """Diagnostics latencies (ms) while the streams were held."""
        return self.diag_in("hold")

    @property
    def chunks_per_second(self) -> float:
        """Chunks the client received per second while the streams were held."""
        seconds = self.hold.hold_seconds
        return len(self.hold.transit) / seconds if seconds else math.nan

    def phase_of(self, when: float) -> str | None:
        for phase, (start, end) in self.phases.items():
            if start <= when < end:
                return phase
        return None


def read_gc_log(held: Held, log: Path) -> None:
    """Fill ``held``'s pause figures from a ``gcwatch.py`` log: the collections during
    the hold, and the longest collection and turn of the event loop in each phase."""
    full: list[float] = []
    young: list[float] = []
    for line in log.read_text().splitlines() if log.exists() else []:
        when, kind, pause, *_ = line.split()
        ms = float(pause) * 1000
        phase = held.phase_of(float(when))
        if phase is None:
            continue
        maxima = held.loop_max_ms if kind == "loop" else held.gc_max_ms
        maxima[phase] = max(maxima.get(phase, 0.0), ms)
        if kind != "loop" and phase == "hold":
            (full if kind == "2" else young).append(ms)
    held.gc_tracked = True
    for phase in PHASES:
        held.loop_max_ms.setdefault(phase, 0.0)
        held.gc_max_ms.setdefault(phase, 0.0)
    held.gc_full = len(full)
    held.gc_full_max_ms = max(full, default=0.0)
    held.gc_young_max_ms = max(young, default=0.0)
    held.gc_paused_ms = sum(full) + sum(young)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _tree(pid: int) -> list[int]:
    """``pid`` and its children (a supervisor's workers)."""
    return [pid, *children(pid)]


def _rss_and_fds(pids: list[int]) -> tuple[int, int]:
    return sum(rss_bytes(pid) for pid in pids), sum(_fds(pid) for pid in pids)


async def _observe(held: Held, proxy: Service | None, upstream: Service, seconds: float) -> None:
    """While the streams are held: sample RSS and fds, account CPU."""
    up0 = cpu_seconds(upstream.pid)
    pids = _tree(proxy.pid) if proxy else []
    px0 = sum(cpu_seconds(pid) for pid in pids)
    cl0 = time.process_time()
    start = time.monotonic()
    async with trio.open_nursery() as nursery:
        if proxy is not None:

            async def sample() -> None:
                while True:
                    # In a thread: this event loop also timestamps every chunk, and
                    # listing 10,000 descriptors used to stall it for tens of ms every
                    # sample, which the transit figures then charged to the proxy.
                    rss, fds = await trio.to_thread.run_sync(_rss_and_fds, pids)
                    held.rss_peak = max(held.rss_peak, rss)
                    held.fds_peak = max(held.fds_peak, fds)
                    await trio.sleep(0.25)

            nursery.start_soon(sample)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    elapsed = time.monotonic() - start
    held.upstream_cpu = (cpu_seconds(upstream.pid) - up0) / elapsed
    held.client_cpu = (time.process_time() - cl0) / elapsed
    if proxy is not None:
        held.proxy_cpu = (sum(cpu_seconds(pid) for pid in pids) - px0) / elapsed


def _wait_released(held: Held, proxy: Service, hung_up: float, watch: ReleaseWatch) -> float:
    """After the hang-up, which began at ``hung_up`` (``time.monotonic()``): how long from
    then until the proxy's tracker held no connection, as ``watch`` (started as the
    hang-up began) saw it.

    From the hang-up's beginning, not from when the client has closed its last socket
    or unwound its last task: the proxy releases them meanwhile. Also records the longest
    the proxy took to answer one of the polls. Returns when the release ended
    (``time.monotonic()``; when the watch gave up, if it never ended).
    """
    watch.join()
    released = watch.released if watch.released is not None else time.monotonic()
    held.release_slowest_poll = watch.slowest_poll
    held.leftover = watch.leftover
    held.release_seconds = released - hung_up
    time.sleep(0.5)
    held.fds_after = sum(_fds(pid) for pid in _tree(proxy.pid))
    return released


def _start_probe(proxy: Service) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        str(HERE / "diag_probe.py"),
        "--port",
        str(proxy.port),
        "--interval",
        str(DIAGNOSTICS_INTERVAL),
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE)


def _stop_probe(held: Held, probe: subprocess.Popen[bytes]) -> None:
    probe.send_signal(signal.SIGINT)
    out, _ = probe.communicate(timeout=120)
    data = json.loads(out)
    held.diag_samples = [(sent, ms) for sent, ms in data["samples"]]
    held.diag_active = data["active"]
    held.diag_bytes = data["bytes"]
    held.diag_errors = data["errors"]


def concurrency(
    count: int,
    *,
    via: str,
    proxy: Service | None,
    upstream: Service,
    bodies: list[bytes],
    chunk_interval: float,
    hold_seconds: float,
    ramp_timeout: float,
    gc_log: Path | None = None,
    workers: int = 1,
) -> Held:
    """Hold ``count`` slow streams open at once through ``proxy`` (None: directly).

    ``bodies`` are the request bodies, used round-robin; ``via`` labels the run;
    ``gc_log`` is where the proxy's ``gcwatch.py`` logs its pauses, if it does. Through
    the proxy, ``GET /v1/diagnostics`` is polled from another process from before the
    ramp until the release is over.
    """
    port = proxy.port if proxy is not None else upstream.port
    held = Held(
        count=count,
        via=via,
        hold=HoldResult(requested=count),
        chunk_interval=chunk_interval,
        workers=workers,
    )
    probe = None
    if proxy is not None:
        held.rss_idle, held.fds_idle = _rss_and_fds(_tree(proxy.pid))
        probe = _start_probe(proxy)

    watch = ReleaseWatch(LOOPBACK, port, RELEASE_TIMEOUT, interval=0.05)

    async def main() -> HoldResult:
        return await hold_streams(
            LOOPBACK,
            port,
            "/v1/chat/completions",
            bodies,
            count,
            while_held=partial(_observe, held, proxy, upstream, hold_seconds),
            ramp_timeout=ramp_timeout,
            on_hang_up=watch.start if proxy is not None else None,
        )

    ramp_start = time.monotonic()
    held.hold = trio.run(main)
    hold = held.hold
    held.phases = {"ramp": (ramp_start, hold.held_from), "hold": (hold.held_from, hold.held_until)}
    if proxy is not None and probe is not None:
        released = _wait_released(held, proxy, hold.held_until, watch)
        held.phases["release"] = (hold.held_until, released)
        _stop_probe(held, probe)
    if gc_log is not None:
        read_gc_log(held, gc_log)
    return held


# What the relay-capacity rounds offer, in multiples of what one worker relays: over the
# most two workers could (2), so neither target relays all it is offered.
RELAY_OFFER = 2.2


@dataclass
class Relayed:
    """One relay-capacity run (``paced_client.py`` through the proxy): events relayed per
    second while held, and the cores each process used meanwhile."""

    count: int
    workers: int
    chunk_interval: float
    """Seconds between chunks of each stream, as the paced upstream offered them."""
    opened: int = 0
    events: int = 0
    hold_seconds: float = math.nan
    proxy_cpu: float = math.nan
    upstream_cpu: float = math.nan
    client_cpu: float = math.nan

    @property
    def chunks_per_second(self) -> float:
        """Chunks the client received per second while the streams were held."""
        return self.events / self.hold_seconds if self.hold_seconds else math.nan

    @property
    def offered_per_second(self) -> float:
        """Chunks per second the upstream offered over all streams."""
        return self.count / self.chunk_interval


def relay(
    count: int,
    *,
    proxy: Service,
    upstream: Service,
    chunk_interval: float,
    hold_seconds: float,
    ramp_timeout: float,
    workers: int,
) -> Relayed:
    """Hold ``count`` paced streams through ``proxy`` with ``paced_client.py`` (a process
    of its own) and count what they relay.

    Raises:
        RuntimeError: the client failed or printed no result.
    """
    argv = [
        sys.executable,
        str(Path(__file__).with_name("paced_client.py")),
        *("--port", str(proxy.port), "--streams", str(count)),
        *("--delay", f"{chunk_interval:.6f}", "--hold", str(hold_seconds)),
        *("--ramp-timeout", str(ramp_timeout)),
    ]
    out = Relayed(count=count, workers=workers, chunk_interval=chunk_interval)
    pids = _tree(proxy.pid)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as client:
        assert client.stdout is not None
        result: dict[str, Any] = {}
        before = after = (0.0, 0.0)
        for line in client.stdout:
            message = json.loads(line)
            # The proxy's and the upstream's CPU are read as the client starts and ends
            # its hold: its own is in its result.
            if message["event"] == "hold":
                before = (sum(cpu_seconds(p) for p in pids), cpu_seconds(upstream.pid))
            elif message["event"] == "done":
                after = (sum(cpu_seconds(p) for p in pids), cpu_seconds(upstream.pid))
                result = message
    if client.returncode or not result:
        raise RuntimeError(f"paced_client.py ended with {client.returncode} and no result")
    seconds = result["held_until"] - result["held_from"]
    out.opened, out.events, out.hold_seconds = result["opened"], result["events"], seconds
    out.proxy_cpu = (after[0] - before[0]) / seconds
    out.upstream_cpu = (after[1] - before[1]) / seconds
    out.client_cpu = result["cpu_seconds"] / seconds
    return out
