"""A worker process of ``--workers N``: ``python -m trioproxy.workers.worker``.

Started by the supervisor (:mod:`trioproxy.workers.supervisor`), never by hand. It reads
its :class:`~trioproxy.workers.plan.WorkerPlan` from stdin, arranges to die with the
supervisor, and runs ``serve()`` on the inherited listening socket as one worker of a
:class:`~trioproxy.workers.cluster.Cluster`. Once serving it writes ``ready`` on stdout
(then points stdout at stderr, so nothing printed later is lost); if an OSError stops it
before that (a file it cannot open), it writes ``failed: <what>`` instead, for the
supervisor's one line.

It never outlives the supervisor, two ways: the kernel kills it when the supervisor dies
(``PR_SET_PDEATHSIG``, Linux), and end of file on stdin — the supervisor's end of the pipe
closes however it exits — stops it at once. SIGTERM or SIGINT (the supervisor forwards
them) drain it as ``serve()`` drains a single process; the second one ends it at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys

import trio

from ..gcpolicy import tune_gc
from ..linewriter import configure_logging
from ..server import os_error_text, serve, sole_os_error
from .cluster import Cluster
from .plan import WorkerPlan, read_plan

log = logging.getLogger("trioproxy")

_PR_SET_PDEATHSIG = 1
_ready = False  # set once serving: a failure after that is no failure to start


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux); if the parent
    is already gone, exit now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died before prctl: then this process was adopted already.
    if os.getppid() != parent_pid:
        os._exit(1)


async def _wait_parent_gone() -> None:
    """Return when the supervisor's end of stdin closes."""
    stdin = trio.lowlevel.FdStream(os.dup(0))
    async with stdin:
        while await stdin.receive_some(1024):
            pass


async def run(plan: WorkerPlan) -> None:
    """Serve as worker ``plan.worker`` until drained, or until the supervisor is gone."""
    cluster = Cluster(plan.worker, plan.count, plan.runtime_dir, plan.listen_fd)
    async with trio.open_nursery() as nursery:

        async def serving(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(plan.settings, cluster=cluster, task_status=task_status)
            nursery.cancel_scope.cancel()

        await nursery.start(serving)
        global _ready
        _ready = True
        os.write(1, b"ready\n")
        os.dup2(2, 1)
        await _wait_parent_gone()
        log.error("worker %d: the supervisor is gone; stopping at once", plan.worker)
        nursery.cancel_scope.cancel()


def main() -> int:
    """The worker process; its exit code."""
    plan = read_plan(sys.stdin.buffer)
    die_with_parent(plan.parent_pid)
    configure_logging(
        plan.settings.log_level,
        f"%(asctime)s %(levelname)s %(name)s [worker {plan.worker}]: %(message)s",
    )
    tune_gc()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(run, plan)
    except BaseException as exc:
        error = sole_os_error(exc)
        if _ready or error is None:
            raise
        # What stops start-up (a file that cannot be opened) goes to the supervisor, which
        # says it in its one line; a traceback would tell the user nothing more.
        os.write(1, f"failed: {os_error_text(error, 'the inherited socket')}\n".encode())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
