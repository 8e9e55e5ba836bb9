"""``trioproxy-inspect`` run as a subprocess against a fake diagnostics server.

Rules: the fake proxy is a raw ASGI app served by hypercorn on 127.0.0.1 port 0, started
with ``nursery.start`` (which returns the bound address); the path prefix of the URL
given to the tool picks the fake's answer. No fixed ports, and no sleep stands in for
synchronisation: tests wait for the tool's output or exit, under ``trio.fail_after``.
The unreachable case uses a socket that is bound but not listening, so its port refuses
connections and stays ours. The terminal cases run the tool in a tmux pane and poll
``capture-pane`` until the screen shows what is expected (another process's screen
offers nothing else to wait on).
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import hypercorn
import hypercorn.trio
import pytest
import trio

from tests.documents import (
    connection,
    instance,
    several_backends,
    snapshot,
    some_finished,
    tracking_off,
)
from tests.tmuxpane import SCRIPT, Pane, header_values, pane_runner
from trioproxy.inspect import cli, formatting, view
from trioproxy.inspect.cancel import AmbiguousSession, pick_session
from trioproxy.inspect.merge import tracking_disabled

TIMEOUT = 20
# The live table's columns without a rate (one-shot) and with a single proxy.
ONE_SHOT_COLUMNS = [title for title in view.COLUMNS if title not in ("Proxy", "RX/s")]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class FakeProxy:
    """Answers ``/<case>/v1/diagnostics`` (and ``/recent``, ``/cancel``) as the case says.

    ``requests`` counts the diagnostics polls per case; ``calls`` records every request
    as (method, path with query, the authorization header or None).
    """

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.calls: list[tuple[str, str, str | None]] = []
        self.never = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        case, _, rest = scope["path"].strip("/").partition("/")
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization")
        query = scope["query_string"].decode()
        path = scope["path"] + (f"?{query}" if query else "")
        self.calls.append((scope["method"], path, auth.decode() if auth else None))
        if rest == "v1/diagnostics":
            self.requests[case] += 1
            status, answer = await self.answer(case, self.requests[case])
        elif rest == "v1/diagnostics/recent" and case != "norecent":
            status, answer = 200, json.dumps(some_finished()).encode()
        elif rest == "v1/diagnostics/cancel" and scope["method"] == "POST":
            status, answer = self.cancel(case, json.loads(body))
        else:
            status, answer = 404, b'{"error": {"message": "Not Found"}}'
        content_type = b"application/json" if answer.startswith(b"{") else b"text/html"
        reply = [(b"content-type", content_type)]
        await send({"type": "http.response.start", "status": status, "headers": reply})
        await send({"type": "http.response.body", "body": answer})

    async def answer(self, case: str, n: int) -> tuple[int, bytes]:
        match case:
            case "ok" | "norecent":
                return 200, json.dumps(several_backends()).encode()
            case "counter":  # one connection whose bytes grow with each poll
                data = snapshot([_one_stream(rx=1000 * n)], timestamp=1701792000.0 + n)
                return 200, json.dumps(data).encode()
            case "cancel":
                sessions = [connection(s) for s in ("abc-111", "abc-222", "xyz-333")]
                return 200, json.dumps(snapshot([instance("mock.1", "mock", sessions)])).encode()
            case "disabled":
                return 200, json.dumps(tracking_off()).encode()
            case "forbidden":
                return 403, b'{"error": {"message": "diagnostics are local only"}}'
            case "shape":
                return 200, b'{"status": "ok"}'
            case "html":
                return 200, b"<html><body>Welcome to nginx!</body></html>"
            case "deep":  # JSON nested past the parser's depth (a RecursionError)
                return 200, b"[" * 100_000
            case "slow":
                await self.never.wait()
        return 404, b'{"error": "no such case"}'

    def cancel(self, case: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """The real proxy's answers: 200 with a count, 404 for an unknown connection."""
        match case, body.get("session_id"):
            case "forbidden", _:
                return 403, b'{"error": {"message": "local only"}}'
            case "cancel", "xyz-333" | "abc-222":
                found = {**body, "cancelled": 2}
                return 200, json.dumps(found).encode()
            case "cancel", "bad":
                return 400, b'{"error": {"message": "The body must be an object."}}'
        message = (
            f"No active connection of session {body['session_id']!r} on instance "
            f"{body['instance']!r}."
        )
        return 404, json.dumps({"error": {"message": message}}).encode()


def _one_stream(rx: int) -> dict[str, Any]:
    return instance("mock.1", "mock", [connection("counter-session", rx=rx, tx=rx)])


@pytest.fixture
async def fake_proxy(nursery: trio.Nursery) -> tuple[str, FakeProxy]:
    """The fake's base URL (``http://127.0.0.1:<port>``) and the app, to read its counts."""
    app = FakeProxy()
    config = hypercorn.Config()
    config.bind = ["127.0.0.1:0"]
    config.errorlog = None
    # cast: hypercorn types scopes and events as TypedDicts; the fake reads plain dicts.
    serve = functools.partial(hypercorn.trio.serve, cast(Any, app), config, mode="asgi")
    binds: list[str] = await nursery.start(serve)
    return binds[0], app


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def run_tool(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the launcher script to completion."""
    with trio.fail_after(TIMEOUT):
        return await trio.run_process(
            [sys.executable, str(SCRIPT), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


def assert_one_sentence(result: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    """Exit 1, nothing on stdout, and a single stderr line holding every needle."""
    assert result.returncode == 1, result
    assert result.stdout == b""
    message = result.stderr.decode()
    assert message.count("\n") == 1, message
    assert "Traceback" not in message
    for needle in needles:
        assert needle in message
    return message


# --- one shot ------------------------------------------------------------------------


async def test_one_shot_prints_plain_table(fake_proxy: tuple[str, FakeProxy]) -> None:
    url, app = fake_proxy
    result = await run_tool(f"{url}/ok")
    assert result.returncode == 0, result
    assert result.stderr == b""
    out = result.stdout.decode()
    assert "\x1b" not in out
    lines = out.splitlines()
    assert lines[0] == f"trioproxy activity · {url}/ok"
    assert lines[1].startswith("Active Connections: 3   Total RX: 3.5 MB   Total TX: 3.0 MB")
    assert lines[4].split() == ONE_SHOT_COLUMNS
    assert lines[5].split()[:2] == ["openai.1", "0f8fad5b-d…"]
    assert "4m 05s (idle 42.0s)" in lines[7]
    assert lines[9] == view.RECENT_HEADING
    assert lines[11].split()[:3] == ["15:59:59", "mock.1", "done-1"]
    assert len(lines) == 10 + 1 + 4 + 2  # heading, titles, four requests, legend
    assert app.requests == {"ok": 1}
    assert [(method, path) for method, path, _ in app.calls] == [
        ("GET", "/ok/v1/diagnostics"),
        ("GET", "/ok/v1/diagnostics/recent?limit=10"),
    ]


async def test_recent_is_how_many_finished_requests_to_show(
    fake_proxy: tuple[str, FakeProxy],
) -> None:
    url, app = fake_proxy
    result = await run_tool(f"{url}/ok", "--recent", "2")
    assert result.returncode == 0, result
    lines = result.stdout.decode().splitlines()
    assert [line.split()[2] for line in lines[11:13]] == ["done-1", "0f8fad5b-d…"]
    assert len(lines) == 13  # no legend: the translated request is not among the two
    assert app.calls[-1][1] == "/ok/v1/diagnostics/recent?limit=2"
    result = await run_tool(f"{url}/ok", "--recent", "0")
    assert result.returncode == 0, result
    assert view.RECENT_HEADING not in result.stdout.decode()
    assert app.calls[-1][1] == "/ok/v1/diagnostics"  # and nothing asked for


async def test_recent_requests_missing_is_a_note(fake_proxy: tuple[str, FakeProxy]) -> None:
    url, _ = fake_proxy
    result = await run_tool(f"{url}/norecent")
    assert result.returncode == 0, result
    lines = result.stdout.decode().splitlines()
    assert lines[-1] == (
        f"No finished requests to show: {url}/norecent/v1/diagnostics/recent?limit=10 "
        "answered HTTP 404 instead of the recent requests JSON; "
        "is this the address of a trioproxy?"
    )


async def test_url_forms_are_normalised(fake_proxy: tuple[str, FakeProxy]) -> None:
    url, app = fake_proxy
    bare = url.removeprefix("http://")
    for given in (f"{bare}/ok", f"{url}/ok/", f"{url}/ok/v1/diagnostics"):
        result = await run_tool(given)
        assert result.returncode == 0, result
        assert result.stdout.decode().startswith(f"trioproxy activity · {url}/ok\n")
    assert app.requests == {"ok": 3}


async def test_raw_prints_the_json(fake_proxy: tuple[str, FakeProxy]) -> None:
    url, _ = fake_proxy
    result = await run_tool(f"{url}/ok", "--raw")
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == several_backends()
    assert result.stdout.decode().startswith('{\n  "timestamp": ')


async def test_raw_with_tracking_disabled_is_still_the_json(
    fake_proxy: tuple[str, FakeProxy],
) -> None:
    url, _ = fake_proxy
    result = await run_tool(f"{url}/disabled", "--raw")
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["activity_tracking_enabled"] is False


async def test_a_terminal_gets_the_rich_view(
    fake_proxy: tuple[str, FakeProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    class FakeTerminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    url, _ = fake_proxy
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    with trio.fail_after(TIMEOUT):
        code = await trio.to_thread.run_sync(cli.main, [f"{url}/ok"])
    assert code == 0
    lines = terminal.getvalue().splitlines()
    assert lines[0].startswith("╭─ trioproxy activity · ")
    assert "\x1b[" in terminal.getvalue()  # styled
    assert [line for line in lines if "Backend" in line and "Session" in line]


def test_the_tool_imports_neither_trio_nor_the_tracker() -> None:
    # A client of the JSON: Trio would only slow its start (about 0.15 s).
    code = (
        "import sys\n"
        "import trioproxy.inspect.cli\n"
        "loaded = {'trio', 'trioproxy.activity.tracker'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_the_launcher_runs_from_a_checkout_without_an_install() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with trio.fail_after(TIMEOUT):
        result = await trio.run_process(
            [sys.executable, str(SCRIPT), "--help"],
            capture_stdout=True,
            capture_stderr=True,
            cwd=SCRIPT.parents[1],
            env=env,
            check=False,
        )
    assert result.returncode == 0, result
    assert b"--watch" in result.stdout


# --- failures ------------------------------------------------------------------------


async def test_unreachable(refused_url: str) -> None:
    result = await run_tool(refused_url)
    assert_one_sentence(result, f"The proxy at {refused_url} is unreachable", "refused")


async def test_unreachable_raw(refused_url: str) -> None:
    result = await run_tool(refused_url, "--raw")
    assert_one_sentence(result, "is unreachable")


async def test_no_answer_within_the_timeout(fake_proxy: tuple[str, FakeProxy]) -> None:
    url, _ = fake_proxy
    result = await run_tool(f"{url}/slow")
    assert_one_sentence(result, "is unreachable: no answer within 2s.")


async def test_forbidden(fake_proxy: tuple[str, FakeProxy]) -> None:
    url, _ = fake_proxy
    result = await run_tool(f"{url}/forbidden")
    assert_one_sentence(
        result, "403 Forbidden", "restricted to local access", "on the proxy's own host"
    )


async def test_tracking_disabled(fake_proxy: tuple[str, FakeProxy]) -> None:
    url, _ = fake_proxy
    result = await run_tool(f"{url}/disabled")
    message = assert_one_sentence(result, "Activity tracking is disabled")
    assert message == tracking_disabled(f"{url}/disabled") + "\n"


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("shape", "answered JSON that is not the expected diagnostics JSON (timestamp: missing)"),
        ("html", "did not answer JSON, so it is not the expected diagnostics JSON"),
        ("deep", "did not answer JSON, so it is not the expected diagnostics JSON"),
        ("nothing-here", "answered HTTP 404 instead of the diagnostics JSON"),
    ],
)
async def test_not_the_expected_json(
    fake_proxy: tuple[str, FakeProxy], case: str, needle: str
) -> None:
    url, _ = fake_proxy
    result = await run_tool(f"{url}/{case}")
    assert_one_sentence(result, f"{url}/{case}/v1/diagnostics", needle)
    result = await run_tool(f"{url}/{case}", "--raw")
    assert_one_sentence(result, needle)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--interval", "0"], "must be a positive number of seconds"),
        (["--watch", "--interval", "-1"], "must be a positive number of seconds"),
        (["--interval", "nan"], "must be a positive number of seconds"),
        (["--interval", "soon"], "not a number of seconds"),
        (["--interval", "1e-9"], "must be 0.1 s or more"),
        (["127.0.0.1:99999"], "not a port number"),
        (["--watch", "--raw"], "not allowed with argument"),
        (["ftp://example.com"], "not an http(s) URL"),
        (["--recent", "-1"], "must be a whole number of 0 or more"),
        (["--recent", "all"], "must be a whole number of 0 or more"),
        (["--cancel", "mock.1"], "expected 2 arguments"),
        (["--cancel", "mock.1", "s", "--watch"], "not allowed with argument"),
        (["--cancel", "mock.1", "s", "h1:1", "h2:2"], "--cancel: give one URL"),
        (["--admin-key-env", "TRIOPROXY_TEST_UNSET"], "TRIOPROXY_TEST_UNSET is not set or empty"),
    ],
)
async def test_bad_arguments(args: list[str], complaint: str) -> None:
    result = await run_tool(*args)
    assert result.returncode == 2
    assert complaint in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


# --- several proxies ----------------------------------------------------------------


async def test_several_proxies_in_one_view(
    fake_proxy: tuple[str, FakeProxy], refused_url: str
) -> None:
    url, app = fake_proxy
    result = await run_tool(f"{url}/ok", f"{url}/counter", refused_url)
    assert result.returncode == 0, result  # one proxy down is no failure
    assert result.stderr == b""
    lines = result.stdout.decode().splitlines()
    host = url.removeprefix("http://")
    refused_host = refused_url.removeprefix("http://")
    assert lines[0] == "trioproxy activity · 3 proxies"
    # The totals are the sums of both documents: 3 + 1 connections, and their bytes.
    assert lines[1].startswith("Active Connections: 4   Total RX: 3.5 MB")
    width = len(f"{host}/counter")
    assert lines[3:6] == [
        f"{f'{host}/ok':<{width}}  up, 3 connections",
        f"{host}/counter  up, 1 connection",
        f"{refused_host:<{width}}  unreachable",
    ]
    table = lines.index(next(line for line in lines if line.startswith("Proxy ")))
    rows = [line.split()[:3] for line in lines[table + 1 : table + 5]]
    assert rows == [
        [f"{host}/ok", "openai.1", "0f8fad5b-d…"],
        [f"{host}/ok", "openai.1", "short"],
        [f"{host}/ok", "anthropic.1", "sess-idle"],
        [f"{host}/counter", "mock.1", "counter-se…"],
    ]
    assert lines[-1].startswith(f"The proxy at {refused_url} is unreachable: ")
    assert app.requests == {"ok": 1, "counter": 1}


async def test_several_proxies_none_answering(
    fake_proxy: tuple[str, FakeProxy], refused_url: str
) -> None:
    url, _ = fake_proxy
    result = await run_tool(refused_url, f"{url}/forbidden", f"{url}/disabled")
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        next(line for line in result.stderr.decode().splitlines() if "unreachable" in line),
        f"{url}/forbidden/v1/diagnostics answered 403 Forbidden: diagnostics are restricted "
        "to local access, so run this tool on the proxy's own host and query it through "
        "localhost, or give it an admin key of the proxy with --admin-key-env VAR.",
        tracking_disabled(f"{url}/disabled"),
    ]


async def test_raw_several_proxies_keyed_by_url(
    fake_proxy: tuple[str, FakeProxy], refused_url: str
) -> None:
    url, _ = fake_proxy
    result = await run_tool(f"{url}/ok", refused_url, "--raw")
    assert result.returncode == 0, result
    data = json.loads(result.stdout)
    assert list(data) == [f"{url}/ok", refused_url]
    assert data[f"{url}/ok"] == several_backends()
    error = data[refused_url]["error"]
    assert error["status"] == "unreachable"
    assert error["message"].startswith(f"The proxy at {refused_url} is unreachable")
    # None answering: the same object, and exit 1.
    result = await run_tool(refused_url, f"{url}/html", "--raw")
    assert result.returncode == 1
    assert set(json.loads(result.stdout)) == {refused_url, f"{url}/html"}


async def test_a_slow_proxy_does_not_hold_up_the_others(
    fake_proxy: tuple[str, FakeProxy],
) -> None:
    url, app = fake_proxy
    result = await run_tool(f"{url}/slow", f"{url}/ok")
    assert result.returncode == 0, result
    out = result.stdout.decode()
    assert f"{url.removeprefix('http://')}/slow  unreachable" in out
    assert out.splitlines()[-1] == f"The proxy at {url}/slow is unreachable: no answer within 2s."
    assert "sess-idle" in out
    assert app.requests["ok"] == 1


# --- the admin key -------------------------------------------------------------------

SECRET = "adm-0123456789-secret"


async def run_with_key(*args: str, value: str = SECRET) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "INSPECT_ADMIN_KEY": value}
    with trio.fail_after(TIMEOUT):
        return await trio.run_process(
            [sys.executable, str(SCRIPT), *args, "--admin-key-env", "INSPECT_ADMIN_KEY"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )


async def test_admin_key_goes_to_every_proxy_and_is_never_shown(
    fake_proxy: tuple[str, FakeProxy],
) -> None:
    url, app = fake_proxy
    result = await run_with_key(f"{url}/ok", f"{url}/forbidden")
    assert result.returncode == 0, result
    assert {auth for _, _, auth in app.calls} == {f"Bearer {SECRET}"}
    assert len(app.calls) == 3  # two diagnostics, one recent
    out = result.stdout.decode()
    assert f"{url}/forbidden/v1/diagnostics answered 403 Forbidden: it did not accept the " in out
    assert "--admin-key-env" in out
    # The proxy's own comma-separated list works too: its first key is sent.
    result = await run_with_key(f"{url}/ok", "--raw", value=f" {SECRET}2 , other")
    assert result.returncode == 0, result
    assert app.calls[-1][2] == f"Bearer {SECRET}2"
    for result in (
        await run_with_key(f"{url}/forbidden"),
        await run_with_key(f"{url}/forbidden", "--cancel", "mock.1", "abc"),
    ):
        assert result.returncode == 1
        assert SECRET not in (result.stdout + result.stderr).decode()


async def test_without_an_admin_key_nothing_is_sent(fake_proxy: tuple[str, FakeProxy]) -> None:
    url, app = fake_proxy
    assert (await run_tool(f"{url}/ok")).returncode == 0
    assert [auth for _, _, auth in app.calls] == [None, None]


@pytest.mark.parametrize("value", ["", " , ", "has space", "ключ", "tab\there"])
async def test_admin_key_that_cannot_be_sent(value: str) -> None:
    result = await run_with_key("http://127.0.0.1:9", value=value)
    assert result.returncode == 2
    message = result.stderr.decode()
    assert "INSPECT_ADMIN_KEY" in message
    assert "Traceback" not in message
    if value.strip(" ,"):
        assert value not in message


# --- cancel --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "session", "code", "sentence"),
    [
        (
            "cancel",
            "xyz-333",
            0,
            "Cancelled 2 requests of session 'xyz-333' on instance 'mock.1' at {url}.",
        ),
        (
            "cancel",
            "xyz…",  # as the view shortens it
            0,
            "Cancelled 2 requests of session 'xyz-333' on instance 'mock.1' at {url}.",
        ),
        (
            "cancel",
            "abc-2...",
            0,
            "Cancelled 2 requests of session 'abc-222' on instance 'mock.1' at {url}.",
        ),
        (
            "cancel",
            "gone",
            1,
            "No active connection of session 'gone' on instance 'mock.1' at {url}.",
        ),
        (
            "cancel",
            "nope…",
            1,
            "No active connection of a session starting 'nope…' on instance 'mock.1' at {url}.",
        ),
        (
            "cancel",
            "abc…",
            1,
            "'abc…' starts 2 active sessions on instance 'mock.1' at {url} "
            "('abc-111', 'abc-222'); give more of it.",
        ),
        (
            "cancel",
            "bad",
            1,
            "The proxy at {url} rejected the cancel: The body must be an object.",
        ),
        (
            "forbidden",
            "s",
            1,
            "{url}/v1/diagnostics/cancel answered 403 Forbidden: diagnostics are restricted "
            "to local access, so run this tool on the proxy's own host and query it through "
            "localhost, or give it an admin key of the proxy with --admin-key-env VAR.",
        ),
    ],
)
async def test_cancel_says_what_happened(
    fake_proxy: tuple[str, FakeProxy], case: str, session: str, code: int, sentence: str
) -> None:
    url, _ = fake_proxy
    result = await run_tool("--cancel", "mock.1", session, f"{url}/{case}")
    assert result.returncode == code, result
    out = (result.stdout if code == 0 else result.stderr).decode()
    assert out == sentence.format(url=f"{url}/{case}") + "\n"
    assert (result.stderr if code == 0 else result.stdout) == b""


async def test_cancel_unreachable(refused_url: str) -> None:
    result = await run_tool("--cancel", "mock.1", "s", refused_url)
    assert_one_sentence(result, f"The proxy at {refused_url} is unreachable")


async def test_cancel_posts_the_connection(fake_proxy: tuple[str, FakeProxy]) -> None:
    url, app = fake_proxy
    assert (await run_tool(f"{url}/cancel", "--cancel", "mock.1", "xyz-333")).returncode == 0
    assert app.calls == [("POST", "/cancel/v1/diagnostics/cancel", None)]


# --- watch, without a terminal -------------------------------------------------------


async def watch_blocks(url: str, count: int, *more: str) -> tuple[list[str], int, str]:
    """Run ``--watch`` of ``url`` (and ``more`` arguments) piped until ``count`` blocks
    are out, then SIGINT it.

    Returns every block it printed (at least ``count``), its exit code and its stderr.
    """
    command = [sys.executable, str(SCRIPT), url, *more, "--watch", "--interval", "0.1"]
    end = b"Ctrl+C to quit\n\n"  # a block ends with the footer and a blank line
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdout is not None and process.stderr is not None
        async with process.stdout, process.stderr:
            output = b""
            while output.count(end) < count:
                chunk = await process.stdout.receive_some()
                assert chunk, "the watch ended by itself"
                output += chunk
            process.send_signal(signal.SIGINT)
            code = await process.wait()
            output += b"".join([chunk async for chunk in process.stdout])
            errors = b"".join([chunk async for chunk in process.stderr])
    blocks = output.decode().split(end.decode())[:-1]
    return [block + "Ctrl+C to quit" for block in blocks], code, errors.decode()


async def test_watch_plain_one_block_per_refresh(fake_proxy: tuple[str, FakeProxy]) -> None:
    url, app = fake_proxy
    blocks, code, errors = await watch_blocks(f"{url}/counter", 3)
    assert code == 0
    assert errors == ""
    for n, block in enumerate(blocks, start=1):
        assert f"Total RX: {formatting.format_bytes(1000 * n)}" in block
        assert "counter-se…" in block
        assert block.endswith("Refreshing every 0.1s · Ctrl+C to quit")
        assert "\x1b" not in block
    # The RX rate: none at the first refresh; then 1000 B more a (document's) second.
    rows = [next(line for line in b.splitlines() if "counter-se…" in line) for b in blocks]
    titles = next(line for line in blocks[0].splitlines() if line.startswith("Backend"))
    assert titles.split()[-3:] == ["RX", "RX/s", "TX"]
    assert rows[0].split()[-2:] == ["1000B", "1000B"]  # RX, and TX: the rate is blank
    for n, row in enumerate(rows[1:], start=2):
        size = formatting.format_bytes_short(1000 * n)
        assert row.split()[-3:] == [size, "1000B", size]
    # One poll per refresh (the last one may have been cut short by Ctrl+C).
    assert len(blocks) <= app.requests["counter"] <= len(blocks) + 1


async def test_watch_keeps_retrying_when_unreachable(refused_url: str) -> None:
    blocks, code, errors = await watch_blocks(refused_url, 2)
    assert code == 0
    assert errors == ""
    for block in blocks:
        assert block.startswith("unreachable, retrying every 0.1s (last try ")
        assert f"The proxy at {refused_url} is unreachable" in block


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("forbidden", "forbidden (HTTP 403), retrying"),
        ("html", "not the expected diagnostics JSON, retrying"),
        ("disabled", view.TRACKING_DISABLED),
    ],
)
async def test_watch_keeps_retrying_on_failures(
    fake_proxy: tuple[str, FakeProxy], case: str, needle: str
) -> None:
    url, app = fake_proxy
    blocks, code, errors = await watch_blocks(f"{url}/{case}", 2)
    assert code == 0
    assert errors == ""
    assert all(needle in block for block in blocks)
    assert app.requests[case] >= 2


# --- on a terminal (tmux) ------------------------------------------------------------


run_in_pane = pytest.fixture(pane_runner)


async def test_one_shot_on_a_terminal_draws_panel_and_table(
    fake_proxy: tuple[str, FakeProxy], run_in_pane: Callable[..., Awaitable[Pane]]
) -> None:
    url, _ = fake_proxy
    with trio.fail_after(TIMEOUT):
        pane = await run_in_pane(f"{url}/ok")
        status, screen = await pane.exit_status()
    assert status == 0
    assert "╭─ trioproxy activity · " in screen
    lines = screen.splitlines()
    assert lines[5].split() == ONE_SHOT_COLUMNS  # the pane is 100 wide: room for all
    assert lines[6].startswith("─────")
    assert lines[9].split()[:5] == ["anthropic.1", "sess-idle", "chat", "stream", "claude-sonnet-4"]
    assert lines[12] == view.RECENT_HEADING
    assert lines[15].split()[:3] == ["15:59:59", "mock.1", "done-1"]
    assert "Traceback" not in screen


async def test_watch_on_a_terminal_redraws_in_place(
    fake_proxy: tuple[str, FakeProxy], run_in_pane: Callable[..., Awaitable[Pane]]
) -> None:
    url, _ = fake_proxy
    with trio.fail_after(TIMEOUT):
        pane = await run_in_pane(f"{url}/counter", "--watch", "--interval", "0.1")
        first = await pane.wait_for(lambda s: "counter-se…" in s)
        # A whole frame (its footer drawn) with other values in the header.
        changed = await pane.wait_for(
            lambda s: "Ctrl+C to quit" in s and header_values(s) not in (None, header_values(first))
        )
        assert changed.count("Active Connections") == 1  # redrawn, not appended
        assert "Refreshing every 0.1s · Ctrl+C to quit" in changed
        assert not await pane.cursor_visible()  # Live hides it while drawing
        await pane.tmux("send-keys", "-t", "t", "C-c")
        status, final = await pane.exit_status()
        assert status == 0
        assert await pane.cursor_visible()
    assert "Traceback" not in final
    assert "KeyboardInterrupt" not in final
    assert final.count("Active Connections") == 1


async def test_watch_on_a_terminal_when_unreachable(
    refused_url: str, run_in_pane: Callable[..., Awaitable[Pane]]
) -> None:
    with trio.fail_after(TIMEOUT):
        pane = await run_in_pane(refused_url, "--watch", "--interval", "0.1")
        screen = await pane.wait_for(lambda s: "unreachable, retrying" in s)
        await pane.tmux("send-keys", "-t", "t", "C-c")
        status, final = await pane.exit_status()
    assert status == 0
    assert "Traceback" not in final
    assert "unreachable, retrying every 0.1s" in screen
    assert f"The proxy at {refused_url} is unreachable" in " ".join(screen.split())


def test_an_active_id_that_ends_in_dots_is_that_id_not_a_prefix() -> None:
    # "retry..." started "retry..." and "retry...2": two matches, and no way to cancel it.
    active = ["retry...", "retry...2"]
    assert pick_session("retry...", active, instance="a", base_url="u") == "retry..."
    assert pick_session("retry...2", active, instance="a", base_url="u") == "retry...2"
    with pytest.raises(AmbiguousSession):
        pick_session("retry…", active, instance="a", base_url="u")
