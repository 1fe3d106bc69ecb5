"""SharedLedger: two ledgers on one database behave as one (SQLite and PostgreSQL)."""

from __future__ import annotations

from rpcpay.ledger.account import PaymentRefusal, ShareOutcome
from rpcpay.ledger.shared_ledger import SharedLedger
from rpcpay.ledger.sqlite_store import ChequeRow
from rpcpay.ledger.transactional import RecordNonce
from tests.ledger.conftest import MakeStore

T0 = 1_700_000_000
A = bytes([1]) * 32
B = bytes([2]) * 32


class Clock:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


async def two_ledgers(make_store: MakeStore, clock: Clock) -> tuple[SharedLedger, SharedLedger]:
    return (
        SharedLedger(await make_store(), clock=clock),
        SharedLedger(await make_store(), clock=clock),
    )


async def test_what_one_instance_books_the_other_charges(make_store: MakeStore) -> None:
    clock = Clock()
    one, two = await two_ledgers(make_store, clock)
    assert (await one.record_share(A, ShareOutcome.GOOD, 100)).balance == 100
    paid = await two.pay(A, 5, 30)
    assert paid.ok and paid.credits == 70
    replay = await one.pay(A, 5, 30)
    assert replay.reason is PaymentRefusal.TIMESTAMP
    refunded = await one.refund(A, 30)
    assert (refunded.balance, refunded.credits_used) == (100, 0)
    assert await two.get(A) == refunded


async def test_a_share_id_is_claimed_by_one_instance_only(make_store: MakeStore) -> None:
    one, two = await two_ledgers(make_store, Clock())
    await one.adjust_balance(A, 1)
    assert await one.claim(A, 10)
    assert not await two.claim(A, 10)


async def test_totals_cover_every_instance(make_store: MakeStore) -> None:
    one, two = await two_ledgers(make_store, Clock())
    await one.adjust_balance(A, 5)
    await two.adjust_balance(B, 7)
    for ledger in (one, two):
        totals = await ledger.totals()
        assert (totals.clients, totals.balance) == (2, 12)


async def test_cheques_credit_once(make_store: MakeStore) -> None:
    one, two = await two_ledgers(make_store, Clock())
    row = ChequeRow(bytes(32), bytes([9]) * 32, b"w" * 274, A, 40, 10, T0)
    assert (await one.credit_cheque(A, 40, row)) is not None
    assert await two.credit_cheque(A, 40, row) is None
    held = ChequeRow(bytes([3]) * 32, bytes([9]) * 32, b"w" * 274, A, 60, 10, T0)
    assert await two.store.cheques.hold_pending(held)
    account = await two.credit_held(A, 60, held.cheque_id)
    assert account is not None and account.balance == 100
    assert await one.credit_held(A, 60, held.cheque_id) is None


async def test_blank_accounts_leave_nothing_and_idle_ones_are_forgotten(
    make_store: MakeStore,
) -> None:
    clock = Clock()
    one, two = await two_ledgers(make_store, clock)
    assert (await one.touch(B)).update_time == T0
    assert await two.get(B) is None
    await one.adjust_balance(A, 3)
    await one.adjust_balance(A, -3)
    clock.now += 121
    assert await two.forget_idle() == 1
    assert await one.accounts() == []


async def test_a_nonce_sent_to_both_instances_is_credited_once(make_store: MakeStore) -> None:
    clock = Clock()
    one, two = await two_ledgers(make_store, clock)
    await one.adjust_balance(A, 1_000)
    nonce = RecordNonce(b"job", 7, T0 + 60)
    acct, outcome = await one.record_submitted_share(A, nonce, ShareOutcome.GOOD, 10)
    assert outcome is ShareOutcome.GOOD and acct.balance == 1_010
    acct, outcome = await two.record_submitted_share(A, nonce, ShareOutcome.GOOD, 10)
    assert outcome is ShareOutcome.DUPE and acct.balance == 810
    clock.now += 61
    assert await two.forget_nonces() == 1
