"""The private channel between the workers of one proxy: a Unix socket per worker.

Worker ``k`` listens on ``worker-k.sock`` in the supervisor's runtime directory (mode
0700, so only the proxy's own user can connect) and answers one request per connection:
a frame in, a frame out, then the connection closes. A frame is a 4-byte big-endian
length and that many bytes of JSON (orjson: a worker's snapshot with thousands of
connections is a few hundred kilobytes, encoded in a millisecond or two).

A request says when its asker stops waiting (``{"expires": ..., "message": ...}``, on
``time.monotonic()``, which is the host's one ``CLOCK_MONOTONIC`` in every process). A
request read after that is dropped unanswered: a sibling that was stopped (SIGSTOP) or
stuck finds, when it resumes, the requests queued meanwhile, and must not act on them —
a cancel its asker already reported as not done, or hundreds of diagnostics documents
that no one waits for any more.

:func:`ask` never raises for a sibling's trouble: a sibling that is not listening (being
restarted), that hangs up, sends something that is not a frame, or does not answer within
the deadline (stopped, or stuck) gives None, and the caller names it unreachable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import orjson
import trio

log = logging.getLogger(__name__)

#: Seconds a worker waits for its siblings' answers before naming them unreachable.
DEADLINE = 0.5
#: The largest frame accepted (a snapshot of 100,000 connections is about 30 MB).
MAX_FRAME = 256 * 1024 * 1024
_LENGTH = 4

Handler = Callable[[Any], Awaitable[Any]]


class ChannelError(Exception):
    """A peer closed mid-frame or sent something that is not a frame of JSON."""


def socket_path(runtime_dir: str, worker: int) -> str:
    """Where worker ``worker`` listens."""
    return os.path.join(runtime_dir, f"worker-{worker}.sock")


async def send_frame(stream: trio.abc.SendStream, message: Any) -> None:
    """Send ``message`` as one frame."""
    data = orjson.dumps(message)
    await stream.send_all(len(data).to_bytes(_LENGTH, "big") + data)


async def _receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(min(size - len(data), 1 << 20))
        if not chunk:
            raise ChannelError("the peer closed mid-frame")
        data += chunk
    return bytes(data)


async def receive_frame(stream: trio.abc.ReceiveStream) -> Any:
    """Receive one frame and decode it.

    Raises:
        ChannelError: the peer closed before a whole frame, or sent a bad one.
        trio.BrokenResourceError: the connection broke.
    """
    size = int.from_bytes(await _receive_exactly(stream, _LENGTH), "big")
    if size > MAX_FRAME:
        raise ChannelError(f"a frame of {size} bytes is over the limit")
    try:
        return orjson.loads(await _receive_exactly(stream, size))
    except orjson.JSONDecodeError as exc:
        raise ChannelError(f"a frame that is not JSON: {exc}") from None


async def ask(path: str, message: Any, *, deadline: float = DEADLINE) -> Any | None:
    """Send ``message`` to the worker listening on ``path``; its answer, or None.

    None when it is not listening, hangs up, answers with something other than a frame,
    or does not answer within ``deadline`` seconds.
    """
    request = {"expires": time.monotonic() + deadline, "message": message}
    with trio.move_on_after(deadline):
        try:
            stream = await trio.open_unix_socket(path)
        except OSError:
            return None
        async with stream:
            try:
                await send_frame(stream, request)
                return await receive_frame(stream)
            except (ChannelError, trio.BrokenResourceError, OSError):
                return None
    return None


async def ask_all(
    paths: Mapping[int, str], message: Any, *, deadline: float = DEADLINE
) -> tuple[dict[int, Any], list[int]]:
    """:func:`ask` every worker of ``paths`` at once.

    Returns their answers by worker number, and the numbers of those that gave none.
    """
    answers: dict[int, Any] = {}

    async def one(worker: int, path: str) -> None:
        answer = await ask(path, message, deadline=deadline)
        if answer is not None:
            answers[worker] = answer

    async with trio.open_nursery() as nursery:
        for worker, path in paths.items():
            nursery.start_soon(one, worker, path)
    return answers, sorted(set(paths) - set(answers))


async def _answer(handler: Handler, stream: trio.SocketStream) -> None:
    async with stream:
        try:
            request = await receive_frame(stream)
            if not isinstance(request, dict) or not isinstance(request.get("expires"), float):
                raise ChannelError(f"not a request of the channel: {request!r:.100}")
            if time.monotonic() > request["expires"]:
                log.debug("channel: a request read after its asker gave up, dropped")
                return
            await send_frame(stream, await handler(request.get("message")))
        except (ChannelError, trio.BrokenResourceError, OSError) as exc:
            log.debug("channel: a sibling's request failed: %s", exc)
        except Exception:
            # A bug in answering one request must not end the worker serving its clients.
            log.exception("channel: answering a sibling failed")


async def serve_channel(
    path: str,
    handler: Handler,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer requests on a Unix socket at ``path`` with ``handler`` until cancelled.

    A socket file left at ``path`` (by a worker that was killed) is replaced; the file is
    removed when serving ends. ``started()`` is called once it listens.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    try:
        task_status.started()
        await trio.serve_listeners(partial(_answer, handler), [trio.SocketListener(sock)])
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
