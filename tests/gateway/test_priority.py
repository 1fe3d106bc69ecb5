"""The admission queue: bounded slots, paid first, free share, fairness by host, shedding."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcpay.errors import ConfigError
from rpcpay.gateway.priority import (
    AdmissionQueue,
    CallClass,
    QueueSettings,
    Shed,
    bid_level,
    check_queue_settings,
    queue_settings,
)


async def _hold(queue: AdmissionQueue, cls: CallClass, address: str, log: list[str],
                gate: asyncio.Event) -> None:  # fmt: skip
    async with queue.slot(cls, address):
        log.append(f"{cls}:{address}")
        await gate.wait()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_paid_calls_go_before_free_ones_that_waited_longer() -> None:
    queue = AdmissionQueue(QueueSettings(concurrency=1, free_slots=1, queue=10))
    log: list[str] = []
    gate = asyncio.Event()
    first = asyncio.create_task(_hold(queue, "free", "10.0.0.1", log, gate))
    await _settle()
    waiting = [asyncio.create_task(_hold(queue, "free", "10.0.0.2", log, gate))]
    await _settle()
    waiting.append(asyncio.create_task(_hold(queue, "paid", "10.0.0.3", log, gate)))
    await _settle()
    assert queue.waiting() == 2
    gate.set()
    await asyncio.gather(first, *waiting)
    assert log == ["free:10.0.0.1", "paid:10.0.0.3", "free:10.0.0.2"]
    assert queue.in_flight == {"paid": 0, "free": 0}


async def test_free_calls_never_hold_more_than_their_slots() -> None:
    queue = AdmissionQueue(queue_settings(concurrency=4, share=0.5, queue=100))
    assert queue.settings.free_slots == 2
    peak = 0

    async def free_call(n: int) -> None:
        nonlocal peak
        async with queue.slot("free", f"10.0.{n}.1"):
            peak = max(peak, queue.in_flight["free"])
            await asyncio.sleep(0.001)

    async def paid_call() -> None:
        async with queue.slot("paid", "127.0.0.1"):
            await asyncio.sleep(0.001)

    await asyncio.gather(*(free_call(n) for n in range(40)), *(paid_call() for _ in range(8)))
    assert peak == 2
    assert queue.stats.admitted == {"paid": 8, "free": 40}


async def test_free_calls_take_turns_by_host() -> None:
    queue = AdmissionQueue(QueueSettings(concurrency=1, free_slots=1, queue=100))
    log: list[str] = []
    gate = asyncio.Event()
    gate.set()
    blocker = asyncio.Event()
    first = asyncio.create_task(_hold(queue, "paid", "127.0.0.1", [], blocker))
    await _settle()
    # One host queues five calls before another queues two: they alternate.
    tasks = [asyncio.create_task(_hold(queue, "free", "10.0.0.1", log, gate)) for _ in range(5)]
    await _settle()
    tasks += [asyncio.create_task(_hold(queue, "free", "10.0.0.2", log, gate)) for _ in range(2)]
    await _settle()
    blocker.set()
    await asyncio.gather(first, *tasks)
    assert log[:4] == ["free:10.0.0.1", "free:10.0.0.2", "free:10.0.0.1", "free:10.0.0.2"]


async def test_a_full_line_sheds_free_calls_first() -> None:
    queue = AdmissionQueue(QueueSettings(concurrency=1, free_slots=1, queue=2))
    gate = asyncio.Event()
    holder = asyncio.create_task(_hold(queue, "paid", "127.0.0.1", [], gate))
    await _settle()
    free = [asyncio.create_task(_hold(queue, "free", "10.0.0.1", [], gate)) for _ in range(2)]
    await _settle()
    # The line is full: one more free call is shed at once.
    with pytest.raises(Shed):
        await queue.acquire("free", "10.0.0.9")
    # A paid call sheds the newest free call of the busiest host and takes its place.
    paid = asyncio.create_task(_hold(queue, "paid", "127.0.0.2", [], gate))
    await _settle()
    assert free[1].done() and isinstance(free[1].exception(), Shed)
    assert queue.waiting("paid") == 1 and queue.waiting("free") == 1
    # A line full of paid calls sheds a paid call.
    paid2 = asyncio.create_task(_hold(queue, "paid", "127.0.0.3", [], gate))
    await _settle()
    assert queue.waiting("paid") == 2 and free[0].done()
    with pytest.raises(Shed):
        await queue.acquire("paid", "127.0.0.4")
    gate.set()
    await asyncio.gather(holder, paid, paid2)
    assert queue.stats.shed == {"paid": 1, "free": 3}
    assert queue.in_flight == {"paid": 0, "free": 0}


async def test_cancelled_waiters_leave_no_slot_behind() -> None:
    queue = AdmissionQueue(QueueSettings(concurrency=1, free_slots=1, queue=10))
    gate = asyncio.Event()
    holder = asyncio.create_task(_hold(queue, "paid", "127.0.0.1", [], gate))
    await _settle()
    waiter = asyncio.create_task(_hold(queue, "free", "10.0.0.1", [], gate))
    await _settle()
    waiter.cancel()
    await _settle()
    assert queue.waiting() == 0
    # Granted, then cancelled before it ran: the slot is handed on, not lost.
    granted = asyncio.create_task(_hold(queue, "paid", "10.0.0.2", [], gate))
    await _settle()
    gate.set()
    await holder
    granted.cancel()
    await asyncio.gather(granted, return_exceptions=True)
    assert queue.in_flight == {"paid": 0, "free": 0}
    async with queue.slot("free", "10.0.0.3"):
        assert queue.in_flight["free"] == 1


def test_backlog_marks_the_free_share_spent() -> None:
    queue = AdmissionQueue(QueueSettings(concurrency=4, free_slots=1, queue=100))
    assert not queue.free_backlogged()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["paid", "free"]), st.integers(0, 5), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 4),
    st.integers(1, 8),
)
def test_invariants_hold_for_any_mix(
    calls: list[tuple[CallClass, int, int]], concurrency: int, line: int
) -> None:
    queue = AdmissionQueue(queue_settings(concurrency, 0.5, line))

    async def one(cls: CallClass, host: int, hold: int) -> None:
        try:
            async with queue.slot(cls, f"10.0.0.{host}"):
                # Never more in flight than the slots, never more free than the free share.
                assert sum(queue.in_flight.values()) <= concurrency
                assert queue.in_flight["free"] <= queue.settings.free_slots
                for _ in range(hold):
                    await asyncio.sleep(0)
        except Shed:
            pass

    async def run() -> None:
        await asyncio.gather(*(one(*call) for call in calls))

    asyncio.run(run())
    stats = queue.stats
    # Every call was admitted or shed, exactly once; nothing is left held.
    assert sum(stats.admitted.values()) + sum(stats.shed.values()) == len(calls)
    assert queue.in_flight == {"paid": 0, "free": 0} and queue.waiting() == 0
    # A paid call is shed only when no free call could have been.
    if stats.shed["paid"]:
        assert sum(1 for c in calls if c[0] == "paid") > line


def test_bad_bounds_name_their_flag() -> None:
    with pytest.raises(ConfigError, match="--upstream-concurrency"):
        check_queue_settings(QueueSettings(0, 1, 10))
    with pytest.raises(ConfigError, match="--upstream-queue"):
        check_queue_settings(QueueSettings(4, 1, 0))


async def test_higher_bids_go_first_among_paid_calls() -> None:
    queue = AdmissionQueue(QueueSettings(concurrency=1, free_slots=1, queue=10))
    order: list[int] = []
    gate = asyncio.Event()
    gate.set()
    await queue.acquire("paid", "127.0.0.1")

    async def paid(bid: int, host: str) -> None:
        await queue.acquire("paid", host, bid_level(bid))
        order.append(bid)
        queue.release("paid")

    tasks = []
    for bid, host in ((0, "10.0.0.1"), (1, "10.0.0.2"), (8, "10.0.0.3"), (5, "10.0.0.4")):
        tasks.append(asyncio.create_task(paid(bid, host)))
        await _settle()
    queue.release("paid")
    await asyncio.gather(*tasks)
    assert order == [8, 5, 1, 0]
    assert queue.stats.overtakes == 3
    assert [bid_level(b) for b in (0, 1, 2, 3, 4, 7, 8)] == [0, 1, 2, 2, 3, 3, 4]
