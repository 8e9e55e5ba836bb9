"""Secrets inside a backend's base URL: refused at start-up, and never shown anywhere.

A ``base_url`` with credentials (``http://user:pass@host``) or a query (``?key=…``) stops
start-up with one line that shows the URL redacted. A backend built with such a URL anyway
(``Settings`` made in code) is reported not functional, and its URL reaches diagnostics,
error bodies and log lines only redacted.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.proxyutil import running_proxy
from trioproxy.cli import load_settings
from trioproxy.config_file import ConfigError
from trioproxy.settings import BackendSpec, ConnectorType, Secret
from trioproxy.urls import base_url_problem, shown_url

SECRETS = ("sk-userinfo-secret", "sk-query-secret", "sk-fragment-secret")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("http://user:sk-userinfo-secret@h:8080/v1", "http://***@h:8080/v1"),
        ("http://sk-userinfo-secret@h/v1", "http://***@h/v1"),
        ("http://h/v1?key=sk-query-secret", "http://h/v1?key=***"),
        ("http://h/v1?key=sk-query-secret&api-version=2024", "http://h/v1?key=***&api-version=***"),
        ("http://h/v1?sk-query-secret", "http://h/v1?sk-query-secret=***"),
        ("http://h/v1#sk-fragment-secret", "http://h/v1#***"),
        ("ftp://u:sk-userinfo-secret@h/v1?k=sk-query-secret", "ftp://***@h/v1?k=***"),
        ("localhost:8080/v1", "localhost:8080/v1"),
    ],
)
def test_shown_url_hides_userinfo_query_values_and_fragment(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://api.openai.com/v1", None),
        ("http://127.0.0.1:8001/v1", None),
        ("localhost:8080/v1", "must be an http:// or https:// URL, not 'localhost:8080/v1'"),
        ("http://h:port/v1", "must be an http:// or https:// URL, not 'http://h:port/v1'"),
        ("ftp://h/v1", "must be an http:// or https:// URL"),
        (
            "http://user:sk-userinfo-secret@h/v1",
            "must not contain credentials (user:password@), as 'http://***@h/v1' does; put "
            "the backend's key in the variable that api_key_env names",
        ),
        (
            "https://h/v1?key=sk-query-secret",
            "must not contain a query (?…) or a fragment (#…), as 'https://h/v1?key=***' "
            "does: the proxy does not send them upstream",
        ),
        ("https://h/v1#sk-fragment-secret", "must not contain a query (?…) or a fragment"),
    ],
)
def test_base_url_problem(url: str, words: str | None) -> None:
    problem = base_url_problem(url)
    if words is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(words)
        assert not any(secret in problem for secret in SECRETS)


BAD_URLS = [
    "http://user:sk-userinfo-secret@127.0.0.1:9/v1",
    "http://127.0.0.1:9/v1?key=sk-query-secret",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_config_file_base_url_with_a_secret_stops_start_up_in_one_line(
    tmp_path: Path, url: str
) -> None:
    path = tmp_path / "trioproxy.yaml"
    path.write_text(f"backends:\n  - type: openai\n    base_url: '{url}'\n")
    result = subprocess.run(
        [sys.executable, "-m", "trioproxy", "--port", "0", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"trioproxy: error: {path}: key 'backends[0].base_url' must")
    assert result.stderr.count("\n") == 1
    assert not any(secret in result.stderr for secret in SECRETS)


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize(
    ("key_var", "url_var"),
    [("OPENAI_API_KEY", "OPENAI_BASE_URL"), ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")],
)
def test_a_base_url_variable_with_a_secret_is_refused(url: str, key_var: str, url_var: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings([], {key_var: "sk-1", url_var: url})
    message = str(info.value)
    assert message.startswith(f"environment variable {url_var} must not contain ")
    assert not any(secret in message for secret in SECRETS)


async def test_a_secret_in_a_base_url_given_in_code_is_never_shown(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    specs = tuple(
        BackendSpec(
            name=f"secret.{i}",
            type=ConnectorType.OPENAI,
            base_url=url,
            api_key_env="SECRET_URL_KEY",
            api_key=Secret("sk-backend"),
            models=(f"model-{i}",),
        )
        for i, url in enumerate([*BAD_URLS, "http://127.0.0.1:9/v1#sk-fragment-secret"])
    )
    async with (
        running_proxy(nursery, enable_activity_tracking=True, backends=specs) as proxy,
        httpx.AsyncClient(timeout=30) as client,
    ):
        answers = []
        for i in range(len(specs)):
            for stream in (False, True):
                body: dict[str, object] = {
                    "model": f"secret.{i}:model-{i}",
                    "stream": stream,
                    "messages": [],
                }
                answers.append(await client.post(proxy.url + "/v1/chat/completions", json=body))
        diagnostics = await client.get(proxy.url + "/v1/diagnostics")
        models = await client.get(proxy.url + "/v1/models")
    for answer in answers:
        assert answer.status_code == 502, answer.text
        assert "***" in answer.text
    for instance in diagnostics.json()["instances"]:
        assert instance["is_functional"] is False
        assert any("base_url must not contain" in e for e in instance["validation_errors"])
    shown = [a.text for a in answers] + [diagnostics.text, models.text]
    shown += [record.getMessage() for record in caplog.records]
    for text in shown:
        assert not any(secret in text for secret in SECRETS), text
