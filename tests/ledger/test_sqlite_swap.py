"""The one-statement charge on a remembered row (``sqlite_swap``): whatever other
connections did to the row meanwhile, every call's answer and the stored row are those of
the calls applied one after another on what is stored."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rpcpay.ledger import account as rules
from rpcpay.ledger.account import Account
from rpcpay.ledger.sqlite_async import ThreadedSqliteStore
from rpcpay.ledger.sqlite_swap import KnownRows
from rpcpay.ledger.transactional import Step, adjust_step, pay_step, settle

T0 = 1_700_000_000
CLIENT = bytes([7]) * 32

# (which store, what): a charge of ``n`` credits, an admin credit of ``n``, or the row deleted.
calls = st.lists(
    st.tuples(st.integers(0, 1), st.sampled_from(["pay", "adjust", "delete"]), st.integers(0, 9)),
    max_size=25,
)


async def _run(path: Path, script: list[tuple[int, str, int]]) -> None:
    stores = [await ThreadedSqliteStore.open(path, synchronous="normal") for _ in range(2)]
    model: Account | None = None
    ts = T0 * 1_000_000
    try:
        for i, (which, what, n) in enumerate(script):
            store = stores[which]
            if what == "delete":
                await store.run(lambda s: s.delete([CLIENT]))
                model = None
                continue
            ts += 1
            step: Step[Any] = pay_step(ts, n) if what == "pay" else adjust_step(n)
            expected, outcome, write = settle(CLIENT, model, step, T0 + i)
            applied = await store.apply(CLIENT, step, now=T0 + i)
            # Each answer is the one the stored row gives, whoever changed it last.
            assert applied.outcome == outcome
            assert applied.account == expected
            if write or model is not None:
                model = expected
            assert await stores[1 - which].get(CLIENT) == model
    finally:
        for store in stores:
            await store.close()


@settings(max_examples=25, deadline=None)
@given(calls)
def test_two_connections_in_any_order_answer_as_calls_one_after_another(
    script: list[tuple[int, str, int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run(Path(tmp) / "ledger.db", script))


async def test_a_row_changed_elsewhere_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    mine = await ThreadedSqliteStore.open(path, synchronous="normal")
    other = await ThreadedSqliteStore.open(path, synchronous="normal")
    try:
        await mine.apply(CLIENT, adjust_step(100), now=T0)
        assert (await mine.apply(CLIENT, pay_step(10, 5), now=T0)).outcome.ok
        # Another process spends from the same row, with a newer client id.
        assert (await other.apply(CLIENT, pay_step(20, 50), now=T0)).outcome.ok
        # This process's memory of the row is stale: an id older than the other's is refused.
        refused = await mine.apply(CLIENT, pay_step(15, 1), now=T0)
        assert not refused.outcome.ok
        assert refused.outcome.reason is rules.PaymentRefusal.TIMESTAMP
        paid = await mine.apply(CLIENT, pay_step(30, 45), now=T0)
        assert paid.outcome.ok and paid.account.balance == 0
        assert await other.get(CLIENT) == paid.account
    finally:
        await mine.close()
        await other.close()


def test_known_rows_are_bounded() -> None:
    rows = KnownRows(limit=2)
    accounts = [rules.new_account(bytes([i]) * 32, T0) for i in range(3)]
    for acct in accounts:
        rows.remember(acct)
    assert rows.get(accounts[2].client) == accounts[2]
    assert rows.get(accounts[0].client) is None
    rows.forget(accounts[2].client)
    assert rows.get(accounts[2].client) is None
