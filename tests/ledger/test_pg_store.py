"""What only the PostgreSQL store has: a recorded schema version, instances starting
together, a server that goes away and comes back, and a pool that runs dry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rpcpay.errors import LedgerError
from rpcpay.gateway.eager import start_eagerly
from rpcpay.ledger import pg_cas
from rpcpay.ledger.pg_store import SCHEMA_VERSION, PostgresLedgerStore
from rpcpay.ledger.transactional import adjust_step, pay_step
from tests.support.postgres import PostgresCluster, start_postgres

pytestmark = pytest.mark.postgres

T0 = 1_700_000_000
A = bytes([1]) * 32


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of its own, for tests that stop the server."""
    with start_postgres() as cluster:
        yield cluster


async def test_the_schema_version_is_recorded_and_checked(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database("schema_check")
    store = await PostgresLedgerStore.open(url)
    await store.close()
    assert postgres_cluster.psql("SELECT version FROM rpcpay_schema", "schema_check") == str(
        SCHEMA_VERSION
    )
    postgres_cluster.psql("UPDATE rpcpay_schema SET version = 99", "schema_check")
    with pytest.raises(LedgerError, match="schema version 99"):
        await PostgresLedgerStore.open(url)


async def test_instances_starting_together_make_one_schema(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database("together")
    stores = await asyncio.gather(*(PostgresLedgerStore.open(url, pool_size=2) for _ in range(4)))
    try:
        await stores[0].apply(A, adjust_step(3), now=T0)
        assert [(await s.get(A)) is not None for s in stores] == [True] * 4
    finally:
        for s in stores:
            await s.close()
    assert postgres_cluster.psql("SELECT count(*) FROM rpcpay_schema", "together") == "1"


async def test_a_bad_url_is_a_clean_error() -> None:
    with pytest.raises(LedgerError):
        await PostgresLedgerStore.open("postgresql://nobody@127.0.0.1:1/none", acquire_timeout_s=2)


async def test_an_exhausted_pool_answers_busy_after_the_bound(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database("exhausted")
    store = await PostgresLedgerStore.open(url, pool_size=1, acquire_timeout_s=0.3)
    try:
        holder = asyncio.create_task(store.run(lambda conn: conn.execute("SELECT pg_sleep(1.5)")))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(LedgerError):
            await store.apply(A, adjust_step(1), now=T0)
        assert time.monotonic() - started < 1.2  # it gave up at the bound, not after the holder
        await holder
        # Once the connection is back, calls go through again.
        assert (await store.apply(A, adjust_step(1), now=T0)).account.balance == 1
    finally:
        await store.close()


async def test_a_restarted_server_means_clean_errors_then_service(
    own_cluster: PostgresCluster,
) -> None:
    url = own_cluster.create_database("restart")
    store = await PostgresLedgerStore.open(url, pool_size=3, acquire_timeout_s=1)
    try:
        await store.apply(A, adjust_step(1_000), now=T0)
        restart = asyncio.create_task(asyncio.to_thread(own_cluster.restart, 1.0))
        charged = errors = 0
        ts = T0 * 10**6
        deadline = time.monotonic() + 30
        # Charge through the outage: each call either commits or fails with LedgerError.
        while (not restart.done() or charged < 5) and time.monotonic() < deadline:
            ts += 1
            try:
                applied = await store.apply(A, pay_step(ts, 1), now=T0)
            except LedgerError:
                errors += 1
                await asyncio.sleep(0.05)
                continue
            assert applied.outcome.ok
            charged += 1
        await restart
        acct = await store.get(A)
        assert acct is not None
        assert errors > 0  # the outage was seen
        # Every reported charge is in the ledger, credits are conserved, and only a call in
        # flight when the server went down (one: they are sequential) can be charged unreported.
        assert acct.balance + acct.credits_used == 1_000
        assert charged <= acct.credits_used <= charged + 1
    finally:
        await store.close()


async def test_apply_started_eagerly_runs_the_driver_in_the_batch_task_only(
    postgres_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why ``BINDS_NO_TASK`` holds: the caller's part of ``apply`` only queues its call, so
    an eager start (``gateway.eager``) never lets the driver or its timeouts bind the
    caller's task; every statement runs in the group commit's batch task."""
    url = postgres_cluster.create_database("eager_apply")
    store = await PostgresLedgerStore.open(url)
    statements_ran_in: list[asyncio.Task[object] | None] = []
    real_commit = pg_cas.commit_batch

    async def watched(*args: Any, **kwargs: Any) -> None:
        statements_ran_in.append(asyncio.current_task())
        await real_commit(*args, **kwargs)

    monkeypatch.setattr(pg_cas, "commit_batch", watched)
    try:
        assert PostgresLedgerStore.BINDS_NO_TASK is True
        pending = start_eagerly(store.apply(A, adjust_step(5), now=T0))
        assert not pending.done() and statements_ran_in == []  # queued, nothing run yet
        applied = await pending
        assert applied.account.balance == 5
        caller = asyncio.current_task()
        assert statements_ran_in and all(t not in (caller, pending) for t in statements_ran_in)
    finally:
        await store.close()
