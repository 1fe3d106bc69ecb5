"""The stamper's rules: which requests it stamps, its fee, and what counts as an overlap.

A stamper certifies that the ranges of one lottery never overlap (docs/lottery.md
§3.4); one overlap costs it its whole deposit. Everything here is pure: the chain
state is read by the service, and the durable record of what was stamped is the
store's (``stamper_store``), which calls ``judge_overlaps`` inside its transaction.

The fee (spec D8, §13): with every cheque of value ``v`` at ``[s, s + v)`` the payer
signs a second cheque of the same lottery, to the stamper, for the tickets right
after it: ``[s + v, s + v + fee(v))`` with ``fee(v) = ceil(v * fee_bps / 10_000)``.
Everything in the fee cheque follows from the payment cheque, so the request carries
only the fee cheque's signature, and the payer's bookkeeping is one cursor per
lottery that moves by ``v + fee(v)`` per stamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from rpcpay.lottery.cheque import Cheque, Domain, in_ticket_space
from rpcpay.lottery.eip712 import cheque_hash, recover_payer
from rpcpay.lottery.state import LotteryState, StamperState

__all__ = [
    "BPS",
    "DEFAULT_FEE_BPS",
    "DEFAULT_STAMPER_CONFIRMATIONS",
    "DEFAULT_STAMPER_REVEAL_MARGIN",
    "Conflict",
    "Fresh",
    "Repeat",
    "StampPlan",
    "StampRecord",
    "StampRefusal",
    "StampRefused",
    "StampRequest",
    "StamperPolicy",
    "check_request",
    "fee_cheque",
    "fee_for",
    "judge_overlaps",
]

BPS = 10_000
DEFAULT_FEE_BPS = 100
"""1%: the seed's figure for a stamper's fee."""
DEFAULT_STAMPER_REVEAL_MARGIN = 25
"""The payee's 20 blocks, and 5 more (a minute of 12-second blocks) for the cheque to
reach the payee: a cheque stamped at the last moment is still one payees accept."""
DEFAULT_STAMPER_CONFIRMATIONS = 12
"""A lottery is stamped only once it is this deep: a reorg cannot take it back."""


class StampRefusal(Enum):
    """Why the stamper refused a request. A refused request leaves no trace in the store."""

    MALFORMED = "malformed"  # the request does not parse
    STAMPER_INACTIVE = "stamper_inactive"  # this stamper has no deposit or was slashed
    UNKNOWN_LOTTERY = "unknown_lottery"  # no such lottery at the confirmed block
    WRONG_STAMPER = "wrong_stamper"  # the lottery names another stamper
    LOTTERY_SETTLED = "lottery_settled"  # already drawn, claimed or refunded
    REVEAL_TOO_CLOSE = "reveal_too_close"  # the outcome is (nearly) known
    EMPTY_RANGE = "empty_range"  # value 0
    RANGE_OUTSIDE = "range_outside"  # the cheque, with its fee, leaves [0, prize)
    BAD_PAYER_SIGNATURE = "bad_payer_signature"  # not signed by the lottery's payer
    BAD_FEE_SIGNATURE = "bad_fee_signature"  # the fee cheque is not the payer's, or wrong
    OVERLAP = "overlap"  # shares tickets with a range stamped before
    OVERSPEND = "overspend"  # would stamp more than the prize (never with disjoint ranges)


@dataclass(frozen=True, slots=True)
class StampRefused:
    """A refusal with a message a person can act on."""

    reason: StampRefusal
    message: str


@dataclass(frozen=True, slots=True)
class StamperPolicy:
    """Who the stamper is, where it stamps, and its terms."""

    stamper: bytes
    domain: Domain
    fee_bps: int = DEFAULT_FEE_BPS
    reveal_margin: int = DEFAULT_STAMPER_REVEAL_MARGIN

    def __post_init__(self) -> None:
        # The fee is a share of the value, below the whole of it.
        if not 0 <= self.fee_bps < BPS:
            raise ValueError("fee_bps must be in [0, 10000)")
        # A negative margin would stamp after the reveal.
        if self.reveal_margin < 0:
            raise ValueError("reveal_margin must be >= 0")


@dataclass(frozen=True, slots=True)
class StampRequest:
    """A payer's request: its signed cheque, and its signature on the fee cheque.

    ``fee_sig`` is ``None`` only when the fee is 0 (``fee_bps == 0``).
    """

    cheque: Cheque
    payer_sig: bytes
    fee_sig: bytes | None


@dataclass(frozen=True, slots=True)
class StampRecord:
    """One stamped cheque as the stamper keeps it: enough to prove what it stamped, and,
    for its own fee cheques, to claim them."""

    cheque: Cheque
    payer_sig: bytes
    stamp_sig: bytes
    fee: bool  # True: the stamper's own fee cheque
    stamped_at: int  # unix seconds

    @property
    def cheque_id(self) -> bytes:
        return cheque_hash(self.cheque)


@dataclass(frozen=True, slots=True)
class StampPlan:
    """What an accepted request asks to stamp: the cheque, then its fee cheque (if any),
    adjacent, each with the payer's signature."""

    prize: int
    cheques: tuple[tuple[Cheque, bytes], ...]

    @property
    def next_start(self) -> int:
        """Where the payer's next range in this lottery starts."""
        return self.cheques[-1][0].end


def fee_for(value: int, fee_bps: int) -> int:
    """``ceil(value * fee_bps / 10_000)``: rounding up keeps tiny cheques from paying nothing."""
    return -(-value * fee_bps // BPS)


def fee_cheque(policy: StamperPolicy, cheque: Cheque) -> Cheque | None:
    """The fee cheque that goes with ``cheque`` (``None`` when the fee is 0)."""
    fee = fee_for(cheque.value, policy.fee_bps)
    if fee == 0:
        return None
    return Cheque(lottery=cheque.lottery, recipient=policy.stamper, start=cheque.end, value=fee)


def check_request(
    policy: StamperPolicy,
    request: StampRequest,
    lottery: LotteryState | None,
    own: StamperState,
    head: int,
) -> StampPlan | StampRefused:
    """Everything but the overlap: is this a request the stamper may stamp?

    ``lottery`` is read at the confirmed block (``head - confirmations``; ``None``:
    not there), ``own`` is this stamper's registry entry at the newest block, and the
    reveal margin is measured from the newest ``head``. Cheap checks first; the two
    signature recoveries last.
    """
    c = request.cheque
    # This stamper can still be held to its stamps: it has a deposit and is not slashed.
    if own.slashed or own.deposit == 0:
        return StampRefused(
            StampRefusal.STAMPER_INACTIVE, "this stamper has no deposit or was slashed"
        )
    # The lottery exists at the confirmed block.
    if lottery is None or lottery.id != c.lottery:
        return StampRefused(
            StampRefusal.UNKNOWN_LOTTERY,
            "no such lottery at the confirmed block (too young, or never created)",
        )
    # It names this stamper.
    if lottery.stamper != policy.stamper:
        return StampRefused(StampRefusal.WRONG_STAMPER, "the lottery names another stamper")
    # It is still open.
    if lottery.settled:
        return StampRefused(StampRefusal.LOTTERY_SETTLED, "the lottery is drawn or settled")
    # Its reveal is far enough ahead that the cheque is still worth something to a payee.
    if head + policy.reveal_margin >= lottery.reveal_block:
        return StampRefused(
            StampRefusal.REVEAL_TOO_CLOSE,
            f"the lottery reveals at block {lottery.reveal_block}; this stamper stamps only "
            f"until block {lottery.reveal_block - policy.reveal_margin - 1}",
        )
    # The range is non-empty, and it and its fee lie in the ticket space.
    if c.value == 0:
        return StampRefused(StampRefusal.EMPTY_RANGE, "a cheque of value 0 is worth nothing")
    fee = fee_cheque(policy, c)
    last = fee or c
    if not (in_ticket_space(c, lottery.prize) and in_ticket_space(last, lottery.prize)):
        return StampRefused(
            StampRefusal.RANGE_OUTSIDE,
            f"[{c.start}, {last.end}) (the cheque and its fee) is not inside the lottery's "
            f"tickets [0, {lottery.prize})",
        )
    # The lottery's payer signed the cheque, in this stamper's domain.
    if recover_payer(policy.domain, c, request.payer_sig) != lottery.payer:
        return StampRefused(
            StampRefusal.BAD_PAYER_SIGNATURE,
            "the cheque is not signed by the lottery's payer (for this chain and contract)",
        )
    cheques: list[tuple[Cheque, bytes]] = [(c, request.payer_sig)]
    # The payer signed the fee cheque too, exactly as fee_cheque() makes it.
    if fee is not None:
        if request.fee_sig is None or recover_payer(policy.domain, fee, request.fee_sig) != (
            lottery.payer
        ):
            return StampRefused(
                StampRefusal.BAD_FEE_SIGNATURE,
                f"the fee cheque must be signed by the payer: Cheque(lottery, recipient="
                f"0x{policy.stamper.hex()}, start={fee.start}, value={fee.value})",
            )
        cheques.append((fee, request.fee_sig))
    return StampPlan(prize=lottery.prize, cheques=tuple(cheques))


@dataclass(frozen=True, slots=True)
class Fresh:
    """Nothing stamped before overlaps the new cheques: stamp them."""


@dataclass(frozen=True, slots=True)
class Repeat:
    """Every new cheque is one already stamped (a retried request): hand back the stamps."""

    records: tuple[StampRecord, ...]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A new cheque shares tickets with ``existing``, a different cheque stamped before."""

    existing: StampRecord


def judge_overlaps(
    new: Sequence[Cheque], found: Sequence[Sequence[StampRecord]]
) -> Fresh | Repeat | Conflict:
    """Decide a request against what was stamped before; ``found[i]`` are the stored
    records of the lottery whose ranges overlap ``new[i]``.

    Stamping the very same cheque twice is not an overlap: two stamps of one cheque are
    one cheque (the contract and the payees key cheques by their struct hash, and a
    fraud proof needs two different cheques). So a retried request gets its stamps
    back, and a payer that lost the answer to a timeout loses nothing. Anything else
    that shares a ticket is refused.
    """
    repeats: list[StampRecord] = []
    for cheque, overlapping in zip(new, found, strict=True):
        same = [r for r in overlapping if r.cheque == cheque]
        others = [r for r in overlapping if r.cheque != cheque]
        # A different cheque stamped before shares a ticket with this one.
        if others:
            return Conflict(others[0])
        repeats.extend(same)
    # All or nothing: a request is a repeat only if every cheque in it was stamped.
    if len(repeats) == len(new):
        return Repeat(tuple(repeats))
    if repeats:
        return Conflict(repeats[0])
    return Fresh()
