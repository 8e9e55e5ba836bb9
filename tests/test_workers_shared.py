"""Backend state shared between workers (``trioproxy.workers.shared``), in one process.

Two workers' :class:`SharedBackends` over real channel sockets in the test's temporary
directory, on ``MockClock(autojump_threshold=0)``: the rate-limit windows run on Trio's
clock, so a window's length is exact and a resend's pause passes without waiting.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio
import trio.testing

from tests.proxyutil import mock_spec
from trioproxy.backends.instance import Backends
from trioproxy.settings import Settings
from trioproxy.workers.channel import serve_channel, socket_path
from trioproxy.workers.shared import RESEND_AFTER, SharedBackends, state_of


def backends() -> Backends:
    return Backends(Settings(backends=(mock_spec("mock.1"),)))


async def answer_shares(shared: SharedBackends, request: dict[str, object]) -> object:
    assert request["op"] == "share_backends"
    shared.adopt(request["states"])  # type: ignore[arg-type]
    return {"ok": True}


async def test_a_window_learned_late_keeps_its_end_not_its_length() -> None:
    here = backends()
    shared = SharedBackends(here, {})
    state = {"instance": "mock.1", "retry_after": 30.0, "runtime_error": None}
    # Taken 6 s ago (a sibling stopped meanwhile): 24 s are left, not 30.
    shared.adopt([{**state, "at": time.monotonic() - 6.0}])
    left = here["mock.1"].retry_after_seconds()
    assert left is not None and 23.9 < left <= 24.0
    # A window already over when it arrives opens none.
    other = backends()
    SharedBackends(other, {}).adopt([{**state, "at": time.monotonic() - 31.0}])
    assert other["mock.1"].retry_after_seconds() is None


async def test_a_sibling_that_missed_a_change_gets_it_once_it_answers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    mine, theirs = backends(), backends()
    path = socket_path(str(tmp_path), 1)
    shared = SharedBackends(mine, {1: path})
    sibling = SharedBackends(theirs, {})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(shared.run)
        mine["mock.1"].mark_rate_limited(60.0)
        await trio.sleep(0.1)  # the send is made and missed: nothing listens at ``path``
        assert theirs["mock.1"].retry_after_seconds() is None

        delivered = trio.Event()

        async def answer(request: dict[str, object]) -> object:
            answered = await answer_shares(sibling, request)
            delivered.set()
            return answered

        await nursery.start(serve_channel, path, answer)
        # (Not timed to the resend: the socket's bind runs on a thread, which the mock
        # clock's jumps do not wait for.)
        with trio.fail_after(20 * RESEND_AFTER):
            await delivered.wait()
        # About the window here (the mock clock may jump while the message is on its way,
        # and the age the sibling takes off is real time).
        left = theirs["mock.1"].retry_after_seconds()
        assert left is not None and 50.0 < left <= 61.0
        nursery.cancel_scope.cancel()


def test_a_state_says_when_it_was_taken() -> None:
    before = time.monotonic()
    state = state_of(backends()["mock.1"])
    assert before <= state["at"] <= time.monotonic()
    assert state["retry_after"] is None
