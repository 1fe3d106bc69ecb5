"""Intake: a payer's cheque in, credits out, at once or after a hold (docs/lottery.md §15).

``pay`` gathers what ``rules.check_cheque`` needs (chain state at ``head - confirmations``,
the cheques its range overlaps: those any process stored for the lottery, and the
peers' gossip this process keeps), checks the payer's ``Credit`` signature, then paces
the credit (``lottery.pacing``). Every accepted cheque is first recorded **held**
(``pending``, durable, unique by cheque id), then checked again against every cheque of
its lottery in the store. Within the lottery's bucket it is then credited at once, the
credit and the cheque's release one transaction (``SharedLedger.credit_held``, the
store's ``CreditHeld`` join); beyond it, it is gossiped and credited after ``hold_s``
unless an overlap surfaced or its stamper was caught meanwhile. The client is told which
(``credited`` or ``held``).

Race freedom across processes (several gateways on one database): record first, then
look. Of two overlapping cheques recorded at once by two processes (or two requests of
one), the one whose look comes later sees the other's row, since that row committed
before its own did, and that look came after its own commit; so at most one is credited
(both may be refused; overlapping stamps are fraud anyway, and the pair is filed as
evidence). The same cheque twice is refused by the row's uniqueness (``duplicate``).
No in-memory state decides a credit; the pacing buckets are per process (§9.1).

Gossiped cheques in the book are unverified until they matter: one that overlaps a
payer's cheque is checked against the lottery's stamper first, and dropped if forged,
so junk gossip can never make an honest cheque look like an overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rpcpay.errors import ChainError, LedgerError
from rpcpay.gateway.cheque_book import Kept
from rpcpay.gateway.cheque_core import REFRESH_S, PayeeCore, row_range
from rpcpay.gateway.cheque_fraud import FraudFiler
from rpcpay.ledger.account import Account
from rpcpay.ledger.sqlite_store import ChequeRow
from rpcpay.lottery.cheque import Cheque, Domain, StampedCheque, decode_stamped
from rpcpay.lottery.eip712 import cheque_hash, recover_stamper
from rpcpay.lottery.eth import checksum_address
from rpcpay.lottery.pacing import Bucket, pace_cheque, refill
from rpcpay.lottery.payee import credits_for, describe_refusal, fits_account
from rpcpay.lottery.rules import (
    BPS,
    Accepted,
    ChequeRefusal,
    Refused,
    check_account_signature,
    check_cheque,
    exposure_of,
    find_fraud_partner,
)
from rpcpay.lottery.state import LotteryState, StamperState

__all__ = ["WITHHELD", "ChequeIntake", "ChequeRefused", "Credited"]

log = logging.getLogger("rpcpay.lottery.payee")

RETRY_S = 5.0
"""Seconds before a held cheque whose maturing failed on the chain or ledger is retried."""
OVEREXPOSED = "exposure"
"""``outcome`` of a cheque recorded held and then found to take the stamper's exposure past
its burnt share, counting a lottery another process opened meanwhile: never credited."""
OVERLAP_SPOILED = "overlap"
"""``outcome`` of a cheque recorded held and then found to overlap one another process
(or request) recorded first: never credited, half of a fraud pair."""
MAX_BUCKETS = 4096
"""Lotteries whose pace is remembered; beyond it, full buckets (no news) are forgotten."""
WITHHELD = "withheld"
"""``outcome`` of a held cheque never credited: its stamper was caught during the hold."""
EARLY = (ChequeRefusal.WRONG_CHAIN, ChequeRefusal.WRONG_CONTRACT, ChequeRefusal.WRONG_RECIPIENT)


@dataclass(frozen=True, slots=True)
class Credited:
    """An accepted cheque: ``credited`` credits added now, ``held`` more after the hold;
    ``account`` the client's account now (None: a new client, nothing credited yet)."""

    credited: int
    account: Account | None
    held: int = 0

    @property
    def balance(self) -> int:
        return 0 if self.account is None else self.account.balance


@dataclass(frozen=True, slots=True)
class ChequeRefused:
    """A refused cheque and the message for the payer; nothing was credited."""

    code: str
    message: str


class ChequeIntake:
    """Judges and credits payers' cheques (see the module docstring)."""

    def __init__(
        self,
        core: PayeeCore,
        fraud: FraudFiler,
        clock: Callable[[], float],
        on_credit: Callable[[int], None] | None = None,
    ) -> None:
        self.core = core
        self.on_credit = on_credit  # told the credits of each cheque credited (metrics)
        self.fraud = fraud
        self.clock = clock
        self.buckets: dict[bytes, Bucket] = {}
        self.spoiled: set[bytes] = set()  # held cheques found in a fraud pair
        self._timers: dict[bytes, asyncio.TimerHandle] = {}
        self._maturing: set[bytes] = set()
        self.tasks: set[asyncio.Task[bool]] = set()
        self._sweeps: set[asyncio.Task[None]] = set()

    # -- payment --------------------------------------------------------------------------------

    async def pay(self, client: bytes, wire: bytes, account_sig: bytes) -> Credited | ChequeRefused:
        """Judge one cheque for ``client``; credit it once if good. ``account_sig`` is the
        payer's ``Credit(cheque, client)`` signature: only the payer names the account a
        cheque pays for. Raises ``ChainError`` or ``LedgerError`` when a dependency fails
        (nothing is credited then)."""
        core = self.core
        try:
            domain, sc = decode_stamped(wire)
        except ValueError as exc:
            return ChequeRefused("malformed", f"malformed: {exc}; nothing was credited")
        head, confirmed = await core.head()
        # Cheques for another chain, contract or recipient are refused before any read.
        early = check_cheque(domain, sc, core.policy, None, None, head)
        if isinstance(early, Refused) and early.reason in EARLY:
            return self.refuse(early.reason, domain, sc)
        opened = await core.open_lotteries()
        lottery = await core.lottery(sc.cheque.lottery, confirmed)
        stamper = None
        near: list[Kept] = []
        if lottery is not None:
            # What the other processes on this database found and stored counts too.
            await self.fraud.learn_caught()
            stamper = await core.stamper(lottery.stamper, confirmed)
            # A view at most REFRESH_S old is enough here: the exact look is after the insert.
            await core.refresh(lottery.id, REFRESH_S)
            near = self._verified_overlaps(domain, lottery, sc)
        exposed = exposure_of(lottery.stamper, lottery.id, opened.values()) if lottery else 0
        verdict = check_cheque(
            domain, sc, core.policy, lottery, stamper, head, [k.sc.cheque for k in near], exposed
        )
        if isinstance(verdict, Refused):
            if verdict.reason is ChequeRefusal.OVERLAP and lottery is not None:
                partner = find_fraud_partner(domain, lottery, sc, [k.sc for k in near])
                # Only a pair the contract would accept is evidence; else it is just refused.
                if partner is not None:
                    await self.fraud.keep(
                        lottery, wire, sc, next(k for k in near if k.sc is partner)
                    )
                    self.spoil(partner.cheque)
            return self.refuse(verdict.reason, domain, sc)
        assert lottery is not None
        # The payer, not whoever carries the cheque, chose the client it pays for.
        wrong_account = check_account_signature(domain, sc, lottery, client, account_sig)
        if wrong_account is not None:
            return self.refuse(wrong_account.reason, domain, sc)
        assert stamper is not None
        return await self._accept(client, wire, sc, verdict, lottery, stamper)

    def _verified_overlaps(
        self, domain: Domain, lottery: LotteryState, sc: StampedCheque
    ) -> list[Kept]:
        """Kept cheques overlapping ``sc``; peers' ones not stamped by the lottery's stamper
        are junk and leave the book first."""
        c = sc.cheque
        book = self.core.book
        near = book.overlapping(c.lottery, c.start, c.end)
        good: list[Kept] = []
        for kept in near:
            # A peer's cheque counts only if the lottery's stamper really stamped it.
            if not kept.ours and recover_stamper(domain, kept.sc.cheque, kept.sc.stamp_sig) != (
                lottery.stamper
            ):
                book.remove(kept.cheque_id)
                continue
            good.append(kept)
        return good

    async def _exposure_covered(self, lottery: LotteryState, stamper: StamperState) -> bool:
        """Whether the stamper's burnt share still covers the prizes of our open lotteries it
        stamps, as the store has them now (another process may have opened one meanwhile)."""
        opened = await self.core.open_lotteries(max_age_s=0)
        exposed = exposure_of(lottery.stamper, lottery.id, opened.values())
        # The same comparison as ``check_cheque``'s STAMPER_EXPOSURE.
        return stamper.deposit * self.core.policy.burnt_bps >= (exposed + lottery.prize) * BPS

    async def _accept(
        self,
        client: bytes,
        wire: bytes,
        sc: StampedCheque,
        ok: Accepted,
        lottery: LotteryState,
        stamper: StamperState,
    ) -> Credited | ChequeRefused:
        core = self.core
        credits = credits_for(ok.value, core.settings.credit_price_wei)
        current = await core.ledger.get(client)
        # The account can hold the credits: the ledger would saturate (and lose them).
        if not fits_account(0 if current is None else current.balance, credits):
            return self.refuse(ChequeRefusal.TOO_LARGE, core.domain, sc)
        # Tokens are taken before any await, so concurrent requests of this process never
        # share them; a cheque refused below keeps them spent (it can only be held, never
        # credited, because of that).
        at_once, bucket = pace_cheque(
            self.buckets.get(lottery.id), ok.value, self.clock(), core.settings.pace
        )
        self.buckets[lottery.id] = bucket
        if len(self.buckets) > MAX_BUCKETS:
            self._forget_full(self.clock())
        row = ChequeRow(
            ok.cheque_id, lottery.id, wire, client, credits, lottery.reveal_block, int(time.time())
        )
        # Recorded first (durable, once per cheque id across every process), then looked at.
        if not await core.cheques.hold_pending(row):
            return self.refuse(ChequeRefusal.DUPLICATE, core.domain, sc)
        if await self._overlapped(row, lottery, sc):
            await core.cheques.withhold_pending(ok.cheque_id, OVERLAP_SPOILED)
            return self.refuse(ChequeRefusal.OVERLAP, core.domain, sc)
        # The exposure rule (T9) over the open lotteries every process stored, ours now in.
        if not await self._exposure_covered(lottery, stamper):
            await core.cheques.withhold_pending(ok.cheque_id, OVEREXPOSED)
            return self.refuse(ChequeRefusal.STAMPER_EXPOSURE, core.domain, sc)
        if at_once:
            account = await core.ledger.credit_held(client, credits, ok.cheque_id)
            if account is None:
                # Settled by another process meanwhile, as a held cheque is: credited (a
                # zero hold) or withheld (its stamper was caught). "Held" says just that.
                result = Credited(0, current, held=credits)
            else:
                self._credited(credits)
                result = Credited(credits, account)
        else:
            # Beyond what an honest payer could have spent by now: credited after the hold.
            self.schedule(ok.cheque_id, core.settings.hold_s)
            result = Credited(0, current, held=credits)
        ours = Kept(sc, wire, ok.cheque_id, None, pending=not at_once)
        if not core.book.add_ours(ours):
            await self._met_gossip(lottery, ours)
        if core.open is not None:
            core.open[lottery.id] = lottery
        core.gossip.send(wire)
        log.info(
            "cheque credited" if at_once else "cheque held",
            extra={
                "client": client.hex()[:16],
                "lottery": lottery.id.hex()[:16],
                "value_wei": ok.value,
                "credits": credits,
            },
        )
        return result

    async def _met_gossip(self, lottery: LotteryState, ours: Kept) -> None:
        """A peer's cheque for our tickets arrived while ours was being stored: a real pair
        is evidence (the peer's cheque stored, the stamper caught, a held cheque of ours
        never credited); forged ones are dropped. Ours then takes its place in the book."""
        book = self.core.book
        c = ours.sc.cheque
        near = [k for k in book.overlapping(c.lottery, c.start, c.end) if not k.ours]
        partner = find_fraud_partner(self.core.domain, lottery, ours.sc, [k.sc for k in near])
        if partner is not None:
            theirs = next(k for k in near if k.sc is partner)
            self.spoil(c)
            await self.fraud.keep(lottery, theirs.wire, theirs.sc, ours)
        for kept in near:
            book.remove(kept.cheque_id)
        book.add_ours(ours)

    async def _overlapped(self, row: ChequeRow, lottery: LotteryState, sc: StampedCheque) -> bool:
        """Whether any other cheque stored for the lottery (by any process) shares a ticket
        with ``row``; a real pair is filed as evidence."""
        core = self.core
        start, end = row_range(row)
        rows = await core.refresh(row.lottery)
        others = [
            r for r in rows if r.cheque_id != row.cheque_id and _meets(row_range(r), start, end)
        ]
        if not others:
            return False
        # Another process's cheque (or evidence): the stamper stamped these tickets twice.
        stamped = [(r, decode_stamped(r.wire)[1]) for r in others]
        partner = find_fraud_partner(core.domain, lottery, sc, [p for _, p in stamped])
        # A stored row no real pair can be made with is a forged relic (older versions
        # kept peers' gossip unverified): it blocks nothing.
        if partner is None:
            return False
        found = next(r for r, p in stamped if p is partner)
        await self.fraud.keep(lottery, row.wire, sc, Kept(partner, found.wire, found.cheque_id))
        return True

    def _credited(self, credits: int) -> None:
        if self.on_credit is not None:
            self.on_credit(credits)

    def _forget_full(self, now: float) -> None:
        """A full bucket is what a new lottery starts with: forgetting it changes nothing."""
        pace = self.core.settings.pace
        for lottery_id, bucket in list(self.buckets.items()):
            if refill(bucket, now, pace).tokens >= pace.burst_wei:
                del self.buckets[lottery_id]

    def refuse(self, reason: ChequeRefusal, domain: Domain, sc: StampedCheque) -> ChequeRefused:
        settings = self.core.settings
        detail = ""
        if reason is ChequeRefusal.WRONG_CHAIN:
            detail = f"chain {domain.chain_id}, this gateway settles on {self.core.domain.chain_id}"
        elif reason is ChequeRefusal.WRONG_RECIPIENT:
            detail = f"this gateway is {checksum_address(self.core.key.address)}"
        elif reason is ChequeRefusal.BELOW_MINIMUM:
            detail = f"one credit costs {settings.credit_price_wei} wei"
        elif reason is ChequeRefusal.STAMPER_DEPOSIT_LOW:
            detail = f"minimum {settings.min_stamper_deposit} wei"
        elif reason is ChequeRefusal.REVEAL_TOO_CLOSE:
            detail = f"margin {settings.reveal_margin} blocks"
        elif reason is ChequeRefusal.STAMPER_EXPOSURE:
            detail = f"burnt share {self.core.policy.burnt_bps} bps of the stamper's deposit"
        log.info(
            "cheque refused",
            extra={"reason": reason.value, "lottery": sc.cheque.lottery.hex()[:16]},
        )
        return ChequeRefused(reason.value, describe_refusal(reason, detail))

    # -- held cheques ---------------------------------------------------------------------------

    def spoil(self, cheque: Cheque) -> None:
        """A held cheque of ours turned out to be half of a fraud pair: never credit it."""
        self.spoiled.add(cheque_hash(cheque))

    def schedule(self, cheque_id: bytes, delay: float) -> None:
        loop = asyncio.get_running_loop()
        old = self._timers.pop(cheque_id, None)
        if old is not None:
            old.cancel()
        self._timers[cheque_id] = loop.call_later(max(0.0, delay), self._due, cheque_id)

    def _due(self, cheque_id: bytes) -> None:
        self._timers.pop(cheque_id, None)
        # One maturing at a time per cheque in this process (the store keeps it once anyway).
        if cheque_id in self._maturing:
            return
        self._maturing.add(cheque_id)
        task = asyncio.create_task(self._mature_or_retry(cheque_id), name="rpcpay-cheque-hold")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _mature_or_retry(self, cheque_id: bytes) -> bool:
        try:
            return await self.mature(cheque_id)
        except (ChainError, LedgerError) as exc:
            # The cheque stays held (durably); try again shortly.
            log.warning("held cheque not settled yet", extra={"error": str(exc)})
            self.schedule(cheque_id, RETRY_S)
            return False
        finally:
            self._maturing.discard(cheque_id)

    async def resume(self) -> None:
        """Schedule every held cheque in the store for the rest of its hold: after a
        restart, and from the claim loop for cheques another process recorded and did not
        settle (it died, or it is slow): whichever process matures one credits it, once."""
        now = time.time()
        for row in await self.core.cheques.pending_cheques():
            if row.cheque_id in self._timers or row.cheque_id in self._maturing:
                continue
            self.schedule(row.cheque_id, row.received + self.core.settings.hold_s - now)

    async def mature(self, cheque_id: bytes) -> bool:
        """Credit a held cheque whose hold is over, unless its stamper was caught or the
        cheque is half of a fraud pair; True when credited."""
        core = self.core
        row = await core.cheques.pending_cheque(cheque_id)
        if row is None:
            return False
        assert row.client is not None
        lottery = await core.lottery(row.lottery, None)
        await self.fraud.learn_caught(force=True)
        caught = lottery is None or lottery.stamper in core.caught
        if lottery is not None and not caught:
            _, confirmed = await core.head()
            caught = (await core.stamper(lottery.stamper, confirmed)).slashed
        # A cheque of a caught stamper, or one another cheque overlaps, is never credited.
        spoiled = cheque_id in self.spoiled
        if lottery is not None and not caught and not spoiled:
            spoiled = await self._overlapped(row, lottery, decode_stamped(row.wire)[1])
        if caught or spoiled:
            await core.cheques.withhold_pending(cheque_id, WITHHELD)
            log.warning(
                "held cheque withheld: its stamper cheated",
                extra={"cheque": cheque_id.hex()[:16]},
            )
            return False
        current = await core.ledger.get(row.client)
        # The credits still fit the account (it may have grown during the hold).
        if not fits_account(0 if current is None else current.balance, row.credits):
            await core.cheques.withhold_pending(cheque_id, WITHHELD)
            return False
        # Caught while this was being read (gossip arrived meanwhile): still never credited.
        if lottery is None or lottery.stamper in core.caught or cheque_id in self.spoiled:
            await core.cheques.withhold_pending(cheque_id, WITHHELD)
            return False
        account = await core.ledger.credit_held(row.client, row.credits, cheque_id)
        kept = core.book.get(cheque_id)
        if kept is not None:
            core.book.replace(Kept(kept.sc, kept.wire, cheque_id, None, pending=False))
        if account is not None:
            self._credited(row.credits)
            log.info(
                "held cheque credited",
                extra={"client": row.client.hex()[:16], "credits": row.credits},
            )
        return account is not None

    def withhold_stamper(self, stamper: bytes) -> None:
        """The stamper was caught: its held cheques will be withheld when due (now)."""
        task = asyncio.create_task(self._withhold(stamper), name="rpcpay-cheque-withhold")
        self._sweeps.add(task)
        task.add_done_callback(self._sweeps.discard)

    async def _withhold(self, stamper: bytes) -> None:
        try:
            rows = await self.core.cheques.pending_cheques()
        except LedgerError as exc:
            # Each stays held; its own timer (or the claim loop's sweep) settles it.
            log.warning("held cheques not swept", extra={"error": str(exc)})
            return
        for row in rows:
            lottery = self.core.lotteries.get(row.lottery)
            if lottery is not None and lottery.stamper == stamper:
                timer = self._timers.pop(row.cheque_id, None)
                if timer is not None:
                    timer.cancel()
                self._due(row.cheque_id)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks: list[asyncio.Task[Any]] = [*self.tasks, *self._sweeps]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _meets(span: tuple[int, int], start: int, end: int) -> bool:
    """Whether ``[span)`` and ``[start, end)`` share a ticket."""
    return span[0] < end and start < span[1]
