"""Reading streamed bodies in tests without leaving async generators to the garbage collector.

A body read with ``async for`` over an async generator and left before its end (``break``,
an exception in the loop body, or a first chunk taken with ``anext`` and the block left)
leaves the generator suspended; Trio warns of every one the garbage collector finds
(``ResourceWarning``, an error in this suite). The helpers leave none:

* ``raw_chunks(response)`` for an httpx response. httpx and httpcore deliver a body
  through a chain of nested async generators, and closing the outer one leaves the inner
  ones suspended (httpx issue 3686): only an exception raised inside the innermost read
  unwinds them all. So leaving the block hangs up the way a client's cancelled task does:
  it reads on under a cancelled scope, and the cancellation lands in that read.
* ``ChunkedUpload``: a streamed request body that is an iterator, not a generator, for a
  server that answers before the upload ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

import httpx
import trio

T = TypeVar("T")


@asynccontextmanager
async def raw_chunks(response: httpx.Response) -> AsyncIterator[AsyncIterator[bytes]]:
    """``response.aiter_raw()`` for the block, which may leave it at any point mid-body.

    Use inside the ``client.stream(...)`` block: ``async with raw_chunks(response) as
    chunks: first = await anext(chunks)``. Leaving before the end closes the connection
    (httpcore closes it when a read is cancelled); after the end it changes nothing.
    """
    chunks = response.aiter_raw()
    try:
        yield chunks
    finally:
        with trio.CancelScope() as hang_up:
            hang_up.cancel()
            # Chunks already buffered come out without a read; the first read raises
            # Cancelled inside the innermost generator, and it unwinds the chain.
            with suppress(StopAsyncIteration):
                while True:
                    await anext(chunks)


class ChunkedUpload(httpx.AsyncByteStream):
    """A request body of ``count`` chunks of ``chunk``: a built request's ``stream``.

    A plain iterator rather than an async generator: a server that answers before the
    body is all sent (a 413) makes httpcore stop iterating, and an async generator would
    be left suspended for the garbage collector (so would the one httpx wraps around
    ``content=`` given as an async iterable). Build the request with a
    ``transfer-encoding: chunked`` header, then set its ``stream``.
    """

    def __init__(self, count: int, chunk: bytes) -> None:
        self.count = count
        self.chunk = chunk
        self.sent = 0

    def __aiter__(self) -> ChunkedUpload:
        return self

    async def __anext__(self) -> bytes:
        if self.sent == self.count:
            raise StopAsyncIteration
        self.sent += 1
        return self.chunk
