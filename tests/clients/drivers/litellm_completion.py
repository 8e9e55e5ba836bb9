"""The litellm SDK's ``completion`` against a proxy: JSON, then streamed.

Usage: ``python litellm_completion.py BASE_URL SESSION_ID`` (BASE_URL ends in ``/v1``),
with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so that litellm reads its bundled cost map
instead of fetching one. Prints ``completion: <reply>`` and ``stream: <reply>``.
"""

from __future__ import annotations

import sys

import litellm


def main(base_url: str, session_id: str) -> None:
    common = {
        "model": "openai/mock-model",
        "api_base": base_url,
        "api_key": "sk-dummy-litellm",
        "messages": [{"role": "user", "content": "say hi"}],
        "extra_headers": {"x-session-id": session_id},
        "num_retries": 0,
        "timeout": 60,
    }
    answer = litellm.completion(**common)
    print("completion:", answer.choices[0].message.content, flush=True)
    chunks = litellm.completion(**common, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    print("stream:", text, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
