"""The PostgreSQL store's row cache (``pg_cas``) against other writers on the same database.

Every charge is a compare-and-set on the cached row's version: another store object (another
gateway process) or raw SQL that changes, deletes or creates a row between two charges must
never make a charge overdraw or a credit land twice, and the next call sees the true row.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcpay.errors import LedgerError
from rpcpay.ledger.account import U64_MAX, Account, PaymentResult
from rpcpay.ledger.pg_cas import AccountCache, Cached, decode, encode
from rpcpay.ledger.pg_store import PostgresLedgerStore
from rpcpay.ledger.transactional import Applied, adjust_step, credit_step, pay_step, touch_step
from tests.ledger.test_group_commit import poison
from tests.support.ledger_stores import PostgresBackend
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.postgres

T0 = 1_700_000_000
A, B, C = (bytes([i]) * 32 for i in (1, 2, 3))


def balance_of(acct: Account) -> tuple[Account, int]:
    """A read-only step: it writes nothing, and answers the balance it saw."""
    return acct, acct.balance


@pytest.fixture
async def db(postgres_cluster: PostgresCluster) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A fresh ledger database and a raw connection to it (the "other writer")."""
    url = PostgresBackend(postgres_cluster).fresh()
    first = await PostgresLedgerStore.open(url)  # creates the schema
    await first.close()
    raw = await asyncpg.connect(url)
    try:
        yield url, raw
    finally:
        await raw.close()


async def charge(store: PostgresLedgerStore, client: bytes, ts: int, price: int) -> bool:
    return (await store.apply(client, pay_step(ts, price), now=T0)).outcome.ok


async def test_a_row_changed_by_another_store_is_seen_by_the_next_charge(
    db: tuple[str, asyncpg.Connection],
) -> None:
    url, _ = db
    one = await PostgresLedgerStore.open(url)
    two = await PostgresLedgerStore.open(url)
    try:
        await one.apply(A, adjust_step(10), now=T0)
        assert await charge(one, A, 1, 4)  # one caches A at 6
        await two.apply(A, adjust_step(100), now=T0)
        assert (await one.apply(A, pay_step(2, 4), now=T0)).account.balance == 102
        # The other store spends everything: one's cached 102 must not be charged.
        await two.apply(A, adjust_step(-(10**6)), now=T0)
        assert not await charge(one, A, 3, 4)
        acct = await two.get(A)
        assert acct is not None and (acct.balance, acct.credits_used) == (0, 8)
    finally:
        await one.close()
        await two.close()


async def test_raw_sql_changes_deletes_and_creates_rows_between_charges(
    db: tuple[str, asyncpg.Connection],
) -> None:
    url, raw = db
    store = await PostgresLedgerStore.open(url)
    try:
        await store.apply(A, adjust_step(50), now=T0)
        assert await charge(store, A, 1, 5)  # cached at 45
        # Changed: the next charge starts from the stored 7, not the cached 45.
        await raw.execute("UPDATE accounts SET balance = 7 WHERE client = $1", A)
        assert (await store.apply(A, pay_step(2, 5), now=T0)).account.balance == 2
        assert not await charge(store, A, 3, 5)  # never overdrawn
        # Deleted: the row is created afresh, and the cached credits are not resurrected.
        await raw.execute("DELETE FROM accounts WHERE client = $1", A)
        assert not await charge(store, A, 4, 1)
        await store.apply(A, adjust_step(3), now=T0)
        assert (await store.get(A)) == (await store.apply(A, balance_of, now=T0)).account
        assert (await store.apply(A, balance_of, now=T0)).outcome == 3
        # Created by someone else after this store saw no row: the insert yields to it.
        assert not (await store.apply(B, touch_step(T0), now=T0)).stored
        await raw.execute("INSERT INTO accounts VALUES ($1, 40, 40, 0, 0, 0, 0, 0, 0, $2)", B, T0)
        await store.apply(B, adjust_step(2), now=T0)
        acct = await store.get(B)
        assert acct is not None and (acct.balance, acct.credits_total) == (42, 40)
    finally:
        await store.close()


async def test_a_step_that_writes_nothing_answers_from_the_stored_row(
    db: tuple[str, asyncpg.Connection],
) -> None:
    url, raw = db
    store = await PostgresLedgerStore.open(url)
    try:
        await store.apply(A, adjust_step(10), now=T0)
        assert (await store.apply(A, balance_of, now=T0)).outcome == 10
        await raw.execute("UPDATE accounts SET balance = 99 WHERE client = $1", A)
        assert (await store.apply(A, balance_of, now=T0)).outcome == 99
        await raw.execute("DELETE FROM accounts WHERE client = $1", A)
        applied = await store.apply(A, balance_of, now=T0)
        assert (applied.outcome, applied.stored) == (0, False)
    finally:
        await store.close()


async def test_u64s_past_i64_travel_exactly(db: tuple[str, asyncpg.Connection]) -> None:
    url, raw = db
    one = await PostgresLedgerStore.open(url)
    two = await PostgresLedgerStore.open(url)
    try:
        await one.apply(A, credit_step(U64_MAX), now=T0)
        assert (await one.apply(A, pay_step(U64_MAX - 1, 2**63 + 1), now=T0)).outcome.ok
        await two.apply(A, adjust_step(5), now=T0)
        applied = await one.apply(A, pay_step(U64_MAX, 1), now=T0)
        assert applied.account.balance == U64_MAX - 2**63 - 1 + 5 - 1
        assert applied.account.last_request_timestamp_us == U64_MAX
        stored = await raw.fetchval("SELECT balance::text FROM accounts WHERE client = $1", A)
        assert int(stored) == applied.account.balance
    finally:
        await one.close()
        await two.close()


async def test_a_failed_statement_writes_nothing_and_the_cache_recovers(
    db: tuple[str, asyncpg.Connection], postgres_cluster: PostgresCluster
) -> None:
    url, raw = db
    store = await PostgresLedgerStore.open(url)
    try:
        for client in (A, B, C):
            await store.apply(client, adjust_step(100), now=T0)  # all three cached
        before = await store.accounts()
        await poison(PostgresBackend(postgres_cluster), url, B)
        results = await asyncio.gather(
            *(store.apply(c, adjust_step(1), now=T0) for c in (A, B, C, A)),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, LedgerError)]
        assert failed and all(isinstance(r, (LedgerError, Applied)) for r in results)
        # Every call that was not answered wrote nothing; the answered ones are stored.
        after = {a.client: a.balance for a in await store.accounts()}
        answered = [r for r in results if isinstance(r, Applied)]
        assert after[B] == 100
        assert sum(after.values()) == sum(a.balance for a in before) + len(answered)
        await raw.execute("DROP TRIGGER poison ON accounts")
        assert (await store.apply(B, adjust_step(1), now=T0)).account.balance == 101
    finally:
        await store.close()


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), funds=st.lists(st.integers(1, 40), min_size=3, max_size=3))
def test_two_stores_hammering_the_same_clients_conserve_credits(
    postgres_cluster: PostgresCluster, seed: int, funds: list[int]
) -> None:
    """Charges, credits and raw-SQL grants at once on two store objects and the database
    itself, in a random order: every credit lands once, no charge overdraws."""
    rng = random.Random(seed)
    clients = (A, B, C)

    async def run() -> None:
        url = PostgresBackend(postgres_cluster).fresh()
        # One store commits debits lazily, the other waits for every flush: as two gateways
        # with different --ledger-sync would.
        stores = [
            await PostgresLedgerStore.open(url, pool_size=3, synchronous=sync)
            for sync in ("normal", "full")
        ]
        raw = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            for client, amount in zip(clients, funds, strict=True):
                await stores[0].apply(client, adjust_step(amount), now=T0)
            granted = dict.fromkeys(clients, 0)
            calls = []
            for i in range(50):
                client = rng.choice(clients)
                store = rng.choice(stores)
                if rng.random() < 0.75:
                    calls.append(store.apply(client, pay_step(1, 1, True), now=T0))
                else:
                    granted[client] += 1
                    calls.append(store.apply(client, adjust_step(1), now=T0))
                # Raw SQL grants too, now and then, bypassing both caches.
                if i % 10 == 0:
                    granted[client] += 2
                    calls.append(
                        raw.execute(
                            "UPDATE accounts SET balance = balance + 2 WHERE client = $1", client
                        )
                    )
            results = await asyncio.gather(*calls)
            for client, amount in zip(clients, funds, strict=True):
                paid = sum(
                    1
                    for r in results
                    if isinstance(r, Applied)
                    and r.account.client == client
                    and isinstance(r.outcome, PaymentResult)
                    and r.outcome.ok
                )
                acct = await stores[1].get(client)
                assert acct is not None
                assert acct.credits_used == paid
                assert acct.balance + acct.credits_used == amount + granted[client]
        finally:
            await raw.close()
            for store in stores:
                await store.close()

    asyncio.run(run())


def test_the_cache_is_bounded_and_evicts_the_oldest_written() -> None:
    cache = AccountCache(limit=2)
    rows = [Account(bytes([i]) * 32, i, 0, 0, 0, 0, 0, 0, 0, T0) for i in range(1, 4)]
    cache.put(rows[0], "5")
    cache.put(rows[1], "6")
    cache.put(rows[0], "7")  # written again: now the newest
    cache.put(rows[2], "8")
    assert len(cache) == 2
    assert cache.get(rows[1].client) is None
    assert cache.get(rows[0].client) == Cached(rows[0], "7")
    assert cache.get(rows[2].client) == Cached(rows[2], "8")
    cache.drop([rows[0].client])
    assert cache.get(rows[0].client) is None
    with pytest.raises(ValueError):
        AccountCache(limit=0)


@given(st.lists(st.integers(0, U64_MAX), min_size=9, max_size=9))
def test_rows_encode_and_decode_exactly(numbers: list[int]) -> None:
    acct = Account(A, *numbers)
    assert decode(A, encode(acct)) == acct


async def test_a_write_that_never_lands_gives_up_after_bounded_attempts(
    db: tuple[str, asyncpg.Connection],
) -> None:
    """A trigger that silently skips every update of B: each attempt sees B's write not
    applied, reads B again, and tries again, ``MAX_ATTEMPTS`` times; then B's calls fail
    with ``LedgerError`` while the batch's other clients keep their committed answers."""
    url, raw = db
    store = await PostgresLedgerStore.open(url)
    try:
        for client in (A, B):
            await store.apply(client, adjust_step(10), now=T0)
        await raw.execute(
            "CREATE FUNCTION skip_b() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.client = '\\x{B.hex()}'::bytea THEN RETURN NULL; END IF; RETURN NEW; END $$"
        )
        await raw.execute(
            "CREATE TRIGGER skip_b BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION skip_b()"
        )
        results = await asyncio.gather(
            *(store.apply(c, adjust_step(1), now=T0) for c in (A, B, A, B)),
            return_exceptions=True,
        )
        for client, result in zip((A, B, A, B), results, strict=True):
            if client == B:
                assert isinstance(result, LedgerError) and "conflict" in str(result)
            else:
                assert isinstance(result, Applied)
        a, b = await store.get(A), await store.get(B)
        assert a is not None and a.balance == 12
        assert b is not None and b.balance == 10
    finally:
        await store.close()
