"""Lines written to a stream by a thread of their own: a reader that stalls never stalls
the event loop.

The access log and the process's log go to stderr (or a file). Written from the event
loop, one ``write`` to a pipe whose reader has stopped — a journald that falls behind, a
``| less`` left paused, a blocking container log driver — blocked the loop, and with it
every request, ``/health`` and the diagnostics, for as long as the reader liked.

A :class:`LineWriter` takes lines without blocking (:meth:`LineWriter.write`: a lock and
an append) and hands them to a thread, which writes what has gathered in one ``write``
each time (in pieces a pipe keeps whole, so the lines of several workers sharing one
stderr never splice). While the reader is stalled, lines gather up to :data:`MOST_PENDING`; beyond
that they are dropped and counted, and once the reader takes lines again the stream says
how many were lost. Nothing is ever dropped unsaid. :meth:`LineWriter.close` writes what
is left (waiting at most a moment for a stalled reader) and ends the thread.
"""

from __future__ import annotations

import atexit
import logging
import select
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO

#: Lines that may wait for a stalled reader before new ones are dropped (a few MB).
MOST_PENDING = 20_000
#: Seconds :meth:`LineWriter.close` waits for a stalled reader to take the rest.
CLOSE_WAIT = 2.0


def stderr() -> TextIO:
    """The process's stderr as it is when a line is written (so that tests may swap it)."""
    return sys.stderr


class LineWriter:
    """Writes whole lines to ``stream()`` from a thread of its own (the module docstring).

    ``name`` names the thread.
    """

    def __init__(self, stream: Callable[[], TextIO] = stderr, name: str = "lines") -> None:
        self._stream = stream
        self._pending: list[str] = []
        self._dropped = 0
        self._closed = False
        self._queued = 0  # lines taken in so far
        self._done = 0  # of them, those written (or lost with a broken stream)
        lock = threading.Lock()
        self._ready = threading.Condition(lock)  # lines to write, for the thread
        self._written = threading.Condition(lock)  # lines written, for flush()
        self._thread = threading.Thread(target=self._run, name=f"trioproxy.{name}", daemon=True)
        self._thread.start()

    def write(self, line: str) -> None:
        """Queue ``line`` (with its newline); never blocks on the stream. Thread-safe."""
        with self._ready:
            if len(self._pending) >= MOST_PENDING:
                self._dropped += 1
                return
            self._pending.append(line)
            self._queued += 1
            if len(self._pending) == 1:
                self._ready.notify()

    def flush(self, wait: float = CLOSE_WAIT) -> bool:
        """Wait (at most ``wait`` seconds) until every line queued so far is written;
        whether they were."""
        with self._written:
            target = self._queued
            return self._written.wait_for(lambda: self._done >= target, wait)

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """Write what is queued (waiting at most ``wait`` seconds) and end the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(wait)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._dropped and not self._closed:
                    self._ready.wait()
                lines, self._pending = self._pending, []
                dropped, self._dropped = self._dropped, 0
                closed = self._closed
            if dropped:
                # They came after the lines taken here, while the queue was full.
                lines.append(
                    f"trioproxy: {dropped} log line(s) dropped here: this stream's reader "
                    "did not keep up\n"
                )
            if lines:
                try:
                    stream = self._stream()
                    for batch in _batches(lines):
                        stream.write(batch)
                        stream.flush()
                except (OSError, ValueError):
                    pass  # the stream is gone or closed: nowhere left to say it
                with self._written:
                    self._done += len(lines) - (1 if dropped else 0)
                    self._written.notify_all()
            elif closed:
                return


def _batches(lines: list[str]) -> Iterator[str]:
    """``lines`` joined into writes of at most ``PIPE_BUF`` bytes, cut between lines (a
    longer line alone): the workers of ``--workers N`` share one stderr, and a pipe
    keeps a write whole only up to ``PIPE_BUF``; one write of everything gathered was
    spliced into another worker's mid-line."""
    batch: list[str] = []
    size = 0
    for line in lines:
        length = len(line.encode())
        if batch and size + length > select.PIPE_BUF:
            yield "".join(batch)
            batch, size = [], 0
        batch.append(line)
        size += length
    if batch:
        yield "".join(batch)


class LineHandler(logging.Handler):
    """A logging handler whose records go out through a :class:`LineWriter`."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.write(self.format(record) + "\n")
        except Exception:  # a record that cannot be formatted, as logging handles it
            self.handleError(record)


def configure_logging(level: str, fmt: str) -> None:
    """The process's log: records at ``level`` and above, as ``fmt``, to stderr through a
    :class:`LineWriter` (written out at exit)."""
    writer = LineWriter(stderr, "log")
    handler = LineHandler(writer)
    handler.setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    atexit.register(writer.close)
