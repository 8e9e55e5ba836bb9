"""Diagnostics are served to loopback clients only; the proxy routes are not restricted.

The rule (DESIGN.md, "Diagnostics"): ``GET /v1/diagnostics`` and
``GET /v1/diagnostics/activity`` answer only peers in 127.0.0.0/8 or ::1, judged by the
socket peer (the ASGI scope's ``client``) and never by ``X-Forwarded-For``, ``X-Real-IP``
or ``Forwarded``; anyone else gets 403 with an OpenAI-shaped JSON error and nothing else.

Three levels: the pure ``is_loopback`` rule; the ASGI app driven with a forged client
address; and for real, from a network namespace this test builds itself (root only).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import trio

from tests.proxyutil import mock_spec, running_proxy
from trioproxy.app import TrioProxyApp, create_app
from trioproxy.diagnostics import is_loopback
from trioproxy.settings import Secret, Settings

# A distinctive instance name: it must show in a served diagnostics document and never
# leak into a 403.
INSTANCE = "mock.diagnostics-secret"
DIAGNOSTICS_PATHS = ("/v1/diagnostics", "/v1/diagnostics/activity")
DIAGNOSTICS_FIELDS = {"timestamp", "activity_tracking_enabled", "instances", "global_activity"}
INSTANCE_FIELDS = {
    "name",
    "connector_type",
    "is_rate_limited",
    "retry_after_seconds",
    "is_functional",
    "validation_errors",
    "models",
    "activity",
}
ACTIVITY_FIELDS = {"enabled", "total_active_connections", "total_bytes_rx", "total_bytes_tx"}
# Words of a diagnostics document that must never appear in a 403 body.
LEAKY_WORDS = (INSTANCE, "instances", "activity_tracking_enabled", "total_bytes", "enabled")
FORGED_HEADERS = (
    {"X-Forwarded-For": "127.0.0.1"},
    {"X-Real-IP": "127.0.0.1"},
    {"Forwarded": "for=127.0.0.1"},
    {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "::1", "Forwarded": 'for="[::1]"'},
)
CHAT_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def assert_forbidden(response: httpx.Response) -> None:
    """403 with exactly ``{"error": {"message", "type", "code"}}`` and no diagnostics."""
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["code"] is None or isinstance(error["code"], str)
    for word in LEAKY_WORDS:
        assert word not in response.text, f"403 body leaks {word!r}: {response.text}"


def assert_served(path: str, response: httpx.Response) -> None:
    """200 with the documented fields of ``path``."""
    assert response.status_code == 200, response.text
    body = response.json()
    if path == "/v1/diagnostics":
        assert set(body) == DIAGNOSTICS_FIELDS
        assert body["activity_tracking_enabled"] is True
        [instance] = body["instances"]
        assert set(instance) == INSTANCE_FIELDS
        assert instance["name"] == INSTANCE
    else:
        assert set(body) == ACTIVITY_FIELDS
        assert body["enabled"] is True


# --- 1. the pure rule --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.0.2.7", False),
        ("0.0.0.0", False),
        ("128.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1", False),
        ("::", False),
        ("2001:db8::1", False),
        ("not-an-ip", False),
        ("localhost", False),
        ("", False),
    ],
)
def test_is_loopback_table(host: str, expected: bool) -> None:
    assert is_loopback((host, 5555)) is expected
    # ASGI allows the client as any two-item iterable.
    assert is_loopback([host, 5555]) is expected


@pytest.mark.parametrize("client", [None, (), ("",), (None, 5555)])
def test_is_loopback_without_a_peer_is_false(client: Any) -> None:
    assert is_loopback(client) is False


# --- 2. the ASGI app with a forged client address ---------------------------------------


@pytest.fixture
async def app() -> AsyncIterator[TrioProxyApp]:
    settings = replace(
        Settings(), enable_activity_tracking=True, backends=(mock_spec(name=INSTANCE),)
    )
    application = create_app(settings)
    try:
        yield application
    finally:
        with trio.CancelScope(shield=True):
            await application.backends.aclose()


def asgi_client(app: TrioProxyApp, host: str | None) -> httpx.AsyncClient:
    """An httpx client calling ``app`` in-process, seen by it as the peer ``host``."""
    client = (host, 5555) if host is not None else None
    transport = httpx.ASGITransport(app=app, client=client)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://proxy.test")


@pytest.mark.parametrize("peer", ["203.0.113.9", "10.0.0.1", "2001:db8::5", "::ffff:10.0.0.1"])
@pytest.mark.parametrize("path", DIAGNOSTICS_PATHS)
async def test_non_loopback_peer_gets_403(app: TrioProxyApp, peer: str, path: str) -> None:
    async with asgi_client(app, peer) as client:
        assert_forbidden(await client.get(path))


async def test_peer_unknown_gets_403(app: TrioProxyApp) -> None:
    async with asgi_client(app, None) as client:
        for path in DIAGNOSTICS_PATHS:
            assert_forbidden(await client.get(path))


@pytest.mark.parametrize("headers", FORGED_HEADERS, ids=lambda h: "+".join(h))
@pytest.mark.parametrize("path", DIAGNOSTICS_PATHS)
async def test_forwarding_headers_are_not_trusted(
    app: TrioProxyApp, path: str, headers: dict[str, str]
) -> None:
    async with asgi_client(app, "203.0.113.9") as client:
        assert_forbidden(await client.get(path, headers=headers))


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
@pytest.mark.parametrize("path", DIAGNOSTICS_PATHS)
async def test_loopback_peer_is_served(app: TrioProxyApp, peer: str, path: str) -> None:
    async with asgi_client(app, peer) as client:
        assert_served(path, await client.get(path))


# The documents the app serves itself (trioproxy.admin.AdminDocuments) answer every
# method as the operator's routes served by Quart do.
@pytest.mark.parametrize("path", ["/v1/diagnostics", "/v1/diagnostics/activity", "/metrics"])
async def test_the_operators_routes_answer_other_methods_alike(
    app: TrioProxyApp, path: str
) -> None:
    async with asgi_client(app, "127.0.0.1") as client:
        get = await client.get(path)
        head = await client.head(path)
        assert (head.status_code, head.content) == (200, b"")
        assert abs(int(head.headers["content-length"]) - len(get.content)) <= 2  # timestamp
        options = await client.options(path)
        assert options.status_code == 200
        assert set(options.headers["allow"].split(", ")) == {"HEAD", "GET", "OPTIONS"}
        for method in ("POST", "PUT", "DELETE"):
            refused = await client.request(method, path)
            assert refused.status_code == 405
            assert set(refused.headers["allow"].split(", ")) == {"HEAD", "GET", "OPTIONS"}
            assert refused.json()["error"] == {
                "message": f"Method Not Allowed: {method} {path}",
                "type": "invalid_request_error",
                "code": "method_not_allowed",
            }
    async with asgi_client(app, "203.0.113.9") as client:
        # Routing comes first: a wrong method is 405 to any peer, the right one 403.
        assert (await client.post(path)).status_code == 405
        assert (await client.head(path)).status_code == 403
        assert_forbidden(await client.get(path))


async def test_forwarding_headers_cannot_lock_out_a_loopback_peer(app: TrioProxyApp) -> None:
    """The headers are ignored both ways: a loopback peer claiming to be remote is served."""
    headers = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Real-IP": "203.0.113.9",
        "Forwarded": "for=203.0.113.9",
    }
    async with asgi_client(app, "127.0.0.1") as client:
        for path in DIAGNOSTICS_PATHS:
            assert_served(path, await client.get(path, headers=headers))


async def test_proxy_routes_are_not_restricted(app: TrioProxyApp) -> None:
    """Only diagnostics are local: a remote client is proxied and can list models."""
    async with asgi_client(app, "203.0.113.9") as client:
        chat = await client.post("/v1/chat/completions", json=CHAT_BODY)
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"]

        stream = await client.post("/v1/chat/completions", json={**CHAT_BODY, "stream": True})
        assert stream.status_code == 200, stream.text
        assert stream.text.rstrip().endswith("data: [DONE]")

        messages = await client.post(
            "/v1/messages",
            json={**CHAT_BODY, "max_tokens": 16},
            headers={"anthropic-version": "2023-06-01"},
        )
        assert messages.status_code == 200, messages.text
        assert messages.json()["type"] == "message"

        models = await client.get("/v1/models")
        assert models.status_code == 200, models.text
        assert models.json()["object"] == "list"


# --- the real socket peer through hypercorn, on loopback -----------------------------------


async def test_real_loopback_socket_is_served(nursery: trio.Nursery) -> None:
    """Through hypercorn the scope's ``client`` is the real peer, and 127.0.0.1 is served."""
    async with (
        running_proxy(
            nursery, enable_activity_tracking=True, backends=(mock_spec(name=INSTANCE),)
        ) as proxy,
        httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client,
    ):
        for path in DIAGNOSTICS_PATHS:
            assert_served(path, await client.get(path))


# --- 3. for real, from a network namespace -----------------------------------------------

# Run inside the namespace: the stdlib only, no proxy from the environment, one JSON line.
NETNS_CLIENT = textwrap.dedent(
    """
    import json, sys, urllib.error, urllib.request

    base = sys.argv[1]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(method, path, headers=None, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, method=method,
                                         headers=dict(headers or {}))
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with opener.open(request, timeout=20) as response:
                return [response.status, response.headers.get("content-type", ""),
                        response.read().decode()]
        except urllib.error.HTTPError as error:
            return [error.code, error.headers.get("content-type", ""), error.read().decode()]

    xff = {"X-Forwarded-For": "127.0.0.1"}
    all_forged = {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1",
                  "Forwarded": "for=127.0.0.1"}
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    print(json.dumps({
        "diagnostics": call("GET", "/v1/diagnostics"),
        "diagnostics_xff": call("GET", "/v1/diagnostics", xff),
        "diagnostics_all_forged": call("GET", "/v1/diagnostics", all_forged),
        "activity_xff": call("GET", "/v1/diagnostics/activity", xff),
        "chat": call("POST", "/v1/chat/completions", None, chat),
    }))
    """
)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["ip", *args], capture_output=True, check=check, timeout=30)


def free_test_subnet() -> ipaddress.IPv4Network:
    """A /30 in 10.254.0.0/16 that overlaps no address or route the host already has."""
    used: list[ipaddress.IPv4Network] = []
    listing = ip("-o", "-4", "addr", "show").stdout.decode()
    listing += "\n" + ip("-4", "route", "show", "table", "all").stdout.decode()
    for word in listing.split():
        try:
            used.append(ipaddress.IPv4Network(word, strict=False))
        except ValueError:
            continue
    candidates = list(range(256))
    secrets.SystemRandom().shuffle(candidates)
    for x in candidates:
        subnet = ipaddress.IPv4Network(f"10.254.{x}.0/30")
        if not any(subnet.overlaps(net) for net in used):
            return subnet
    pytest.skip("no free /30 in 10.254.0.0/16 for the network-namespace test")


@dataclass(frozen=True)
class Netns:
    """A namespace joined to the host by a veth pair on a private /30."""

    name: str
    host_address: str
    ns_address: str


@pytest.fixture
def netns() -> Iterator[Netns]:
    """Build the namespace and its veth pair; always tear both down.

    A sync fixture on purpose: pytest-trio 0.8 drops the reason of a ``pytest.skip``
    raised inside ``trio.run`` (it re-raises a bare skip), so the skips happen here.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` to create a network namespace")

    token = secrets.token_hex(3)
    namespace = f"trioproxy-t{token}"
    host_link, ns_link = f"tpx{token}h", f"tpx{token}n"  # at most 15 characters
    subnet = free_test_subnet()
    host_address, ns_address = (str(a) for a in subnet.hosts())

    added = ip("netns", "add", namespace, check=False)
    if added.returncode != 0:
        pytest.skip(f"`ip netns add` failed (no CAP_SYS_ADMIN?): {added.stderr.decode().strip()}")
    try:
        ip("link", "add", host_link, "type", "veth", "peer", "name", ns_link)
        ip("link", "set", ns_link, "netns", namespace)
        ip("addr", "add", f"{host_address}/30", "dev", host_link)
        ip("link", "set", host_link, "up")
        ip("-n", namespace, "addr", "add", f"{ns_address}/30", "dev", ns_link)
        ip("-n", namespace, "link", "set", ns_link, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        yield Netns(namespace, host_address, ns_address)
    finally:
        ip("netns", "del", namespace, check=False)
        # Deleting the namespace destroys its veth end and so the pair; this catches a
        # pair whose end never made it into the namespace.
        if ip("link", "show", host_link, check=False).returncode == 0:
            ip("link", "del", host_link, check=False)


@pytest.mark.netns
async def test_non_loopback_client_from_a_network_namespace_gets_403(
    nursery: trio.Nursery, netns: Netns
) -> None:
    async with running_proxy(
        nursery,
        host=netns.host_address,
        enable_activity_tracking=True,
        backends=(mock_spec(name=INSTANCE),),
    ) as proxy:
        assert proxy.url.startswith(f"http://{netns.host_address}:")
        with trio.fail_after(60):
            client = await trio.run_process(
                ["ip", "netns", "exec", netns.name, sys.executable, "-c", NETNS_CLIENT, proxy.url],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert client.returncode == 0, client.stderr.decode()
    results = json.loads(client.stdout)

    # The path works: the proxy answers the namespace, so each 403 below is the rule.
    status, _, body = results["chat"]
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"]

    for name in ("diagnostics", "diagnostics_xff", "diagnostics_all_forged", "activity_xff"):
        status, content_type, body = results[name]
        assert_forbidden(
            httpx.Response(status, headers={"content-type": content_type}, content=body.encode())
        )


# --- admin keys: remote readers of the operator's routes ------------------------------------

ADMIN_KEY = "adm-0123456789-admin"
PROXY_KEY = "cli-0123456789-client"
ADMIN_PATHS = ("/v1/diagnostics", "/v1/diagnostics/activity", "/v1/diagnostics/recent", "/metrics")


@pytest.fixture
async def keyed_app() -> AsyncIterator[TrioProxyApp]:
    settings = replace(
        Settings(),
        enable_activity_tracking=True,
        backends=(mock_spec(name=INSTANCE),),
        admin_keys=(Secret(ADMIN_KEY),),
        client_keys=(Secret(PROXY_KEY),),
    )
    application = create_app(settings)
    try:
        yield application
    finally:
        with trio.CancelScope(shield=True):
            await application.backends.aclose()


@pytest.mark.parametrize("path", ADMIN_PATHS)
@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, False),
        ({"authorization": "Bearer wrong-key"}, False),
        ({"authorization": f"Bearer {PROXY_KEY}"}, False),  # a client key opens no admin route
        ({"x-api-key": ADMIN_KEY}, False),  # admin keys come as Bearer only
        ({"authorization": f"Basic {ADMIN_KEY}"}, False),
        ({"authorization": f"Bearer {ADMIN_KEY}"}, True),
        ({"authorization": f"bearer {ADMIN_KEY}", "x-forwarded-for": "203.0.113.1"}, True),
    ],
)
async def test_a_remote_peer_needs_an_admin_key(
    keyed_app: TrioProxyApp, path: str, headers: dict[str, str], allowed: bool
) -> None:
    async with asgi_client(keyed_app, "203.0.113.9") as client:
        response = await client.get(path, headers=headers)
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert_forbidden(response)


async def test_admin_keys_never_open_the_proxy_routes(keyed_app: TrioProxyApp) -> None:
    async with asgi_client(keyed_app, "203.0.113.9") as client:
        as_admin = await client.post(
            "/v1/chat/completions",
            json=CHAT_BODY,
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        )
        as_client = await client.post(
            "/v1/chat/completions",
            json=CHAT_BODY,
            headers={"authorization": f"Bearer {PROXY_KEY}"},
        )
    assert as_admin.status_code == 401
    assert as_client.status_code == 200


NETNS_ADMIN_CLIENT = textwrap.dedent(
    """
    import json, sys, urllib.error, urllib.request

    base, admin, proxy_key = sys.argv[1:4]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(method, path, headers=None, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, method=method,
                                         headers=dict(headers or {}))
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with opener.open(request, timeout=20) as response:
                return [response.status, response.headers.get("content-type", ""),
                        response.read().decode()]
        except urllib.error.HTTPError as error:
            return [error.code, error.headers.get("content-type", ""), error.read().decode()]

    bearer = lambda key: {"Authorization": "Bearer " + key}
    results = {}
    for path in ("/metrics", "/v1/diagnostics", "/v1/diagnostics/recent"):
        results[path + " none"] = call("GET", path)
        results[path + " wrong"] = call("GET", path, bearer("wrong-key"))
        results[path + " client"] = call("GET", path, bearer(proxy_key))
        results[path + " forged"] = call("GET", path, {"X-Forwarded-For": "127.0.0.1"})
        results[path + " admin"] = call("GET", path, bearer(admin))
    results["cancel admin"] = call("POST", "/v1/diagnostics/cancel", bearer(admin),
                                   {"instance": "x", "session_id": "y"})
    results["cancel none"] = call("POST", "/v1/diagnostics/cancel", None,
                                  {"instance": "x", "session_id": "y"})
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    results["chat admin"] = call("POST", "/v1/chat/completions", bearer(admin), chat)
    results["chat client"] = call("POST", "/v1/chat/completions", bearer(proxy_key), chat)
    print(json.dumps(results))
    """
)


@pytest.mark.netns
async def test_admin_keys_from_a_network_namespace(nursery: trio.Nursery, netns: Netns) -> None:
    async with running_proxy(
        nursery,
        host=netns.host_address,
        enable_activity_tracking=True,
        backends=(mock_spec(name=INSTANCE),),
        admin_keys=(Secret(ADMIN_KEY),),
        client_keys=(Secret(PROXY_KEY),),
    ) as proxy:
        with trio.fail_after(60):
            client = await trio.run_process(
                [
                    *("ip", "netns", "exec", netns.name, sys.executable, "-c"),
                    *(NETNS_ADMIN_CLIENT, proxy.url, ADMIN_KEY, PROXY_KEY),
                ],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert client.returncode == 0, client.stderr.decode()
    results = json.loads(client.stdout)
    for path in ("/metrics", "/v1/diagnostics", "/v1/diagnostics/recent"):
        for who in ("none", "wrong", "client", "forged"):
            status, content_type, body = results[f"{path} {who}"]
            assert_forbidden(
                httpx.Response(
                    status, headers={"content-type": content_type}, content=body.encode()
                )
            )
        status, _, body = results[f"{path} admin"]
        assert status == 200, body
    assert "trioproxy_backend_up" in results["/metrics admin"][2]
    assert results["cancel admin"][0] == 404  # allowed in, and no such connection
    assert results["cancel none"][0] == 403
    assert results["chat admin"][0] == 401
    assert results["chat client"][0] == 200
