"""The access log: one line per finished proxied request, as text or JSON.

Each line says when the request ended, who sent it (the socket peer), what it asked for
(method and path; never the query string, which may carry a key), the status it got,
the instance and endpoint that served it, the model and session, how long it took and
its time to first byte, the body bytes from the backend and to the client, and how it
ended: ``completed``, ``error``, ``cancelled``, ``stale``, or ``refused`` (answered by
the proxy before any backend was asked: 401, 404, 405, 408, 413, a bad body). Keys and
bodies never appear in it. Values a client chose (model, session) are quoted and
escaped, so they cannot forge a line.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from typing import IO, Literal

AccessLogFormat = Literal["text", "json", "off"]
ACCESS_LOG_FORMATS: tuple[AccessLogFormat, ...] = ("text", "json", "off")
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


def _value(value: object) -> str:
    if value is None:
        return "-"
    text = str(value)
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


def _stamp(epoch: float) -> str:
    milliseconds = int(epoch * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{milliseconds:03d}Z"


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
    return json.dumps({"timestamp": _stamp(entry.time), **asdict(entry)}, separators=(",", ":"))


class AccessLog:
    """Writes access log lines (``text`` or ``json``) to stderr or to the file ``path``.

    Each line is written whole and flushed at once (the file is opened line-buffered),
    not through :mod:`logging`: the proxy's log level does not hide them, and when
    thousands of streams end at once the logging machinery's record and locks per line
    were a tenth of the work of releasing them.

    Raises:
        OSError: the file cannot be opened for appending.
    """

    def __init__(self, fmt: Literal["text", "json"], path: str | None = None) -> None:
        self._format = format_json if fmt == "json" else format_text
        self._file: IO[str] | None = (
            open(path, "a", encoding="utf-8", buffering=1) if path is not None else None  # noqa: SIM115
        )
        self._out: IO[str] = self._file if self._file is not None else sys.stderr

    def write(self, entry: AccessEntry) -> None:
        """Write one line for ``entry`` (nothing once closed)."""
        if not self._out.closed:
            self._out.write(self._format(entry) + "\n")

    def close(self) -> None:
        """Close the file, when there is one; later lines are dropped."""
        if self._file is not None:
            self._file.close()
