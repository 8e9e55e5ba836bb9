"""Backend state shared by the workers: a 429 window or a failure learned by one reaches
the others at once.

Each instance's ``on_change`` (:class:`~trioproxy.backends.instance.BackendInstance`)
marks it pending; a task sends the pending instances' current state — seconds left in the
rate-limit window, and the failure if any — to every sibling over the channel, which
applies it with ``adopt`` (which does not call ``on_change``, so nothing echoes back).
Changes that arrive while a message is on its way are sent together next. A sibling that
does not answer in time (stopped, stuck, or being restarted) is sent the state of what it
missed again every :data:`RESEND_AFTER` seconds until it answers; a worker that starts
asks a sibling for the state of every instance (:meth:`SharedBackends.catch_up`), so a
restarted one does not start by sending to a backend that told the others to back off.

Each state says when it was taken (``time.monotonic()``, the host's one clock in every
process), and the seconds left in its window are counted from then: a window learned
late is not stretched by the time the message took.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any, NoReturn

import trio

from ..backends.instance import BackendInstance, Backends
from .channel import ask, ask_all

log = logging.getLogger(__name__)

#: Seconds between sends of missed changes to a sibling that did not answer.
RESEND_AFTER = 1.0


def state_of(instance: BackendInstance) -> dict[str, Any]:
    """What a sibling needs to know of ``instance``, as of now."""
    return {
        "instance": instance.name,
        "retry_after": instance.retry_after_seconds(),
        "runtime_error": instance.runtime_error,
        "at": time.monotonic(),
    }


class SharedBackends:
    """Shares this worker's backend state with its siblings (see the module docstring).

    Args:
        backends: this worker's instances; their ``on_change`` is set here.
        siblings: the other workers' channel sockets, by worker number.
    """

    def __init__(self, backends: Backends, siblings: Mapping[int, str]) -> None:
        self._backends = backends
        self._siblings = siblings
        self._pending: dict[str, None] = {}
        self._wake = trio.Event()
        for instance in backends:
            instance.on_change = self._changed

    def _changed(self, instance: BackendInstance) -> None:
        self._pending[instance.name] = None
        self._wake.set()

    def states(self) -> list[dict[str, Any]]:
        """The state of every instance, for a sibling that asks."""
        return [state_of(instance) for instance in self._backends]

    def adopt(self, states: list[dict[str, Any]]) -> None:
        """Apply what a sibling sent; instances this worker does not have are ignored."""
        names = set(self._backends.names())
        for state in states:
            if state["instance"] in names:
                instance = self._backends[state["instance"]]
                retry_after = state["retry_after"]
                if retry_after is not None:
                    retry_after -= max(0.0, time.monotonic() - state["at"])
                instance.adopt(retry_after, state["runtime_error"])

    async def catch_up(self) -> None:
        """Take on the backend state of the first sibling that answers, if any does."""
        for path in self._siblings.values():
            states = await ask(path, {"op": "backend_states"})
            if isinstance(states, list):
                self.adopt(states)
                return

    async def run(self) -> NoReturn:
        """Send each change to the siblings as it happens, and what a sibling missed again
        until it answers, until cancelled."""
        owed: dict[int, set[str]] = {}  # sibling -> instances whose change it missed
        while True:
            with trio.move_on_after(RESEND_AFTER if owed else math.inf):
                await self._wake.wait()
            self._wake = trio.Event()
            changed, self._pending = set(self._pending), {}
            send_to = {
                worker: changed | owed.get(worker, set())
                for worker in self._siblings
                if changed or worker in owed
            }
            # One message for all: a state is the current one, so one a sibling already
            # has changes nothing there.
            names = sorted(set().union(*send_to.values()))
            states = [state_of(self._backends[name]) for name in names]
            paths = {worker: self._siblings[worker] for worker in send_to}
            _, missed = await ask_all(paths, {"op": "share_backends", "states": states})
            owed = {worker: send_to[worker] for worker in missed}
            if missed:
                log.debug("backend state not shared with workers %s (no answer)", missed)
