"""The store conformance suite: the same tests on SQLite and on PostgreSQL (``make_store``).

Each test states one contract of ``TransactionalStore`` or ``ChequeBook``; the two engines
must be indistinguishable through the interface.
"""

from __future__ import annotations

import pytest

from rpcpay.errors import LedgerError
from rpcpay.ledger.account import U64_MAX, Account, PaymentRefusal, ShareOutcome, apply_share
from rpcpay.ledger.sqlite_store import ChequeRow
from rpcpay.ledger.transactional import (
    CreditHeld,
    RecordCheque,
    RecordNonce,
    Step,
    adjust_step,
    claim_step,
    credit_step,
    pay_step,
    refund_step,
    share_step,
    touch_step,
)
from tests.ledger.conftest import MakeStore

T0 = 1_700_000_000
A = bytes([1]) * 32
B = bytes([2]) * 32
LOTTERY = bytes([9]) * 32


def cheque(
    i: int, client: bytes | None = A, credits: int = 50, lottery: bytes = LOTTERY
) -> ChequeRow:
    return ChequeRow(i.to_bytes(32, "big"), lottery, b"w" * 274, client, credits, 100 + i, T0 + i)


async def test_a_new_store_is_empty(make_store: MakeStore) -> None:
    store = await make_store()
    assert await store.accounts() == []
    assert await store.count() == 0
    assert await store.get(A) is None


async def test_a_pristine_account_is_not_written(make_store: MakeStore) -> None:
    store = await make_store()
    applied = await store.apply(A, touch_step(T0 + 5), now=T0)
    assert applied.account.update_time == T0 + 5 and not applied.stored
    assert await store.get(A) is None and await store.count() == 0


async def test_a_marked_account_is_written_though_it_never_held_a_credit(
    make_store: MakeStore,
) -> None:
    """A used client id and a share penalty must be seen by every process."""
    one, two = await make_store(), await make_store()
    applied = await one.apply(A, pay_step(T0 * 10**6, 5), now=T0)
    assert applied.outcome.reason is PaymentRefusal.CREDITS and applied.stored
    again = await two.apply(A, pay_step(T0 * 10**6, 5), now=T0)
    assert again.outcome.reason is PaymentRefusal.TIMESTAMP
    applied = await two.apply(B, share_step(ShareOutcome.BAD, 10), now=T0)
    assert applied.account.nonces_bad == 1 and applied.stored
    assert (await one.get(B)) == applied.account and await one.count() == 2


async def test_a_credited_account_is_written_and_seen_by_every_instance(
    make_store: MakeStore,
) -> None:
    one, two = await make_store(), await make_store()
    applied = await one.apply(A, share_step(ShareOutcome.GOOD, 30), now=T0)
    assert applied.stored
    expected = Account(A, 30, 30, 0, 1, 0, 0, 0, 0, T0)
    assert applied.account == expected
    assert await two.get(A) == expected
    paid = await two.apply(A, pay_step(T0 * 10**6, 12), now=T0 + 1)
    assert paid.outcome.ok and paid.outcome.credits == 18
    assert await one.get(A) == Account(A, 18, 30, 12, 1, 0, 0, 0, T0 * 10**6, T0)


async def test_accounts_survive_a_restart(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply(A, adjust_step(7), now=T0)
    await store.apply(B, credit_step(9), now=T0)
    await store.close()
    again = await make_store()
    assert {a.client: a.balance for a in await again.accounts()} == {A: 7, B: 9}
    assert await again.count() == 2


async def test_a_stored_account_is_rewritten_even_back_to_blank(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply(A, adjust_step(5), now=T0)
    applied = await store.apply(A, adjust_step(-5), now=T0)
    assert applied.stored
    assert await store.get(A) == Account(A, 0, 0, 0, 0, 0, 0, 0, 0, T0)


@pytest.mark.parametrize("value", [2**63 - 1, 2**63, U64_MAX - 1, U64_MAX])
async def test_u64_values_are_stored_exactly(make_store: MakeStore, value: int) -> None:
    store = await make_store()
    await store.apply(A, credit_step(value), now=T0)
    await store.apply(A, touch_step(value), now=T0)
    await store.apply(A, claim_step(value), now=T0)
    await store.close()
    got = await (await make_store()).get(A)
    assert got == Account(A, value, value, 0, 0, 0, 0, 0, value, value)


async def test_credits_saturate_at_u64_max(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply(A, credit_step(U64_MAX), now=T0)
    applied = await store.apply(A, credit_step(1), now=T0)
    assert applied.account.balance == U64_MAX
    assert (await store.get(A)) == applied.account


async def test_a_replayed_timestamp_changes_nothing(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply(A, adjust_step(100), now=T0)
    first = await store.apply(A, pay_step(5_000, 10), now=T0)
    again = await store.apply(A, pay_step(5_000, 10), now=T0)
    assert first.outcome.ok
    assert again.outcome.reason is PaymentRefusal.TIMESTAMP and again.outcome.credits == 0
    assert (await store.get(A)) == first.account


async def test_a_client_id_is_claimed_once_across_instances(make_store: MakeStore) -> None:
    one, two = await make_store(), await make_store()
    await one.apply(A, adjust_step(1), now=T0)
    assert (await one.apply(A, claim_step(10), now=T0)).outcome is True
    assert (await two.apply(A, claim_step(10), now=T0)).outcome is False
    assert (await two.apply(A, claim_step(9), now=T0)).outcome is False
    assert (await two.apply(A, claim_step(11), now=T0)).outcome is True


async def test_a_refund_gives_the_charge_back(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply(A, adjust_step(50), now=T0)
    await store.apply(A, pay_step(1, 20), now=T0)
    applied = await store.apply(A, refund_step(20), now=T0)
    assert (applied.account.balance, applied.account.credits_used) == (50, 0)


async def test_a_failing_step_writes_nothing(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply(A, adjust_step(50), now=T0)
    with pytest.raises(ValueError):
        await store.apply(A, pay_step(1, U64_MAX + 1), now=T0)
    assert (await store.get(A)) == Account(A, 50, 0, 0, 0, 0, 0, 0, 0, T0)


async def test_a_cheque_is_credited_once_across_instances(make_store: MakeStore) -> None:
    one, two = await make_store(), await make_store()
    c = cheque(1, credits=40)
    first = await one.apply_with_cheque(A, credit_step(40), RecordCheque(c), now=T0)
    assert first is not None and first.account.balance == 40
    assert await two.apply_with_cheque(A, credit_step(40), RecordCheque(c), now=T0) is None
    assert (await two.get(A)) == first.account
    assert await two.cheques.cheques_of(LOTTERY) == [c]


async def test_a_cheque_of_u64_credits_reads_back_whole(make_store: MakeStore) -> None:
    store = await make_store()
    big = cheque(1, credits=U64_MAX)
    assert await store.cheques.hold_pending(big)
    assert await store.cheques.pending_cheque(big.cheque_id) == big
    assert await store.cheques.cheques_of(LOTTERY) == [big]


async def test_a_refused_cheque_join_writes_no_account(make_store: MakeStore) -> None:
    store = await make_store()
    await store.cheques.hold_cheque(cheque(1, client=None))
    refused = await store.apply_with_cheque(B, credit_step(5), RecordCheque(cheque(1)), now=T0)
    assert refused is None
    assert await store.get(B) is None


async def test_a_held_cheque_is_credited_once_and_never_after_withholding(
    make_store: MakeStore,
) -> None:
    one, two = await make_store(), await make_store()
    held, caught = cheque(1, credits=30), cheque(2, credits=70)
    assert await one.cheques.hold_pending(held)
    assert not await two.cheques.hold_pending(held)
    assert await one.cheques.hold_pending(caught)
    assert {c.cheque_id for c in await two.cheques.pending_cheques()} == {
        held.cheque_id,
        caught.cheque_id,
    }
    assert await two.cheques.pending_cheque(held.cheque_id) == held
    credited = await one.apply_with_cheque(A, credit_step(30), CreditHeld(held.cheque_id), now=T0)
    assert credited is not None and credited.account.balance == 30
    again = await two.apply_with_cheque(A, credit_step(30), CreditHeld(held.cheque_id), now=T0)
    assert again is None
    await two.cheques.withhold_pending(caught.cheque_id, "fraud")
    late = await one.apply_with_cheque(A, credit_step(70), CreditHeld(caught.cheque_id), now=T0)
    assert late is None
    assert (await one.get(A)) == credited.account
    assert await one.cheques.pending_cheques() == []


async def test_peer_cheques_and_evidence(make_store: MakeStore) -> None:
    store = await make_store()
    peer, ours = cheque(1, client=None), cheque(2)
    assert await store.cheques.hold_cheque(peer)
    assert not await store.cheques.hold_cheque(peer)
    await store.apply_with_cheque(A, credit_step(50), RecordCheque(ours), now=T0)
    # Evidence marks a held peer cheque, never a credited one.
    await store.cheques.hold_evidence(peer, "overlap")
    await store.cheques.hold_evidence(ours, "overlap")
    await store.cheques.hold_evidence(cheque(3, client=None), "overlap")
    assert {c.cheque_id for c in await store.cheques.cheques_with_outcome("overlap")} == {
        peer.cheque_id,
        cheque(3).cheque_id,
    }
    await store.cheques.hold_evidence_outcome(peer.cheque_id, "proven")
    assert await store.cheques.cheques_with_outcome("proven") == [peer]


async def test_lotteries_open_and_close(make_store: MakeStore) -> None:
    store = await make_store()
    other = bytes([8]) * 32
    await store.apply_with_cheque(A, credit_step(1), RecordCheque(cheque(1)), now=T0)
    await store.apply_with_cheque(A, credit_step(1), RecordCheque(cheque(2, lottery=other)), now=T0)
    await store.cheques.hold_cheque(cheque(3, client=None, lottery=bytes([7]) * 32))
    assert sorted(await store.cheques.open_lotteries()) == sorted([(LOTTERY, 101), (other, 102)])
    await store.cheques.close_lottery(LOTTERY, "lost")
    assert await store.cheques.open_lotteries() == [(other, 102)]
    assert await store.cheques.outcomes() == {LOTTERY: "lost"}


async def test_forget_idle_uses_monerods_two_ages(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply(A, adjust_step(5), now=T0)  # credited: kept 180 days
    await store.apply(B, adjust_step(5), now=T0)
    await store.apply(B, adjust_step(-5), now=T0)  # stored but empty: kept 2 minutes
    assert await store.forget_idle(T0 + 120) == 0
    assert await store.forget_idle(T0 + 121) == 1
    assert [a.client for a in await store.accounts()] == [A]
    assert await store.forget_idle(T0 + 180 * 86400) == 0
    # A recent charge (its timestamp) counts as activity.
    await store.apply(A, pay_step((T0 + 100 * 86400) * 10**6, 1), now=T0)
    assert await store.forget_idle(T0 + 180 * 86400 + 1) == 0
    assert await store.forget_idle(T0 + 280 * 86400 + 1) == 1
    assert await store.count() == 0


async def test_a_closed_store_refuses_calls(make_store: MakeStore) -> None:
    store = await make_store()
    await store.close()
    await store.close()
    with pytest.raises(LedgerError):
        await store.get(A)
    with pytest.raises(LedgerError):
        await store.apply(A, adjust_step(1), now=T0)


def booked(outcome: ShareOutcome) -> Step[ShareOutcome]:
    return lambda acct: (apply_share(acct, outcome, 10), outcome)


async def test_a_nonce_counts_once_across_instances(make_store: MakeStore) -> None:
    one, two = await make_store(), await make_store()
    n = RecordNonce(b"job-1", 42, T0 + 600)
    fresh, dupe = booked(ShareOutcome.GOOD), booked(ShareOutcome.DUPE)
    first = await one.apply_with_nonce(A, n, fresh, dupe, now=T0)
    again = await two.apply_with_nonce(A, n, fresh, dupe, now=T0)
    assert (first.outcome, again.outcome) == (ShareOutcome.GOOD, ShareOutcome.DUPE)
    # The same nonce in another job, or from another client, is a different share.
    other_job = await two.apply_with_nonce(A, RecordNonce(b"job-2", 42, T0), fresh, dupe, now=T0)
    other_client = await one.apply_with_nonce(B, n, fresh, dupe, now=T0)
    assert other_job.outcome is other_client.outcome is ShareOutcome.GOOD
    acct = await one.get(A)
    assert acct is not None
    # +10, then -200 clamped at 0, then +10.
    assert (acct.balance, acct.nonces_good, acct.nonces_dupe) == (10, 2, 1)


async def test_expired_nonces_are_forgotten(make_store: MakeStore) -> None:
    store = await make_store()
    fresh, dupe = booked(ShareOutcome.GOOD), booked(ShareOutcome.DUPE)
    await store.apply_with_nonce(A, RecordNonce(b"old", 1, T0 + 10), fresh, dupe, now=T0)
    await store.apply_with_nonce(A, RecordNonce(b"new", 1, T0 + 100), fresh, dupe, now=T0)
    await store.apply_with_nonce(A, RecordNonce(b"max", 1, U64_MAX), fresh, dupe, now=T0)
    assert await store.forget_nonces(T0 + 10) == 0
    assert await store.forget_nonces(T0 + 11) == 1
    # Forgotten, the old nonce would count again (its job has expired by then).
    again = await store.apply_with_nonce(A, RecordNonce(b"old", 1, T0 + 10), fresh, dupe, now=T0)
    assert again.outcome is ShareOutcome.GOOD
    kept = await store.apply_with_nonce(A, RecordNonce(b"new", 1, T0 + 100), fresh, dupe, now=T0)
    assert kept.outcome is ShareOutcome.DUPE


def test_a_nonce_join_checks_its_fields() -> None:
    with pytest.raises(ValueError):
        RecordNonce(b"", 1, T0)
    with pytest.raises(ValueError):
        RecordNonce(b"x" * 65, 1, T0)
    with pytest.raises(ValueError):
        RecordNonce(b"job", U64_MAX + 1, T0)


async def test_one_holder_of_a_lease_at_a_time(make_store: MakeStore) -> None:
    one, two = await make_store(), await make_store()
    name = "claim:" + LOTTERY.hex()
    assert await one.cheques.take_lease(name, "gw-a", T0, 30)
    assert not await two.cheques.take_lease(name, "gw-b", T0 + 30, 30)
    assert await one.cheques.take_lease(name, "gw-a", T0 + 30, 30)  # renewed to T0 + 60
    assert not await two.cheques.take_lease(name, "gw-b", T0 + 60, 30)
    # A holder that went silent loses the lease when it runs out.
    assert await two.cheques.take_lease(name, "gw-b", T0 + 61, 30)
    assert not await one.cheques.take_lease(name, "gw-a", T0 + 61, 30)
    await one.cheques.release_lease(name, "gw-a")  # not its own: nothing happens
    assert not await one.cheques.take_lease(name, "gw-a", T0 + 62, 30)
    await two.cheques.release_lease(name, "gw-b")
    assert await one.cheques.take_lease(name, "gw-a", T0 + 62, U64_MAX)
    assert not await two.cheques.take_lease(name, "gw-b", U64_MAX - 1, 30)
