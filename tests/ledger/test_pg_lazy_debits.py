"""``--ledger-sync normal`` on PostgreSQL: a batch that only debits commits without waiting
for the WAL flush; anything that credits waits (``pg_cas``).

What a commit waits for is decided by ``synchronous_commit`` as it stands when the
transaction commits. A deferred constraint trigger runs at that moment, inside the
committing transaction, so it records the setting each commit obeyed: a direct check of
the mechanism, with no timing involved (whether PostgreSQL then honours the setting is
PostgreSQL's own contract).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.ledger.account import U64_MAX, Account
from rpcpay.ledger.pg_cas import gives_nothing
from rpcpay.ledger.pg_store import PostgresLedgerStore
from rpcpay.ledger.transactional import (
    Step,
    adjust_step,
    claim_step,
    credit_step,
    pay_step,
    refund_step,
    touch_step,
)
from tests.support.ledger_stores import PostgresBackend
from tests.support.postgres import PostgresCluster

T0 = 1_700_000_000
A, B = (bytes([i]) * 32 for i in (1, 2))

_RECORD_COMMIT_MODE = [
    "CREATE TABLE commit_modes (seq serial, mode text)",
    "CREATE FUNCTION record_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO commit_modes (mode) VALUES (current_setting('synchronous_commit')); "
    "RETURN NULL; END $$",
    "CREATE CONSTRAINT TRIGGER record_commit_mode AFTER INSERT OR UPDATE ON accounts "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION record_commit_mode()",
]


@pytest.fixture
async def raw(postgres_cluster: PostgresCluster) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A fresh ledger database whose every account write records, at its commit, the
    ``synchronous_commit`` it commits under."""
    url = PostgresBackend(postgres_cluster).fresh()
    first = await PostgresLedgerStore.open(url)  # creates the schema
    await first.close()
    conn = await asyncpg.connect(url)
    try:
        for sql in _RECORD_COMMIT_MODE:
            await conn.execute(sql)
        yield url, conn
    finally:
        await conn.close()


async def modes_after(
    url: str,
    conn: asyncpg.Connection,
    sync: Literal["normal", "full"],
    calls: list[tuple[bytes, Step[object]]],
) -> list[str]:
    """Fund A and B (waiting), then make ``calls`` at once (one batch); the modes the
    batch's commits obeyed."""
    store = await PostgresLedgerStore.open(url, synchronous=sync)
    try:
        for client in (A, B):
            await store.apply(client, adjust_step(100), now=T0)
        start = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM commit_modes")
        await asyncio.gather(*(store.apply(c, step, now=T0) for c, step in calls))
        # The session's own setting is untouched: the statement set it for itself only.
        shown = await store.run(lambda c: c.fetchval("SHOW synchronous_commit"))
        assert shown == "on"
        rows = await conn.fetch("SELECT mode FROM commit_modes WHERE seq > $1", start)
        return sorted({r["mode"] for r in rows})
    finally:
        await store.close()


@pytest.mark.postgres
async def test_normal_commits_a_batch_of_debits_without_waiting_for_the_flush(
    raw: tuple[str, asyncpg.Connection],
) -> None:
    url, conn = raw
    debits: list[tuple[bytes, Step[object]]] = [
        (A, pay_step(1, 5)),
        (B, pay_step(1, 5)),
        (A, pay_step(2, 5)),
        (B, touch_step(T0 + 1)),
        (A, adjust_step(-1)),
        (B, claim_step(7)),
    ]
    assert await modes_after(url, conn, "normal", debits) == ["off"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "credit", [refund_step(1), credit_step(1), adjust_step(1)], ids=["refund", "credit", "grant"]
)
async def test_normal_waits_for_the_flush_when_the_batch_credits_anyone(
    raw: tuple[str, asyncpg.Connection], credit: Step[object]
) -> None:
    url, conn = raw
    mixed: list[tuple[bytes, Step[object]]] = [(A, pay_step(1, 5)), (B, credit)]
    assert await modes_after(url, conn, "normal", mixed) == ["on"]


@pytest.mark.postgres
async def test_full_waits_for_the_flush_on_every_commit(
    raw: tuple[str, asyncpg.Connection],
) -> None:
    url, conn = raw
    debits: list[tuple[bytes, Step[object]]] = [(A, pay_step(1, 5)), (B, pay_step(1, 5))]
    assert await modes_after(url, conn, "full", debits) == ["on"]


@pytest.mark.postgres
async def test_a_new_client_with_credit_waits_and_a_new_used_id_does_not(
    raw: tuple[str, asyncpg.Connection],
) -> None:
    url, conn = raw
    store = await PostgresLedgerStore.open(url, synchronous="normal")
    try:
        await store.apply(A, claim_step(5), now=T0)  # a first row that holds nothing
        first = await conn.fetchval("SELECT mode FROM commit_modes ORDER BY seq DESC LIMIT 1")
        await store.apply(B, credit_step(3), now=T0)  # a first row that holds credit
        second = await conn.fetchval("SELECT mode FROM commit_modes ORDER BY seq DESC LIMIT 1")
        assert (first, second) == ("off", "on")
    finally:
        await store.close()


def test_a_store_refuses_an_unknown_durability() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        PostgresLedgerStore(None, 1.0, synchronous="fast")  # type: ignore[arg-type]


_u64 = st.integers(0, U64_MAX)
_accounts = st.builds(lambda *n: Account(A, *n), *[_u64] * 9)


@given(old=st.none() | _accounts, new=_accounts)
def test_gives_nothing_is_no_rise_in_balance_or_lifetime_credit(
    old: Account | None, new: Account
) -> None:
    before = (0, 0) if old is None else (old.balance, old.credits_total)
    rises = new.balance > before[0] or new.credits_total > before[1]
    assert gives_nothing(old, new) is not rises
