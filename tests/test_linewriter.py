"""Lines written by a thread (``trioproxy.linewriter``): a stalled reader blocks no one.

The stream is a real pipe whose reader does not read until the test says so: what a
journald that falls behind, or a paused ``| less``, is to the proxy's stderr.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import trio

from trioproxy.linewriter import MOST_PENDING, LineHandler, LineWriter, _batches


@contextmanager
def stalled_pipe() -> Iterator[tuple[TextIO, int]]:
    """A text stream onto a pipe, and the pipe's read end, which nothing reads yet."""
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", encoding="utf-8")
    try:
        yield stream, read_end
    finally:
        stream.close()
        os.close(read_end)


def read_all(fd: int, into: list[bytes]) -> None:
    while data := os.read(fd, 1 << 16):
        into.append(data)


async def test_lines_to_a_stalled_reader_never_block_the_writer_and_none_is_lost_unsaid() -> None:
    lines = MOST_PENDING * 3
    with stalled_pipe() as (stream, read_end):
        writer = LineWriter(lambda: stream, "test")

        def write_many() -> None:
            for number in range(lines):
                writer.write(f"line {number:06d} {'x' * 40}\n")

        # Far more than the pipe holds: written from the caller, it would block for good
        # (then the guard abandons the thread and fails the test).
        with trio.fail_after(20):
            await trio.to_thread.run_sync(write_many, abandon_on_cancel=True)
        received: list[bytes] = []
        reader = threading.Thread(target=read_all, args=(read_end, received))
        reader.start()
        writer.close()
        stream.close()
        reader.join(20)
    text = b"".join(received).decode().splitlines()
    kept = [line for line in text if line.startswith("line ")]
    notes = [line for line in text if "dropped" in line]
    # In order, none twice; and what is missing is said, in a line after the kept ones.
    assert kept == sorted(set(kept)) and kept[0].startswith("line 000000")
    dropped = sum(int(note.split()[1]) for note in notes)
    assert dropped > 0 and len(kept) + dropped == lines
    assert text[-1] == notes[-1]


def test_flush_waits_for_the_lines_so_far_and_close_writes_the_rest() -> None:
    with stalled_pipe() as (stream, read_end):
        os.set_blocking(read_end, False)  # nothing there yet: BlockingIOError, not a wait
        writer = LineWriter(lambda: stream, "test")
        writer.write("one\n")
        assert writer.flush()
        assert os.read(read_end, 100) == b"one\n"
        os.set_blocking(read_end, True)
        writer.write("two\n")
        writer.close()
        writer.write("after\n")
        stream.close()
        assert os.read(read_end, 100) == b"two\n"


def test_log_records_go_out_through_the_writer() -> None:
    with stalled_pipe() as (stream, read_end):
        writer = LineWriter(lambda: stream, "test")
        handler = LineHandler(writer)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger = logging.getLogger("tests.linewriter")
        logger.addHandler(handler)
        try:
            logger.warning("a %s", "warning")
        finally:
            logger.removeHandler(handler)
        writer.close()
        stream.close()
        assert os.read(read_end, 100) == b"WARNING a warning\n"


def test_writes_are_cut_between_lines_at_what_a_pipe_keeps_whole() -> None:
    # Workers share one stderr: one write of all that gathered, past PIPE_BUF, was
    # spliced into another worker's line.
    lines = [f"line {n:04d} {'é' * 50}\n" for n in range(400)] + ["x" * 10_000 + "\n"]
    batches = list(_batches(lines))
    assert "".join(batches) == "".join(lines)
    assert all(batch.endswith("\n") for batch in batches)
    assert all(len(batch.encode()) <= select.PIPE_BUF for batch in batches[:-1])
    assert batches[-1] == lines[-1]  # a longer line goes alone
