"""Polling several proxies at once, so that one slow proxy cannot stall the view.

A :class:`Poller` keeps an HTTP client per proxy URL. :meth:`Poller.poll` asks every
proxy at the same time — each in a thread of its own, the diagnostics and then, if
wanted, the recent requests — and waits at most :data:`~.fetch.FETCH_TIMEOUT` for all of
them. A proxy that has not answered by then is reported as giving no answer; its call
goes on in its thread, and the next poll waits for that call instead of starting
another (an answer it gives after its poll ended is dropped as out of date). Threads,
not Trio: the tool starts faster without importing it, and httpx's blocking client is
all it needs. The threads are daemons, so Ctrl+C never waits for a proxy.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import httpx

from .fetch import FETCH_TIMEOUT, InspectError, fetch, fetch_recent, no_answer, open_client
from .merge import ProxyAnswer


def ask(client: httpx.Client, base_url: str, recent: int) -> ProxyAnswer:
    """One proxy's answer: its diagnostics, then (``recent`` > 0, tracking on) its latest
    ``recent`` finished requests; an :class:`InspectError` becomes the answer's problem."""
    try:
        data, diagnostics = fetch(client, base_url)
    except InspectError as exc:
        return ProxyAnswer(base_url, problem=exc)
    if recent <= 0 or not diagnostics.activity_tracking_enabled:
        return ProxyAnswer(base_url, data, diagnostics)
    try:
        finished = fetch_recent(client, base_url, recent)
    except InspectError as exc:
        return ProxyAnswer(base_url, data, diagnostics, recent_problem=exc)
    return ProxyAnswer(base_url, data, diagnostics, recent=finished)


@dataclass
class _Slot:
    url: str
    client: httpx.Client
    pending: concurrent.futures.Future[ProxyAnswer] | None = None


def _closer(client: httpx.Client) -> Callable[[object], None]:
    def close(_: object) -> None:
        client.close()

    return close


class Poller:
    """Polls ``urls`` (proxy base URLs) concurrently; use as a context manager.

    ``recent``: how many finished requests to ask each proxy for (0: none).
    ``admin_key``: sent to every proxy as ``Authorization: Bearer``.
    ``deadline``: seconds a poll waits for the proxies' answers.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        recent: int = 0,
        admin_key: str | None = None,
        deadline: float = FETCH_TIMEOUT,
    ) -> None:
        self._slots = [_Slot(url, open_client(admin_key)) for url in urls]
        self._recent = recent
        self._deadline = deadline

    def poll(self) -> tuple[ProxyAnswer, ...]:
        """Every proxy's answer, in the order of the URLs (see the module docstring)."""
        for slot in self._slots:
            if slot.pending is not None and slot.pending.done():
                slot.pending = None  # the answer to a poll that gave up on it: out of date
            if slot.pending is None:
                slot.pending = self._start(slot)
        concurrent.futures.wait([s.pending for s in self._slots if s.pending], self._deadline)
        answers = []
        for slot in self._slots:
            assert slot.pending is not None
            if slot.pending.done():
                answers.append(slot.pending.result())
                slot.pending = None
            else:
                answers.append(ProxyAnswer(slot.url, problem=no_answer(slot.url)))
        return tuple(answers)

    def _start(self, slot: _Slot) -> concurrent.futures.Future[ProxyAnswer]:
        future: concurrent.futures.Future[ProxyAnswer] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(ask(slot.client, slot.url, self._recent))
            except BaseException as exc:  # a bug: poll() re-raises it on the main thread
                future.set_exception(exc)

        threading.Thread(target=run, name=f"poll {slot.url}", daemon=True).start()
        return future

    def close(self) -> None:
        """Close the clients; one still in a call is closed when the call ends."""
        for slot in self._slots:
            if slot.pending is None:
                slot.client.close()
            else:
                slot.pending.add_done_callback(_closer(slot.client))

    def __enter__(self) -> Poller:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
