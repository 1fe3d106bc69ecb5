"""The payee of the lottery rail in the gateway: cheques in, credits out, claims, fraud.

``ChequeDesk`` gathers what ``rules.check_cheque`` needs (chain state read at
``head - confirmations`` through ``asyncio.to_thread``, the cheques held in that
lottery), credits an accepted cheque into the same ``Ledger`` the hash credits use,
and writes the cheque and the new balance in one SQLite transaction. It gossips what
it accepted, checks what peers gossip for overlaps, files fraud proofs, and claims its
wins after each reveal. docs/lottery.md §15-§17 is the spec.

Race freedom: between reading the held cheques and committing the credit there is no
``await``, so on the event loop two requests can never both pass the overlap check
for the same tickets. Chain reads happen before that section.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rpcpay.errors import ChainError, TransactionReverted
from rpcpay.ledger.account import Account
from rpcpay.ledger.ledger import Ledger
from rpcpay.ledger.sqlite_store import ChequeRow, SqliteLedgerStore
from rpcpay.lottery.cheque import (
    Domain,
    StampedCheque,
    decode_stamped,
    ranges_overlap,
)
from rpcpay.lottery.eip712 import cheque_hash, recover_payer, recover_stamper
from rpcpay.lottery.eth import EthKey, checksum_address
from rpcpay.lottery.gossip import GossipSender
from rpcpay.lottery.payee import (
    DEFAULT_CREDIT_PRICE_WEI,
    DEFAULT_MIN_STAMPER_DEPOSIT,
    LotteryOutcome,
    credits_for,
    describe_refusal,
    fits_account,
    next_claim_step,
    next_fraud_step,
)
from rpcpay.lottery.rules import (
    BPS,
    DEFAULT_CONFIRMATIONS,
    DEFAULT_REVEAL_MARGIN,
    Accepted,
    ChequeRefusal,
    PayeePolicy,
    Refused,
    check_account_signature,
    check_cheque,
    exposure_of,
    is_fraud_pair,
)
from rpcpay.lottery.state import LotteryState, StamperState

if TYPE_CHECKING:  # the chain package loads py-evm: only a gateway with the rail pays for it
    from rpcpay.chain.settlement import Receipt, SettlementChain

__all__ = ["ChequeDesk", "ChequeRefused", "Credited", "LotterySettings"]

log = logging.getLogger("rpcpay.lottery.payee")

MAX_CLAIM_REVERTS = 3
"""Claims the contract refused before we give a lottery up (the reason is logged)."""
COMMIT_WAIT_S = 120.0
"""How long to wait for the block after a fraud commitment before proving anyway."""
DEV_MINE_AFTER_S = 1.0
"""After this long without a new block, ask the chain to mine one (dev chains only)."""
MAX_GOSSIP_PER_LOTTERY = 4096
"""Peers' cheques kept per lottery: enough for a day of per-minute cheques to a few
gateways; beyond it a peer (or anyone posting to /lottery/gossip) only fills our disk."""
EVIDENCE = "evidence"
"""``outcome`` of a held cheque that is half of a fraud pair not yet proven on chain."""
PROVEN = "proven"
"""... once its stamper is slashed (by us or anyone)."""
UNPROVABLE = "unprovable"
"""... when the contract refused the proof and the stamper is not slashed (e.g. it left)."""


@dataclass(frozen=True, slots=True)
class LotterySettings:
    """The lottery rail's flags on ``rpcpay serve`` (off unless ``--lottery-contract``)."""

    contract: bytes
    chain_url: str | None = None  # None: the caller passes a chain (tests, embedding)
    key_file: Path | None = None  # None: DATA_DIR/lottery.key
    credit_price_wei: int = DEFAULT_CREDIT_PRICE_WEI
    min_stamper_deposit: int = DEFAULT_MIN_STAMPER_DEPOSIT
    reveal_margin: int = DEFAULT_REVEAL_MARGIN
    confirmations: int = DEFAULT_CONFIRMATIONS
    gossip_peers: tuple[str, ...] = ()
    claim_interval_s: float = 12.0


@dataclass(frozen=True, slots=True)
class Credited:
    """An accepted cheque: ``credited`` credits added, ``account`` the client's new account."""

    credited: int
    account: Account


@dataclass(frozen=True, slots=True)
class ChequeRefused:
    """A refused cheque and the message for the payer; nothing was credited."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class _Held:
    sc: StampedCheque
    ours: bool


class ChequeDesk:
    """The payee: see the module docstring. One per gateway; call from its event loop."""

    def __init__(
        self,
        chain: SettlementChain,
        key: EthKey,
        store: SqliteLedgerStore,
        ledger: Ledger,
        settings: LotterySettings,
        gossip: GossipSender | None = None,
    ) -> None:
        self.chain = chain
        self.key = key
        self.store = store
        self.ledger = ledger
        self.settings = settings
        self.domain: Domain = chain.domain
        self.policy = PayeePolicy(
            recipient=key.address,
            domain=self.domain,
            min_stamper_deposit=settings.min_stamper_deposit,
            reveal_margin=settings.reveal_margin,
            min_value=settings.credit_price_wei,
        )
        self.gossip = gossip or GossipSender(list(settings.gossip_peers))
        self.claims: list[Receipt] = []
        self.proofs: list[Receipt] = []
        self.commits: list[Receipt] = []
        self._held: dict[bytes, dict[bytes, _Held]] = {}
        self._lotteries: dict[bytes, LotteryState] = {}
        self._stampers: tuple[int, dict[bytes, StamperState]] = (-1, {})
        self._caught: set[bytes] = set()
        self._filing: set[bytes] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reverts: dict[bytes, int] = {}
        # Our open lotteries (credited cheques, not closed): what a colluding stamper could
        # steal from us, and the only lotteries whose gossip we keep. None until loaded.
        self._open: dict[bytes, LotteryState] | None = None
        self._claimer: asyncio.Task[None] | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start gossiping and the claim loop (on the running loop)."""
        self.gossip.start()
        self._claimer = asyncio.create_task(self._claim_loop(), name="rpcpay-lottery-claims")

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._claimer] if self._claimer else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.gossip.close()

    def info(self) -> dict[str, object]:
        """What a payer needs to pay this gateway (``lottery_info``)."""
        return {
            "recipient": checksum_address(self.key.address),
            "chain_id": self.domain.chain_id,
            "contract": checksum_address(self.domain.contract),
            "credit_price_wei": str(self.settings.credit_price_wei),
            "min_stamper_deposit": str(self.settings.min_stamper_deposit),
            "reveal_margin": self.settings.reveal_margin,
            "confirmations": self.settings.confirmations,
        }

    # -- chain reads (cached) -------------------------------------------------------------------

    async def _open_lotteries(self) -> dict[bytes, LotteryState]:
        """Our open lotteries, read from the chain once per process (their terms never
        change), then kept up to date as we credit and close; also loads the contract's
        burnt share into the policy."""
        if self._open is None:
            params = await asyncio.to_thread(self.chain.params)
            burnt = BPS - params.whistleblower_bps - params.compensation_bps
            self.policy = replace(self.policy, burnt_bps=burnt)
            found: dict[bytes, LotteryState] = {}
            for lottery_id, _reveal in self.store.open_lotteries():
                state = await asyncio.to_thread(self.chain.lottery, lottery_id, None)
                # A lottery reorged away holds nothing anyone can steal.
                if state is not None:
                    found[lottery_id] = state
            if self._open is None:  # another request may have loaded it meanwhile
                self._open = found
        return self._open

    async def _head(self) -> tuple[int, int]:
        head = await asyncio.to_thread(self.chain.block_number)
        return head, max(head - self.settings.confirmations, 0)

    async def _lottery(self, lottery_id: bytes, confirmed: int) -> LotteryState | None:
        """The lottery at the confirmed block. An open one is cached: its terms never change
        and it cannot settle before its reveal, which the margin keeps every credit before."""
        cached = self._lotteries.get(lottery_id)
        if cached is not None:
            return cached
        state = await asyncio.to_thread(self.chain.lottery, lottery_id, confirmed)
        if state is not None and not state.settled:
            self._lotteries[lottery_id] = state
        return state

    async def _stamper(self, address: bytes, confirmed: int) -> StamperState:
        """The stamper's entry at the confirmed block, read once per block; a stamper we
        caught cheating counts as slashed at once, before the chain's view confirms it."""
        block, cache = self._stampers
        if block != confirmed:
            cache = {}
            self._stampers = (confirmed, cache)
        state = cache.get(address)
        if state is None:
            state = await asyncio.to_thread(self.chain.stamper, address, confirmed)
            cache[address] = state
        return replace(state, slashed=True) if address in self._caught else state

    # -- held cheques ---------------------------------------------------------------------------

    def _held_of(self, lottery_id: bytes) -> dict[bytes, _Held]:
        held = self._held.get(lottery_id)
        if held is None:
            held = {}
            for row in self.store.cheques_of(lottery_id):
                _, sc = decode_stamped(row.wire)
                held[row.cheque_id] = _Held(sc, row.client is not None)
            self._held[lottery_id] = held
        return held

    def ours(self, lottery_id: bytes) -> list[StampedCheque]:
        """Our own (credited) cheques of a lottery."""
        return [h.sc for h in self._held_of(lottery_id).values() if h.ours]

    # -- payment --------------------------------------------------------------------------------

    async def pay(self, client: bytes, wire: bytes, account_sig: bytes) -> Credited | ChequeRefused:
        """Judge one cheque for ``client``; credit it once if good. ``account_sig`` is the
        payer's ``Credit(cheque, client)`` signature: only the payer names the account a
        cheque pays for. Raises ``ChainError`` or ``LedgerError`` when a dependency fails
        (nothing is credited then)."""
        try:
            domain, sc = decode_stamped(wire)
        except ValueError as exc:
            return ChequeRefused("malformed", f"malformed: {exc}; nothing was credited")
        head, confirmed = await self._head()
        # Cheques for another chain, contract or recipient are refused before any read.
        early = check_cheque(domain, sc, self.policy, None, None, head)
        if isinstance(early, Refused) and early.reason in (
            ChequeRefusal.WRONG_CHAIN,
            ChequeRefusal.WRONG_CONTRACT,
            ChequeRefusal.WRONG_RECIPIENT,
        ):
            return self._refuse(early.reason, domain, sc)
        opened = await self._open_lotteries()
        lottery = await self._lottery(sc.cheque.lottery, confirmed)
        stamper = await self._stamper(lottery.stamper, confirmed) if lottery else None
        # From here to the commit there is no await: the overlap check, the exposure sum
        # and the credit are one step on the event loop.
        held = self._held_of(sc.cheque.lottery)
        exposed = exposure_of(lottery.stamper, lottery.id, opened.values()) if lottery else 0
        verdict = check_cheque(
            domain,
            sc,
            self.policy,
            lottery,
            stamper,
            head,
            [h.sc.cheque for h in held.values()],
            exposed,
        )
        if isinstance(verdict, Refused):
            if verdict.reason is ChequeRefusal.OVERLAP and lottery is not None:
                self._keep_evidence(lottery, wire, sc)
            return self._refuse(verdict.reason, domain, sc)
        assert lottery is not None
        # The payer, not whoever carries the cheque, chose the client it pays for.
        wrong_account = check_account_signature(domain, sc, lottery, client, account_sig)
        if wrong_account is not None:
            return self._refuse(wrong_account.reason, domain, sc)
        return self._credit(client, wire, sc, verdict, lottery)

    def _keep_evidence(self, lottery: LotteryState, wire: bytes, sc: StampedCheque) -> None:
        """Store an overlapping cheque (no client, no credit) marked as unproven evidence,
        in the same step that refused it, then file the proof. A crash or a failed proof
        loses nothing: ``retry_evidence`` files it again from the claim loop."""
        held = self._held_of(lottery.id)
        h = cheque_hash(sc.cheque)
        pair = next(
            (
                other.sc
                for key, other in held.items()
                if key != h
                and ranges_overlap(other.sc.cheque, sc.cheque)
                and is_fraud_pair(self.domain, lottery, other.sc, sc)
            ),
            None,
        )
        # Only a pair the contract would accept is evidence; anything else is just refused.
        if pair is None:
            return
        row = ChequeRow(h, lottery.id, wire, None, 0, lottery.reveal_block, int(time.time()))
        self.store.hold_evidence(row, EVIDENCE)
        held.setdefault(h, _Held(sc, False))
        self._spawn_fraud(lottery, pair, sc, h)

    def _credit(
        self, client: bytes, wire: bytes, sc: StampedCheque, ok: Accepted, lottery: LotteryState
    ) -> Credited | ChequeRefused:
        credits = credits_for(ok.value, self.settings.credit_price_wei)
        current = self.ledger.get(client)
        # The account can hold the credits: the ledger would saturate (and lose them).
        if not fits_account(0 if current is None else current.balance, credits):
            return self._refuse(ChequeRefusal.TOO_LARGE, self.domain, sc)
        row = ChequeRow(
            ok.cheque_id, lottery.id, wire, client, credits, lottery.reveal_block, int(time.time())
        )
        account = self.ledger.credit(
            client, credits, lambda acct: self.store.save_with_cheque(acct, row)
        )
        # Recorded before (another process, or a restart raced us): a replay.
        if account is None:
            return self._refuse(ChequeRefusal.DUPLICATE, self.domain, sc)
        self._held_of(lottery.id)[ok.cheque_id] = _Held(sc, True)
        if self._open is not None:
            self._open[lottery.id] = lottery
        self.gossip.send(wire)
        log.info(
            "cheque credited",
            extra={
                "client": client.hex()[:16],
                "lottery": lottery.id.hex()[:16],
                "value_wei": ok.value,
                "credits": credits,
            },
        )
        return Credited(credits, account)

    def _refuse(self, reason: ChequeRefusal, domain: Domain, sc: StampedCheque) -> ChequeRefused:
        detail = ""
        if reason is ChequeRefusal.WRONG_CHAIN:
            detail = f"chain {domain.chain_id}, this gateway settles on {self.domain.chain_id}"
        elif reason is ChequeRefusal.WRONG_RECIPIENT:
            detail = f"this gateway is {checksum_address(self.key.address)}"
        elif reason is ChequeRefusal.BELOW_MINIMUM:
            detail = f"one credit costs {self.settings.credit_price_wei} wei"
        elif reason is ChequeRefusal.STAMPER_DEPOSIT_LOW:
            detail = f"minimum {self.settings.min_stamper_deposit} wei"
        elif reason is ChequeRefusal.REVEAL_TOO_CLOSE:
            detail = f"margin {self.settings.reveal_margin} blocks"
        elif reason is ChequeRefusal.STAMPER_EXPOSURE:
            detail = f"burnt share {self.policy.burnt_bps} bps of the stamper's deposit"
        log.info(
            "cheque refused",
            extra={"reason": reason.value, "lottery": sc.cheque.lottery.hex()[:16]},
        )
        return ChequeRefused(reason.value, describe_refusal(reason, detail))

    # -- gossip ---------------------------------------------------------------------------------

    async def receive_gossip(self, wires: list[bytes]) -> tuple[int, int]:
        """Verify and keep peers' cheques; (how many were new, how many fraud pairs found).

        Only cheques of our open lotteries are kept (at most ``MAX_GOSSIP_PER_LOTTERY``
        each): those are the overlaps that can cheat us, and their terms are already in
        memory, so gossip costs no chain read. An overlap between two peers' cheques is
        still caught: the peer paid second gossips its cheque to the one paid first.
        """
        new = frauds = 0
        opened = await self._open_lotteries()
        for wire in wires:
            try:
                domain, sc = decode_stamped(wire)
            except ValueError:
                continue
            c = sc.cheque
            # Only cheques of our contract, paid to others (ours come from payers), count.
            if domain != self.domain or c.recipient == self.key.address:
                continue
            # ... of a lottery we hold cheques in, still open.
            lottery = opened.get(c.lottery)
            if lottery is None:
                continue
            held = self._held_of(c.lottery)
            h = cheque_hash(c)
            # ... new to us, within the per-lottery bound.
            if h in held or sum(1 for x in held.values() if not x.ours) >= MAX_GOSSIP_PER_LOTTERY:
                continue
            # Both signatures must be the lottery's payer's and stamper's.
            if (
                recover_payer(domain, c, sc.payer_sig) != lottery.payer
                or recover_stamper(domain, c, sc.stamp_sig) != lottery.stamper
            ):
                continue
            pair = next(
                (
                    other.sc
                    for other in held.values()
                    if ranges_overlap(other.sc.cheque, c)
                    and is_fraud_pair(domain, lottery, other.sc, sc)
                ),
                None,
            )
            row = ChequeRow(h, c.lottery, wire, None, 0, lottery.reveal_block, int(time.time()))
            # A cheque that completes a fraud pair is stored as evidence in the same write.
            if pair is None:
                self.store.hold_cheque(row)
            else:
                self.store.hold_evidence(row, EVIDENCE)
            held[h] = _Held(sc, False)
            new += 1
            if pair is not None:
                frauds += 1
                self._spawn_fraud(lottery, pair, sc, h)
        return new, frauds

    # -- fraud proofs ---------------------------------------------------------------------------

    def _spawn_fraud(
        self, lottery: LotteryState, a: StampedCheque, b: StampedCheque, evidence: bytes
    ) -> None:
        # A stamper we already caught: the evidence has done its work.
        if lottery.stamper in self._caught:
            self.store.hold_evidence_outcome(evidence, PROVEN)
            return
        # One proof per stamper at a time: a slashed stamper cannot be slashed twice.
        if lottery.stamper in self._filing:
            return
        self._filing.add(lottery.stamper)
        log.warning(
            "overlapping stamps: filing a fraud proof",
            extra={"stamper": checksum_address(lottery.stamper), "lottery": lottery.id.hex()[:16]},
        )
        task = asyncio.create_task(
            self._file_fraud(lottery, a, b, evidence), name="rpcpay-fraud-proof"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _file_fraud(
        self, lottery: LotteryState, a: StampedCheque, b: StampedCheque, evidence: bytes
    ) -> None:
        us, stamper = self.key.address, lottery.stamper
        try:
            committed = False
            while True:
                state = await asyncio.to_thread(self.chain.stamper, stamper)
                step = next_fraud_step(us, a, b, state.slashed, committed)
                if step.action == "skip":
                    log.info(
                        "stamper already slashed", extra={"stamper": checksum_address(stamper)}
                    )
                    self._caught.add(stamper)
                    self.store.hold_evidence_outcome(evidence, PROVEN)
                    return
                if step.action == "commit":
                    from rpcpay.chain.settlement import fraud_commitment

                    commitment = fraud_commitment(us, cheque_hash(a.cheque), cheque_hash(b.cheque))
                    receipt = await asyncio.to_thread(self.chain.commit_fraud, self.key, commitment)
                    self.commits.append(receipt)
                    await self._wait_past(receipt.block_number)
                    committed = True
                    continue
                receipt = await asyncio.to_thread(self.chain.prove_fraud, self.key, a, b)
                self.proofs.append(receipt)
                self._caught.add(stamper)
                self.store.hold_evidence_outcome(evidence, PROVEN)
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
            with contextlib.suppress(ChainError):
                slashed = (await asyncio.to_thread(self.chain.stamper, stamper)).slashed
                if slashed:
                    self._caught.add(stamper)
                # Refused, and nobody slashed it: retrying would only pay gas again.
                self.store.hold_evidence_outcome(evidence, PROVEN if slashed else UNPROVABLE)
        except ChainError as exc:
            log.warning("fraud proof failed; the claim loop will retry", extra={"error": str(exc)})
        finally:
            self._filing.discard(stamper)

    async def _wait_past(self, block: int) -> None:
        """Until the chain is past ``block`` (a commitment counts from the next block)."""
        started = time.monotonic()
        while await asyncio.to_thread(self.chain.block_number) <= block:
            waited = time.monotonic() - started
            # Give up waiting eventually: the proof still slashes, unrewarded at worst.
            if waited > COMMIT_WAIT_S:
                return
            # A development chain mines only on demand (automine): ask it for a block; a
            # real chain refuses (ChainError) and makes one on its own.
            if waited > DEV_MINE_AFTER_S:
                with contextlib.suppress(ChainError):
                    await asyncio.to_thread(self.chain.mine, 1)
            await asyncio.sleep(0.1)

    # -- claims ---------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            try:
                await self.settle_once()
            except ChainError as exc:
                log.warning("claim round failed; retrying", extra={"error": str(exc)})
            except Exception:  # the loop must outlive any one lottery's surprise
                log.exception("claim round crashed; retrying")
            await asyncio.sleep(self.settings.claim_interval_s)

    async def retry_evidence(self) -> None:
        """File again every fraud pair stored as evidence and not yet proven (after a
        crash, or a proof that failed on a chain error)."""
        for row in self.store.cheques_with_outcome(EVIDENCE):
            _, sc = decode_stamped(row.wire)
            lottery = self._lotteries.get(row.lottery) or await asyncio.to_thread(
                self.chain.lottery, row.lottery, None
            )
            pair = None
            if lottery is not None:
                pair = next(
                    (
                        other.sc
                        for key, other in self._held_of(row.lottery).items()
                        if key != row.cheque_id
                        and ranges_overlap(other.sc.cheque, sc.cheque)
                        and is_fraud_pair(self.domain, lottery, other.sc, sc)
                    ),
                    None,
                )
            # Evidence whose partner is gone proves nothing any more.
            if lottery is None or pair is None:
                self.store.hold_evidence_outcome(row.cheque_id, UNPROVABLE)
                continue
            self._spawn_fraud(lottery, pair, sc, row.cheque_id)

    async def settle_once(self) -> None:
        """One pass: file unproven fraud evidence again; over our open lotteries, claim
        wins, close losses and void ones."""
        await self.retry_evidence()
        head = await asyncio.to_thread(self.chain.block_number)
        for lottery_id, reveal in self.store.open_lotteries():
            # Nothing to claim before R is mined; from R + 1 on we claim at once (T9).
            if head <= reveal:
                continue
            state = await asyncio.to_thread(self.chain.lottery, lottery_id, None)
            reveal_hash = None
            if state is not None and state.seed is None and head - reveal <= 256:
                reveal_hash = await asyncio.to_thread(self.chain.block_hash, reveal)
            ours = self.ours(lottery_id)
            ids = {cheque_hash(sc.cheque): sc for sc in ours}
            step = next_claim_step(state, reveal, head, reveal_hash, ours, ids)
            if step.action == "close" and step.outcome is not None:
                self._close(lottery_id, step.outcome)
            elif step.action == "claim" and step.cheque is not None:
                await self._claim(lottery_id, step.cheque)

    async def _claim(self, lottery_id: bytes, sc: StampedCheque) -> None:
        try:
            receipt = await asyncio.to_thread(self.chain.claim, self.key, sc)
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
                self._close(lottery_id, LotteryOutcome.LOST)
            return
        self.claims.append(receipt)
        log.info(
            "lottery won and claimed",
            extra={"lottery": lottery_id.hex()[:16], "gas": receipt.gas_used},
        )
        self._close(lottery_id, LotteryOutcome.CLAIMED)

    def _close(self, lottery_id: bytes, outcome: LotteryOutcome) -> None:
        self.store.close_lottery(lottery_id, outcome.value)
        self._lotteries.pop(lottery_id, None)
        self._reverts.pop(lottery_id, None)
        if self._open is not None:
            self._open.pop(lottery_id, None)
        log.info(
            "lottery closed", extra={"lottery": lottery_id.hex()[:16], "outcome": outcome.value}
        )
