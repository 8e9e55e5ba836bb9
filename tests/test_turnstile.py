"""The turnstile (``trioproxy.turnstile``): a few tasks through per turn of the loop, in
order, and the connection handler passing it when a connection's input ends.

Turns are counted by a Trio instrument: the loop looks for I/O once per turn.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio
import trio.testing

from tests.proxyutil import hang_up_mid_stream, mock_spec, released, running_proxy
from trioproxy.turnstile import PER_TURN, Turnstile, turnstile


class Turns(trio.abc.Instrument):
    """Counts the turns of the event loop: each ends with a look for I/O."""

    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        self.count += 1


@contextmanager
def counting_turns() -> Iterator[Turns]:
    turns = Turns()
    trio.lowlevel.add_instrument(turns)
    try:
        yield turns
    finally:
        trio.lowlevel.remove_instrument(turns)


async def test_a_lone_task_goes_through_within_two_turns() -> None:
    gate = Turnstile(per_turn=3)
    with counting_turns() as turns:
        await gate.through()
    assert turns.count <= 2
    assert gate.passed == 1


async def test_many_go_through_a_few_per_turn_in_the_order_they_came() -> None:
    gate = Turnstile(per_turn=4)
    parked: list[int] = []
    through: list[tuple[int, int]] = []

    async def one(n: int) -> None:
        parked.append(n)  # in the same step as parking: the order they came in
        await gate.through()
        through.append((n, turns.count))

    with counting_turns() as turns:
        async with trio.open_nursery() as nursery:
            for n in range(40):
                nursery.start_soon(one, n)
    # In the order they came, by turn; a turn's few run in Trio's order (shuffled).
    turn_of = dict(through)
    turns_in_order = [turn_of[n] for n in parked]
    assert turns_in_order == sorted(turns_in_order)
    per_turn: dict[int, int] = {}
    for _, turn in through:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) == 4
    assert len(per_turn) == 10
    assert gate.passed == 40
    assert gate.waiting == 0


async def test_a_task_cancelled_while_parked_is_not_let_through_nor_holds_others_up() -> None:
    gate = Turnstile(per_turn=1)
    parked: list[trio.CancelScope] = []
    through: list[trio.CancelScope] = []

    async def one() -> None:
        with trio.CancelScope() as scope:
            parked.append(scope)
            await gate.through()
            through.append(scope)
            if len(through) == 1:
                # The next is let through in this very turn, perhaps already; the one
                # after it is still parked.
                parked[2].cancel()

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(one)
    assert through == [parked[0], parked[1], parked[3]]
    assert gate.passed == 3
    assert gate.waiting == 0


def test_each_run_has_its_own_turnstile() -> None:
    async def same_within_a_run() -> Turnstile:
        assert turnstile() is turnstile()
        assert turnstile().per_turn == PER_TURN
        return turnstile()

    assert trio.run(same_within_a_run) is not trio.run(same_within_a_run)


async def test_a_connection_whose_client_hung_up_passes_the_run_turnstile() -> None:
    async with (
        trio.open_nursery() as nursery,
        running_proxy(
            nursery, backends=(mock_spec(chunks=50, delay=0.2),), enable_activity_tracking=True
        ) as proxy,
    ):
        before = turnstile().passed
        async with trio.open_nursery() as clients:
            for _ in range(10):
                clients.start_soon(hang_up_mid_stream, proxy.url)
        await released(proxy.app.tracker)
        assert turnstile().passed - before == 10
        assert (await proxy.diagnostics())["global_activity"]["lifetime"]["cancelled"] == 10
