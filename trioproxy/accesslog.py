"""The access log: one line per finished proxied request, as text or JSON.

Each line says when the request ended, who sent it (the socket peer), what it asked for
(method and path; never the query string, which may carry a key), the status it got,
the instance and endpoint that served it, the model and session, how long it took and
its time to first byte, the body bytes from the backend and to the client, and how it
ended: ``completed``, ``error``, ``cancelled``, ``stale``, or ``refused`` (answered by
the proxy before any backend was asked: 401, 404, 405, 408, 413, a bad body, a body
framed twice). Requests of
the proxy's other routes (models, diagnostics, ``/metrics``, unknown paths) get a line
too, with endpoint ``-``. Keys and
bodies never appear in it. Values a client chose (model, session) are quoted and
escaped, so they cannot forge a line.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
import trio

from .linewriter import LineWriter, stderr

#: The values of ``--access-log``.
ACCESS_LOG_FORMATS = ("text", "json", "off")
_PLAIN = re.compile(r"[A-Za-z0-9._:/@+\-]+")


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One finished request, as the access log writes it.

    ``time`` is epoch seconds when it ended; ``duration`` and ``ttfb`` seconds from its
    arrival (``ttfb``: to the first body byte from a backend; None if none came).
    """

    time: float
    client: str | None
    method: str
    path: str
    status: int | None
    instance: str | None
    endpoint: str
    model: str | None
    session: str | None
    duration: float
    ttfb: float | None
    bytes_rx: int
    bytes_tx: int
    outcome: str


def entry_for(
    scope: Mapping[str, Any],
    arrived: float,
    *,
    status: int | None,
    outcome: str,
    endpoint: str = "-",
    instance: str | None = None,
    model: str | None = None,
    session: str | None = None,
    first_byte: float | None = None,
    bytes_rx: int = 0,
    bytes_tx: int = 0,
) -> AccessEntry:
    """The entry of the request of ASGI ``scope``, ending now; times in Trio's clock."""
    client = scope.get("client")
    return AccessEntry(
        time=time.time(),
        client=f"{client[0]}:{client[1]}" if client else None,
        method=scope["method"],
        path=scope["path"],
        status=status,
        instance=instance,
        endpoint=endpoint,
        model=model,
        session=session,
        duration=trio.current_time() - arrived,
        ttfb=None if first_byte is None else first_byte - arrived,
        bytes_rx=bytes_rx,
        bytes_tx=bytes_tx,
        outcome=outcome,
    )


def _value(value: object) -> str:
    if value is None:
        return "-"
    if type(value) is int:
        return str(value)
    text = str(value)
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


_SECOND: list[Any] = [None, ""]  # the last second formatted, and its text


def _stamp(epoch: float) -> str:
    second = int(epoch)
    if _SECOND[0] != second:
        _SECOND[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_SECOND[1]}.{int(epoch * 1000) % 1000:03d}Z"


def format_text(entry: AccessEntry) -> str:
    """``entry`` as one line of ``key=value`` fields after the time and the request."""
    ttfb = "-" if entry.ttfb is None else f"{entry.ttfb:.3f}"
    return (
        f"{_stamp(entry.time)} client={_value(entry.client)} "
        f"{_value(entry.method)} {_value(entry.path)} status={_value(entry.status)} "
        f"instance={_value(entry.instance)} endpoint={entry.endpoint} "
        f"model={_value(entry.model)} session={_value(entry.session)} "
        f"duration={entry.duration:.3f} ttfb={ttfb} rx={entry.bytes_rx} tx={entry.bytes_tx} "
        f"outcome={entry.outcome}"
    )


def format_json(entry: AccessEntry) -> str:
    """``entry`` as one JSON object (its time also as an ISO 8601 ``timestamp``)."""
    # orjson, and the fields read directly: dataclasses.asdict() deep-copies, and the
    # two together cost more than the rest of a quick request.
    return orjson.dumps(
        {
            "timestamp": _stamp(entry.time),
            "time": entry.time,
            "client": entry.client,
            "method": entry.method,
            "path": entry.path,
            "status": entry.status,
            "instance": entry.instance,
            "endpoint": entry.endpoint,
            "model": entry.model,
            "session": entry.session,
            "duration": entry.duration,
            "ttfb": entry.ttfb,
            "bytes_rx": entry.bytes_rx,
            "bytes_tx": entry.bytes_tx,
            "outcome": entry.outcome,
        }
    ).decode()


class AccessLog:
    """Writes access log lines (``text`` or ``json``) to stderr or to the file ``path``.

    A line is formatted in the request's task and written by a thread
    (:class:`~.linewriter.LineWriter`), so a reader of stderr that stalls never stalls
    the proxy; lines that gather meanwhile go out in one write. The logging module is
    not used: its records cost more than the rest of a quick request, and an access line
    needs none of their routing (the proxy's log level does not hide it). The file is
    opened once, for appending, and never reopened: rotate it in place (logrotate's
    ``copytruncate``); ``close`` writes what is left and closes it.

    Raises:
        OSError: the file cannot be opened for appending.
    """

    def __init__(self, fmt: str, path: str | None = None) -> None:
        """``fmt`` is ``json`` or ``text`` (``off`` is no AccessLog at all)."""
        self._format = format_json if fmt == "json" else format_text
        self._file: TextIO | None = (
            open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115 - closed by close()
        )
        file = self._file
        self._writer = LineWriter(stderr if file is None else lambda: file, "access-log")

    def write(self, entry: AccessEntry) -> None:
        """Write one line for ``entry`` (queued: it never waits for the stream)."""
        self._writer.write(self._format(entry) + "\n")

    def flush(self) -> bool:
        """Wait a moment at most until every line so far is written; whether it was."""
        return self._writer.flush()

    def close(self) -> None:
        """Write what is queued, then close the file, when there is one."""
        self._writer.close()
        if self._file is not None:
            self._file.close()
            self._file = None
