"""langchain-openai's ChatOpenAI against a proxy: ``invoke``, then ``stream``.

Usage: ``python langchain_chat.py BASE_URL SESSION_ID`` (BASE_URL ends in ``/v1``).
Prints ``invoke: <reply>`` and ``stream: <reply>``; any failure is a traceback and a
non-zero exit, which the test shows.
"""

from __future__ import annotations

import sys

from langchain_openai import ChatOpenAI


def main(base_url: str, session_id: str) -> None:
    chat = ChatOpenAI(
        model="mock-model",
        base_url=base_url,
        api_key="sk-dummy-langchain",
        default_headers={"x-session-id": session_id},
        max_retries=0,
        timeout=60,
    )
    print("invoke:", chat.invoke("say hi").content, flush=True)
    print("stream:", "".join(str(chunk.content) for chunk in chat.stream("say hi")), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
