"""The stamper claims its own fee cheques when they win (docs/lottery.md §5, D8, issue 9).

A fee cheque is an ordinary range of the lottery, stamped by the stamper to itself and
kept in its store with the payer's signature: a ``StampedCheque`` ready for ``claim``.
Every ``interval`` seconds ``FeeClaimer`` walks the lotteries it stamped in and lets
``payee.next_claim_step`` (the gateway's own rule) decide: wait for the reveal, claim a
winning fee cheque, or be done with the lottery (lost, void, claimed). Lotteries it is
done with are remembered in memory only; after a restart each is read once more and
found settled. Claims pay gas from the stamper's key, like the gateway's claims.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from rpcpay.errors import ChainError, TransactionReverted
from rpcpay.lottery.cheque import StampedCheque
from rpcpay.lottery.eip712 import cheque_hash
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.payee import BLOCKHASH_WINDOW, next_claim_step
from rpcpay.lottery.stamper_store import StampStore

if TYPE_CHECKING:
    from rpcpay.chain.settlement import Receipt, SettlementChain

__all__ = ["FeeClaimer"]

log = logging.getLogger("rpcpay.stamper")

MAX_REVERTS = 3


class FeeClaimer:
    """Claims winning fee cheques (see the module docstring)."""

    def __init__(
        self, chain: SettlementChain, key: EthKey, store: StampStore, interval: float = 12.0
    ) -> None:
        self.chain = chain
        self.key = key
        self.store = store
        self.interval = interval
        self.claims: list[Receipt] = []
        self.done: set[bytes] = set()
        self._reveals: dict[bytes, int] = {}
        self._reverts: dict[bytes, int] = {}

    async def loop(self) -> None:
        while True:
            try:
                await self.claim_once()
            except ChainError as exc:
                log.warning("fee claim round failed; retrying", extra={"error": str(exc)})
            except Exception:  # the loop must outlive any one lottery's surprise
                log.exception("fee claim round crashed; retrying")
            await asyncio.sleep(self.interval)

    async def claim_once(self) -> None:
        """One pass over the lotteries not done yet."""
        head = await asyncio.to_thread(self.chain.block_number)
        ids = await asyncio.to_thread(self.store.lotteries)
        for lottery_id in ids:
            if lottery_id in self.done:
                continue
            # Nothing to claim before the reveal block is mined (its terms are read once).
            reveal = self._reveals.get(lottery_id)
            if reveal is not None and head <= reveal:
                continue
            state = await asyncio.to_thread(self.chain.lottery, lottery_id, None)
            if state is None:
                self.done.add(lottery_id)
                continue
            self._reveals[lottery_id] = state.reveal_block
            if head <= state.reveal_block:
                continue
            reveal_hash = None
            if state.seed is None and head - state.reveal_block <= BLOCKHASH_WINDOW:
                reveal_hash = await asyncio.to_thread(self.chain.block_hash, state.reveal_block)
            records = await asyncio.to_thread(self.store.records, lottery_id)
            fees = [StampedCheque(r.cheque, r.payer_sig, r.stamp_sig) for r in records if r.fee]
            ids_ = {cheque_hash(sc.cheque): sc for sc in fees}
            step = next_claim_step(state, state.reveal_block, head, reveal_hash, fees, ids_)
            if step.action == "close":
                self.done.add(lottery_id)
            elif step.action == "claim" and step.cheque is not None:
                await self._claim(lottery_id, step.cheque)

    async def _claim(self, lottery_id: bytes, sc: StampedCheque) -> None:
        try:
            receipt = await asyncio.to_thread(self.chain.claim, self.key, sc)
        except TransactionReverted as exc:
            n = self._reverts.get(lottery_id, 0) + 1
            self._reverts[lottery_id] = n
            log.warning("fee claim refused", extra={"reason": exc.reason, "gas": exc.gas_used})
            # Refused again and again: someone else's claim won, or the window closed.
            if n >= MAX_REVERTS:
                self.done.add(lottery_id)
            return
        self.claims.append(receipt)
        self.done.add(lottery_id)
        log.info(
            "fee cheque won and claimed",
            extra={"lottery": lottery_id.hex()[:16], "gas": receipt.gas_used},
        )
