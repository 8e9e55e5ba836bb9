"""Backend state shared by the workers: a 429 window or a failure learned by one reaches
the others at once.

Each instance's ``on_change`` (:class:`~trioproxy.backends.instance.BackendInstance`)
marks it pending; a task sends the pending instances' current state — seconds left in the
rate-limit window, and the failure if any — to every sibling over the channel, which
applies it with ``adopt`` (which does not call ``on_change``, so nothing echoes back).
Changes that arrive while a message is on its way are sent together next. A sibling that
does not answer in time misses that message; a worker that starts asks a sibling for the
state of every instance (:meth:`SharedBackends.catch_up`), so a restarted one does not
start by sending to a backend that told the others to back off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NoReturn

import trio

from ..backends.instance import BackendInstance, Backends
from .channel import ask, ask_all

log = logging.getLogger(__name__)


def state_of(instance: BackendInstance) -> dict[str, Any]:
    """What a sibling needs to know of ``instance``."""
    return {
        "instance": instance.name,
        "retry_after": instance.retry_after_seconds(),
        "runtime_error": instance.runtime_error,
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
                instance.adopt(state["retry_after"], state["runtime_error"])

    async def catch_up(self) -> None:
        """Take on the backend state of the first sibling that answers, if any does."""
        for path in self._siblings.values():
            states = await ask(path, {"op": "backend_states"})
            if isinstance(states, list):
                self.adopt(states)
                return

    async def run(self) -> NoReturn:
        """Send each change to the siblings as it happens, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            names, self._pending = list(self._pending), {}
            states = [state_of(self._backends[name]) for name in names]
            _, missed = await ask_all(self._siblings, {"op": "share_backends", "states": states})
            if missed:
                log.debug("backend state not shared with workers %s (no answer)", missed)
