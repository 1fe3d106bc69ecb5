"""The payee's own decisions beyond ``rules.check_cheque``: price, claims, fraud filing.

Pure functions over plain values (no chain, no store), so each decision is tested on
its own and the gateway's ``ChequeDesk`` only gathers inputs and carries the verdicts
out. docs/lottery.md §15 is the spec of the payee side.

Pricing: a cheque's expected value is its ``value`` in wei (D1); the payee credits
``value // credit_price_wei`` credits, rounded **down**, and the remainder is **not**
carried. Carrying it would need one more durable number per client, written in the
same transaction, for amounts below one credit; instead the payee refuses cheques worth
less than one credit (``BELOW_MINIMUM``) and tells payers its price
(``lottery_info``), so an honest payer sends multiples of it and loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from rpcpay.ledger.account import U64_MAX
from rpcpay.lottery.cheque import MAX_PRIZE, StampedCheque, draw_seed, holds_ticket, winning_ticket
from rpcpay.lottery.rules import ChequeRefusal
from rpcpay.lottery.state import LotteryState

__all__ = [
    "BLOCKHASH_WINDOW",
    "DEFAULT_CREDIT_PRICE_WEI",
    "DEFAULT_MIN_STAMPER_DEPOSIT",
    "ClaimStep",
    "FraudStep",
    "LotteryOutcome",
    "credits_for",
    "describe_refusal",
    "fits_account",
    "next_claim_step",
    "next_fraud_step",
]

DEFAULT_CREDIT_PRICE_WEI = 10**9
"""1 gwei per credit: the seed's 100 gwei a minute per server buys 100 one-credit calls."""

DEFAULT_MIN_STAMPER_DEPOSIT = 33 * 10**15
"""0.033 ETH, about 100 USD at 3,000 USD/ETH (docs/lottery.md §8)."""

BLOCKHASH_WINDOW = 256
"""The EVM only sees the last 256 block hashes: a lottery must be drawn by ``R + 256``."""


def credits_for(value_wei: int, credit_price_wei: int) -> int:
    """Credits bought by a cheque worth ``value_wei``: rounded down, remainder dropped."""
    # A price is a positive number of wei.
    if credit_price_wei <= 0:
        raise ValueError("credit price must be at least 1 wei")
    return value_wei // credit_price_wei


def fits_account(balance: int, credits: int) -> bool:
    """Whether ``credits`` more still fit an account holding ``balance`` (a u64, as monerod
    keeps it): the ledger saturates rather than overflows, which would lose what the client
    paid for, so a cheque worth more is refused whole instead."""
    return 0 <= credits <= U64_MAX - balance


_REFUSAL_TEXT = {
    ChequeRefusal.WRONG_CHAIN: "the cheque is signed for another chain id",
    ChequeRefusal.WRONG_CONTRACT: "the cheque is signed for another settlement contract",
    ChequeRefusal.WRONG_RECIPIENT: "the cheque pays another recipient, not this gateway",
    ChequeRefusal.UNKNOWN_LOTTERY: "no such lottery at the confirmed block (too new, or none)",
    ChequeRefusal.LOTTERY_SETTLED: "the lottery is already drawn, claimed or refunded",
    ChequeRefusal.REVEAL_TOO_CLOSE: "the lottery reveals too soon: use a newer lottery",
    ChequeRefusal.EMPTY_RANGE: "the cheque is worth 0 wei",
    ChequeRefusal.RANGE_OUTSIDE: "the cheque's range is outside the lottery's ticket space",
    ChequeRefusal.BELOW_MINIMUM: "the cheque is worth less than one credit",
    ChequeRefusal.STAMPER_SLASHED: "the lottery's stamper is unregistered or was slashed",
    ChequeRefusal.STAMPER_DEPOSIT_LOW: "the stamper's deposit is below this gateway's minimum",
    ChequeRefusal.STAMPER_EXPOSURE: "the stamper's burnt share of its deposit would not cover "
    "the prizes this gateway holds cheques in with it: use another stamper, a smaller prize, "
    "or wait for a lottery to settle",
    ChequeRefusal.BAD_ACCOUNT_SIGNATURE: "account_sig is not the payer's signature of this "
    "cheque for this client",
    ChequeRefusal.BAD_PAYER_SIGNATURE: "the payer's signature is forged or for another cheque",
    ChequeRefusal.BAD_STAMP: "the stamp is forged or not the lottery's stamper's",
    ChequeRefusal.DUPLICATE: "this cheque was credited already (replay)",
    ChequeRefusal.OVERLAP: "the cheque overlaps another stamped cheque: the stamper cheated",
    ChequeRefusal.TOO_LARGE: "the cheque buys more credits than the client's account can hold",
}


def describe_refusal(refusal: ChequeRefusal, detail: str = "") -> str:
    """The error message a payer gets: the refusal's code first, then what it means."""
    text = f"{refusal.value}: {_REFUSAL_TEXT[refusal]}"
    return f"{text} ({detail}); nothing was credited" if detail else f"{text}; nothing credited"


class LotteryOutcome(Enum):
    """What became of a lottery for this payee; recorded once, then the lottery is closed."""

    CLAIMED = "claimed"  # our cheque won and was paid (or compensated), by us or anyone
    LOST = "lost"  # the winning ticket is in none of our cheques
    VOID = "void"  # nobody drew within 256 blocks of the reveal, or it was refunded


@dataclass(frozen=True, slots=True)
class ClaimStep:
    """What to do next about one lottery: ``wait``, ``claim`` ``cheque``, or ``close`` it."""

    action: str  # "wait" | "claim" | "close"
    cheque: StampedCheque | None = None
    outcome: LotteryOutcome | None = None


def next_claim_step(
    lottery: LotteryState | None,
    reveal_block: int,
    head: int,
    reveal_hash: bytes | None,
    ours: Iterable[StampedCheque],
    our_ids: dict[bytes, StampedCheque],
) -> ClaimStep:
    """Decide the claim of one lottery we hold cheques in, from the newest chain state.

    ``reveal_hash`` is ``blockhash(R)`` when the caller could read it; ``our_ids`` maps
    our cheques' hashes to them (to recognise a lottery already paid to us).
    """
    # Nothing to claim before the reveal block is mined. No confirmations are awaited: once
    # R is mined the winning ticket is public, and a colluding payer and stamper can stamp
    # it to themselves and claim at R + 1; the contract computes the winner from whatever
    # R's hash is when the claim runs, so claiming early costs nothing if R is reorged.
    if head <= reveal_block:
        return ClaimStep("wait")
    # A lottery that vanished (reorged away before confirmation) holds nothing for us.
    if lottery is None:
        return ClaimStep("close", outcome=LotteryOutcome.VOID)
    # Paid to one of our cheques: done, whoever sent the claim.
    if lottery.paid_cheque is not None and lottery.paid_cheque in our_ids:
        return ClaimStep("close", outcome=LotteryOutcome.CLAIMED)
    # Refunded to the payer: the window is over.
    if lottery.refunded:
        return ClaimStep("close", outcome=LotteryOutcome.VOID)
    if lottery.seed is not None:
        seed = lottery.seed
    # Undrawn, and a claim sent now would be mined after R + 256: nobody can win any more.
    elif head >= reveal_block + BLOCKHASH_WINDOW or reveal_hash is None:
        return ClaimStep("close", outcome=LotteryOutcome.VOID)
    else:
        seed = draw_seed(reveal_hash, lottery.id)
    # A prize outside the contract's range cannot be drawn.
    if not 0 < lottery.prize < MAX_PRIZE:
        return ClaimStep("close", outcome=LotteryOutcome.VOID)
    ticket = winning_ticket(seed, lottery.prize)
    for sc in ours:
        # Our cheque holds the winning ticket: claim it (paid elsewhere: compensation, D6).
        if holds_ticket(sc.cheque, ticket):
            return ClaimStep("claim", cheque=sc)
    return ClaimStep("close", outcome=LotteryOutcome.LOST)


@dataclass(frozen=True, slots=True)
class FraudStep:
    """How to file a fraud proof: ``skip``, ``prove`` now, or ``commit`` first (D5)."""

    action: str  # "skip" | "prove" | "commit"


def next_fraud_step(
    us: bytes, a: StampedCheque, b: StampedCheque, stamper_slashed: bool, committed: bool
) -> FraudStep:
    """A recipient of either cheque proves at once; anyone else commits first, then proves."""
    # A stamper already slashed cannot be slashed again: the proof would only revert.
    if stamper_slashed:
        return FraudStep("skip")
    # A recipient is rewarded without a commitment (the cheque names it).
    if us in (a.cheque.recipient, b.cheque.recipient) or committed:
        return FraudStep("prove")
    return FraudStep("commit")
