"""A coroutine started eagerly: done at once when it never waits, a task when it does."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from rpcpay.gateway.eager import start_eagerly
from rpcpay.ledger.pg_store import PostgresLedgerStore
from rpcpay.ledger.sqlite_async import ThreadedSqliteStore

seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="outer")


async def _no_wait(value: int) -> int:
    seen.set("inner")
    return value * 2


async def _waits(gate: asyncio.Event, value: int) -> int:
    await asyncio.sleep(0)
    await gate.wait()
    return value + 1


async def _fails() -> int:
    raise ValueError("bad")


async def test_a_coroutine_that_never_waits_is_done_without_a_task() -> None:
    future = start_eagerly(_no_wait(21))
    assert future.done() and not isinstance(future, asyncio.Task)
    assert await future == 42
    # It ran in a copy of the caller's context, as a task would.
    assert seen.get() == "outer"


async def test_a_failure_before_any_wait_is_the_futures() -> None:
    future = start_eagerly(_fails())
    assert future.done()
    with pytest.raises(ValueError, match="bad"):
        await future


async def test_a_coroutine_that_waits_finishes_in_a_task_a_cancelled_caller_cannot_stop() -> None:
    gate = asyncio.Event()
    future = start_eagerly(_waits(gate, 1), "waiting")
    assert isinstance(future, asyncio.Task) and future.get_name() == "waiting"

    async def caller() -> int:
        return await asyncio.shield(future)

    waiting = asyncio.create_task(caller())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.set()
    assert await future == 2


async def test_a_waiting_coroutine_sees_its_futures_error_and_cancellation() -> None:
    loop = asyncio.get_running_loop()
    failing: asyncio.Future[int] = loop.create_future()

    async def wait_for(fut: asyncio.Future[int]) -> str:
        try:
            await fut
        except ValueError:
            return "handled"
        return "no error"

    task = start_eagerly(wait_for(failing))
    failing.set_exception(ValueError("x"))
    assert await task == "handled"

    blocked: asyncio.Future[int] = loop.create_future()
    cleaned = []

    async def cleanup_on_cancel() -> int:
        try:
            return await blocked
        finally:
            cleaned.append(True)

    task = start_eagerly(cleanup_on_cancel())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True] and blocked.cancelled()


async def test_the_eager_part_runs_as_the_callers_task_so_only_task_free_stores_use_it() -> None:
    async def whose_task() -> asyncio.Task[object] | None:
        return asyncio.current_task()

    # What asyncio.timeout (and asyncpg's timeouts through it) would bind: the caller.
    assert await start_eagerly(whose_task()) is asyncio.current_task()
    # So the pipeline starts a charge eagerly only on a store that declares its first part
    # binds no task (PostgreSQL's is checked against a real server in test_pg_store).
    assert ThreadedSqliteStore.BINDS_NO_TASK is True
    assert PostgresLedgerStore.BINDS_NO_TASK is True
