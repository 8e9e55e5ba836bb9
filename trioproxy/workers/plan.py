"""What the supervisor hands a worker, and the roster it keeps of them.

A worker is started as ``python -m trioproxy.workers.worker`` and reads its
:class:`WorkerPlan` from its stdin: a 4-byte length and a pickle (the settings hold the
backends' keys, which must not appear on a command line; the pipe is between the
supervisor and its own child). The pipe then stays open: its end of file tells the worker
that the supervisor is gone.

The roster (``roster.json`` in the runtime directory) is the supervisor's record of its
workers — number, pid, start time, restarts — rewritten (atomically) whenever one starts;
any worker reads it for the ``workers`` section of the diagnostics.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import asdict, dataclass
from typing import IO, Any

from ..settings import Settings

ROSTER = "roster.json"
_LENGTH = 4


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """Everything a worker process needs to serve.

    Attributes:
        settings: the proxy's settings, as the supervisor parsed them.
        worker: this worker's number, 0 to ``count - 1`` (kept across restarts).
        count: how many workers serve.
        runtime_dir: the private directory of the channel's sockets and the roster.
        listen_fd: the listening socket the worker serves (inherited, same number).
        parent_pid: the supervisor's pid, to notice having outlived it.
    """

    settings: Settings
    worker: int
    count: int
    runtime_dir: str
    listen_fd: int
    parent_pid: int


def plan_bytes(plan: WorkerPlan) -> bytes:
    """``plan`` as the supervisor writes it to a worker's stdin."""
    data = pickle.dumps(plan)
    return len(data).to_bytes(_LENGTH, "big") + data


def read_plan(stream: IO[bytes]) -> WorkerPlan:
    """Read the plan the supervisor wrote (blocking).

    Raises:
        EOFError: the pipe closed before a whole plan.
    """

    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = stream.read(size - len(data))
            if not chunk:
                raise EOFError("the supervisor's pipe closed before the worker's plan")
            data += chunk
        return data

    size = int.from_bytes(exactly(_LENGTH), "big")
    plan = pickle.loads(exactly(size))
    if not isinstance(plan, WorkerPlan):
        raise TypeError(f"expected a WorkerPlan, got {type(plan).__name__}")
    return plan


@dataclass(frozen=True, slots=True)
class WorkerEntry:
    """One worker as the roster lists it (the diagnostics' ``workers`` section)."""

    worker: int
    pid: int
    started_at: float
    restarts: int


def write_roster(runtime_dir: str, entries: list[WorkerEntry]) -> None:
    """Replace the roster with ``entries`` (write a new file, rename it over the old)."""
    path = os.path.join(runtime_dir, ROSTER)
    temporary = path + ".new"
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump([asdict(entry) for entry in entries], out)
    os.replace(temporary, path)


def read_roster(runtime_dir: str) -> list[dict[str, Any]]:
    """The roster's entries as JSON objects (none if it cannot be read)."""
    try:
        with open(os.path.join(runtime_dir, ROSTER), encoding="utf-8") as data:
            entries = json.load(data)
    except (OSError, ValueError):
        return []
    return entries if isinstance(entries, list) else []
