"""Shutdown waits for cancelled handlers to unwind (their refunds) before the ledger closes."""

from __future__ import annotations

import asyncio

from rpcpay.gateway.connections import InFlight


async def test_drain_waits_for_a_cancelled_handler_to_finish_unwinding() -> None:
    inflight = InFlight()
    refunded: list[bool] = []

    async def handler() -> None:
        task = asyncio.current_task()
        assert task is not None
        inflight.tasks.add(task)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            # A refund that itself awaits (as a store write may) before it is done.
            await asyncio.sleep(0.05)
            refunded.append(True)
            raise
        finally:
            inflight.tasks.discard(task)

    task = asyncio.create_task(handler())
    await asyncio.sleep(0)
    task.cancel()  # what aiohttp does past the grace, without waiting
    await inflight.drain(5.0)
    assert refunded == [True]
    assert task.done()


async def test_drain_is_bounded_by_its_timeout() -> None:
    inflight = InFlight()
    stuck = asyncio.create_task(asyncio.sleep(3600))
    inflight.tasks.add(stuck)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await inflight.drain(0.1)
    assert loop.time() - started < 1.0
    stuck.cancel()
