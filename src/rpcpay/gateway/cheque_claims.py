"""Automatic claims (docs/lottery.md §17): after each reveal, claim what we won.

Every ``claim_interval_s`` the loop files unproven fraud evidence again, then walks our
open lotteries from the database (claims survive a restart) and lets
``payee.next_claim_step`` decide: wait, claim one of our cheques, or close the lottery
(claimed, lost, void). A claim the contract refuses is retried on the next round; after
``MAX_CLAIM_REVERTS`` refusals the lottery is closed ``lost``. A closed lottery's cheques
leave memory (they stay in the database with their outcome).

One claimer across every process on the database: before it reads a lottery's outcome a
process takes the store's lease ``claim:<lottery>`` (``CLAIM_LEASE_S``); a process that
cannot skips the lottery. The lease is kept (not released) after a claim was sent, so no
other process re-reads the lottery before the claim is mined; it runs out, and a process
that died holding it leaves the lottery to the others after that long. Each round also
schedules held cheques no process settled (``resume``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from rpcpay.errors import ChainError, LedgerError, TransactionReverted
from rpcpay.gateway.cheque_core import PayeeCore, Receipts
from rpcpay.lottery.cheque import StampedCheque
from rpcpay.lottery.payee import BLOCKHASH_WINDOW, LotteryOutcome, next_claim_step

if TYPE_CHECKING:
    from rpcpay.chain.settlement import Receipt

__all__ = ["MAX_CLAIM_REVERTS", "Claimer"]

log = logging.getLogger("rpcpay.lottery.payee")

MAX_CLAIM_REVERTS = 3
"""Claims the contract refused before we give a lottery up (the reason is logged)."""
CLAIM_LEASE_S = 300
"""How long a process owns a lottery's claim: a claim is sent and mined well within it."""


class Claimer:
    """Claims our wins and closes settled lotteries (see the module docstring)."""

    def __init__(
        self, core: PayeeCore, before_round: Callable[[], Awaitable[None]], holder: str = "rpcpay"
    ) -> None:
        self.core = core
        self.holder = holder  # this process's name on the store's leases
        self.before_round = before_round  # e.g. file unproven evidence again
        self.claims: Receipts[Receipt] = Receipts()
        self.open_count = 0  # our open lotteries at the last round (any process's)
        self._reverts: dict[bytes, int] = {}

    async def loop(self) -> None:
        while True:
            try:
                await self.settle_once()
            except (ChainError, LedgerError) as exc:
                log.warning("claim round failed; retrying", extra={"error": str(exc)})
            except Exception:  # the loop must outlive any one lottery's surprise
                log.exception("claim round crashed; retrying")
            await asyncio.sleep(self.core.settings.claim_interval_s)

    async def settle_once(self) -> None:
        """One pass: the round's preamble, then over our open lotteries, claim wins, close
        losses and void ones."""
        core = self.core
        await self.before_round()
        head = await asyncio.to_thread(core.chain.block_number)
        open_ids = await core.cheques.open_lotteries()
        self.open_count = len(open_ids)
        for lottery_id, reveal in open_ids:
            # Nothing to claim before R is mined; from R + 1 on we claim at once (T9).
            if head <= reveal:
                continue
            # One process decides (and claims) each lottery.
            name = f"claim:{lottery_id.hex()}"
            if not await core.cheques.take_lease(
                name, self.holder, int(time.time()), CLAIM_LEASE_S
            ):
                continue
            state = await asyncio.to_thread(core.chain.lottery, lottery_id, None)
            reveal_hash = None
            if state is not None and state.seed is None and head - reveal <= BLOCKHASH_WINDOW:
                reveal_hash = await asyncio.to_thread(core.chain.block_hash, reveal)
            await core.refresh(lottery_id)
            kept = core.book.ours(lottery_id)
            ours = [k.sc for k in kept]
            ids = {k.cheque_id: k.sc for k in kept}
            step = next_claim_step(state, reveal, head, reveal_hash, ours, ids)
            if step.action == "close" and step.outcome is not None:
                await self.close(lottery_id, step.outcome)
                # Nothing was sent: any process may look again (it finds the lottery closed).
                await core.cheques.release_lease(name, self.holder)
            elif step.action == "claim" and step.cheque is not None:
                await self._claim(lottery_id, step.cheque)

    async def _claim(self, lottery_id: bytes, sc: StampedCheque) -> None:
        core = self.core
        try:
            receipt = await asyncio.to_thread(core.chain.claim, core.key, sc)
        except TransactionReverted as exc:
            # Lost a race (someone claimed for us; the window closed): the next round
            # reads the lottery and closes it; a claim refused repeatedly is given up.
            n = self._reverts.get(lottery_id, 0) + 1
            self._reverts[lottery_id] = n
            log.warning(
                "claim refused",
                extra={"lottery": lottery_id.hex()[:16], "reason": exc.reason, "gas": exc.gas_used},
            )
            if n >= MAX_CLAIM_REVERTS:
                await self.close(lottery_id, LotteryOutcome.LOST)
            return
        self.claims.append(receipt)
        log.info(
            "lottery won and claimed",
            extra={"lottery": lottery_id.hex()[:16], "gas": receipt.gas_used},
        )
        await self.close(lottery_id, LotteryOutcome.CLAIMED)

    async def close(self, lottery_id: bytes, outcome: LotteryOutcome) -> None:
        core = self.core
        await core.cheques.close_lottery(lottery_id, outcome.value)
        self._reverts.pop(lottery_id, None)
        core.forget(lottery_id)
        log.info(
            "lottery closed", extra={"lottery": lottery_id.hex()[:16], "outcome": outcome.value}
        )
