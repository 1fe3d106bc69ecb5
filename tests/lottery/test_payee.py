"""The payee's pure decisions: credit arithmetic, refusal messages, claim and fraud steps."""

from __future__ import annotations

import pytest

from rpcpay.lottery.cheque import draw_seed, winning_ticket
from rpcpay.lottery.eip712 import cheque_hash
from rpcpay.lottery.payee import (
    BLOCKHASH_WINDOW,
    LotteryOutcome,
    credits_for,
    describe_refusal,
    next_claim_step,
    next_fraud_step,
)
from rpcpay.lottery.rules import ChequeRefusal
from tests.lottery.conftest import Cast

R = 1000
HASH = b"\x5a" * 32


def test_credits_round_down_and_drop_the_remainder() -> None:
    assert credits_for(10**9, 10**9) == 1
    assert credits_for(2 * 10**9 - 1, 10**9) == 1
    assert credits_for(10**9 - 1, 10**9) == 0
    assert credits_for(7, 1) == 7
    with pytest.raises(ValueError):
        credits_for(10, 0)


def test_every_refusal_has_a_message_naming_its_code() -> None:
    for refusal in ChequeRefusal:
        text = describe_refusal(refusal, "x")
        assert text.startswith(refusal.value + ": ") and "nothing was credited" in text


def test_claim_as_soon_as_the_reveal_block_is_mined(cast: Cast) -> None:
    # Waiting for confirmations would let a colluding payer and stamper, who learn the
    # winning ticket at R too, stamp it to themselves and claim first.
    ours = [cast.stamped(0, cast.terms.prize)]
    for head in (R - 1, R):
        assert next_claim_step(cast.lottery(), R, head, HASH, ours, {}).action == "wait"
    assert next_claim_step(cast.lottery(), R, R + 1, HASH, ours, {}).action == "claim"


def test_undrawn_lottery_is_void_once_a_claim_would_land_after_r_plus_256(cast: Cast) -> None:
    ours = [cast.stamped(0, cast.terms.prize)]
    # a claim sent at head is mined at head + 1 at the earliest; the EVM sees R's hash
    # up to R + 256
    last = next_claim_step(cast.lottery(), R, R + 255, HASH, ours, {})
    assert last.action == "claim"
    late = next_claim_step(cast.lottery(), R, R + 256, HASH, ours, {})
    assert late.action == "close" and late.outcome is LotteryOutcome.VOID


def test_claim_exactly_the_cheque_holding_the_winning_ticket(cast: Cast) -> None:
    prize = cast.terms.prize
    ticket = winning_ticket(draw_seed(HASH, cast.terms.id), prize)
    holding = cast.stamped(ticket, 1)
    below = cast.stamped(0, ticket) if ticket > 0 else cast.stamped(ticket + 1, 1)
    step = next_claim_step(cast.lottery(), R, R + 1, HASH, [below, holding], {})
    assert step.action == "claim" and step.cheque == holding
    lost = next_claim_step(cast.lottery(), R, R + 1, HASH, [below], {})
    assert lost.action == "close" and lost.outcome is LotteryOutcome.LOST
    # A drawn lottery's stored seed wins over the block hash.
    seed = b"\x01" * 32
    drawn = cast.lottery(seed=seed)
    t2 = winning_ticket(seed, prize)
    step = next_claim_step(drawn, R, R + 1, None, [cast.stamped(t2, 1)], {})
    assert step.action == "claim"


def test_claim_closes_paid_refunded_and_expired_lotteries(cast: Cast) -> None:
    sc = cast.stamped(0, cast.terms.prize)
    h = cheque_hash(sc.cheque)
    paid = next_claim_step(cast.lottery(paid_cheque=h, seed=HASH), R, R + 5, None, [sc], {h: sc})
    assert paid.outcome is LotteryOutcome.CLAIMED
    # Paid to another cheque: ours still holds the ticket, so claim (compensation, D6).
    other = next_claim_step(
        cast.lottery(paid_cheque=b"\x01" * 32, seed=HASH), R, R + 5, None, [sc], {h: sc}
    )
    assert other.action == "claim"
    refunded = next_claim_step(cast.lottery(refunded=True), R, R + 5, HASH, [sc], {})
    assert refunded.outcome is LotteryOutcome.VOID
    late = next_claim_step(cast.lottery(), R, R + BLOCKHASH_WINDOW + 1, HASH, [sc], {})
    assert late.outcome is LotteryOutcome.VOID
    gone = next_claim_step(None, R, R + 5, HASH, [sc], {})
    assert gone.outcome is LotteryOutcome.VOID


def test_fraud_step_recipient_proves_outsider_commits_first(cast: Cast) -> None:
    other = b"\x77" * 20
    a = cast.stamped(0, 10)
    b = cast.stamped(5, 10, recipient=other)
    assert next_fraud_step(cast.payee.address, a, b, False, False).action == "prove"
    assert next_fraud_step(other, a, b, False, False).action == "prove"
    assert next_fraud_step(b"\x99" * 20, a, b, False, False).action == "commit"
    assert next_fraud_step(b"\x99" * 20, a, b, False, True).action == "prove"
    assert next_fraud_step(cast.payee.address, a, b, True, False).action == "skip"


def test_fits_account_refuses_what_a_u64_balance_cannot_hold() -> None:
    from rpcpay.lottery.payee import fits_account

    top = 2**64 - 1
    assert fits_account(0, top) and fits_account(top - 5, 5) and fits_account(top, 0)
    assert not fits_account(0, top + 1) and not fits_account(top - 5, 6)
