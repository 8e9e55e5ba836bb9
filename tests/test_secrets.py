"""Keys stay secret: never in logs (at any level), diagnostics, answers, or upstream mix-ups.

Every backend key and every client credential here is a distinctive string. The proxy is
driven through every kind of exchange — successes, upstream error statuses, a stream cut
short, an unreachable backend, a backend with an invalid URL, one whose key variable is
unset, model discovery — with every logger (the proxy's, httpx, httpcore, hypercorn)
captured at DEBUG, and each client request carrying its own credentials. Then no secret
may appear in any log record, the diagnostics, or anything a client received; client
credentials never reach the upstream, and each backend's key reaches only its own
upstream, in the header its API expects. The last test does the same with a real
``trioproxy`` process started with ``--log-level debug`` and the keys in its environment.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.fake_upstream import FakeUpstream, RecordedRequest, Scenario
from tests.proxyutil import RunningProxy, anthropic_spec, openai_spec, running_proxy
from trioproxy.settings import BackendSpec, ConnectorType, Secret

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"

# Each secret ends in a tail found nowhere else, so a partial leak shows too.
OPENAI_KEY = "sk-SECRET-openai-Vq3tZ8pL1xR7wK2m"
ANTHROPIC_KEY = "sk-SECRET-anthropic-Hd6yN4cB9sJ0fT5u"
DISCOVERY_KEY = "sk-SECRET-discovery-Pw2eG7kX3nA8vQ1z"
BADURL_KEY = "sk-SECRET-badurl-Lm5rC0oY6iU9bE4h"
UNREACHABLE_KEY = "sk-SECRET-unreachable-Tj8aS3dF7gH2kZ6x"
CLIENT_BEARER = "sk-CLIENT-bearer-Ny4wQ9eR2tY7uI0o"
CLIENT_API_KEY = "sk-CLIENT-apikey-Bc1vX6zM3nL8kJ5h"
CLIENT_COOKIE = "CLIENT-cookie-Fg7hJ2kL9qW4eR1t"
PROXY_KEY = "sk-PROXYKEY-Rt5yU0iO3pA8sD2f"
BACKEND_KEYS = (OPENAI_KEY, ANTHROPIC_KEY, DISCOVERY_KEY, BADURL_KEY, UNREACHABLE_KEY)
CLIENT_SECRETS = (CLIENT_BEARER, CLIENT_API_KEY, CLIENT_COOKIE)
CLIENT_HEADERS = {
    "authorization": f"Bearer {CLIENT_BEARER}",
    "x-api-key": CLIENT_API_KEY,
    "api-key": CLIENT_API_KEY,
    "proxy-authorization": f"Bearer {CLIENT_BEARER}",
    "cookie": f"session={CLIENT_COOKIE}",
}
MISSING_VAR = "MISSING_KEY_VAR"
LOGGERS = ("", "trioproxy", "httpx", "httpcore", "hypercorn", "hypercorn.error", "quart")


def tails(secrets: tuple[str, ...]) -> list[str]:
    return [s.rsplit("-", 1)[-1] for s in secrets]


def assert_no_secret(text: str | bytes, secrets: tuple[str, ...], where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    for secret, tail in zip(secrets, tails(secrets), strict=True):
        assert tail not in text, f"{secret!r} leaked into {where}: {text[:2000]!r}"


def log_texts(records: list[logging.LogRecord]) -> Iterator[str]:
    """Everything a handler could write for each record, and the record's raw parts."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for record in records:
        yield formatter.format(record)  # the message with its args, and any traceback
        yield repr(record.msg)
        yield repr(record.args)
        yield repr(vars(record))


def closed_port() -> tuple[socket.socket, int]:
    """A bound socket that does not listen: connecting to its port is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def upstream_headers(request: RecordedRequest) -> str:
    return json.dumps(request.headers)


@dataclass
class Answer:
    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


class Client:
    """Sends with the client's own credentials; records everything answered, raw."""

    def __init__(self, proxy: RunningProxy, client: httpx.AsyncClient) -> None:
        self.proxy = proxy
        self.client = client
        self.received: list[tuple[str, bytes]] = []

    async def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        cut: bool = False,
    ) -> Answer:
        """The answer; with ``cut``, one whose body must break off (read up to the break)."""
        request = self.client.build_request(
            method,
            self.proxy.url + path,
            json=body,
            headers={**CLIENT_HEADERS, **(headers or {})},
        )
        response = await self.client.send(request, stream=True)
        received = bytearray()
        try:
            async for chunk in response.aiter_raw():
                received += chunk
            assert not cut, "the body should have broken off"
        except httpx.RemoteProtocolError:
            assert cut
        finally:
            await response.aclose()
        what = f"the answer to {method} {path} ({response.status_code})"
        self.received.append((what, repr(response.headers.raw).encode() + bytes(received)))
        return Answer(response.status_code, response.headers, bytes(received))

    async def chat(
        self, path: str, model: str, stream: bool = False, *, cut: bool = False
    ) -> Answer:
        body = {"model": model, "stream": stream, "max_tokens": 8, "messages": []}
        return await self.send("POST", path, body, cut=cut)


async def drive_every_kind_of_exchange(fake: FakeUpstream, c: Client) -> None:
    """Successes, upstream errors, cuts, unreachable and misconfigured backends."""
    for path, model in ((CHAT, "openai.1:gpt-fake"), (MESSAGES, "anthropic.1:claude-fake")):
        for stream in (False, True):
            assert (await c.chat(path, model, stream)).status_code == 200
        for status in (400, 401, 403, 404, 500, 503, 529):
            fake.script(Scenario(status=status))
            assert (await c.chat(path, model)).status_code == status
        fake.script(Scenario(cut_after=3))
        response = await c.chat(path, model, stream=True)
        assert b"error" in response.content.rsplit(b"\n\n", 2)[-2]
        fake.script(Scenario(cut_after=10))
        await c.chat(path, model, cut=True)  # a JSON body cut short cannot be mended
        fake.script(Scenario(close_without_response=True))
        assert (await c.chat(path, model)).status_code == 502
        fake.script(Scenario(status=429, headers={"retry-after": "1"}))
        assert (await c.chat(path, model)).status_code == 429
    assert (await c.chat(CHAT, "discovered:gpt-fake", stream=True)).status_code == 200
    assert (await c.chat(CHAT, "unreachable:gpt-unreachable")).status_code == 502
    await c.chat(CHAT, "nokey:gpt-nokey")
    await c.chat(CHAT, "gpt-fake", stream=True)  # a bare model, maybe failed over
    for path in ("/v1/models", "/v1/diagnostics", "/v1/diagnostics/activity", "/health"):
        assert (await c.send("GET", path)).status_code == 200
    await c.send("GET", "/v1/models", headers={"anthropic-version": "2023-06-01"})


def check_upstream_saw_only_its_own_key(fake: FakeUpstream) -> None:
    """No client credential went upstream; each backend key only in its own header."""
    seen_keys = set()
    for request in fake.requests:
        where = f"the upstream request {request.method} {request.path}"
        headers = upstream_headers(request)
        assert_no_secret(headers, CLIENT_SECRETS, where + " headers")
        assert_no_secret(request.body, CLIENT_SECRETS + BACKEND_KEYS, where + " body")
        assert not {"cookie", "proxy-authorization", "api-key"} & set(request.headers), where
        if "anthropic-version" in request.headers:
            key = request.headers["x-api-key"]
            assert key == ANTHROPIC_KEY, where
            assert "authorization" not in request.headers, where
        elif "authorization" in request.headers:
            key = request.headers["authorization"].removeprefix("Bearer ")
            assert key in (OPENAI_KEY, DISCOVERY_KEY), where
            assert "x-api-key" not in request.headers, where
        else:
            # Only the backend without a key sends none.
            assert request.json["model"] == "gpt-nokey", where
            assert_no_secret(headers, BACKEND_KEYS, where + " headers")
            continue
        seen_keys.add(key)
        others = tuple(k for k in BACKEND_KEYS if k != key)
        assert_no_secret(headers, others, where + " headers")
    assert seen_keys == {OPENAI_KEY, ANTHROPIC_KEY, DISCOVERY_KEY}


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    return caplog


async def test_no_key_in_logs_diagnostics_or_answers_and_no_client_credential_upstream(
    nursery: trio.Nursery, fake: FakeUpstream, debug_logs: pytest.LogCaptureFixture
) -> None:
    refusing, port = closed_port()
    with refusing:
        async with (
            running_proxy(
                nursery,
                enable_activity_tracking=True,
                backends=(
                    openai_spec(fake.base_url, key=OPENAI_KEY),
                    anthropic_spec(fake.base_url, key=ANTHROPIC_KEY),
                    openai_spec(fake.base_url, name="discovered", models=None, key=DISCOVERY_KEY),
                    BackendSpec(
                        name="nokey",
                        type=ConnectorType.OPENAI,
                        base_url=fake.base_url + "/v1",
                        api_key_env=MISSING_VAR,
                        api_key=None,
                        models=("gpt-nokey",),
                    ),
                    openai_spec(
                        f"http://127.0.0.1:{port}",
                        name="unreachable",
                        models=None,
                        key=UNREACHABLE_KEY,
                    ),
                ),
            ) as proxy,
            httpx.AsyncClient(timeout=30) as http,
        ):
            c = Client(proxy, http)
            await drive_every_kind_of_exchange(fake, c)
            diagnostics = await c.send("GET", "/v1/diagnostics")

    secrets = BACKEND_KEYS + CLIENT_SECRETS
    # The diagnostics: no key, and the reasons name the variable, not a value.
    assert_no_secret(diagnostics.text, secrets, "the diagnostics")
    instances = {i["name"]: i for i in diagnostics.json()["instances"]}
    nokey = instances["nokey"]
    assert nokey["is_functional"] is False
    assert any(MISSING_VAR in error for error in nokey["validation_errors"])
    assert instances["unreachable"]["is_functional"] is False
    assert instances["discovered"]["models"] == ["gpt-fake", "claude-fake"]

    # Nothing a client received.
    assert len(c.received) > 30
    for what, raw in c.received:
        assert_no_secret(raw, secrets, what)

    # No log record, at DEBUG, from any logger: and the capture did see the traffic.
    records = debug_logs.records
    assert any(r.levelno == logging.DEBUG and r.name.startswith("httpcore") for r in records)
    assert any(r.levelno == logging.WARNING and r.name.startswith("trioproxy") for r in records)
    for text in log_texts(records):
        assert_no_secret(text, secrets, "a log record")

    # Nor the settings' own repr, which tracebacks and debuggers show.
    assert_no_secret(repr(proxy.app.settings), BACKEND_KEYS, "repr(settings)")
    assert_no_secret(str(proxy.app.settings), BACKEND_KEYS, "str(settings)")

    check_upstream_saw_only_its_own_key(fake)


async def test_a_backend_with_an_invalid_url_is_reported_without_its_key(
    nursery: trio.Nursery, fake: FakeUpstream, debug_logs: pytest.LogCaptureFixture
) -> None:
    async with running_proxy(
        nursery,
        enable_activity_tracking=True,
        backends=(
            anthropic_spec(fake.base_url, key=ANTHROPIC_KEY),
            BackendSpec(
                name="badurl",
                type=ConnectorType.ANTHROPIC,
                base_url="htp:/not a url",
                api_key_env="BADURL_KEY_VAR",
                api_key=Secret(BADURL_KEY),
                models=("claude-badurl",),
            ),
        ),
    ) as proxy:
        async with httpx.AsyncClient(timeout=30) as http:
            c = Client(proxy, http)
            for stream in (False, True):
                response = await c.chat(MESSAGES, "badurl:claude-badurl", stream)
                assert response.status_code in (502, 503), response.text
                assert response.json()["type"] == "error"
            assert (await c.chat(MESSAGES, "claude-fake")).status_code == 200
            diagnostics = await c.send("GET", "/v1/diagnostics")
        secrets = BACKEND_KEYS + CLIENT_SECRETS
        assert_no_secret(diagnostics.text, secrets, "the diagnostics")
        badurl = next(i for i in diagnostics.json()["instances"] if i["name"] == "badurl")
        assert badurl["is_functional"] is False
        assert any("URL" in error or "url" in error for error in badurl["validation_errors"])
        for what, raw in c.received:
            assert_no_secret(raw, secrets, what)
        for text in log_texts(debug_logs.records):
            assert_no_secret(text, secrets, "a log record")
        assert len(fake.requests) == 1  # only the working backend's request went out
        assert fake.requests[0].headers["x-api-key"] == ANTHROPIC_KEY


async def test_an_upstream_cut_of_a_json_body_raises_nothing_into_the_server(
    nursery: trio.Nursery, fake: FakeUpstream, debug_logs: pytest.LogCaptureFixture
) -> None:
    async with running_proxy(
        nursery, backends=(openai_spec(fake.base_url, key=OPENAI_KEY),)
    ) as proxy:
        fake.script(Scenario(cut_after=10))
        async with httpx.AsyncClient() as http:
            c = Client(proxy, http)
            response = await c.chat(CHAT, "gpt-fake", cut=True)
        assert response.status_code == 200
        assert len(response.content) == 10  # what the upstream sent; then the connection ends
        await fake.wait_closed(0)
        server_errors = [r for r in debug_logs.records if r.name.startswith("hypercorn")]
        assert [r.getMessage() for r in server_errors if r.levelno >= logging.ERROR] == []


async def test_proxy_keys_are_checked_but_never_forwarded_logged_or_echoed(
    nursery: trio.Nursery, fake: FakeUpstream, debug_logs: pytest.LogCaptureFixture
) -> None:
    async with running_proxy(
        nursery,
        enable_activity_tracking=True,
        client_keys=(Secret(PROXY_KEY),),
        backends=(
            openai_spec(fake.base_url, key=OPENAI_KEY),
            anthropic_spec(fake.base_url, key=ANTHROPIC_KEY),
        ),
    ) as proxy:
        received: list[bytes] = []
        async with httpx.AsyncClient() as http:
            for path, model in ((CHAT, "gpt-fake"), (MESSAGES, "claude-fake")):
                body = {"model": model, "stream": True, "max_tokens": 8, "messages": []}
                for headers, status in (
                    ({"authorization": f"Bearer {PROXY_KEY}"}, 200),
                    ({"x-api-key": PROXY_KEY}, 200),
                    ({"authorization": f"Bearer {CLIENT_BEARER}"}, 401),
                    ({"x-api-key": CLIENT_API_KEY, "authorization": f"Basic {PROXY_KEY}"}, 401),
                ):
                    response = await http.post(proxy.url + path, json=body, headers=headers)
                    assert response.status_code == status, response.text
                    received.append(repr(response.headers.raw).encode() + response.content)
            diagnostics = await http.get(proxy.url + "/v1/diagnostics")
        secrets = (PROXY_KEY, *BACKEND_KEYS, *CLIENT_SECRETS)
        assert_no_secret(diagnostics.text, secrets, "the diagnostics")
        for raw in received:
            assert_no_secret(raw, secrets, "an answer")
        assert len(fake.requests) == 4
        for request in fake.requests:
            assert_no_secret(upstream_headers(request), (PROXY_KEY, *CLIENT_SECRETS), "upstream")
        records = debug_logs.records
        assert any(r.levelno == logging.DEBUG for r in records)
        for text in log_texts(records):
            assert_no_secret(text, secrets, "a log record")
        assert_no_secret(repr(proxy.app.settings), (PROXY_KEY,), "repr(settings)")


# -- a real process ---------------------------------------------------------------------------

SUB_OPENAI_KEY = "sk-SECRET-subopenai-Kx4cV9bN2mQ7wE3r"
SUB_ANTHROPIC_KEY = "sk-SECRET-subanthropic-Zy6tU1iO8pL5kJ0g"
SUB_ENV_OPENAI_KEY = "sk-SECRET-envopenai-Ws3dF8gH1jK6lZ9x"
SUB_PROXY_KEY = "sk-PROXYKEY-sub-Qa7sD2fG5hJ0kL3z"
SUB_SECRETS = (SUB_OPENAI_KEY, SUB_ANTHROPIC_KEY, SUB_ENV_OPENAI_KEY, SUB_PROXY_KEY)

SUB_CONFIG = """
enable_activity_tracking: true
backends:
  - name: openai.1
    type: openai
    base_url: {base}/v1
    api_key_env: TRIOPROXY_TEST_OPENAI_KEY
  - name: anthropic.1
    type: anthropic
    base_url: {base}
    api_key_env: TRIOPROXY_TEST_ANTHROPIC_KEY
    models: [claude-fake]
  - name: nokey
    type: openai
    base_url: {base}/v1
    api_key_env: MISSING_KEY_VAR
    models: [gpt-nokey]
"""


class Output:
    """A process's stdout and stderr, read to the end as they come."""

    def __init__(self) -> None:
        self.streams = {"stdout": bytearray(), "stderr": bytearray()}
        self._changed = trio.Event()

    async def read(self, name: str, stream: trio.abc.ReceiveStream) -> None:
        while data := await stream.receive_some():
            self.streams[name] += data
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, pattern: bytes) -> re.Match[bytes]:
        while (match := re.search(pattern, self.streams["stderr"])) is None:
            await self._changed.wait()
        return match


async def test_a_real_process_at_debug_level_never_prints_a_key(
    tmp_path: Path, nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    config = tmp_path / "trioproxy.yaml"
    config.write_text(SUB_CONFIG.format(base=fake.base_url))
    env = {
        **os.environ,
        "TRIOPROXY_TEST_OPENAI_KEY": SUB_OPENAI_KEY,
        "TRIOPROXY_TEST_ANTHROPIC_KEY": SUB_ANTHROPIC_KEY,
        "OPENAI_API_KEY": SUB_ENV_OPENAI_KEY,  # unused (the config lists backends): unprinted
        "TRIOPROXY_TEST_PROXY_KEYS": f"{SUB_PROXY_KEY},second-key",
    }
    env.pop(MISSING_VAR, None)
    proc = await trio.lowlevel.open_process(
        [
            *(sys.executable, "-m", "trioproxy", "--port", "0", "-c", str(config)),
            *("--log-level", "debug", "--client-keys-env", "TRIOPROXY_TEST_PROXY_KEYS"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    output = Output()
    try:
        async with trio.open_nursery() as readers:
            assert proc.stdout is not None and proc.stderr is not None
            readers.start_soon(output.read, "stdout", proc.stdout)
            readers.start_soon(output.read, "stderr", proc.stderr)
            with trio.fail_after(30):
                url = (await output.wait_for(rb"trioproxy on (http://\S+);")).group(1).decode()
            headers = {**CLIENT_HEADERS, "authorization": f"Bearer {SUB_PROXY_KEY}"}
            async with httpx.AsyncClient(timeout=30) as http:
                for path, model in ((CHAT, "gpt-fake"), (MESSAGES, "claude-fake")):
                    for stream in (False, True):
                        body = {"model": model, "stream": stream, "max_tokens": 8}
                        response = await http.post(url + path, json=body, headers=headers)
                        assert response.status_code == 200, response.text
                    fake.script(Scenario(status=401))
                    response = await http.post(url + path, json=body, headers=headers)
                    assert response.status_code == 401
                    fake.script(Scenario(cut_after=2))
                    await http.post(url + path, json=body, headers=headers)
                response = await http.post(
                    url + CHAT, json={"model": "nokey:gpt-nokey"}, headers=headers
                )
                response = await http.post(url + CHAT, json={"model": "gpt-fake"})
                assert response.status_code == 401  # no proxy key
                diagnostics = await http.get(url + "/v1/diagnostics")
            os.kill(proc.pid, signal.SIGTERM)
            with trio.fail_after(30):
                assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()

    stderr = bytes(output.streams["stderr"])
    assert b" DEBUG " in stderr  # the debug level was really on
    assert b"Traceback" not in stderr
    for name, data in output.streams.items():
        assert_no_secret(bytes(data), SUB_SECRETS + CLIENT_SECRETS, f"the process's {name}")
    assert_no_secret(diagnostics.text, SUB_SECRETS + CLIENT_SECRETS, "the diagnostics")
    nokey = next(i for i in diagnostics.json()["instances"] if i["name"] == "nokey")
    assert any(MISSING_VAR in error for error in nokey["validation_errors"])
    # The process did hold the keys: the upstream got them, and only them.
    discovery, *chats = fake.requests
    assert (discovery.method, discovery.path) == ("GET", "/v1/models")
    assert discovery.headers["authorization"] == f"Bearer {SUB_OPENAI_KEY}"
    assert {r.headers.get("x-api-key") for r in chats if r.path == MESSAGES} == {SUB_ANTHROPIC_KEY}
    assert {r.headers.get("authorization") for r in chats if r.path == CHAT} == {
        f"Bearer {SUB_OPENAI_KEY}",
        None,  # the nokey backend
    }
    for request in fake.requests:
        assert_no_secret(upstream_headers(request), (SUB_PROXY_KEY, *CLIENT_SECRETS), "upstream")
