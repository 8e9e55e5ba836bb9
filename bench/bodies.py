"""The canned bodies every target answers, and the request bodies the load generators send.

All targets — nginx, the bare hypercorn floor and trioproxy (relaying nginx) — answer the
same bytes, so the only difference between them is the server (and relay) work.
"""

from __future__ import annotations

import argparse
import json

SSE_CHUNKS = 40
"""Content events in the canned stream (then one ``data: [DONE]``)."""

JSON_MODEL = "bench-json"
SSE_MODEL = "bench-sse"
SLOW_MODEL = "bench-slow"

_WORDS = [
    "The",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "the",
    "proxy",
    "relays",
    "every",
    "byte",
    "of",
    "this",
    "deterministic",
    "answer",
    "to",
    "the",
    "benchmark",
    "client",
    "without",
    "buffering",
    "it.",
]


def _word(i: int) -> str:
    return _WORDS[i % len(_WORDS)] + " "


def completion_body() -> bytes:
    """A chat.completion JSON answer (about 600 bytes), as an OpenAI server sends it."""
    text = "".join(_word(i) for i in range(SSE_CHUNKS)).strip()
    payload = {
        "id": "chatcmpl-bench0000000000000000",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": JSON_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": SSE_CHUNKS, "total_tokens": 52},
        "system_fingerprint": "fp_bench",
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def sse_event(index: int, model: str, extra: str = "") -> bytes:
    """One ``chat.completion.chunk`` SSE event; ``extra`` is spliced into the JSON object."""
    return (
        'data: {"id":"chatcmpl-bench0000000000000000","object":"chat.completion.chunk",'
        f'"created":1700000000,"model":"{model}","choices":[{{"index":0,'
        f'"delta":{{"content":"{_word(index)}"}},"finish_reason":null}}]{extra}}}\n\n'
    ).encode()


SSE_DONE = b"data: [DONE]\n\n"


def stream_body() -> bytes:
    """The canned 40-chunk SSE stream (about 7 KB), ending in ``data: [DONE]``."""
    return b"".join(sse_event(i, SSE_MODEL) for i in range(SSE_CHUNKS)) + SSE_DONE


def request_body(model: str, *, stream: bool, **extra: object) -> bytes:
    """A chat completion request for ``model``; ``extra`` adds top-level fields."""
    payload: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello to the benchmark."},
        ],
        "max_tokens": 64,
        "temperature": 0,
    }
    if stream:
        payload["stream"] = True
    payload.update(extra)
    return json.dumps(payload, separators=(",", ":")).encode()


def upstream_arguments(description: str) -> argparse.Namespace:
    """The command line of the bench's slow upstreams: ``--port``, and the defaults of
    ``--chunks`` and ``--delay`` (a request's ``bench_chunks`` and ``bench_delay`` win)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20, help="events per stream")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds between events")
    return parser.parse_args()
