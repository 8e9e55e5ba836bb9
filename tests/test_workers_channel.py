"""The workers' private channel (``trioproxy.workers.channel``) in one process.

Real Unix sockets in the test's temporary directory; the deadline runs on
``MockClock(autojump_threshold=0)``, so a sibling that never answers is given up on at
exactly the deadline, without waiting for it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import trio
import trio.testing

from trioproxy.workers.channel import (
    DEADLINE,
    ask,
    ask_all,
    receive_frame,
    send_frame,
    serve_channel,
    socket_path,
)


def exists(path: str) -> bool:
    return os.path.exists(path)


async def echo(request: Any) -> Any:
    return {"echo": request}


async def test_a_request_gets_its_answer_and_the_socket_goes_when_serving_ends(
    tmp_path: Path,
) -> None:
    path = socket_path(str(tmp_path), 0)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_channel, path, echo)
        assert exists(path)
        big = {"rows": ["x" * 100] * 10_000}
        assert await ask(path, big) == {"echo": big}
        nursery.cancel_scope.cancel()
    assert not exists(path)


async def test_a_socket_left_by_a_killed_worker_is_replaced(tmp_path: Path) -> None:
    path = socket_path(str(tmp_path), 3)
    with open(path, "w") as left_behind:  # noqa: ASYNC230
        left_behind.write("a file a killed worker left")
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_channel, path, echo)
        assert await ask(path, 1) == {"echo": 1}
        nursery.cancel_scope.cancel()


async def test_no_answer_within_the_deadline_names_the_sibling_unreachable(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def stuck(request: Any) -> Any:
        await trio.sleep_forever()

    live, hung = socket_path(str(tmp_path), 0), socket_path(str(tmp_path), 1)
    absent = socket_path(str(tmp_path), 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_channel, live, echo)
        await nursery.start(serve_channel, hung, stuck)
        start = trio.current_time()
        answers, unreachable = await ask_all({0: live, 1: hung, 2: absent}, "q")
        assert trio.current_time() - start == DEADLINE
        assert answers == {0: {"echo": "q"}}
        assert unreachable == [1, 2]
        nursery.cancel_scope.cancel()


async def test_a_peer_that_sends_no_frame_gives_no_answer(tmp_path: Path) -> None:
    path = str(tmp_path / "rogue.sock")
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(1)
    listener = trio.SocketListener(sock)

    async def rogue(stream: trio.SocketStream) -> None:
        async with stream:
            await receive_frame(stream)
            await stream.send_all(b"\x00\x00\x00\x09not json!")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, rogue, [listener])
        assert await ask(path, {"op": "x"}) is None
        nursery.cancel_scope.cancel()


async def test_a_failing_handler_closes_that_connection_only(tmp_path: Path) -> None:
    async def picky(request: Any) -> Any:
        if request == "bad":
            raise ValueError("not a channel request")
        return "fine"

    path = socket_path(str(tmp_path), 0)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_channel, path, picky)
        assert await ask(path, "bad") is None
        assert await ask(path, "good") == "fine"
        # A request sent by hand reads back the same way.
        stream = await trio.open_unix_socket(path)
        async with stream:
            await send_frame(stream, {"expires": time.monotonic() + 60, "message": "good"})
            assert await receive_frame(stream) == "fine"
        nursery.cancel_scope.cancel()


async def test_a_request_read_after_its_asker_gave_up_is_dropped_unanswered(
    tmp_path: Path,
) -> None:
    # What a sibling stopped with SIGSTOP finds queued when it resumes: requests whose
    # askers have long reported it unreachable. Acting on one (a cancel) would do what its
    # asker already reported as not done.
    handled: list[Any] = []

    async def handler(request: Any) -> Any:
        handled.append(request)
        return "done"

    path = socket_path(str(tmp_path), 0)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_channel, path, handler)
        for expires, message in ((time.monotonic() - 0.001, "late"), (None, "bare")):
            stream = await trio.open_unix_socket(path)
            async with stream:
                frame = message if expires is None else {"expires": expires, "message": message}
                await send_frame(stream, frame)
                assert await stream.receive_some(1) == b""  # closed, no answer
        assert handled == []
        assert await ask(path, "in time") == "done"
        assert handled == ["in time"]
        nursery.cancel_scope.cancel()
