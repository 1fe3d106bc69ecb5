"""Gossip intake: peers' cheques in, overlaps out (docs/lottery.md §16).

Every incoming cheque is checked for an overlap **before** any bound applies, so no
amount of junk can blind the check (issue 9: 4,096 one-wei cheques used to fill a
per-lottery cap, after which overlaps went unchecked). Per cheque, cheapest first:

1. it decodes, names our chain and contract, pays someone else, has a non-empty range
   inside ``[0, 2^128)``, and is new (one Keccak hash): else a coded count, no work;
2. its range is looked up in the book (bisection, no signature);
3. no overlap: kept, within the per-sender and per-recipient bounds (``ChequeBook``),
   **unverified** (a forged one is dropped the moment it overlaps anything real);
4. an overlap: the lottery's terms are read (our open lotteries from memory, others
   from the chain once, unknown ids cached), then ``find_fraud_partner`` verifies the
   stamps: a real pair is evidence (stored, filed, forwarded to every peer); forged
   kept cheques it met are dropped and the newcomer is kept if its stamp is good.

Each sender (remote address) may post ``SENDER_RATE`` cheques a second with a burst of
``SENDER_BURST``; beyond that the request is answered 429 before its body is read, so a
flood costs the event loop almost nothing and a sender that is refused retries
(``GossipSender`` backs off): refusal is explicit, never a silent drop.

Several processes on one database: the kept peers' cheques are per process (a peer's
batch reaches the one process its request landed on); our own cheques, whichever
process stored them, are read from the store at most ``REFRESH_S`` stale, and a fraud
pair found here is stored, so every process learns the stamper was caught
(docs/lottery.md §9.1).

Measured (bench/gossip_intake.py): see docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import aiohttp

from rpcpay.gateway.cheque_book import Kept
from rpcpay.gateway.cheque_core import REFRESH_S, PayeeCore
from rpcpay.gateway.cheque_fraud import FraudFiler
from rpcpay.gateway.cheque_intake import ChequeIntake
from rpcpay.lottery.cheque import MAX_PRIZE, decode_stamped
from rpcpay.lottery.eip712 import cheque_hash, recover_stamper
from rpcpay.lottery.gossip import peer_name
from rpcpay.lottery.pacing import Bucket, PacePolicy, pace_cheque
from rpcpay.lottery.rules import find_fraud_partner

__all__ = ["SENDER_BURST", "SENDER_RATE", "GossipIntake", "GossipReport"]

log = logging.getLogger("rpcpay.lottery.gossip")

SENDER_RATE = 5_000
"""Gossiped cheques a second one sender may post (an honest payee sends what it is paid)."""
SENDER_BURST = 20_000
MAX_SENDERS = 1024
"""Senders whose rate is tracked; the least recent is forgotten first."""
LEARN_TIMEOUT_S = 5.0


@dataclass
class GossipReport:
    """What became of one gossip request: kept, fraud pairs found, and coded refusals."""

    held: int = 0
    fraud: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, object]:
        return {"held": self.held, "fraud": self.fraud, "refused": dict(self.refused)}


class GossipIntake:
    """Checks peers' cheques against the book (see the module docstring)."""

    def __init__(self, core: PayeeCore, fraud: FraudFiler, intake: ChequeIntake) -> None:
        self.core = core
        self.fraud = fraud
        self.intake = intake
        self._senders: OrderedDict[str, Bucket] = OrderedDict()
        self._rate = PacePolicy(SENDER_RATE * 60, SENDER_BURST, 0.0)
        self._learning: set[str] = set()
        self._refused_urls: OrderedDict[str, None] = OrderedDict()  # not asked again
        self.tasks: set[asyncio.Task[None]] = set()

    def admit(self, sender: str, count: int, now: float) -> bool:
        """Whether ``sender`` may post ``count`` cheques now (its token bucket)."""
        ok, bucket = pace_cheque(self._senders.get(sender), count, now, self._rate)
        self._senders[sender] = bucket
        self._senders.move_to_end(sender)
        while len(self._senders) > MAX_SENDERS:
            self._senders.popitem(last=False)
        return ok

    async def receive(self, sender: str, wires: list[bytes]) -> GossipReport:
        """Check and keep a batch of peers' cheques from ``sender``."""
        core = self.core
        report = GossipReport()
        open_ids = await core.open_lotteries()
        await self.fraud.learn_caught()
        confirmed: int | None = None
        for wire in wires:
            try:
                domain, sc = decode_stamped(wire)
            except ValueError:
                report.refused["malformed"] += 1
                continue
            c = sc.cheque
            # Only cheques of our chain and contract, paid to others, count.
            if domain != core.domain:
                report.refused["wrong_domain"] += 1
                continue
            if c.recipient == core.key.address:
                report.refused["ours"] += 1
                continue
            # A range that no lottery can hold is nobody's ticket.
            if c.value == 0 or c.end > MAX_PRIZE:
                report.refused["range_outside"] += 1
                continue
            h = cheque_hash(c)
            # New to us.
            if h in core.book:
                report.refused["duplicate"] += 1
                continue
            if c.lottery in open_ids:
                await core.refresh(c.lottery, REFRESH_S)
            near = core.book.overlapping(c.lottery, c.start, c.end)
            # No overlap: keep it (unverified), within the bounds.
            if not near:
                if core.book.add_peers(Kept(sc, wire, h, sender)):
                    report.held += 1
                else:
                    report.refused["capped"] += 1
                continue
            # An overlap: whose lottery, and is it a real pair?
            lottery = open_ids.get(c.lottery)
            if lottery is None:
                # Read at the confirmed block, so an unknown id is cached (one read a block).
                if confirmed is None:
                    _, confirmed = await core.head()
                lottery = await core.lottery(c.lottery, confirmed)
            if lottery is None:
                # No such lottery: every cheque naming it is junk.
                for kept in near:
                    if not kept.ours:
                        core.book.remove(kept.cheque_id)
                report.refused["unknown_lottery"] += 1
                continue
            # A stamper we caught already: its evidence is kept, nothing more to learn.
            if lottery.stamper in core.caught:
                report.refused["stamper_slashed"] += 1
                continue
            partner = find_fraud_partner(domain, lottery, sc, [k.sc for k in near])
            if partner is not None:
                kept_partner = next(k for k in near if k.sc is partner)
                await self.fraud.keep(lottery, wire, sc, kept_partner)
                if kept_partner.ours:
                    self.intake.spoil(partner.cheque)
                report.fraud += 1
                continue
            # No real pair: drop the forged cheques it met, keep it if its stamp is good.
            for kept in near:
                if not kept.ours and (
                    recover_stamper(domain, kept.sc.cheque, kept.sc.stamp_sig) != lottery.stamper
                ):
                    core.book.remove(kept.cheque_id)
            if recover_stamper(domain, c, sc.stamp_sig) != lottery.stamper:
                report.refused["bad_stamp"] += 1
            elif core.book.add_peers(Kept(sc, wire, h, sender)):
                report.held += 1
            else:
                report.refused["capped"] += 1
        return report

    # -- learning peers -------------------------------------------------------------------------

    def learn(self, url: str) -> None:
        """A sender named its public URL: gossip to it too, once its ``lottery_info`` shows
        our chain and contract (checked in the background)."""
        gossip = self.core.gossip
        base = url.rstrip("/")
        # Only http(s) URLs not known yet, one check at a time.
        if not base.startswith(("http://", "https://")) or base in self._learning:
            return
        if base in gossip.peer_urls() or base == gossip.self_url or base in self._refused_urls:
            return
        self._learning.add(base)
        task = asyncio.create_task(self._check_peer(base), name="rpcpay-gossip-learn")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _check_peer(self, base: str) -> None:
        body = {"jsonrpc": "2.0", "id": "0", "method": "lottery_info"}
        try:
            timeout = aiohttp.ClientTimeout(total=LEARN_TIMEOUT_S)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(base + "/json_rpc", json=body) as response,
            ):
                answer = json.loads(await response.read())
            info = answer["result"]
            same = (
                int(info["chain_id"]) == self.core.domain.chain_id
                and bytes.fromhex(str(info["contract"]).removeprefix("0x"))
                == self.core.domain.contract
            )
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            log.info("gossip peer not learnt", extra={"error": str(exc)})
            same = False
        finally:
            self._learning.discard(base)
        # A peer on our chain and contract: gossip to it from now on.
        if same and self.core.gossip.add_peer(base):
            log.info("gossip peer learnt", extra={"peer": peer_name(base)})
        elif not same:
            # Named URLs that are no peer are not asked again (a bounded memory of them).
            self._refused_urls[base] = None
            while len(self._refused_urls) > MAX_SENDERS:
                self._refused_urls.popitem(last=False)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
