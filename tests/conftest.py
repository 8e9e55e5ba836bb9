"""Shared fixtures. Test rules for the whole suite: servers bind 127.0.0.1 on port 0 and
start with ``nursery.start`` (the proxy with ``tests.proxyutil.running_proxy``, which stops
it through its production shutdown path); time-dependent behaviour runs under
``trio.testing.MockClock(autojump_threshold=0)``; no sleeps as synchronisation; a warning
is an error (``filterwarnings`` in pyproject.toml), so nothing is left to the garbage
collector (``tests/streams.py``)."""

from __future__ import annotations

import pytest
import trio

from tests.fake_upstream import FakeUpstream


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeUpstream:
    """A fake upstream listening in the test's nursery."""
    upstream = FakeUpstream()
    await nursery.start(upstream.serve)
    return upstream
