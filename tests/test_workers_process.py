"""``--workers 2`` for real: a supervisor and two worker processes, driven from outside.

Rules for these tests: each starts its own ``trioproxy --workers 2`` on port 0 (the
supervisor's stderr read through ``tests.proxyprocess``) with ``TMPDIR`` pointing at a
directory of the test's own, so that its runtime directory can be seen to go; processes
are signalled and ended by their own PIDs only. Which worker serves a connection is the
kernel's choice, so a test *pins* clients: it opens keep-alive connections (one httpx
client each, one connection at most) until each worker has as many as it needs, telling
them apart by the ``worker`` field the answers carry. Streams are held open by the fake
upstream (``Scenario.hold``) until the test releases them; nothing waits on time, except
the bounds that keep a broken test from hanging the suite.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyprocess import ProxyProcess, trioproxy_process

CHAT = "/v1/chat/completions"
# Bounds on waiting for the proxy; reaching one fails the test instead of hanging it.
WITHIN = 20
WORKERS = (0, 1)


def config(*backends: tuple[str, str], models: str = "[gpt-fake]") -> str:
    """A config of OpenAI-style ``(name, base URL)`` backends."""
    return "backends:\n" + "".join(
        f"  - name: {name}\n    type: openai\n    base_url: {base}/v1\n    models: {models}\n"
        for name, base in backends
    )


@asynccontextmanager
async def workers_proxy(
    tmp_path: Path, text: str, *args: str
) -> AsyncIterator[tuple[ProxyProcess, Path]]:
    """``trioproxy --workers 2`` with tracking on, and the directory that is its TMPDIR.

    Ended by the supervisor's PID at the end of the block if still running (its workers
    die with it).
    """
    # Short: the runtime directory under it holds Unix sockets (paths of 107 bytes at most).
    temporary = Path(tempfile.mkdtemp(prefix="tp-w-", dir="/tmp"))
    env = {**os.environ, "TMPDIR": str(temporary)}
    try:
        async with trioproxy_process(
            tmp_path,
            text,
            "--workers",
            "2",
            "--enable-activity-tracking",
            "--access-log",
            "off",
            *args,
            env=env,
        ) as proxy:
            yield proxy, temporary
    finally:
        shutil.rmtree(temporary)


def new_client(url: str) -> httpx.AsyncClient:
    # One connection: every request of the client goes to the worker that accepted it.
    return httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1), timeout=WITHIN)


async def pin(
    stack: AsyncExitStack, url: str, wanted: dict[int, int]
) -> dict[int, list[httpx.AsyncClient]]:
    """Clients whose connection is on each worker: ``wanted[k]`` of them for worker ``k``."""
    pinned: dict[int, list[httpx.AsyncClient]] = {worker: [] for worker in wanted}
    with trio.fail_after(WITHIN):
        while any(len(pinned[k]) < n for k, n in wanted.items()):
            client = new_client(url)
            stack.push_async_callback(client.aclose)
            worker = (await client.get("/v1/diagnostics/activity")).json()["worker"]
            if len(pinned.get(worker, [])) < wanted.get(worker, 0):
                pinned[worker].append(client)
            else:
                await client.aclose()
    return pinned


async def diagnostics(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/diagnostics")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def connections(doc: dict[str, Any], name: str = "a") -> list[dict[str, Any]]:
    entry = next(i for i in doc["instances"] if i["name"] == name)
    return entry["activity"]["connections"]  # type: ignore[no-any-return]


async def wait_for(check: Callable[[], Awaitable[bool]]) -> None:
    """Until ``check()`` holds: another process's state, polled (no event to wait on)."""
    with trio.fail_after(WITHIN):
        while not await check():  # noqa: ASYNC110
            await trio.sleep(0.05)


def stream_request(session: str) -> dict[str, Any]:
    return {
        "json": {"model": "gpt-fake", "stream": True, "messages": []},
        "headers": {"x-session-id": session},
    }


async def read_stream(
    client: httpx.AsyncClient, session: str, bodies: dict[str, bytes | None], key: str = ""
) -> None:
    """POST a stream for ``session``; its body in ``bodies[key or session]`` (None if the
    worker died)."""
    try:
        response = await client.post(CHAT, **stream_request(session))
    except httpx.TransportError:
        bodies[key or session] = None
        return
    assert response.status_code == 200
    bodies[key or session] = response.content


def worker_pids(doc: dict[str, Any]) -> dict[int, int]:
    return {entry["worker"]: entry["pid"] for entry in doc["workers"]}


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_every_stream_on_either_worker_is_listed_once_by_each_with_exact_bytes(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    hold = trio.Event()
    fake.default = Scenario(chunks=5, hold=hold)
    async with (
        workers_proxy(tmp_path, config(("a", fake.base_url))) as (proxy, _),
        AsyncExitStack() as stack,
    ):
        # Three streams on each worker, one more of a session on both, and a probe each.
        pinned = await pin(stack, proxy.url, {0: 5, 1: 5})
        probes = {worker: pinned[worker].pop() for worker in WORKERS}
        sessions = {f"s{worker}-{i}": pinned[worker][i] for worker in WORKERS for i in range(3)}
        bodies: dict[str, bytes | None] = {}
        async with trio.open_nursery() as nursery:
            for session, client in sessions.items():
                nursery.start_soon(read_stream, client, session, bodies)
            for worker in WORKERS:
                nursery.start_soon(read_stream, pinned[worker][3], "both", bodies, f"both{worker}")
            with trio.fail_after(WITHIN):
                await fake.wait_in_flight(len(sessions) + 2)

            async def all_bytes_counted() -> bool:
                doc = await diagnostics(probes[0])
                return bool(doc["global_activity"]["total_bytes_rx"] == fake.bytes_sent)

            await wait_for(all_bytes_counted)
            for worker in WORKERS:
                doc = await diagnostics(probes[worker])
                assert (doc["worker"], doc["workers_unreachable"]) == (worker, [])
                rows = {row["session_id"]: row for row in connections(doc)}
                assert len(connections(doc)) == len(rows) == len(sessions) + 1
                for session in sessions:
                    assert rows[session]["workers"] == [int(session[1])]
                    assert rows[session]["requests"] == 1
                both = rows["both"]
                assert (both["workers"], both["requests"]) == ([0, 1], 2)
                assert doc["global_activity"]["total_active_connections"] == len(sessions) + 1
                assert doc["global_activity"]["total_bytes_rx"] == fake.bytes_sent
                assert [entry["worker"] for entry in doc["workers"]] == [0, 1]
            hold.set()
        received = sum(len(body or b"") for body in bodies.values())
        assert all(bodies.values())
        for worker in WORKERS:
            doc = await diagnostics(probes[worker])
            assert connections(doc) == []
            lifetime = doc["global_activity"]["lifetime"]
            assert lifetime["requests"] == lifetime["completed"] == len(sessions) + 2
            assert (lifetime["bytes_rx"], lifetime["bytes_tx"]) == (fake.bytes_sent, received)
            metrics = (await probes[worker].get("/metrics")).text
            samples = {
                (sample.name, sample.labels.get("outcome")): sample.value
                for family in text_string_to_metric_families(metrics)
                for sample in family.samples
            }
            assert samples["trioproxy_sent_bytes_total", None] == received
            assert samples["trioproxy_received_bytes_total", None] == fake.bytes_sent
            assert samples["trioproxy_requests_total", "completed"] == len(sessions) + 2
            assert samples["trioproxy_request_duration_seconds_count", None] == len(sessions) + 2
            assert samples["trioproxy_workers_unreachable", None] == 0
            recent = (await probes[worker].get("/v1/diagnostics/recent")).json()
            assert sorted(row["worker"] for row in recent["recent"]) == [0] * 4 + [1] * 4


async def test_streams_on_two_instances_on_both_workers_are_each_listed_under_theirs(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    # Each worker's document for its siblings covers every instance, including those after
    # one that has connections (the bug of 5b68427, fixed in 2d0baf0).
    hold = trio.Event()
    fake.default = Scenario(chunks=3, hold=hold)
    text = "backends:\n" + "".join(
        f"  - name: {name}\n    type: openai\n    base_url: {fake.base_url}/v1\n"
        f"    models: [gpt-{name}]\n"
        for name in ("a", "b")
    )
    async with (
        workers_proxy(tmp_path, text) as (proxy, _),
        AsyncExitStack() as stack,
    ):
        pinned = await pin(stack, proxy.url, {0: 3, 1: 3})
        bodies: dict[str, bytes | None] = {}

        async def stream(client: httpx.AsyncClient, session: str, model: str) -> None:
            response = await client.post(
                CHAT,
                json={"model": model, "stream": True, "messages": []},
                headers={"x-session-id": session},
            )
            assert response.status_code == 200
            bodies[session] = response.content

        async with trio.open_nursery() as nursery:
            for worker in WORKERS:
                for i, name in enumerate(("a", "b")):
                    nursery.start_soon(
                        stream, pinned[worker][i], f"{name}-on-{worker}", f"gpt-{name}"
                    )
            with trio.fail_after(WITHIN):
                await fake.wait_in_flight(4)

            async def all_bytes_counted() -> bool:
                doc = await diagnostics(pinned[0][2])
                return bool(doc["global_activity"]["total_bytes_rx"] == fake.bytes_sent)

            await wait_for(all_bytes_counted)
            for worker in WORKERS:
                doc = await diagnostics(pinned[worker][2])
                assert (doc["worker"], doc["workers_unreachable"]) == (worker, [])
                for name in ("a", "b"):
                    rows = connections(doc, name)
                    assert sorted((row["session_id"], row["workers"]) for row in rows) == [
                        (f"{name}-on-0", [0]),
                        (f"{name}-on-1", [1]),
                    ]
                assert doc["global_activity"]["total_active_connections"] == 4
                latest = (await pinned[worker][2].get("/v1/diagnostics/activity")).json()
                assert latest["total_active_connections"] == 4
            hold.set()
        assert all(bodies.values()) and len(bodies) == 4


async def test_a_stopped_sibling_is_named_unreachable_and_the_answer_still_comes(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    hold = trio.Event()
    async with (
        workers_proxy(tmp_path, config(("a", fake.base_url))) as (proxy, _),
        AsyncExitStack() as stack,
    ):
        pinned = await pin(stack, proxy.url, {0: 2, 1: 1})
        done = await pinned[0][0].post(CHAT, **stream_request("done-on-0"))
        assert done.status_code == 200
        fake.default = Scenario(hold=hold)
        bodies: dict[str, bytes | None] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_stream, pinned[0][1], "on-0", bodies)
            with trio.fail_after(WITHIN):
                await fake.wait_in_flight(1)
            stopped = worker_pids(await diagnostics(pinned[1][0]))[0]
            # Worker 0 reports its request to a scrape of its own; worker 1 has heard of it
            # from no one.
            told = metric_samples((await pinned[0][0].get("/metrics")).text)
            assert told["trioproxy_requests_total", "completed"] == 1
            os.kill(stopped, signal.SIGSTOP)
            try:
                doc = await diagnostics(pinned[1][0])
                assert (doc["worker"], doc["workers_unreachable"]) == (1, [0])
                # Worker 0's stream is missing, and the document says why.
                assert connections(doc) == []
                activity = (await pinned[1][0].get("/v1/diagnostics/activity")).json()
                assert activity["workers_unreachable"] == [0]
                # Worker 0 is summed as it last reported: no counter went backwards.
                metrics = metric_samples((await pinned[1][0].get("/metrics")).text)
                assert metrics["trioproxy_workers_unreachable", None] == 1
                assert metrics["trioproxy_requests_total", "completed"] == 1
                # A cancel that cannot reach worker 0 is answered as not done, and worker 0
                # does not do it once it resumes.
                refused = await pinned[1][0].post(
                    "/v1/diagnostics/cancel", json={"instance": "a", "session_id": "on-0"}
                )
                assert refused.status_code == 404
                assert "workers [0] did not answer" in refused.json()["error"]["message"]
            finally:
                os.kill(stopped, signal.SIGCONT)
            doc = await diagnostics(pinned[1][0])
            assert doc["workers_unreachable"] == []
            assert [row["session_id"] for row in connections(doc)] == ["on-0"]
            hold.set()
        body = bodies["on-0"]
        assert body is not None and b"[DONE]" in body and b"operator" not in body
        recent = (await pinned[1][0].get("/v1/diagnostics/recent")).json()["recent"]
        assert [(row["session_id"], row["outcome"]) for row in recent] == [
            ("on-0", "completed"),
            ("done-on-0", "completed"),
        ]


async def test_cancel_reaches_the_worker_that_holds_the_connection(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    hold = trio.Event()
    fake.default = Scenario(hold=hold)
    async with (
        workers_proxy(tmp_path, config(("a", fake.base_url))) as (proxy, _),
        AsyncExitStack() as stack,
    ):
        pinned = await pin(stack, proxy.url, {0: 1, 1: 1})
        bodies: dict[str, bytes | None] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_stream, pinned[0][0], "victim", bodies)
            with trio.fail_after(WITHIN):
                await fake.wait_in_flight(1)
            operator = pinned[1][0]
            answer = await operator.post(
                "/v1/diagnostics/cancel", json={"instance": "a", "session_id": "victim"}
            )
            assert answer.status_code == 200
            assert answer.json() == {
                "instance": "a",
                "session_id": "victim",
                "cancelled": 1,
                "worker": 1,
                "workers_unreachable": [],
            }
            with trio.fail_after(WITHIN):
                await fake.wait_closed(0)
        body = bodies["victim"]
        assert body is not None and b"operator" in body and b"[DONE]" not in body
        unknown = await operator.post(
            "/v1/diagnostics/cancel", json={"instance": "a", "session_id": "nobody"}
        )
        assert unknown.status_code == 404
        recent = (await operator.get("/v1/diagnostics/recent")).json()["recent"]
        assert [(r["session_id"], r["outcome"], r["reason"], r["worker"]) for r in recent] == [
            ("victim", "cancelled", "operator", 0)
        ]


async def test_a_429_or_a_failure_on_one_worker_keeps_the_other_away(
    tmp_path: Path, fake: FakeUpstream, nursery: trio.Nursery
) -> None:
    fake.default = Scenario(status=429, headers={"retry-after": "600"})
    spare = FakeUpstream()
    await nursery.start(spare.serve)
    # Nothing listens on port 9 of loopback (discard): connecting to it fails at once.
    text = config(("a", fake.base_url), ("b", spare.base_url)) + config(
        ("down", "http://127.0.0.1:9"), models="[other-model]"
    ).removeprefix("backends:\n")
    async with workers_proxy(tmp_path, text) as (proxy, _), AsyncExitStack() as stack:
        pinned = await pin(stack, proxy.url, {0: 1, 1: 1})
        first, other = pinned[0][0], pinned[1][0]
        answer = await first.post(CHAT, json={"model": "gpt-fake", "messages": []})
        assert answer.status_code == 200
        assert (len(fake.requests), len(spare.requests)) == (1, 1)

        def instance(doc: dict[str, Any], name: str) -> dict[str, Any]:
            return next(i for i in doc["instances"] if i["name"] == name)

        async def other_knows_the_429() -> bool:
            return bool(instance(await diagnostics(other), "a")["is_rate_limited"])

        await wait_for(other_knows_the_429)
        for _ in range(3):
            answer = await other.post(CHAT, json={"model": "gpt-fake", "messages": []})
            assert answer.status_code == 200
        assert (len(fake.requests), len(spare.requests)) == (1, 4)

        assert instance(await diagnostics(other), "down")["is_functional"] is True
        failed = await first.post(CHAT, json={"model": "other-model", "messages": []})
        assert failed.status_code == 502

        async def other_knows_the_failure() -> bool:
            return not instance(await diagnostics(other), "down")["is_functional"]

        await wait_for(other_knows_the_failure)


async def test_a_killed_worker_is_restarted_and_the_others_streams_go_on(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    hold = trio.Event()
    fake.default = Scenario(chunks=4, hold=hold)
    async with (
        workers_proxy(tmp_path, config(("a", fake.base_url))) as (proxy, _),
        AsyncExitStack() as stack,
    ):
        pinned = await pin(stack, proxy.url, {0: 2, 1: 1})
        probe = pinned[0][1]
        before = worker_pids(await diagnostics(probe))
        bodies: dict[str, bytes | None] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_stream, pinned[0][0], "on-0", bodies)
            nursery.start_soon(read_stream, pinned[1][0], "on-1", bodies)
            with trio.fail_after(WITHIN):
                await fake.wait_in_flight(2)
            os.kill(before[1], signal.SIGKILL)

            async def restarted() -> bool:
                doc = await diagnostics(probe)
                entry = next(e for e in doc["workers"] if e["worker"] == 1)
                return (
                    entry["pid"] != before[1]
                    and entry["restarts"] == 1
                    and not (doc["workers_unreachable"])
                )

            await wait_for(restarted)
            doc = await diagnostics(probe)
            assert [row["session_id"] for row in connections(doc)] == ["on-0"]
            assert next(e for e in doc["workers"] if e["worker"] == 0)["restarts"] == 0
            hold.set()
        assert bodies["on-1"] is None
        body = bodies["on-0"]
        # Whole, as the fake sent it (the two requests reached it in either order).
        assert body in {fake.stream_body(i, fake.default) for i in range(2)}
        await stack.aclose()
        proxy.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(WITHIN):
            assert await proxy.proc.wait() == 0
        log = (await proxy.read_rest()).decode()
        assert "worker 1 was killed by SIGKILL; starting it again (restart 1)" in log


def metric_samples(text: str) -> dict[tuple[str, str | None], float]:
    return {
        (sample.name, sample.labels.get("outcome")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_killed_workers_counts_stay_in_the_sums_every_worker_reports(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    hold = trio.Event()
    async with (
        workers_proxy(tmp_path, config(("a", fake.base_url))) as (proxy, temporary),
        AsyncExitStack() as stack,
    ):
        pinned = await pin(stack, proxy.url, {0: 2, 1: 1})
        probe = pinned[0][1]
        bodies: dict[str, bytes | None] = {}
        fake.default = Scenario(chunks=3)
        for worker in WORKERS:
            for i in range(2):
                await read_stream(pinned[worker][0], f"done-{worker}-{i}", bodies)
        fake.default = Scenario(chunks=3, hold=hold)
        async with trio.open_nursery() as nursery:
            # Worker 1 dies with this stream in flight: it counts as an error.
            nursery.start_soon(read_stream, pinned[1][0], "cut", bodies)
            with trio.fail_after(WITHIN):
                await fake.wait_in_flight(1)
            before = worker_pids(await diagnostics(probe))
            # The last report before the kill: all that may be carried, and no less.
            reported = metric_samples((await probe.get("/metrics")).text)
            assert reported["trioproxy_requests_total", "completed"] == 4
            assert reported["trioproxy_requests_total", "error"] == 0
            os.kill(before[1], signal.SIGKILL)

            async def restarted() -> bool:
                doc = await diagnostics(probe)
                return worker_pids(doc)[1] != before[1] and not doc["workers_unreachable"]

            await wait_for(restarted)
            hold.set()
        assert bodies["cut"] is None
        (runtime,) = temporary.iterdir()
        assert {"worker-0.counts.json", "worker-1.counts.json"} <= {
            p.name for p in runtime.iterdir()
        }
        # Asked of the survivor and of the restarted worker alike, the sums did not drop.
        (on_1,) = (await pin(stack, proxy.url, {1: 1}))[1]
        for client in (probe, on_1):
            samples = metric_samples((await client.get("/metrics")).text)
            for name, outcome in (
                ("trioproxy_received_bytes_total", None),
                ("trioproxy_sent_bytes_total", None),
                ("trioproxy_request_duration_seconds_count", None),
                ("trioproxy_requests_total", "completed"),
            ):
                assert samples[name, outcome] == reported[name, outcome], (name, client)
            assert samples["trioproxy_requests_total", "error"] == 1
            lifetime = (await diagnostics(client))["global_activity"]["lifetime"]
            assert (lifetime["requests"], lifetime["completed"], lifetime["errors"]) == (5, 4, 1)


async def test_sigterm_drains_streams_on_both_workers_and_leaves_nothing_behind(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    hold = trio.Event()
    fake.default = Scenario(chunks=4, hold=hold)
    async with (
        workers_proxy(tmp_path, config(("a", fake.base_url)), "--shutdown-grace", "30") as (
            proxy,
            temporary,
        ),
        AsyncExitStack() as stack,
    ):
        (runtime,) = temporary.iterdir()
        assert sorted(p.name for p in runtime.iterdir()) == [
            "roster.json",
            "worker-0.sock",
            "worker-1.sock",
        ]
        assert runtime.stat().st_mode & 0o777 == 0o700
        pinned = await pin(stack, proxy.url, {0: 2, 1: 1})
        pids = worker_pids(await diagnostics(pinned[0][1]))
        # An idle connection whose last request was an admin route holds hypercorn's
        # shutdown up (in one process too): this test is about streams.
        await pinned[0][1].aclose()
        bodies: dict[str, bytes | None] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_stream, pinned[0][0], "on-0", bodies)
            nursery.start_soon(read_stream, pinned[1][0], "on-1", bodies)
            with trio.fail_after(WITHIN):
                await fake.wait_in_flight(2)
            proxy.proc.send_signal(signal.SIGTERM)
            # Both workers are draining before the streams may end.
            assert proxy.proc.stderr is not None
            with trio.fail_after(WITHIN):
                while proxy.log.count(b"SIGTERM: stopping;") < 2:
                    proxy.log += await proxy.proc.stderr.receive_some()
            # New clients are refused, as by one process, not queued for the grace in a
            # backlog the supervisor's copy of the socket kept open.
            host, port = proxy.url.removeprefix("http://").rsplit(":", 1)

            async def refused() -> bool:
                try:
                    stream = await trio.open_tcp_stream(host, int(port))
                except OSError:
                    return True
                await stream.aclose()
                return False

            await wait_for(refused)
            hold.set()
        for session in ("on-0", "on-1"):
            assert bodies[session] is not None
            assert (bodies[session] or b"").endswith(b"data: [DONE]\n\n")
        with trio.fail_after(WITHIN):
            assert await proxy.proc.wait() == 0
        log = await proxy.read_rest()
        assert b"Traceback" not in log
        assert all(pid_gone(pid) for pid in pids.values())
        assert list(temporary.iterdir()) == []


async def test_the_hang_up_of_its_terminal_stops_the_proxy_and_leaves_nothing_behind(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    # SIGHUP, as a closed terminal or ssh session sends: its default action ended the
    # supervisor and left the runtime directory (sockets, roster, counts) behind.
    async with workers_proxy(tmp_path, config(("a", fake.base_url))) as (proxy, temporary):
        async with new_client(proxy.url) as client:
            pids = worker_pids(await diagnostics(client))
        proxy.proc.send_signal(signal.SIGHUP)
        with trio.fail_after(WITHIN):
            assert await proxy.proc.wait() == 0
        assert b"SIGHUP: stopping 2 workers" in await proxy.read_rest()
        assert all(pid_gone(pid) for pid in pids.values())
        assert list(temporary.iterdir()) == []


async def test_recent_requests_are_the_newest_history_of_all_workers(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    # Each worker remembers --activity-history requests; the merged answer is the newest
    # that many of them all, as one process's would be, not that many per worker.
    async with (
        workers_proxy(tmp_path, config(("a", fake.base_url)), "--activity-history", "2") as (
            proxy,
            _,
        ),
        AsyncExitStack() as stack,
    ):
        pinned = await pin(stack, proxy.url, {0: 1, 1: 1})
        for worker in WORKERS:
            for number in range(2):
                session = f"w{worker}-{number}"
                answer = await pinned[worker][0].post(CHAT, **stream_request(session))
                assert answer.status_code == 200
        for worker in WORKERS:
            recent = (await pinned[worker][0].get("/v1/diagnostics/recent")).json()["recent"]
            assert [(row["session_id"], row["worker"]) for row in recent] == [
                ("w1-1", 1),
                ("w1-0", 1),
            ]
