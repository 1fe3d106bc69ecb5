"""What the settlement contract stores about a lottery and a stamper, as plain values.

The chain layer reads these (at a block of the caller's choosing) and the payee
rules judge cheques against them; neither needs the other's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LotteryState", "StamperState"]


@dataclass(frozen=True, slots=True)
class LotteryState:
    """A lottery's record. The salt is not stored on chain: the id already commits to it."""

    id: bytes
    payer: bytes
    stamper: bytes
    prize: int
    reveal_block: int
    seed: bytes | None  # None until drawn
    paid_cheque: bytes | None  # struct hash of the cheque that won; None until claimed
    refunded: bool

    @property
    def drawn(self) -> bool:
        return self.seed is not None

    @property
    def paid(self) -> bool:
        return self.paid_cheque is not None

    @property
    def settled(self) -> bool:
        """Drawn, paid or refunded: its outcome is known, so new cheques are worthless."""
        return self.drawn or self.paid or self.refunded


@dataclass(frozen=True, slots=True)
class StamperState:
    """A stamper's registry entry (all zero for an address that never deposited)."""

    deposit: int
    exit_block: int  # 0 while active; else the first block it may withdraw at
    slashed: bool

    @property
    def active(self) -> bool:
        """Can be named by new lotteries: deposited, not exiting, not slashed."""
        return self.deposit > 0 and self.exit_block == 0 and not self.slashed
