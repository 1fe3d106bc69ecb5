"""``pg_pool.ConnectionPool``: bounded, fair to waiters, and it never reuses a connection
that may be mid-protocol."""

from __future__ import annotations

import asyncio

import pytest

from rpcpay.ledger.pg_pool import ConnectionPool
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.postgres


async def test_connections_are_reused_bounded_and_handed_to_waiters_in_order(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database("pool_bound")
    pool = ConnectionPool(url, 2)
    try:
        one = await pool.acquire(2)
        two = await pool.acquire(2)
        # Full: a third caller waits, and gives up at its timeout.
        with pytest.raises(TimeoutError):
            await pool.acquire(0.2)
        first = asyncio.create_task(pool.acquire(2))
        second = asyncio.create_task(pool.acquire(2))
        await asyncio.sleep(0.05)
        pool.release(one)
        assert await first is one  # the oldest waiter gets the connection back
        pool.discard(two)
        replacement = await second  # a freed slot lets the next waiter connect anew
        assert replacement is not two and await replacement.fetchval("SELECT 1") == 1
        # A connection left inside a transaction is closed, not reused.
        await replacement.execute("BEGIN")
        pool.release(replacement)
        assert replacement.is_closed()
        pool.release(one)
        assert await pool.acquire(2) is one
    finally:
        await pool.close()


async def test_a_pool_of_an_absent_server_fails_cleanly_and_frees_its_slot() -> None:
    pool = ConnectionPool("postgresql://nobody@127.0.0.1:1/none", 1)
    for _ in range(2):  # the failed connect gave its slot back
        with pytest.raises(OSError):
            await pool.acquire(2)
    await pool.close()
