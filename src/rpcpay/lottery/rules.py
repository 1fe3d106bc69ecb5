"""What a payee checks before it credits a cheque, and what makes a fraud proof.

``check_cheque`` is the payee's whole decision as one pure function over what it
read from the chain. The chain state it is given must be read at a *confirmed*
block (``head - confirmations``): a deposit or a lottery that a reorg can still
remove is not trusted. The reveal margin, on the other hand, is measured from the
newest head, the most pessimistic view of how close the reveal is.

Checks run cheapest first; the two signature recoveries (about 45 µs each) come
last, so junk costs a payee almost nothing. Every refusal is a ``ChequeRefusal``;
nothing here raises on bad input from the network.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from rpcpay.lottery.cheque import Cheque, Domain, StampedCheque, in_ticket_space, ranges_overlap
from rpcpay.lottery.eip712 import cheque_hash, digests, recover_credit, recover_stamper
from rpcpay.lottery.eth import recover_signer
from rpcpay.lottery.state import LotteryState, StamperState

__all__ = [
    "BPS",
    "DEFAULT_BURNT_BPS",
    "DEFAULT_CONFIRMATIONS",
    "DEFAULT_REVEAL_MARGIN",
    "Accepted",
    "ChequeRefusal",
    "PayeePolicy",
    "Refused",
    "check_account_signature",
    "check_cheque",
    "exposure_of",
    "find_fraud_partner",
    "find_overlap",
    "is_fraud_pair",
]

DEFAULT_REVEAL_MARGIN = 20
"""Blocks between the newest head and the reveal block below which a cheque is refused."""

DEFAULT_CONFIRMATIONS = 12
"""How deep the block is at which a payee reads lotteries and stamper deposits."""

BPS = 10_000
DEFAULT_BURNT_BPS = 4_000
"""The share of a slashed deposit the default contract burns (100% - 10% - 50%). A payee
reads the real share from its contract's parameters; this default is for pure callers."""


class ChequeRefusal(Enum):
    """Why a payee refused a cheque. No refusal grants any credit."""

    WRONG_CHAIN = "wrong_chain"  # the cheque's domain names another chain id
    WRONG_CONTRACT = "wrong_contract"  # ... or another settlement contract
    WRONG_RECIPIENT = "wrong_recipient"  # the cheque pays someone else
    UNKNOWN_LOTTERY = "unknown_lottery"  # no such lottery at the confirmed block
    LOTTERY_SETTLED = "lottery_settled"  # already drawn, claimed or refunded
    REVEAL_TOO_CLOSE = "reveal_too_close"  # the outcome is (nearly) known
    EMPTY_RANGE = "empty_range"  # value 0: worth nothing, and would not be a ticket
    RANGE_OUTSIDE = "range_outside"  # not inside the lottery's ticket space [0, prize)
    BELOW_MINIMUM = "below_minimum"  # worth less than the payee bothers to credit
    STAMPER_SLASHED = "stamper_slashed"  # the stamper was caught cheating
    STAMPER_DEPOSIT_LOW = "stamper_deposit_low"  # below --min-stamper-deposit
    STAMPER_EXPOSURE = "stamper_exposure"  # its burnt share would not cover our open prizes
    BAD_PAYER_SIGNATURE = "bad_payer_signature"  # forged, or signed for another domain
    BAD_STAMP = "bad_stamp"  # not stamped by the lottery's stamper
    BAD_ACCOUNT_SIGNATURE = "bad_account_signature"  # the payer did not name this client
    DUPLICATE = "duplicate"  # the payee already holds this very cheque
    OVERLAP = "overlap"  # overlaps a cheque the payee holds: fraud (file a proof)
    TOO_LARGE = "too_large"  # more credits than the client's account can hold


@dataclass(frozen=True, slots=True)
class PayeePolicy:
    """The payee's own settings: who it is, where it settles, what it requires."""

    recipient: bytes
    domain: Domain
    min_stamper_deposit: int
    reveal_margin: int = DEFAULT_REVEAL_MARGIN
    min_value: int = 1
    burnt_bps: int = DEFAULT_BURNT_BPS  # the contract's: BPS - whistleblower - compensation


@dataclass(frozen=True, slots=True)
class Accepted:
    """The cheque is good: credit ``value`` wei of expected value, once (key: ``cheque_id``)."""

    value: int
    cheque_id: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    reason: ChequeRefusal


def check_cheque(
    domain: Domain,
    sc: StampedCheque,
    policy: PayeePolicy,
    lottery: LotteryState | None,
    stamper: StamperState | None,
    head: int,
    held: Iterable[Cheque] = (),
    exposed: int = 0,
) -> Accepted | Refused:
    """Decide whether ``sc`` (which arrived with ``domain``) is worth its value to this payee.

    ``lottery`` and ``stamper`` are read at the confirmed block (``None``: not
    there); ``head`` is the newest block number; ``held`` the cheques of the same
    lottery the payee already holds; ``exposed`` the prizes of the stamper's *other*
    open lotteries this payee holds cheques in (``exposure_of``). An ``OVERLAP``
    refusal means the payee now has a fraud proof against the stamper
    (``is_fraud_pair``).
    """
    c = sc.cheque
    # The cheque is for the chain and contract this payee settles on.
    if domain.chain_id != policy.domain.chain_id:
        return Refused(ChequeRefusal.WRONG_CHAIN)
    if domain.contract != policy.domain.contract:
        return Refused(ChequeRefusal.WRONG_CONTRACT)
    # It pays this payee.
    if c.recipient != policy.recipient:
        return Refused(ChequeRefusal.WRONG_RECIPIENT)
    # Its lottery exists at the confirmed block.
    if lottery is None or lottery.id != c.lottery:
        return Refused(ChequeRefusal.UNKNOWN_LOTTERY)
    # The lottery is still open: not drawn, paid or refunded.
    if lottery.settled:
        return Refused(ChequeRefusal.LOTTERY_SETTLED)
    # The reveal is far enough ahead that nobody can know the outcome yet.
    if head + policy.reveal_margin >= lottery.reveal_block:
        return Refused(ChequeRefusal.REVEAL_TOO_CLOSE)
    # The range is non-empty and inside the ticket space.
    if c.value == 0:
        return Refused(ChequeRefusal.EMPTY_RANGE)
    if not in_ticket_space(c, lottery.prize):
        return Refused(ChequeRefusal.RANGE_OUTSIDE)
    # It is worth crediting.
    if c.value < policy.min_value:
        return Refused(ChequeRefusal.BELOW_MINIMUM)
    # The stamper is registered, not slashed, and its deposit meets this payee's minimum.
    if stamper is None or stamper.slashed:
        return Refused(ChequeRefusal.STAMPER_SLASHED)
    if stamper.deposit < policy.min_stamper_deposit or stamper.deposit == 0:
        return Refused(ChequeRefusal.STAMPER_DEPOSIT_LOW)
    # Stealing every prize we could win from this stamper costs it more than they are worth:
    # once R is mined a colluding stamper can stamp the winning ticket to its payer, who
    # claims first; its loss is only the burnt share (docs/lottery.md §9, T9).
    if stamper.deposit * policy.burnt_bps < (exposed + lottery.prize) * BPS:
        return Refused(ChequeRefusal.STAMPER_EXPOSURE)
    h, payer_digest, stamp_digest = digests(domain, c)
    # The lottery's payer signed it.
    if recover_signer(payer_digest, sc.payer_sig) != lottery.payer:
        return Refused(ChequeRefusal.BAD_PAYER_SIGNATURE)
    # The lottery's stamper stamped it.
    if recover_signer(stamp_digest, sc.stamp_sig) != lottery.stamper:
        return Refused(ChequeRefusal.BAD_STAMP)
    # It is new to this payee and overlaps nothing the payee holds.
    match = find_overlap(c, held)
    if match is not None:
        same = cheque_hash(match) == h
        return Refused(ChequeRefusal.DUPLICATE if same else ChequeRefusal.OVERLAP)
    return Accepted(value=c.value, cheque_id=h)


def exposure_of(stamper: bytes, lottery_id: bytes, open_lotteries: Iterable[LotteryState]) -> int:
    """The prizes a colluding ``stamper`` could steal from us besides ``lottery_id``'s: the
    sum over our open lotteries (where we hold credited cheques) that it stamps."""
    return sum(
        lot.prize for lot in open_lotteries if lot.stamper == stamper and lot.id != lottery_id
    )


def check_account_signature(
    domain: Domain, sc: StampedCheque, lottery: LotteryState, account: bytes, account_sig: bytes
) -> Refused | None:
    """``None`` when the lottery's payer signed that ``sc`` pays for ``account``.

    The cheque names the recipient but not the client: without this signature the
    stamper (which sees every stamped cheque first) or anyone on the path could redeem
    it to an account of their own. The signature is the payer's ``Credit`` (eip712).
    """
    # The lottery's payer signed Credit(cheque, account) for exactly this client.
    if recover_credit(domain, sc.cheque, account, account_sig) != lottery.payer:
        return Refused(ChequeRefusal.BAD_ACCOUNT_SIGNATURE)
    return None


def find_overlap(cheque: Cheque, held: Iterable[Cheque]) -> Cheque | None:
    """The first held cheque of the same lottery whose range overlaps ``cheque``'s, if any."""
    for other in held:
        if other.lottery == cheque.lottery and ranges_overlap(cheque, other):
            return other
    return None


def find_fraud_partner(
    domain: Domain, lottery: LotteryState, sc: StampedCheque, held: Iterable[StampedCheque]
) -> StampedCheque | None:
    """The first held cheque that makes a fraud pair with ``sc`` (``is_fraud_pair``), if any.

    The range test runs first: the two signature recoveries only for cheques that overlap.
    """
    for other in held:
        # Only an overlapping, different cheque can be the other half.
        if other.cheque == sc.cheque or not ranges_overlap(other.cheque, sc.cheque):
            continue
        if is_fraud_pair(domain, lottery, other, sc):
            return other
    return None


def is_fraud_pair(
    domain: Domain, lottery: LotteryState, a: StampedCheque, b: StampedCheque
) -> bool:
    """True when ``a`` and ``b`` prove that the lottery's stamper cheated.

    The contract's ``prove_fraud`` accepts exactly these pairs: two different
    cheques of this lottery, both ranges inside its ticket space and overlapping,
    both stamped by its stamper. The payer's signatures do not matter: the
    stamper's rule is never to stamp an overlap, whoever asked.
    """
    x, y = a.cheque, b.cheque
    # Same lottery, and it is this one.
    if x.lottery != lottery.id or y.lottery != lottery.id:
        return False
    # Two different cheques.
    if cheque_hash(x) == cheque_hash(y):
        return False
    # Both ranges in the ticket space, and they share a ticket.
    if not (in_ticket_space(x, lottery.prize) and in_ticket_space(y, lottery.prize)):
        return False
    if not ranges_overlap(x, y):
        return False
    # Both stamped by the lottery's stamper.
    return (
        recover_stamper(domain, x, a.stamp_sig) == lottery.stamper
        and recover_stamper(domain, y, b.stamp_sig) == lottery.stamper
    )
