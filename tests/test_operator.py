"""The operator's view: /metrics, recent requests, cancelling a request, the access log.

Under ``MockClock(autojump_threshold=0)`` where a request must go stale: the clock jumps
when every task waits, so the stale timeout passes at once. Clients have no timeouts of
their own there (they would run out on the jumping clock).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_upstream import FakeUpstream, Scenario
from tests.proxyutil import (
    BACKEND_KEY,
    CLIENT_KEY,
    RunningProxy,
    anthropic_spec,
    instance,
    mock_spec,
    openai_spec,
    running_proxy,
)
from tests.streams import raw_chunks
from trioproxy import __version__

CHAT = "/v1/chat/completions"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def get(proxy: RunningProxy, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=None) as client:
        return await client.get(proxy.url + path)


async def workload(proxy: RunningProxy, fake: FakeUpstream) -> None:
    """A JSON answer, a stream, a backend error, a hang-up and a stale stream."""
    chat = {"model": "gpt-fake", "messages": []}
    async with httpx.AsyncClient(timeout=None, base_url=proxy.url) as client:
        assert (await client.post(CHAT, json=chat)).status_code == 200
        stream = await client.post(CHAT, json={**chat, "stream": True})
        assert stream.status_code == 200
        fake.script(Scenario(status=500))
        assert (await client.post(CHAT, json=chat)).status_code == 500
        fake.script(Scenario(chunks=40, delay=1.0))
        async with (
            client.stream("POST", CHAT, json={**chat, "stream": True}) as response,
            raw_chunks(response) as chunks,
        ):
            await anext(chunks)
        fake.script(Scenario(stall_after_headers=True))
        stale = await client.post(CHAT, json={**chat, "stream": True})
        assert b"cancelled as stale" in stale.content
    # The hang-up's record leaves once its scope has unwound.
    while (await proxy.diagnostics())["global_activity"]["total_active_connections"]:
        await trio.testing.wait_all_tasks_blocked()


async def test_metrics_equal_the_diagnostics_exactly(
    nursery: trio.Nursery, fake: FakeUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_proxy(
        nursery,
        backends=(openai_spec(fake.base_url), anthropic_spec(fake.base_url)),
        enable_activity_tracking=True,
        activity_stale_timeout=5.0,
    ) as proxy:
        await workload(proxy, fake)
        doc = await proxy.diagnostics()
        scrape = await get(proxy, "/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(scrape.text)
    for inst in doc["instances"]:
        name, activity = inst["name"], inst["activity"]
        life = activity["lifetime"]
        label = (("instance", name),)
        for outcome, counter in (
            ("completed", "completed"),
            ("error", "errors"),
            ("cancelled", "cancelled"),
            ("stale", "stale"),
        ):
            key = ("trioproxy_requests_total", (("instance", name), ("outcome", outcome)))
            assert got[key] == life[counter], (name, outcome)
        assert got[("trioproxy_received_bytes_total", label)] == life["bytes_rx"]
        assert got[("trioproxy_sent_bytes_total", label)] == life["bytes_tx"]
        assert got[("trioproxy_active_connections", label)] == activity["active_connections"]
        assert got[("trioproxy_active_requests", label)] == 0
        ended = life["completed"] + life["errors"] + life["cancelled"] + life["stale"]
        assert got[("trioproxy_request_duration_seconds_count", label)] == ended
        assert got[("trioproxy_backend_up", label)] == (1.0 if inst["is_functional"] else 0.0)
        assert got[("trioproxy_backend_rate_limited", label)] == 0.0
    life = instance(doc, "openai.1")["activity"]["lifetime"]
    assert (life["completed"], life["errors"], life["cancelled"], life["stale"]) == (2, 1, 1, 1)
    # Every request but the stalled one got a body byte; the stale one got only a head.
    ttfb = ("trioproxy_time_to_first_byte_seconds_count", (("instance", "openai.1"),))
    assert got[ttfb] == 4
    # The stale stream waited the timeout: in the bucket of 5 s and above.
    le = ("trioproxy_request_duration_seconds_bucket", (("instance", "openai.1"), ("le", "2.5")))
    assert got[le] == 4
    assert got[("trioproxy_info", (("version", __version__),))] == 1.0


async def test_metrics_without_tracking_have_no_tracker_series(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(nursery, backends=(openai_spec(fake.base_url),)) as proxy:
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            await client.post(CHAT, json={"model": "gpt-fake", "messages": []})
        scrape = await get(proxy, "/metrics")
    names = {name for name, _ in samples(scrape.text)}
    assert names == {"trioproxy_info", "trioproxy_backend_up", "trioproxy_backend_rate_limited"}
    assert proxy.app.tracker is None


async def test_recent_requests_newest_first_bounded_with_their_outcomes(
    nursery: trio.Nursery, fake: FakeUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_proxy(
        nursery,
        backends=(openai_spec(fake.base_url), anthropic_spec(fake.base_url)),
        enable_activity_tracking=True,
        activity_stale_timeout=5.0,
        activity_history=4,
    ) as proxy:
        await workload(proxy, fake)
        everything = (await get(proxy, "/v1/diagnostics/recent")).json()
        two = (await get(proxy, "/v1/diagnostics/recent?limit=2")).json()
        other = (await get(proxy, "/v1/diagnostics/recent?instance=anthropic.1")).json()
        bad = await get(proxy, "/v1/diagnostics/recent?limit=-1")
    recent = everything["recent"]
    assert everything["activity_tracking_enabled"] is True
    # Five requests ended; four are remembered, newest first.
    assert [r["outcome"] for r in recent] == ["stale", "cancelled", "error", "completed"]
    assert [r["reason"] for r in recent] == [None, "client", None, None]
    assert recent[0]["error"].startswith("no byte in either direction for 5.0 s")
    assert recent[0]["upstream_status"] == 200 and recent[0]["time_to_first_byte_seconds"] is None
    assert recent[0]["duration_seconds"] == pytest.approx(5.0, abs=1.5)
    assert recent[2]["upstream_status"] == 500
    assert recent[2]["error"] == "the backend answered HTTP 500"
    assert all(r["instance"] == "openai.1" and r["endpoint"] == "chat.completions" for r in recent)
    assert [r["started_at"] for r in recent] == sorted(
        (r["started_at"] for r in recent), reverse=True
    )
    assert recent[3]["bytes_rx"] == recent[3]["bytes_tx"] > 0
    assert two["recent"] == recent[:2]
    assert other["recent"] == []
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"


async def post_cancel(proxy: RunningProxy, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=None) as client:
        return await client.post(proxy.url + "/v1/diagnostics/cancel", json=body)


@pytest.mark.parametrize("streaming", [True, False])
async def test_an_operator_cancels_a_running_request(
    nursery: trio.Nursery, fake: FakeUpstream, streaming: bool
) -> None:
    async with running_proxy(
        nursery,
        backends=(openai_spec(fake.base_url), anthropic_spec(fake.base_url)),
        enable_activity_tracking=True,
    ) as proxy:
        answers: list[httpx.Response] = []
        scenario = (
            Scenario(stall_after_headers=True) if streaming else Scenario(stall_before_headers=True)
        )
        fake.script(scenario)
        path = "/v1/messages"
        body = {"model": "claude-fake", "max_tokens": 5, "messages": [], "stream": streaming}

        async def client() -> None:
            async with httpx.AsyncClient(timeout=None) as http:
                answers.append(
                    await http.post(
                        proxy.url + path, json=body, headers={"x-session-id": "stuck-1"}
                    )
                )

        async with trio.open_nursery() as inner:
            inner.start_soon(client)
            await fake.wait_in_flight(1)
            unknown = await post_cancel(proxy, {"instance": "anthropic.1", "session_id": "nope"})
            done = await post_cancel(proxy, {"instance": "anthropic.1", "session_id": "stuck-1"})
            with trio.fail_after(1):
                await fake.wait_closed(0)
        doc = await proxy.diagnostics()
        recent = (await get(proxy, "/v1/diagnostics/recent")).json()["recent"]
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert done.status_code == 200
    assert done.json() == {"instance": "anthropic.1", "session_id": "stuck-1", "cancelled": 1}
    (answer,) = answers
    if streaming:
        assert answer.status_code == 200
        assert answer.content.startswith(b"event: error\ndata: ")
        event = json.loads(answer.content.split(b"data: ", 1)[1])
    else:
        assert answer.status_code == 503
        event = answer.json()
    assert event["type"] == "error" and "operator" in event["error"]["message"]
    activity = instance(doc, "anthropic.1")["activity"]
    assert activity["active_connections"] == 0
    assert activity["lifetime"]["cancelled"] == 1 and activity["lifetime"]["errors"] == 0
    assert (recent[0]["outcome"], recent[0]["reason"]) == ("cancelled", "operator")


async def test_cancel_needs_a_well_formed_body_and_tracking(nursery: trio.Nursery) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        bad = await post_cancel(proxy, {"instance": 1})
        off = await post_cancel(proxy, {"instance": "mock.1", "session_id": "s"})
        async with httpx.AsyncClient(timeout=None) as client:
            # Nested past any parser's depth (json.loads: RecursionError, a 500), and a lone
            # surrogate, which no session can have (the workers' channel cannot carry it).
            odd = [
                await client.post(proxy.url + "/v1/diagnostics/cancel", content=raw)
                for raw in (
                    b"[" * 5000,
                    b'{"instance": "mock.1", "session_id": "\\ud800"}',
                )
            ]
            everything = await client.get(proxy.url + "/v1/diagnostics/recent?limit=" + "9" * 30)
    assert bad.status_code == 400
    assert off.status_code == 404 and "tracking is off" in off.json()["error"]["message"]
    assert [r.status_code for r in odd] == [400, 400]
    assert all(r.json()["error"]["code"] == "bad_request" for r in odd)
    assert everything.status_code == 200 and everything.json()["recent"] == []


# -- the access log ------------------------------------------------------------------------


async def test_an_access_log_line_per_request_for_every_outcome(
    nursery: trio.Nursery,
    fake: FakeUpstream,
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
) -> None:
    secret_body = "please-never-log-this-body"
    log_file = tmp_path / "access.log"
    async with running_proxy(
        nursery,
        backends=(openai_spec(fake.base_url), anthropic_spec(fake.base_url)),
        enable_activity_tracking=True,
        activity_stale_timeout=5.0,
        access_log="json",
        access_log_file=str(log_file),
    ) as proxy:
        await workload(proxy, fake)
        async with httpx.AsyncClient(timeout=None, base_url=proxy.url) as client:
            await client.post(
                CHAT + "?key=sk-in-the-query",
                json={
                    "model": "gpt-fake",
                    "messages": [{"role": "user", "content": secret_body}],
                },
                headers={"authorization": f"Bearer {CLIENT_KEY}", "x-session-id": "s-42"},
            )
            refused = [
                await client.post("/v1/nothing/here", json={}),  # not a proxy route: logged too
                await client.post(CHAT, content=b"{not json"),
                await client.get(CHAT),
            ]
        # A line is written once the request's task ends, just after its last byte.
        await trio.testing.wait_all_tasks_blocked()
    lines = log_file.read_text().splitlines()
    every = [json.loads(line) for line in lines]
    # The workload's own diagnostics polls are logged too; the proxied requests, in order:
    entries = [e for e in every if e["path"] != "/v1/diagnostics"]
    assert {e["status"] for e in every if e["path"] == "/v1/diagnostics"} == {200}
    assert [e["outcome"] for e in entries] == [
        "completed",
        "completed",
        "error",
        "cancelled",
        "stale",
        "completed",
        "refused",
        "refused",
        "refused",
    ]
    assert [e["status"] for e in entries] == [200, 200, 500, 200, 200, 200, 404, 400, 405]
    ok = entries[5]
    assert (ok["method"], ok["path"], ok["instance"], ok["endpoint"]) == (
        "POST",
        CHAT,
        "openai.1",
        "chat.completions",
    )
    assert (ok["model"], ok["session"]) == ("gpt-fake", "s-42")
    assert ok["client"].startswith("127.0.0.1:")
    assert ok["bytes_rx"] == ok["bytes_tx"] == fake.body_bytes_for(len(fake.requests) - 1)
    assert ok["ttfb"] is not None and ok["duration"] >= ok["ttfb"]
    assert (entries[6]["path"], entries[6]["endpoint"]) == ("/v1/nothing/here", "-")
    assert entries[7]["instance"] is None and entries[7]["model"] is None
    # A refusal's error body is counted as sent, on a proxy route as on the others.
    assert [e["bytes_tx"] for e in entries[6:]] == [len(r.content) for r in refused]
    assert all(r.content for r in refused)
    text = "\n".join(lines)
    for secret in (secret_body, CLIENT_KEY, BACKEND_KEY, "sk-in-the-query"):
        assert secret not in text


async def test_the_text_access_log_quotes_what_clients_chose(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    log_file = tmp_path / "access.log"
    async with running_proxy(
        nursery, backends=(mock_spec(),), access_log="text", access_log_file=str(log_file)
    ) as proxy:
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            await client.post(
                CHAT,
                json={"model": 'evil\nmodel status=999 "x"', "messages": []},
                headers={"x-session-id": "a b"},
            )
        await trio.testing.wait_all_tasks_blocked()
    (line,) = log_file.read_text().splitlines()
    assert "\n" not in line
    assert ' model="evil\\nmodel status=999 \\"x\\"" ' in line
    assert ' session="a b" ' in line
    assert " status=200 " in line and line.endswith(" outcome=completed")


async def test_the_access_log_has_a_doubly_framed_refusal_and_no_body_bytes_for_head(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    log_file = tmp_path / "access.log"
    async with running_proxy(
        nursery, backends=(mock_spec(),), access_log="json", access_log_file=str(log_file)
    ) as proxy:
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            head = await client.head("/metrics")
            got = await client.get("/metrics")
        host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n"
            b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        answer = b""
        with trio.fail_after(20):  # a guard against a hang, not a timing
            while chunk := await stream.receive_some(65536):  # the proxy closes it
                answer += chunk
        await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
    head_line, get_line, refused = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert (head.status_code, head.content, head_line["status"]) == (200, b"", 200)
    assert (head_line["method"], head_line["bytes_tx"]) == ("HEAD", 0)
    assert get_line["bytes_tx"] == len(got.content) > 0
    error = answer.partition(b"\r\n\r\n")[2]
    assert answer.startswith(b"HTTP/1.1 400") and b"Transfer-Encoding" in error
    assert (refused["path"], refused["status"], refused["outcome"]) == (CHAT, 400, "refused")
    assert refused["bytes_tx"] == len(error)


async def test_no_access_log_when_off(
    nursery: trio.Nursery, capfd: pytest.CaptureFixture[str]
) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),), access_log="off") as proxy:
        assert proxy.app.proxy.access_log is None
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            await client.post(CHAT, json={"model": "mock-model", "messages": []})
        await trio.testing.wait_all_tasks_blocked()
    assert "outcome=" not in capfd.readouterr().err


async def test_the_access_log_goes_to_stderr_by_default(
    nursery: trio.Nursery, capfd: pytest.CaptureFixture[str]
) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            await client.post(CHAT, json={"model": "mock-model", "messages": []})
        await trio.testing.wait_all_tasks_blocked()
    (line,) = [line for line in capfd.readouterr().err.splitlines() if "outcome=" in line]
    assert f"POST {CHAT} status=200 instance=mock.1 endpoint=chat.completions" in line


async def test_a_request_routing_refuses_is_answered_and_logged_with_its_session_and_model(
    nursery: trio.Nursery, fake: FakeUpstream, tmp_path: Path
) -> None:
    # The 400 had no x-session-id, and its access line no session or model (Codex's
    # requests to an instance that has no /v1/responses, for one).
    log_file = tmp_path / "access.log"
    async with (
        running_proxy(
            nursery,
            backends=(openai_spec(fake.base_url), anthropic_spec(fake.base_url)),
            access_log="json",
            access_log_file=str(log_file),
        ) as proxy,
        httpx.AsyncClient(base_url=proxy.url) as client,
    ):
        answer = await client.post(
            "/v1/responses",
            json={"model": "anthropic.1:claude-fake", "input": "hi"},
            headers={"x-session-id": "refused-session"},
        )
    assert answer.status_code == 400
    assert "is an anthropic backend" in answer.json()["error"]["message"]
    assert answer.headers["x-session-id"] == "refused-session"
    (line,) = [json.loads(text) for text in log_file.read_text().splitlines()]
    assert (line["outcome"], line["session"], line["model"]) == (
        "refused",
        "refused-session",
        "anthropic.1:claude-fake",
    )
