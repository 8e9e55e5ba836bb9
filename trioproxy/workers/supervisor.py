"""The supervising parent of ``--workers N``: one listening address, N worker processes.

:func:`supervise` opens the listening socket (:mod:`trioproxy.workers.listen`) and a
private runtime directory (``tempfile.mkdtemp``: mode 0700, removed at exit) for the
workers' channel sockets and the roster, then starts worker 0 … N-1
(:mod:`trioproxy.workers.worker`), each in a process group of its own so that a
terminal's Ctrl+C reaches the supervisor only, and forwards signals itself:

* the first SIGINT, SIGTERM or SIGHUP goes to every worker as SIGTERM: each drains as a
  single process does (``--shutdown-grace``), and the supervisor exits 0 once all have
  exited; it closes its own copy of the listening socket at once, so that new clients
  are refused as soon as the workers stop listening;
* a second one is forwarded too, which ends the workers' requests at once; a worker
  still running a moment later (or past the grace and hypercorn's margin) is killed.

A worker that exits while the proxy is not stopping is started again under the same
number, with the same socket (its queue of connections is kept), after a pause that
grows while it keeps dying within a second of starting. Every start is logged and
recorded in the roster, which the diagnostics' ``workers`` section shows. A worker that
exits before it ever served stops the start-up: the supervisor exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator

import trio

from ..server import SHUTDOWN_MARGIN, STOP_SIGNALS, log_start
from ..settings import Settings
from .listen import DEFAULT_SHARING, Sharing, address_of, open_listeners
from .plan import WorkerEntry, WorkerPlan, plan_bytes, write_roster

log = logging.getLogger("trioproxy")

#: A worker that dies within this many seconds of starting is restarted after a pause.
QUICK_DEATH = 1.0
FIRST_PAUSE = 0.25
LONGEST_PAUSE = 5.0
#: Seconds after a second signal before workers still running are killed.
KILL_AFTER_SECOND_SIGNAL = 2.0


class WorkerStartFailed(Exception):
    """A worker exited before it served: the proxy cannot start."""


def describe_exit(code: int) -> str:
    """``exited with 3`` / ``was killed by SIGKILL``, for a ``Popen.returncode``."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with {code}"


async def _wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """Wait (without blocking Trio) for ``proc`` to exit; reap it, return its code."""
    if hasattr(os, "pidfd_open"):
        pidfd = os.pidfd_open(proc.pid)
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        return proc.wait()
    return await trio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)


async def _read_ready(stream: trio.lowlevel.FdStream) -> tuple[bool, str | None]:
    """Whether the worker said ``ready`` before closing its stdout, and if not, what it
    said stopped it (``failed: …``), if anything."""
    seen = b""
    while b"ready\n" not in seen:
        data = await stream.receive_some(1024)
        if not data:
            failed = seen.partition(b"failed: ")[2].partition(b"\n")[0]
            return False, failed.decode(errors="replace") or None
        seen += data
    return True, None


class _Slot:
    """Worker number ``worker``: its current process, restarted while not stopping."""

    def __init__(self, supervisor: _Supervisor, worker: int, sock: socket.socket) -> None:
        self.supervisor = supervisor
        self.worker = worker
        self.sock = sock
        self.proc: subprocess.Popen[bytes] | None = None

    def send(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the worker's current process, if it runs."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    async def run(self) -> None:
        """Run the worker, starting it again whenever it exits, until the proxy stops.

        Raises:
            WorkerStartFailed: its first process exited before it served.
        """
        sup = self.supervisor
        restarts = 0
        pause = FIRST_PAUSE
        while True:
            started = trio.current_time()
            code = await self._run_once(restarts)
            if sup.stopping.is_set():
                return
            restarts += 1
            log.warning(
                "worker %d %s; starting it again (restart %d)",
                self.worker,
                describe_exit(code),
                restarts,
            )
            if trio.current_time() - started < QUICK_DEATH:
                with trio.move_on_after(pause):
                    await sup.stopping.wait()
                if sup.stopping.is_set():
                    return
                pause = min(pause * 2, LONGEST_PAUSE)
            else:
                pause = FIRST_PAUSE

    async def _run_once(self, restarts: int) -> int:
        """Start the worker's process and wait for it to exit; its exit code."""
        sup = self.supervisor
        plan = WorkerPlan(
            settings=sup.settings,
            worker=self.worker,
            count=len(sup.slots),
            runtime_dir=sup.runtime_dir,
            listen_fd=self.sock.fileno(),
            parent_pid=os.getpid(),
        )
        to_worker, worker_stdin = os.pipe()
        worker_stdout, from_worker = os.pipe()
        try:
            # Not trio.run_process: it forks from a worker thread, and the kernel's
            # parent-death signal follows the thread that forked, not the process.
            proc = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "trioproxy.workers.worker"],
                stdin=to_worker,
                stdout=from_worker,
                pass_fds=(self.sock.fileno(),),
                process_group=0,
            )
        finally:
            os.close(to_worker)
            os.close(from_worker)
        self.proc = proc
        sup.record(WorkerEntry(self.worker, proc.pid, time.time(), restarts))
        if sup.stopping.is_set():
            self.send(signal.SIGTERM)
        # The pipe to its stdin stays open while it runs: its end of file tells the
        # worker the supervisor is gone.
        stdin = trio.lowlevel.FdStream(worker_stdin)
        try:
            async with trio.lowlevel.FdStream(worker_stdout) as stdout:
                await stdin.send_all(plan_bytes(plan))
                ready, failed = await _read_ready(stdout)
            if ready:
                sup.worker_ready(self.worker)
            elif not sup.serving.is_set():
                code = await _wait_exit(proc)
                if failed is not None:
                    raise WorkerStartFailed(failed)
                raise WorkerStartFailed(
                    f"worker {self.worker} {describe_exit(code)} before it was serving"
                )
            return await _wait_exit(proc)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            with trio.CancelScope(shield=True):
                await stdin.aclose()


class _Supervisor:
    def __init__(self, settings: Settings, sockets: list[socket.socket], runtime_dir: str) -> None:
        self.settings = settings
        self.runtime_dir = runtime_dir
        self.address = address_of(sockets[0])
        self.slots = [_Slot(self, worker, sock) for worker, sock in enumerate(sockets)]
        self.stopping = trio.Event()
        #: Set once every worker serves (or the proxy stops before they all did).
        self.serving = trio.Event()
        self._ready: set[int] = set()
        self._entries: dict[int, WorkerEntry] = {}

    def close_listeners(self) -> None:
        """Close the supervisor's copies of the listening sockets (idempotent)."""
        for sock in {id(slot.sock): slot.sock for slot in self.slots}.values():
            sock.close()

    def record(self, entry: WorkerEntry) -> None:
        self._entries[entry.worker] = entry
        write_roster(self.runtime_dir, [self._entries[k] for k in sorted(self._entries)])

    def worker_ready(self, worker: int) -> None:
        self._ready.add(worker)
        if len(self._ready) == len(self.slots):
            self.serving.set()

    def _send_all(self, signum: signal.Signals) -> None:
        for slot in self.slots:
            slot.send(signum)

    async def _kill_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        running = [slot.worker for slot in self.slots if slot.proc and slot.proc.returncode is None]
        if running:
            log.warning("workers %s still running after %gs: killing them", running, seconds)
            self._send_all(signal.SIGKILL)

    async def _on_signals(self, signals: AsyncIterator[int]) -> None:
        async with trio.open_nursery() as nursery:
            async for signum in signals:
                if not self.stopping.is_set():
                    log.info(
                        "%s: stopping %d workers; in-flight requests have %gs to finish",
                        signal.Signals(signum).name,
                        len(self.slots),
                        self.settings.shutdown_grace,
                    )
                    self.stopping.set()
                    self.serving.set()
                    self._send_all(signal.SIGTERM)
                    # No worker is started again from now: without this copy, the address
                    # closes with the workers' listeners, and new clients are refused at
                    # once, as by one process, instead of queueing for the whole grace
                    # in a backlog that no one accepts from.
                    self.close_listeners()
                    grace = self.settings.shutdown_grace
                    nursery.start_soon(
                        self._kill_after, grace + SHUTDOWN_MARGIN + KILL_AFTER_SECOND_SIGNAL
                    )
                else:
                    log.warning("second signal: the workers end their requests now")
                    self._send_all(signal.SIGTERM)
                    nursery.start_soon(self._kill_after, KILL_AFTER_SECOND_SIGNAL)

    async def run(self) -> None:
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._on_signals, signals)
                async with trio.open_nursery() as slots:
                    for slot in self.slots:
                        slots.start_soon(slot.run)
                    await self.serving.wait()
                    if not self.stopping.is_set():
                        pids = ", ".join(str(s.proc.pid) for s in self.slots if s.proc)
                        extra = f"; {len(self.slots)} workers (pids {pids})"
                        log_start(self.settings, [self.address], extra)
                nursery.cancel_scope.cancel()


def _start_failure(exc: BaseException) -> WorkerStartFailed | None:
    if isinstance(exc, WorkerStartFailed):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _start_failure(inner)
            if found is not None:
                return found
    return None


# A Unix socket's path has room for 107 bytes (Linux); the sockets are named worker-N.sock.
_LONGEST_SOCKET_DIR = 80


def make_runtime_dir() -> str:
    """A new private directory (mode 0700) for the channel's sockets and the roster:
    under the temporary directory (``TMPDIR``), or ``/tmp`` when that path is too long
    to hold a Unix socket."""
    path = tempfile.mkdtemp(prefix="trioproxy-")
    if len(path) > _LONGEST_SOCKET_DIR:
        os.rmdir(path)
        path = tempfile.mkdtemp(prefix="trioproxy-", dir="/tmp")
    return path


def supervise(settings: Settings, sharing: Sharing = DEFAULT_SHARING) -> int:
    """Serve ``settings`` with ``settings.workers`` worker processes until a signal.

    Returns the exit code: 0 once stopped by SIGINT/SIGTERM/SIGHUP, 1 if a worker could not
    start (said in one line on stderr).

    Raises:
        OSError: the address cannot be listened on (before any worker starts).
    """
    sockets = open_listeners(settings.host, settings.port, settings.workers, sharing)
    runtime_dir = make_runtime_dir()
    try:
        trio.run(_Supervisor(settings, sockets, runtime_dir).run)
    except BaseException as exc:
        failed = _start_failure(exc)
        if failed is None:
            raise
        # One line, as one process says what stops its start-up.
        print(f"trioproxy: error: {failed}", file=sys.stderr)
        return 1
    finally:
        for sock in {id(sock): sock for sock in sockets}.values():
            sock.close()
        shutil.rmtree(runtime_dir, ignore_errors=True)
    return 0
