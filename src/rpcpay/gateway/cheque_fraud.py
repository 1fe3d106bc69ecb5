"""Fraud filing: keep the evidence, prove it on chain, tell the peers (docs/lottery.md §16).

The cheque that completes a fraud pair is stored (no client, no credit) with outcome
``evidence`` in the same step that found the pair, then proven: at once when we are a
recipient of either cheque, after a ``commit_fraud`` otherwise (D5). Both halves are
gossiped to every peer, so a peer that holds neither still learns the stamper cheated
within one more gossip delay (the detection window of ``lottery.pacing``). Once the
stamper is caught, held cheques it stamped are never credited (``cheque_intake``).
A proof that failed on a chain error, or was cut short by a crash, is filed again by
``retry_evidence`` from the claim loop.

Several processes on one database: evidence is in the store, so each learns the
stampers the others caught (``learn_caught``, at most ``CAUGHT_REFRESH_S`` stale; at
once before a held cheque is credited). One process files a stamper's proof at a time:
it holds the store's lease ``fraud:<stamper>`` (``FRAUD_LEASE_S``) while filing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rpcpay.errors import ChainError, LedgerError, TransactionReverted
from rpcpay.gateway.cheque_book import Kept
from rpcpay.gateway.cheque_core import PayeeCore, Receipts
from rpcpay.ledger.sqlite_store import ChequeRow
from rpcpay.lottery.cheque import StampedCheque, decode_stamped
from rpcpay.lottery.eip712 import cheque_hash, recover_stamper
from rpcpay.lottery.eth import checksum_address
from rpcpay.lottery.payee import next_fraud_step
from rpcpay.lottery.rules import find_fraud_partner
from rpcpay.lottery.state import LotteryState

if TYPE_CHECKING:
    from rpcpay.chain.settlement import Receipt

__all__ = ["EVIDENCE", "PROVEN", "UNPROVABLE", "FraudFiler"]

log = logging.getLogger("rpcpay.lottery.payee")

COMMIT_WAIT_S = 120.0
"""How long to wait for the block after a fraud commitment before proving anyway."""
DEV_MINE_AFTER_S = 1.0
"""After this long without a new block, ask the chain to mine one (dev chains only)."""
EVIDENCE = "evidence"
"""``outcome`` of a held cheque that is half of a fraud pair not yet proven on chain."""
PROVEN = "proven"
"""... once its stamper is slashed (by us or anyone)."""
UNPROVABLE = "unprovable"
"""... when the contract refused the proof and the stamper is not slashed (e.g. it left)."""
EVIDENCE_OUTCOMES = (EVIDENCE, PROVEN, UNPROVABLE)
CAUGHT_REFRESH_S = 1.0
"""How stale this process's view of the stampers other processes caught may be."""
FRAUD_LEASE_S = 600
"""A proof's lease: longer than commit, wait for a block and prove take; a process that
dies filing leaves it to the others after this long."""


class FraudFiler:
    """Stores evidence and files proofs, one stamper at a time."""

    def __init__(
        self, core: PayeeCore, on_caught: Callable[[bytes], None], holder: str = "rpcpay"
    ) -> None:
        self.core = core
        self.holder = holder  # this process's name on the store's leases
        self._evidence_seen: set[bytes] = set()
        self._learnt_at: float | None = None
        self.on_caught = on_caught  # e.g. withhold the stamper's held cheques
        self.proofs: Receipts[Receipt] = Receipts()
        self.commits: Receipts[Receipt] = Receipts()
        self.filing: set[bytes] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.found = 0  # fraud pairs found (for operators and tests)

    def catch(self, stamper: bytes) -> bool:
        """Mark ``stamper`` caught; True the first time."""
        if stamper in self.core.caught:
            return False
        self.core.caught.add(stamper)
        self.on_caught(stamper)
        return True

    async def learn_caught(self, force: bool = False) -> None:
        """Catch the stampers whose evidence any process stored (read at most once per
        ``CAUGHT_REFRESH_S`` unless ``force``)."""
        now = time.monotonic()
        if not force and self._learnt_at is not None and now - self._learnt_at < CAUGHT_REFRESH_S:
            return
        self._learnt_at = now
        core = self.core
        for outcome in EVIDENCE_OUTCOMES:
            for row in await core.cheques.cheques_with_outcome(outcome):
                if row.cheque_id in self._evidence_seen:
                    continue
                self._evidence_seen.add(row.cheque_id)
                domain, sc = decode_stamped(row.wire)
                # Evidence is stored only for a verified pair: its stamp names the cheater.
                stamper = recover_stamper(domain, sc.cheque, sc.stamp_sig)
                if stamper is not None:
                    self.catch(stamper)

    async def keep(
        self, lottery: LotteryState, wire: bytes, sc: StampedCheque, partner: Kept
    ) -> None:
        """Store ``sc`` as evidence against ``partner`` (before the answer that refuses it),
        tell the peers, mark the stamper caught and file the proof."""
        core = self.core
        h = cheque_hash(sc.cheque)
        row = ChequeRow(h, lottery.id, wire, None, 0, lottery.reveal_block, int(time.time()))
        # Caught at once, before the store is written: nothing of it is credited meanwhile.
        first = self.catch(lottery.stamper)
        await core.cheques.hold_evidence(row, EVIDENCE)
        self._evidence_seen.add(h)
        self.found += 1
        # The first pair against a stamper goes to every peer: each catches it whatever it
        # holds. Later pairs are not forwarded (peers that know would echo them forever).
        if first:
            core.gossip.send(wire)
            core.gossip.send(partner.wire)
        self.spawn(lottery, partner.sc, sc, h)

    def spawn(
        self, lottery: LotteryState, a: StampedCheque, b: StampedCheque, evidence: bytes
    ) -> None:
        # One proof per stamper at a time: a slashed stamper cannot be slashed twice.
        if lottery.stamper in self.filing:
            return
        self.filing.add(lottery.stamper)
        log.warning(
            "overlapping stamps: filing a fraud proof",
            extra={"stamper": checksum_address(lottery.stamper), "lottery": lottery.id.hex()[:16]},
        )
        task = asyncio.create_task(self._file(lottery, a, b, evidence), name="rpcpay-fraud-proof")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _file(
        self, lottery: LotteryState, a: StampedCheque, b: StampedCheque, evidence: bytes
    ) -> None:
        core = self.core
        us, stamper = core.key.address, lottery.stamper
        lease = f"fraud:{stamper.hex()}"
        try:
            # Another process on this database is filing against this stamper already.
            if not await core.cheques.take_lease(
                lease, self.holder, int(time.time()), FRAUD_LEASE_S
            ):
                log.info(
                    "fraud proof filed by another process",
                    extra={"stamper": checksum_address(stamper)},
                )
                return
            committed = False
            while True:
                state = await asyncio.to_thread(core.chain.stamper, stamper)
                step = next_fraud_step(us, a, b, state.slashed, committed)
                if step.action == "skip":
                    log.info(
                        "stamper already slashed", extra={"stamper": checksum_address(stamper)}
                    )
                    await core.cheques.hold_evidence_outcome(evidence, PROVEN)
                    return
                if step.action == "commit":
                    from rpcpay.chain.settlement import fraud_commitment

                    commitment = fraud_commitment(us, cheque_hash(a.cheque), cheque_hash(b.cheque))
                    receipt = await asyncio.to_thread(core.chain.commit_fraud, core.key, commitment)
                    self.commits.append(receipt)
                    await self._wait_past(receipt.block_number)
                    committed = True
                    continue
                receipt = await asyncio.to_thread(core.chain.prove_fraud, core.key, a, b)
                self.proofs.append(receipt)
                await core.cheques.hold_evidence_outcome(evidence, PROVEN)
                log.warning(
                    "fraud proven: stamper slashed",
                    extra={"stamper": checksum_address(stamper), "gas": receipt.gas_used},
                )
                return
        except TransactionReverted as exc:
            # Lost the race to another whistleblower, most likely; see who won.
            log.info(
                "fraud proof refused",
                extra={"reason": exc.reason, "gas": exc.gas_used, "fee": exc.fee},
            )
            with contextlib.suppress(ChainError, LedgerError):
                slashed = (await asyncio.to_thread(core.chain.stamper, stamper)).slashed
                # Refused, and nobody slashed it: retrying would only pay gas again.
                await core.cheques.hold_evidence_outcome(
                    evidence, PROVEN if slashed else UNPROVABLE
                )
        except (ChainError, LedgerError) as exc:
            log.warning("fraud proof failed; the claim loop will retry", extra={"error": str(exc)})
        finally:
            # Done (or failed): the next round may file again, from any process. The lease
            # goes back before this process counts itself done, so "not filing" means free.
            try:
                with contextlib.suppress(LedgerError):
                    await core.cheques.release_lease(lease, self.holder)
            finally:
                self.filing.discard(stamper)

    async def _wait_past(self, block: int) -> None:
        """Until the chain is past ``block`` (a commitment counts from the next block)."""
        chain = self.core.chain
        started = time.monotonic()
        while await asyncio.to_thread(chain.block_number) <= block:
            waited = time.monotonic() - started
            # Give up waiting eventually: the proof still slashes, unrewarded at worst.
            if waited > COMMIT_WAIT_S:
                return
            # A development chain mines only on demand (automine): ask it for a block; a
            # real chain refuses (ChainError) and makes one on its own.
            if waited > DEV_MINE_AFTER_S:
                with contextlib.suppress(ChainError):
                    await asyncio.to_thread(chain.mine, 1)
            await asyncio.sleep(0.1)

    async def retry_evidence(self) -> None:
        """File again every fraud pair stored as evidence and not yet proven (after a
        crash, or a proof that failed on a chain error)."""
        core = self.core
        for row in await core.cheques.cheques_with_outcome(EVIDENCE):
            _, sc = decode_stamped(row.wire)
            lottery = core.lotteries.get(row.lottery) or await asyncio.to_thread(
                core.chain.lottery, row.lottery, None
            )
            partner = None
            if lottery is not None:
                await core.refresh(row.lottery)
                c = sc.cheque
                held = [k.sc for k in core.book.overlapping(row.lottery, c.start, c.end)]
                partner = find_fraud_partner(core.domain, lottery, sc, held)
            # Evidence whose partner is gone proves nothing any more.
            if lottery is None or partner is None:
                await core.cheques.hold_evidence_outcome(row.cheque_id, UNPROVABLE)
                continue
            self.catch(lottery.stamper)
            self.spawn(lottery, partner, sc, row.cheque_id)

    async def close(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
