"""Many writers on one ledger: several store instances (as several gateway processes would
hold) on the same database, with many transactions in flight at once.

Whatever the interleaving: no account is overdrawn, every credit lands exactly once, and a
cheque presented everywhere at once is credited by exactly one instance.
"""

from __future__ import annotations

import asyncio

from rpcpay.ledger.account import ShareOutcome, apply_share
from rpcpay.ledger.sqlite_store import ChequeRow
from rpcpay.ledger.transactional import (
    RecordCheque,
    RecordNonce,
    Step,
    TransactionalStore,
    adjust_step,
    credit_step,
    pay_step,
)
from tests.ledger.conftest import MakeStore

T0 = 1_700_000_000
INSTANCES = 3
CLIENTS = [bytes([i]) * 32 for i in range(1, 4)]


async def instances(make_store: MakeStore) -> list[TransactionalStore]:
    return [await make_store() for _ in range(INSTANCES)]


async def test_concurrent_charges_never_overdraw(make_store: MakeStore) -> None:
    stores = await instances(make_store)
    price, affordable, attempts = 7, 12, 30
    for client in CLIENTS:
        await stores[0].apply(client, adjust_step(price * affordable), now=T0)

    async def charge(i: int, client: bytes) -> bool:
        # One request's id for all: same_ts admits it, so only the balance decides.
        store = stores[i % INSTANCES]
        applied = await store.apply(client, pay_step(T0 * 10**6, price, True), now=T0)
        return applied.outcome.ok

    jobs = [charge(i, c) for i in range(attempts) for c in CLIENTS]
    results = await asyncio.gather(*jobs)
    for n, client in enumerate(CLIENTS):
        assert sum(results[n :: len(CLIENTS)]) == affordable
        acct = await stores[-1].get(client)
        assert acct is not None
        assert (acct.balance, acct.credits_used) == (0, price * affordable)


async def test_concurrent_credits_to_a_new_client_all_land(make_store: MakeStore) -> None:
    stores = await instances(make_store)
    amounts = list(range(1, 41))
    # The account does not exist yet: every writer races to create it.
    await asyncio.gather(
        *(
            stores[i % INSTANCES].apply(CLIENTS[0], credit_step(a), now=T0)
            for i, a in enumerate(amounts)
        )
    )
    acct = await stores[1].get(CLIENTS[0])
    assert acct is not None
    assert (acct.balance, acct.credits_total) == (sum(amounts), sum(amounts))


async def test_a_cheque_presented_everywhere_at_once_is_credited_once(
    make_store: MakeStore,
) -> None:
    stores = await instances(make_store)
    for round_ in range(5):
        c = ChequeRow(
            round_.to_bytes(32, "big"), bytes([9]) * 32, b"w" * 274, CLIENTS[0], 100, 5, T0
        )
        applied = await asyncio.gather(
            *(
                stores[i % INSTANCES].apply_with_cheque(
                    CLIENTS[0], credit_step(100), RecordCheque(c), now=T0
                )
                for i in range(12)
            )
        )
        assert sum(a is not None for a in applied) == 1
    acct = await stores[0].get(CLIENTS[0])
    assert acct is not None and acct.balance == 500


async def test_a_nonce_sent_everywhere_at_once_is_credited_once(make_store: MakeStore) -> None:
    stores = await instances(make_store)

    def booked(outcome: ShareOutcome) -> Step[ShareOutcome]:
        return lambda acct: (apply_share(acct, outcome, 1_000), outcome)

    await stores[0].apply(CLIENTS[0], adjust_step(100_000), now=T0)
    for nonce in range(5):
        join = RecordNonce(b"job", nonce, T0 + 60)
        outcomes = await asyncio.gather(
            *(
                stores[i % INSTANCES].apply_with_nonce(
                    CLIENTS[0], join, booked(ShareOutcome.GOOD), booked(ShareOutcome.DUPE), now=T0
                )
                for i in range(9)
            )
        )
        assert sorted(a.outcome.value for a in outcomes) == ["dupe"] * 8 + ["good"]
    acct = await stores[1].get(CLIENTS[0])
    assert acct is not None
    assert (acct.nonces_good, acct.nonces_dupe) == (5, 40)
    assert acct.credits_total == 5 * 1_000  # each nonce earned once


async def test_one_of_many_takers_gets_a_lease(make_store: MakeStore) -> None:
    stores = await instances(make_store)
    for round_ in range(5):
        taken = await asyncio.gather(
            *(
                stores[i % INSTANCES].cheques.take_lease(f"claim:{round_}", f"gw-{i}", T0, 60)
                for i in range(9)
            )
        )
        assert sum(taken) == 1
