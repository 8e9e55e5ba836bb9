"""No input makes the proxy answer 500 or die: the request routes fuzzed with hypothesis.

The app runs in-process behind ``httpx.ASGITransport`` on mock backends with no delay,
so an example costs about a millisecond. Hypothesis is synchronous, so each property runs
in a worker thread of the test's own Trio run and sends every example back into that run
with ``trio.from_thread.run``: one app (and one activity tracker, which belongs to one
Trio run) serves all the examples of a test, and the test then checks that the app still
answers normally and that its counters add up to exactly what the clients received.

Every answer must be a success (2xx: a JSON document, or an SSE stream that ends with the
API's final event) or a well-formed API error (4xx: the OpenAI error shape, or the
Anthropic one on ``/v1/messages``), with headers a real HTTP/1.1 server can send. Nothing
here has an upstream, so no 5xx is acceptable.

Inputs that currently break the proxy are kept out of the broad properties and pinned by
the regression tests at the end, which run against the real hypercorn server.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import h11
import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.proxyutil import mock_spec, running_proxy
from trioproxy.app import TrioProxyApp, create_app
from trioproxy.sessions import valid_session_id
from trioproxy.settings import Settings

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
BASE = "http://proxy"
BODY_LIMIT = 32 * 1024
MOCK_PREFIXES = ("mock", "mock.1", "mock.2")

FUZZ_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# -- the app and the exchange ------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    method: str
    path: str  # percent-encoded, may carry a query
    body: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass
class Totals:
    """What the clients saw of the requests the tracker must have counted."""

    relayed: int = 0
    body_bytes: int = 0


@dataclass
class Fuzzing:
    app: TrioProxyApp
    client: httpx.AsyncClient
    totals: Totals = field(default_factory=Totals)


def make_app() -> TrioProxyApp:
    return create_app(
        Settings(
            backends=(
                mock_spec(delay=0),
                mock_spec(name="mock.2", chunks=2, delay=0),
            ),
            enable_activity_tracking=True,
            max_request_body=BODY_LIMIT,
        )
    )


async def fuzz(test: Callable[[Fuzzing], Callable[[], None]]) -> Fuzzing:
    """Run the hypothesis property ``test(fuzzing)`` against one app; return the fuzzing."""
    app = make_app()
    # What the app's start-up hook does; ASGITransport runs no lifespan.
    await app.backends.discover_models()
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        fuzzing = Fuzzing(app, client)
        await trio.to_thread.run_sync(test(fuzzing))
        await assert_still_serving(fuzzing)
    return fuzzing


def send(fuzzing: Fuzzing, req: Req) -> httpx.Response:
    """From the hypothesis thread: one exchange in the Trio run, checked."""

    async def exchange() -> httpx.Response:
        return await fuzzing.client.request(
            req.method,
            BASE + req.path,
            content=req.body,
            headers=[(name.encode(), value) for name, value in req.headers],
        )

    response: httpx.Response = trio.from_thread.run(exchange)
    check_response(req, response)
    path = unquote(urlsplit(req.path).path)
    if path in (CHAT, MESSAGES) and response.is_success:
        fuzzing.totals.relayed += 1
        fuzzing.totals.body_bytes += len(response.content)
    return response


# -- what every answer must look like ------------------------------------------------------


def check_response(req: Req, response: httpx.Response) -> None:
    status = response.status_code
    what = f"{req.method} {req.path} -> {status}: {response.content[:300]!r}"
    assert 200 <= status < 300 or 400 <= status < 500, what
    # Headers a real HTTP/1.1 server (h11, under hypercorn) accepts to send.
    h11.Response(status_code=status, headers=list(response.headers.raw))
    if req.method == "HEAD":
        return
    path = unquote(urlsplit(req.path).path)
    content_type = response.headers.get("content-type", "")
    if response.is_success:
        if req.method == "OPTIONS" and not response.content:
            return  # the framework's automatic OPTIONS answer: an Allow header, no body
        if path in (CHAT, MESSAGES):
            assert response.headers.get("x-session-id"), what
        if content_type.startswith("text/event-stream"):
            assert path in (CHAT, MESSAGES), what
            check_sse(path, response.content)
        else:
            assert content_type == "application/json", what
            assert isinstance(json.loads(response.content), dict), what
        return
    assert content_type == "application/json", what
    body = json.loads(response.content)
    # Anthropic's clients parse errors under /v1/messages, OpenAI's everywhere else.
    if path == MESSAGES or path.startswith(MESSAGES + "/"):
        assert body["type"] == "error", what
        assert set(body["error"]) == {"type", "message"}, what
        assert isinstance(body["error"]["type"], str) and body["error"]["type"], what
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], what
    else:
        assert set(body) == {"error"}, what
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"], what
        assert isinstance(error["type"], str) and error["type"], what
        assert "code" in error, what


def sse_events(body: bytes) -> list[bytes]:
    assert body.endswith(b"\n\n"), body[-200:]
    return body[:-2].split(b"\n\n")


def check_sse(path: str, body: bytes) -> None:
    """A whole stream in the API's shape, ending with its final event and nothing after."""
    events = sse_events(body)
    if path == CHAT:
        assert events[-1] == b"data: [DONE]", body[-200:]
        for event in events[:-1]:
            assert event.startswith(b"data: "), event
            assert "error" not in json.loads(event.removeprefix(b"data: ")), event
        return
    assert events[-1].startswith(b"event: message_stop\n"), body[-200:]
    for event in events:
        name, data = event.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: "), event
        kind = name.removeprefix(b"event: ").decode()
        assert kind != "error" and json.loads(data.removeprefix(b"data: "))["type"] == kind


async def assert_still_serving(fuzzing: Fuzzing) -> None:
    """After the fuzz: normal requests work and the tracker's books balance exactly."""
    client = fuzzing.client
    doc = (await client.get(BASE + "/v1/diagnostics")).json()
    activity = doc["global_activity"]
    assert activity["total_active_connections"] == 0
    assert activity["lifetime"] == {
        "requests": fuzzing.totals.relayed,
        "bytes_rx": fuzzing.totals.body_bytes,
        "bytes_tx": fuzzing.totals.body_bytes,
        "completed": fuzzing.totals.relayed,
        "errors": 0,
        "cancelled": 0,
        "stale": 0,
    }
    for path in (CHAT, MESSAGES):
        for stream in (False, True):
            body: dict[str, Any] = {
                "model": "mock-model",
                "stream": stream,
                "max_tokens": 5,
                "messages": [],
            }
            response = await client.post(
                BASE + path, json=body, headers={"x-session-id": "after-the-fuzz"}
            )
            assert response.status_code == 200, response.text
            assert response.headers["x-session-id"] == "after-the-fuzz"
            if stream:
                check_sse(path, response.content)
            else:
                assert response.json()["model"] == "mock-model"
    models = (await client.get(BASE + "/v1/models")).json()
    assert {m["owned_by"] for m in models["data"]} == {"mock.1", "mock.2"}


# -- strategies -----------------------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Draw from one of ``choices``, picked in proportion to its weight."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(lambda s: s)


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**18, max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)  # RFC 8259 JSON has neither
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

model_strings = st.one_of(
    st.sampled_from(
        ["mock-model", "fuzz-model", "", " ", ":", "::", "mock.1:", ":mock-model", "llama3.1:8b"]
    ),
    st.text(max_size=40),
    st.builds(
        "{}:{}".format,
        st.sampled_from([*MOCK_PREFIXES, "openai", "anthropic", "openai.1", "MOCK", "x"]),
        st.text(max_size=20),
    ),
    st.text(max_size=20).map(":".__add__),
    st.integers(1_000, 50_000).map("m".__mul__),  # long, some past the body limit
)

# Session ids a client may put in a body (control characters have their own test below).
safe_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00\n\r\x0b\x0c"),
    max_size=60,
)
session_values = (
    safe_text
    | st.integers(1, 300).map("s".__mul__)
    | json_values.filter(lambda v: not isinstance(v, str))
)

body_fields = {
    "stream": weighted((2, st.booleans()), (1, json_values)),
    "session_id": session_values,
    "messages": json_values,
    "max_tokens": json_values,
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_values,
}
extra_fields = st.dictionaries(st.text(max_size=10), json_values, max_size=3)
objects = weighted(
    (3, st.fixed_dictionaries({"model": model_strings}, optional=body_fields)),
    (1, st.fixed_dictionaries({}, optional={"model": json_values, **body_fields})),
).flatmap(lambda known: extra_fields.map(lambda extra: {**extra, **known}))


def encode(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode()


json_bodies = st.builds(encode, weighted((4, objects), (1, json_values)), st.booleans())
raw_bodies = st.one_of(
    json_bodies,
    st.binary(max_size=300),
    st.builds(lambda body, n: body[:n], json_bodies, st.integers(0, 300)),  # cut short
    st.integers(1, 200).map(lambda d: b'{"model": "mock-model", "x": %s}' % (b"[" * d + b"]" * d)),
    st.integers(BODY_LIMIT - 200, BODY_LIMIT + 200).map(
        lambda n: b'{"model": "mock-model", "pad": "%s"}' % (b"x" * n)
    ),
    st.sampled_from(
        [
            b"",
            b"null",
            b"{}",
            b'{"model": null}',
            b'\xef\xbb\xbf{"model": "mock-model"}',
            '{"model": "mock-model"}'.encode("utf-16"),
            b'{"model": "mock-model", "n": 1' + b"0" * 5_000 + b"}",
            b'{"model": "mock-model", "n": 1e999999, "m": -Infinity, "o": NaN}',
            b'{"model": "mock-model", "model": 7}',
        ]
    ),
)

# Header values a real HTTP/1.1 server lets through: visible latin-1, inner blanks.
_value_chars = "".join(map(chr, [9, *range(0x20, 0x7F), *range(0x80, 0x100)]))
header_values = st.text(_value_chars, max_size=40).map(lambda s: s.encode("latin-1").strip(b" \t"))
_reserved = {"host", "content-length", "transfer-encoding", "connection", "expect"}
header_names = st.text(
    string.ascii_letters + string.digits + "-_.!#$%&'*+^`|~", min_size=1, max_size=12
)
known_headers = {
    "content-type": weighted(
        (
            4,
            st.sampled_from(
                [
                    b"application/json",
                    b"application/json; charset=utf-8",
                    b"APPLICATION/JSON",
                    b"application/vnd.api+json",
                ]
            ),
        ),
        (1, st.sampled_from([b"text/plain", b"multipart/form-data; boundary=xyz", b""])),
        (1, header_values),
    ),
    "x-session-id": header_values | st.integers(150, 260).map(lambda n: b"h" * n),
    "authorization": st.sampled_from([b"Bearer sk-client", b"Basic Zm9vOmJhcg==", b"Bearer"])
    | header_values,
    "x-api-key": header_values,
    "anthropic-version": st.sampled_from([b"2023-06-01", b""]) | header_values,
    "accept": st.sampled_from([b"text/event-stream", b"application/json", b"*/*"]),
    "accept-encoding": st.sampled_from([b"gzip", b"identity", b"br;q=0"]) | header_values,
    "x-forwarded-for": header_values,
}
header_sets = st.builds(
    lambda known, extra: tuple({**extra, **known}.items()),
    st.fixed_dictionaries({}, optional=known_headers),
    st.dictionaries(
        header_names.filter(lambda n: n.lower() not in _reserved), header_values, max_size=3
    ),
)

segments = st.text(min_size=1, max_size=12).map(lambda s: quote(s, safe=""))
random_paths = st.builds(
    lambda parts, query: "/" + "/".join(parts) + query,
    st.lists(segments, max_size=4),
    st.sampled_from(["", "?"]) | st.text(max_size=12).map(lambda q: "?" + quote(q, safe="=&")),
)
paths = weighted(
    (
        3,
        st.sampled_from(
            [
                CHAT,
                MESSAGES,
                "/v1/models",
                "/v1/diagnostics",
                "/v1/diagnostics/activity",
                "/health",
                "/",
                "/v1",
                CHAT + "/",
                MESSAGES + "/",
                MESSAGES + "?beta=true",
                "/v1/%6Dessages",
                "/v1/embeddings",
                "/static/x",
            ]
        ),
    ),
    (1, random_paths),
)
methods = st.sampled_from(
    ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT"]
) | st.text(string.ascii_uppercase, min_size=1, max_size=8)

proxy_paths = st.sampled_from([CHAT, MESSAGES])
requests = weighted(
    (3, st.builds(Req, st.just("POST"), proxy_paths, json_bodies, header_sets)),
    (1, st.builds(Req, st.just("POST"), proxy_paths, raw_bodies, header_sets)),
    (1, st.builds(Req, methods, paths, raw_bodies | st.just(b""), header_sets)),
)


# -- the properties -------------------------------------------------------------------------


async def test_any_request_gets_a_success_or_an_api_error_and_the_app_keeps_serving() -> None:
    def property_(fuzzing: Fuzzing) -> Callable[[], None]:
        @FUZZ_SETTINGS
        @given(requests)
        def run(req: Req) -> None:
            send(fuzzing, req)

        return run

    fuzzing = await fuzz(property_)
    # The fuzz reached the relay, not only the validation in front of it.
    assert fuzzing.totals.relayed > 20


def upstream_model(model: str) -> str:
    prefix, sep, rest = model.partition(":")
    return rest if sep and rest and prefix in MOCK_PREFIXES else model


servable_models = st.one_of(
    st.sampled_from(["mock-model", "fuzz-model", "llama3.1:8b", "openai.1:x"]),
    st.builds("{}:{}".format, st.sampled_from(MOCK_PREFIXES), safe_text),
    safe_text,
).filter(lambda m: m.strip() and m.split(":", 1)[0] not in ("openai", "anthropic"))
servable_bodies = st.builds(
    lambda extra, model, stream, session: {
        **extra,
        "model": model,
        **({} if stream is None else {"stream": stream}),
        **({} if session is None else {"session_id": session}),
    },
    st.dictionaries(
        st.text(max_size=10).filter(lambda k: k not in ("model", "stream", "session_id")),
        json_values,
        max_size=3,
    ),
    servable_models,
    st.none() | st.booleans() | json_values,
    st.none() | session_values,
)
ascii_session_headers = st.none() | st.text(
    string.ascii_letters + string.digits + "-_.:/ ", max_size=220
)


async def test_well_formed_requests_are_relayed_with_their_model_and_session() -> None:
    def property_(fuzzing: Fuzzing) -> Callable[[], None]:
        @FUZZ_SETTINGS
        @given(
            proxy_paths,
            servable_bodies,
            ascii_session_headers,
            st.sampled_from([None, "application/json", "application/json; charset=utf-8"]),
        )
        def run(path: str, body: dict[str, Any], session: str | None, ctype: str | None) -> None:
            headers: list[tuple[str, bytes]] = []
            if session is not None:
                headers.append(("x-session-id", session.encode()))
            if ctype is not None:
                headers.append(("content-type", ctype.encode()))
            req = Req("POST", path, encode(body, False), tuple(headers))
            response = send(fuzzing, req)
            assert response.status_code == 200, response.text
            streaming = body.get("stream") is True
            assert response.headers["content-type"].startswith(
                "text/event-stream" if streaming else "application/json"
            )
            expected_model = upstream_model(body["model"])
            if not streaming:
                assert response.json()["model"] == expected_model
            elif path == CHAT:
                first = sse_events(response.content)[0].removeprefix(b"data: ")
                assert json.loads(first)["model"] == expected_model
            else:
                first = sse_events(response.content)[0].split(b"\n")[1].removeprefix(b"data: ")
                assert json.loads(first)["message"]["model"] == expected_model
            echoed = response.headers["x-session-id"]
            from_body = body.get("session_id")
            if session is not None and valid_session_id(session.strip()):
                assert echoed == session.strip()
            elif isinstance(from_body, str) and valid_session_id(from_body.strip()):
                assert dict(response.headers.raw)[b"x-session-id"] == from_body.strip().encode()
            else:
                assert len(echoed) == 32  # a new random id

        return run

    await fuzz(property_)


# -- inputs that break the proxy today ------------------------------------------------------


async def post_raw(
    nursery: trio.Nursery, path: str, content: bytes, headers: dict[bytes, bytes] | None = None
) -> httpx.Response:
    async with (
        running_proxy(nursery, backends=(mock_spec(),)) as proxy,
        httpx.AsyncClient() as client,
    ):
        return await client.post(
            proxy.url + path,
            content=content,
            headers={b"content-type": b"application/json", **(headers or {})},
        )


def assert_sendable_non_5xx(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.content)
    h11.Response(status_code=response.status_code, headers=list(response.headers.raw))


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
async def test_deeply_nested_json_is_a_400(nursery: trio.Nursery, path: str) -> None:
    depth = 100_000
    body = b'{"model": "mock-model", "x": ' + b"[" * depth + b"]" * depth + b"}"
    response = await post_raw(nursery, path, body)
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, b'{"model": "mock.1:mock-model", "messages": "\\ud800"}'),
        (MESSAGES, b'{"model": "mock-model", "session_id": "abc", "messages": ["\\udfff"]}'),
        (CHAT, b'{"model": "mock-model", "session_id": "\\ud800"}'),
    ],
)
async def test_lone_surrogates_in_a_rewritten_body_are_not_a_500(
    nursery: trio.Nursery, path: str, body: bytes
) -> None:
    assert_sendable_non_5xx(await post_raw(nursery, path, body))


@pytest.mark.parametrize("session", ["a\nb", "a\r\nInjected: yes", "\x00", "a\x0bb", "a\x0cb"])
async def test_body_session_ids_with_control_characters_are_not_a_500(
    nursery: trio.Nursery, session: str
) -> None:
    body = json.dumps({"model": "mock-model", "session_id": session}).encode()
    assert_sendable_non_5xx(await post_raw(nursery, CHAT, body))


async def test_a_session_header_that_cannot_be_echoed_unchanged_is_replaced(
    nursery: trio.Nursery,
) -> None:
    # Non-ASCII bytes would not come back byte for byte, so the proxy picks a new id.
    response = await post_raw(
        nursery, CHAT, b'{"model": "mock-model"}', {b"x-session-id": b"caf\xe9-\xff"}
    )
    assert response.status_code == 200
    echoed = response.headers["x-session-id"]
    assert echoed.isascii() and echoed.isalnum() and len(echoed) == 32


@pytest.mark.parametrize("path", ["/v1//models", "/v1//diagnostics", "/v1/diagnostics//activity"])
async def test_paths_with_empty_segments_get_a_json_answer(
    nursery: trio.Nursery, path: str
) -> None:
    async with running_proxy(nursery, backends=(mock_spec(),)) as proxy:
        async with httpx.AsyncClient() as client:
            response = await client.get(proxy.url + path)
        assert response.status_code in (200, 404), response.status_code
        assert response.headers["content-type"] == "application/json"
