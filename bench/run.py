"""The benchmark of issue 6: ``python bench/run.py [--quick]`` (``nox -s bench``).

It starts everything itself on loopback, in a temporary directory: nginx serving the
canned bodies (the physical floor), a bare hypercorn trio server answering the same
bodies (the server's own floor, ``floor_app.py``), trioproxy with tracking off and with
tracking on (both relaying nginx), and later the slow upstream (``slow_upstream.py``).
Then it runs the scenarios of ``scenarios.py``, writes the table to
``docs/performance.md`` (between its markers) and prints it.

Exit codes: 0 done; 2 nginx or wrk missing (the ``apt-get install`` line is printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nginx
import report
import scenarios
import wrk
from bodies import JSON_MODEL, SLOW_MODEL, SSE_MODEL, completion_body, request_body, stream_body
from procs import (
    LOOPBACK,
    Service,
    children,
    free_port,
    load_average,
    python_argv,
    raise_fd_limit,
)
from release_floor import floor_argv
from scenarios import Held, Relayed, Target

import trioproxy.backends.http as trioproxy_http

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
APT_LINE = "apt-get install -y nginx-light wrk"


@dataclass(frozen=True, slots=True)
class Plan:
    """How long and how hard each scenario runs."""

    mode: str
    rounds: int
    wrk_seconds: float
    stream_requests: int
    stream_counts: tuple[int, ...]
    hold_seconds: float
    chunk_rate: float
    """Chunks per second the slow upstream sends over all streams together."""
    ramp_timeout: float
    workers_rounds: int
    """Rounds of the 1-worker / 2-worker throughput comparison."""
    relay_streams: int
    """Streams of the relay-capacity comparison (chunks/s relayed, 1 and 2 workers)."""
    relay_interval: float
    """Seconds between chunks of each stream in the run that measures what one worker
    relays (which sets what the rounds offer): more than a worker relays."""
    relay_rounds: int


FULL = Plan(
    "Full",
    rounds=5,
    wrk_seconds=5,
    stream_requests=200,
    stream_counts=(1000, 5000),
    hold_seconds=20,
    chunk_rate=1000,
    ramp_timeout=60,
    workers_rounds=5,
    relay_streams=1000,
    relay_interval=0.02,
    relay_rounds=3,
)
QUICK = Plan(
    "Quick",
    rounds=2,
    wrk_seconds=2,
    stream_requests=50,
    stream_counts=(1000, 5000),
    hold_seconds=5,
    chunk_rate=1000,
    ramp_timeout=40,
    workers_rounds=2,
    relay_streams=1000,
    relay_interval=0.02,
    relay_rounds=1,
)


def log(message: str) -> None:
    """Progress on stderr (the report goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> str:
    """CPU model, cores, memory and kernel."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = ""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    return f"{model}, {os.cpu_count()} cores{memory}, Linux {platform.release()}"


def versions() -> str:
    """Python, the libraries on the request path, nginx and wrk."""
    libs = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("trio", "hypercorn", "httpx", "httpcore", "h11")
    )
    return f"Python {platform.python_version()}, {libs}, {nginx.version()}, wrk {wrk.version()}"


def commit() -> str:
    """The checked-out commit (read-only git), and whether the tree has local changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"`{head}`" + (" with uncommitted changes" if dirty else "")


def slow_instances(count: int) -> list[str]:
    """Names of ``count`` backend instances of the slow upstream (``slow``, or slow1…)."""
    return ["slow"] if count == 1 else [f"slow{i}" for i in range(1, count + 1)]


class ProxyService(Service):
    """trioproxy as a :class:`Service`: ready once it answers, with all its workers.

    With ``--workers`` the supervisor listens before its workers serve, and a worker
    answers while its siblings may still be starting; ``start`` waits until an answer
    names no unreachable worker.
    """

    def __init__(self, *args: Any, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers = workers

    def start(self, ready_timeout: float = 20.0) -> ProxyService:
        super().start(ready_timeout)
        if self.workers > 1:
            deadline = time.monotonic() + ready_timeout
            url = f"http://{LOOPBACK}:{self.port}/v1/diagnostics/activity"
            while True:
                try:
                    if httpx.get(url, timeout=5).json().get("workers_unreachable") == []:
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.name}: its workers did not all start")
                time.sleep(0.1)
        return self

    def pids(self) -> tuple[int, ...]:
        """The supervisor (or the one process) and its workers."""
        return (self.pid, *children(self.pid))


def proxy_service(
    workdir: Path,
    name: str,
    tracking: bool,
    upstreams: dict[str, str],
    slow: int = 1,
    gc_log: Path | None = None,
    workers: int = 1,
    sharing: str = "inherit",
    access_log: str = "text",
) -> ProxyService:
    """trioproxy (this interpreter, ``-m trioproxy``) with a temporary YAML config.

    Backends ``json`` and ``sse`` are nginx; ``slow`` (or ``slow1`` … ``slow<slow>``, all
    the same server) is the slow upstream. With ``gc_log``, the proxy runs under
    ``gcwatch.py``, which logs its garbage-collector and event-loop pauses to that file.
    ``workers`` > 1 runs ``--workers``; ``sharing="reuseport"`` runs it under
    ``reuseport.py`` (a ``SO_REUSEPORT`` socket per worker). ``access_log`` is its
    ``--access-log`` (to stderr, which is the service's log file).
    """
    port = free_port()
    config = workdir / f"{name}.yaml"
    backends = {
        "json": (upstreams["json"], JSON_MODEL),
        "sse": (upstreams["sse"], SSE_MODEL),
        **{instance: (upstreams["slow"], SLOW_MODEL) for instance in slow_instances(slow)},
    }
    config.write_text(
        "backends:\n"
        + "".join(
            f"  - name: {backend}\n    type: openai\n    base_url: {url}\n    models: [{model}]\n"
            for backend, (url, model) in backends.items()
        )
    )
    if sharing == "reuseport":
        launcher = [str(HERE / "reuseport.py")]
    else:
        launcher = [str(HERE / "gcwatch.py")] if gc_log else ["-m", "trioproxy"]
    env = {**os.environ, "BENCH_GC_LOG": str(gc_log)} if gc_log else None
    argv = [
        sys.executable,
        *launcher,
        "--port",
        str(port),
        "-c",
        str(config),
        "--log-level",
        "warning",
        "--shutdown-grace",
        "2",
        "--workers",
        str(workers),
        "--enable-activity-tracking" if tracking else "--no-enable-activity-tracking",
        "--access-log",
        access_log,
    ]
    return ProxyService(name, argv, port, workdir / f"{name}.log", env=env, workers=workers)


def check_answers(targets: list[Target], json_req: bytes, sse_req: bytes) -> None:
    """Every target answers the canned bodies, byte for byte."""
    want = {False: completion_body(), True: stream_body()}
    with httpx.Client(timeout=10) as client:
        for t in targets:
            for stream, body in ((False, json_req), (True, sse_req)):
                path = t.sse_path if stream else t.json_path
                got = client.post(
                    t.url(path), content=body, headers={"content-type": "application/json"}
                )
                if got.status_code != 200 or got.content != want[stream]:
                    raise RuntimeError(
                        f"{t.label} answered {got.status_code} on {path}: {got.content[:200]!r}"
                    )


def run(plan: Plan, workdir: Path) -> report.Figures:
    """Start the servers, run every scenario, stop everything; the raw results."""
    json_req = request_body(JSON_MODEL, stream=False)
    sse_req = request_body(SSE_MODEL, stream=True)
    bodies = {False: workdir / "request.json", True: workdir / "request-stream.json"}
    bodies[False].write_bytes(json_req)
    bodies[True].write_bytes(sse_req)
    (workdir / "completion.json").write_bytes(completion_body())
    (workdir / "stream.sse").write_bytes(stream_body())

    nginx_port, floor_port, relay_port, slow_port = (free_port() for _ in range(4))
    base = f"http://{LOOPBACK}:{nginx_port}"
    upstreams = {
        "json": base + nginx.JSON_PREFIX,
        "sse": base + nginx.SSE_PREFIX,
        "slow": f"http://{LOOPBACK}:{slow_port}/v1",
    }
    chat = nginx.CHAT_PATH
    with ExitStack() as stack:
        up = stack.enter_context(
            nginx.service(workdir, nginx_port, completion_body(), stream_body())
        )
        floor = stack.enter_context(
            Service(
                "floor",
                python_argv(
                    HERE / "floor_app.py",
                    "--port",
                    str(floor_port),
                    "--json",
                    str(workdir / "completion.json"),
                    "--sse",
                    str(workdir / "stream.sse"),
                ),
                floor_port,
                workdir / "floor.log",
            )
        )
        relay = stack.enter_context(
            Service(
                "relay",
                python_argv(HERE / "relay_floor.py", "--port", str(relay_port), "--upstream", base),
                relay_port,
                workdir / "relay.log",
            )
        )
        off = stack.enter_context(proxy_service(workdir, "proxy-off", False, upstreams))
        on = stack.enter_context(proxy_service(workdir, "proxy-on", True, upstreams))
        targets = [
            Target(
                "nginx",
                "nginx (the upstream directly)",
                up.port,
                nginx.JSON_PREFIX + chat,
                nginx.SSE_PREFIX + chat,
                (up.pid, *nginx.workers(up.pid)),
            ),
            Target(
                "floor",
                "bare hypercorn floor",
                floor.port,
                nginx.JSON_PREFIX + chat,
                nginx.SSE_PREFIX + chat,
                (floor.pid,),
            ),
            Target(
                "relay",
                "minimal h11 relay (calibration)",
                relay.port,
                nginx.JSON_PREFIX + chat,
                nginx.SSE_PREFIX + chat,
                (relay.pid,),
            ),
            Target(
                "off", "trioproxy, tracking off", off.port, "/v1" + chat, "/v1" + chat, (off.pid,)
            ),
            Target("on", "trioproxy, tracking on", on.port, "/v1" + chat, "/v1" + chat, (on.pid,)),
        ]
        check_answers(targets, json_req, sse_req)
        log("all targets answer the canned bodies; warming up")
        scenarios.warm_up(targets, bodies)
        tput = scenarios.throughput(
            targets, bodies, rounds=plan.rounds, seconds=plan.wrk_seconds, log=log
        )
        timing = scenarios.stream_timing(
            targets, sse_req, rounds=plan.rounds, requests=plan.stream_requests, log=log
        )
        tracked, nginx_pids = targets[-1], targets[0].pids
        workers = compare(
            "workers", WORKER_TARGETS, plan, workdir, upstreams, tracked, bodies, stack, nginx_pids
        )
        access = compare(
            "access log", ACCESS_LOG_TARGETS, plan, workdir, upstreams, tracked, bodies, stack
        )

    held: list[Held] = []
    relayed: list[Relayed] = []
    if plan.stream_counts or plan.relay_rounds:
        held, relayed = concurrency(plan, workdir, slow_port, upstreams)
    return report.Figures(targets, tput, timing, held, workers, relayed, access)


#: The workers comparison's variants: --workers 2 both ways (key, label, service options).
WORKER_TARGETS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("w2", "trioproxy, tracking on, 2 workers", {"workers": 2, "sharing": "inherit"}),
    (
        "w2r",
        "trioproxy, tracking on, 2 workers, SO_REUSEPORT",
        {"workers": 2, "sharing": "reuseport"},
    ),
)

#: The access log's variants, beside the default one (``on``: text, to its log file).
ACCESS_LOG_TARGETS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("log-json", "trioproxy, tracking on, access log json", {"access_log": "json"}),
    ("log-off", "trioproxy, tracking on, access log off", {"access_log": "off"}),
)


def compare(
    what: str,
    variants: tuple[tuple[str, str, dict[str, Any]], ...],
    plan: Plan,
    workdir: Path,
    upstreams: dict[str, str],
    one: Target,
    bodies: dict[bool, Path],
    stack: ExitStack,
    upstream_pids: tuple[int, ...] = (),
) -> report.Compared:
    """Requests/s at 32 connections of ``one`` (tracking on, one process, the defaults)
    against each of ``variants`` (proxies started with those options), alternating
    within each round. ``upstream_pids``: processes whose cores each run records."""
    targets = [one]
    for key, label, options in variants:
        proxy = proxy_service(workdir, f"proxy-{key}", True, upstreams, **options)
        stack.enter_context(proxy)
        targets.append(Target(key, label, proxy.port, one.json_path, one.sse_path, proxy.pids()))
    log(f"{what}: warming up")
    scenarios.warm_up(targets[1:], bodies)
    tput = scenarios.throughput(
        targets,
        bodies,
        rounds=plan.workers_rounds,
        seconds=plan.wrk_seconds,
        log=log,
        loads=[load for load in scenarios.LOADS if load.connections == 32],
        upstream_pids=upstream_pids,
    )
    return report.Compared(targets, tput)


# The proxy holds at most this many upstream connections per backend instance (its pool's
# MAX_CONNECTIONS; 1,000 with the httpx relay); more streams than this to one instance
# wait for the pool and fail after the connect timeout. Above it, the bench also runs the
# count spread over enough instances (of the same upstream) to measure it at all.
STREAMS_PER_INSTANCE: int = getattr(trioproxy_http, "MAX_CONNECTIONS", 1000)


#: The ``via`` of the largest count's runs through ``release_floor.py``, and the
#: options of each: Trio's floor; every stream relayed by one Trio task; and no
#: event-loop library at all (the kernel's part).
FLOORS = {
    "release floor": (),
    "release floor, one task relays all": ("--pump",),
    "release floor, no Trio": ("--raw",),
}


def concurrency(
    plan: Plan, workdir: Path, slow_port: int, upstreams: dict[str, str]
) -> tuple[list[Held], list[Relayed]]:
    """Each stream count directly, then through a fresh proxy with tracking on; then the
    relay-capacity rounds. Returns both lists of runs.

    Through the proxy the streams first go to one backend instance; when the count is over
    :data:`STREAMS_PER_INSTANCE`, once more spread round-robin over enough instances. The
    largest count also runs through ``--workers 2`` (the merged diagnostics' latency) and
    through ``release_floor.py`` (the least a Trio program's release takes here; with
    ``--pump`` a Trio program that relays every stream from one task; with ``--raw`` the
    least any program's release takes).
    """

    def bodies(instances: list[str] | None, interval: float) -> list[bytes]:
        chunks = math.ceil((plan.ramp_timeout + plan.hold_seconds + 30) / interval)
        models = [f"{i}:{SLOW_MODEL}" for i in instances] if instances else [SLOW_MODEL]
        return [
            request_body(m, stream=True, bench_chunks=chunks, bench_delay=interval) for m in models
        ]

    held: list[Held] = []
    relayed: list[Relayed] = []
    slow = Service(
        "slow-upstream",
        python_argv(HERE / "slow_upstream.py", "--port", str(slow_port)),
        slow_port,
        workdir / "slow-upstream.log",
    )
    with slow:
        for count in plan.stream_counts:
            # Every count gets the same aggregate chunk rate: what differs is how many
            # streams are open, not how much data flows.
            interval = count / plan.chunk_rate
            spread = math.ceil(count / STREAMS_PER_INSTANCE)
            runs: list[tuple[str, int, int]] = [("direct", 0, 1), ("proxy", 1, 1)]
            if spread > 1:
                runs.append((f"proxy, {spread} instances", spread, 1))
            if count == max(plan.stream_counts):
                runs.append(("proxy, 2 workers", 1, 2))
                runs.extend((floor, 0, 1) for floor in FLOORS)
            for via, instances, workers in runs:
                gc_log = workdir / f"gc-{count}-{instances}-{workers}.log"
                with ExitStack() as stack:
                    proxy = None
                    if via in FLOORS:
                        port = free_port()
                        name = "release-floor" + "".join(FLOORS[via])
                        proxy = stack.enter_context(
                            Service(
                                name,
                                floor_argv(port, slow_port, *FLOORS[via]),
                                port,
                                workdir / f"{name}.log",
                            )
                        )
                    elif instances:
                        proxy = stack.enter_context(
                            proxy_service(
                                workdir,
                                f"proxy-{count}-{instances}-{workers}",
                                True,
                                upstreams,
                                instances,
                                gc_log=gc_log if workers == 1 else None,
                                workers=workers,
                            )
                        )
                    log(f"holding {count:,} streams {via}")
                    result = scenarios.concurrency(
                        count,
                        via=via,
                        proxy=proxy,
                        upstream=slow,
                        bodies=bodies(
                            slow_instances(instances) if instances > 1 else None, interval
                        ),
                        chunk_interval=interval,
                        hold_seconds=plan.hold_seconds,
                        ramp_timeout=plan.ramp_timeout,
                        gc_log=gc_log if instances and workers == 1 else None,
                        workers=workers,
                    )
                    failed = sum(result.hold.failures.values())
                    log(
                        f"  {result.hold.opened:,} opened, {failed:,} failed, ramp "
                        f"{result.hold.ramp_seconds:.1f} s, "
                        f"RSS peak {result.rss_peak / 1e6:.0f} MB, "
                        f"{len(result.hold.transit):,} chunks sampled"
                    )
                    held.append(result)
                # Let the sockets of this run close before the next one.
                time.sleep(1)
    relayed = relay_capacity(plan, workdir, upstreams)
    return held, relayed


def relay_capacity(plan: Plan, workdir: Path, upstreams: dict[str, str]) -> list[Relayed]:
    """Chunks/s relayed with ``plan.relay_streams`` streams, 1 and 2 workers alternating.

    The load is ``paced_upstream.py`` and ``paced_client.py``, whose CPU per chunk is a
    fraction of the proxy's: on a 2-core machine they share the cores with the workers,
    and every core they use is one the second worker does not get. For the same reason
    the upstream offers no more than the workers could relay: a one-worker run at
    ``plan.relay_interval`` first measures what one worker relays, and every round then
    offers :data:`scenarios.RELAY_OFFER` times that, to 1 and to 2 workers alike (chunks
    offered and not read would cost the upstream a send each all the same).
    """
    count, hold = plan.relay_streams, min(plan.hold_seconds, 10)
    port = free_port()
    paced = Service(
        "paced-upstream",
        python_argv(HERE / "paced_upstream.py", "--port", str(port)),
        port,
        workdir / "paced-upstream.log",
    )
    out: list[Relayed] = []
    with paced:
        paced_upstreams = {**upstreams, "slow": f"http://{LOOPBACK}:{port}/v1"}

        def run(name: str, workers: int, interval: float) -> Relayed:
            with proxy_service(workdir, name, True, paced_upstreams, workers=workers) as proxy:
                result = scenarios.relay(
                    count,
                    proxy=proxy,
                    upstream=paced,
                    chunk_interval=interval,
                    hold_seconds=hold,
                    ramp_timeout=plan.ramp_timeout,
                    workers=workers,
                )
            log(
                f"{name}: {result.chunks_per_second:,.0f} chunks/s of "
                f"{result.offered_per_second:,.0f} offered, {result.opened:,} streams, CPU "
                f"{result.proxy_cpu:.2f} / {result.upstream_cpu:.2f} / {result.client_cpu:.2f}"
            )
            time.sleep(1)
            return result

        one = run("relay-calibration", 1, plan.relay_interval)
        interval = count / (scenarios.RELAY_OFFER * one.chunks_per_second)
        for number in range(1, plan.relay_rounds + 1):
            for workers in (1, 2):
                out.append(run(f"relay-{number}-{workers}", workers, interval))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the bench; see the module docstring."""
    parser = argparse.ArgumentParser(description="trioproxy's benchmark (issue 6)")
    parser.add_argument(
        "--quick", action="store_true", help="short run: 2 rounds of 2 s per scenario, 5 s holds"
    )
    parser.add_argument(
        "--streams",
        default=None,
        help="comma-separated stream counts for the concurrency scenarios "
        "(default 1000,5000; 0 skips them)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "docs" / "performance.md",
        help="the Markdown file to update (default docs/performance.md)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    missing = [
        tool for tool, ok in (("nginx", nginx.available()), ("wrk", wrk.available())) if not ok
    ]
    if missing:
        print(
            f"bench: {' and '.join(missing)} not found; install with:\n  {APT_LINE}",
            file=sys.stderr,
        )
        return 2
    plan = QUICK if args.quick else FULL
    if args.streams is not None:
        counts = tuple(int(c) for c in args.streams.split(",") if int(c) > 0)
        plan = dataclasses.replace(plan, stream_counts=counts)
    limit = raise_fd_limit()
    if plan.stream_counts and limit < 2 * max(plan.stream_counts) + 1000:
        log(f"warning: RLIMIT_NOFILE is {limit}; the largest stream count may run out of fds")

    load_start = load_average()
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trioproxy-bench-") as tmp:
        figures = run(plan, Path(tmp))
    meta = report.Meta(
        mode=plan.mode,
        started=started.strftime("%Y-%m-%d %H:%M UTC"),
        duration_s=time.monotonic() - t0,
        commit=commit(),
        machine=machine(),
        versions=versions(),
        rounds=plan.rounds,
        wrk_seconds=plan.wrk_seconds,
        stream_requests=plan.stream_requests,
        hold_seconds=plan.hold_seconds,
        chunk_rate=plan.chunk_rate,
        json_bytes=len(completion_body()),
        sse_bytes=len(stream_body()),
        load_start=load_start,
        load_end=load_average(),
    )
    largest = max(plan.stream_counts, default=5000)
    section = report.render(meta, figures, largest)
    if not args.no_write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        report.write(args.output, section)
        log(f"wrote {args.output}")
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
