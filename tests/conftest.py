"""Shared fixtures. Test rules for the whole suite: servers bind 127.0.0.1 on port 0 and
start with ``nursery.start``; time-dependent behaviour runs under
``trio.testing.MockClock(autojump_threshold=0)``; no sleeps as synchronisation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from tests.fake_upstream import FakeUpstream
from trioproxy.activity import set_activity_tracker


@pytest.fixture(autouse=True)
def no_leftover_tracker() -> Iterator[None]:
    """Forget the process-wide tracker of a proxy a test stopped by cancellation."""
    yield
    set_activity_tracker(None)


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeUpstream:
    """A fake upstream listening in the test's nursery."""
    upstream = FakeUpstream()
    await nursery.start(upstream.serve)
    return upstream
