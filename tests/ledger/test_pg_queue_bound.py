"""The PostgreSQL store's queue for connections is bounded: in time (``acquire_timeout_s``)
and in length (``max_waiters``); past either, ``LedgerBusy`` at once, and nothing applied."""

from __future__ import annotations

import asyncio
import time

import pytest

from rpcpay.errors import LedgerBusy
from rpcpay.ledger.pg_store import PostgresLedgerStore
from rpcpay.ledger.transactional import adjust_step
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.postgres

T0 = 1_700_000_000
A = bytes([1]) * 32
B = bytes([2]) * 32


async def test_waiters_past_the_bound_are_refused_at_once_the_rest_at_the_timeout(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database("queue_bound")
    store = await PostgresLedgerStore.open(url, pool_size=1, acquire_timeout_s=0.5, max_waiters=2)
    try:
        holder = asyncio.create_task(store.run(lambda conn: conn.execute("SELECT pg_sleep(1.5)")))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        waiters = [asyncio.create_task(store.apply(A, adjust_step(1), now=T0)) for _ in range(2)]
        await asyncio.sleep(0)
        # The queue is full: a third caller is refused without waiting.
        with pytest.raises(LedgerBusy, match="already wait"):
            await store.apply(B, adjust_step(1), now=T0)
        assert time.monotonic() - started < 0.2
        # The two in the queue give up at the timeout, not when the holder is done.
        for waiter in waiters:
            with pytest.raises(LedgerBusy, match=r"within 0\.5 s"):
                await waiter
        assert 0.4 < time.monotonic() - started < 1.2
        await holder
        # Nothing refused was applied; the queue works again.
        assert await store.get(A) is None and await store.get(B) is None
        assert (await store.apply(A, adjust_step(1), now=T0)).account.balance == 1
    finally:
        await store.close()
