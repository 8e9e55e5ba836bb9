"""Client authentication with proxy keys."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
import trio

from tests.fake_upstream import FakeUpstream
from tests.proxyutil import BACKEND_KEY, anthropic_spec, openai_spec, running_proxy
from trioproxy.auth import is_authorized, presented_keys
from trioproxy.cli import load_settings
from trioproxy.config_file import ConfigError
from trioproxy.settings import Secret

KEYS = (Secret("proxy-key-1"), Secret("proxy-key-2"))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer abc")], [b"abc"]),
        ([(b"authorization", b"bearer  abc ")], [b"abc"]),
        ([(b"authorization", b"Basic abc")], []),
        ([(b"x-api-key", b"k")], [b"k"]),
        ([(b"x-api-key", b"  ")], []),
        ([], []),
    ],
)
def test_presented_keys(headers: list[tuple[bytes, bytes]], expected: list[bytes]) -> None:
    assert presented_keys(headers) == expected


def test_is_authorized() -> None:
    allowed = (b"k1", b"k2")
    assert is_authorized([(b"x-api-key", b"k2")], allowed)
    assert not is_authorized([(b"x-api-key", b"k3")], allowed)
    assert not is_authorized([], allowed)
    assert is_authorized([], ())


def test_keys_come_from_the_named_variable() -> None:
    env = {"MY_KEYS": " key-one-XYZ, key-two-XYZ ,,"}
    settings = load_settings(["--client-keys-env", "MY_KEYS"], env)
    assert [k.value for k in settings.client_keys] == ["key-one-XYZ", "key-two-XYZ"]
    assert "XYZ" not in repr(settings)
    with pytest.raises(ConfigError, match="MY_KEYS"):
        load_settings(["--client-keys-env", "MY_KEYS"], {})


async def test_every_proxy_route_needs_a_key_when_keys_are_set(
    nursery: trio.Nursery, fake: FakeUpstream
) -> None:
    async with running_proxy(
        nursery,
        backends=(openai_spec(fake.base_url), anthropic_spec(fake.base_url)),
        client_keys=KEYS,
    ) as proxy:
        body = {"model": "gpt-fake", "max_tokens": 5, "messages": []}
        async with httpx.AsyncClient() as client:
            no_key = await client.post(proxy.url + "/v1/chat/completions", json=body)
            wrong = await client.post(
                proxy.url + "/v1/messages", json=body, headers={"x-api-key": "nope"}
            )
            models = await client.get(proxy.url + "/v1/models")
            diagnostics = await client.get(proxy.url + "/v1/diagnostics")
        assert (
            no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
        )
        assert wrong.status_code == 401 and wrong.json()["type"] == "error"
        assert wrong.json()["error"]["type"] == "authentication_error"
        # Refused with its body unread, the connection cannot carry another request: the
        # client is told so (a request sent on it at once met the server's close).
        assert no_key.headers["connection"] == wrong.headers["connection"] == "close"
        assert models.status_code == 401
        # Diagnostics stay loopback-only and need no key.
        assert diagnostics.status_code == 200
        assert fake.requests == []

        # The SDKs send their api_key the way the proxy expects, and it goes no further.
        async with (
            openai.AsyncOpenAI(
                base_url=proxy.openai_url, api_key="proxy-key-2", max_retries=0
            ) as oai,
            anthropic.AsyncAnthropic(
                base_url=proxy.url, api_key="proxy-key-1", max_retries=0
            ) as ant,
        ):
            await oai.chat.completions.create(model="gpt-fake", messages=[])
            await ant.messages.create(model="claude-fake", max_tokens=5, messages=[])
            listed = await oai.models.list()
        assert {m.id for m in listed.data} == {"gpt-fake", "claude-fake"}
        for seen in fake.requests:
            assert "proxy-key" not in str(seen.headers)
        assert fake.requests[0].headers["authorization"] == f"Bearer {BACKEND_KEY}"
        assert fake.requests[1].headers["x-api-key"] == BACKEND_KEY


async def test_non_loopback_bind_without_keys_warns(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    from trioproxy.server import serve
    from trioproxy.settings import Settings

    async with trio.open_nursery() as inner:
        await inner.start(serve, Settings(host="0.0.0.0", port=0))
        inner.cancel_scope.cancel()
    assert any("no client keys" in r.getMessage() for r in caplog.records)
    caplog.clear()
    async with trio.open_nursery() as inner:
        await inner.start(serve, Settings(host="127.0.0.1", port=0))
        inner.cancel_scope.cancel()
    assert not any("no client keys" in r.getMessage() for r in caplog.records)
