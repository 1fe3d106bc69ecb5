"""The payee of the lottery rail in the gateway: ``ChequeDesk`` wires its four parts.

- intake (``cheque_intake``): a payer's cheque in, credits out, at once or after a hold;
- gossip (``cheque_gossip``): peers' cheques in, overlaps out, peers learnt;
- fraud filing (``cheque_fraud``): evidence kept, proofs filed, peers told;
- claims (``cheque_claims``): wins claimed after each reveal, lotteries closed.

They share a ``PayeeCore`` (settings, cached chain reads, the cheque book). The desk is
what the gateway's app and server see; docs/lottery.md §15-§17 is the spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rpcpay.gateway.cheque_claims import Claimer
from rpcpay.gateway.cheque_core import LotterySettings, PayeeCore, Receipts
from rpcpay.gateway.cheque_fraud import FraudFiler
from rpcpay.gateway.cheque_gossip import GossipIntake, GossipReport
from rpcpay.gateway.cheque_intake import ChequeIntake, ChequeRefused, Credited
from rpcpay.ledger.cheque_bridge import ChequeDeskLedger
from rpcpay.ledger.sqlite_store import SqliteLedgerStore
from rpcpay.lottery.cheque import StampedCheque
from rpcpay.lottery.eth import EthKey, checksum_address
from rpcpay.lottery.gossip import GossipSender

if TYPE_CHECKING:
    from rpcpay.chain.settlement import Receipt, SettlementChain

__all__ = ["ChequeDesk", "ChequeRefused", "Credited", "GossipReport", "LotterySettings"]


class ChequeDesk:
    """The payee: see the module docstring. One per gateway; call from its event loop."""

    def __init__(
        self,
        chain: SettlementChain,
        key: EthKey,
        store: SqliteLedgerStore,
        ledger: ChequeDeskLedger,
        settings: LotterySettings,
        gossip: GossipSender | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        sender = gossip or GossipSender(list(settings.gossip_peers), self_url=settings.public_url)
        self.core = PayeeCore(chain, key, store, ledger, settings, sender)
        self.fraud = FraudFiler(self.core, self._caught)
        self.intake = ChequeIntake(self.core, self.fraud, clock)
        self.gossip_in = GossipIntake(self.core, self.fraud, self.intake)
        self.claimer = Claimer(self.core, self.fraud.retry_evidence)
        self._claim_task: asyncio.Task[None] | None = None

    def _caught(self, stamper: bytes) -> None:
        self.intake.withhold_stamper(stamper)

    # -- what the app, the server and tests see -------------------------------------------------

    @property
    def chain(self) -> SettlementChain:
        return self.core.chain

    @property
    def key(self) -> EthKey:
        return self.core.key

    @property
    def store(self) -> SqliteLedgerStore:
        return self.core.store

    @property
    def settings(self) -> LotterySettings:
        return self.core.settings

    @property
    def gossip(self) -> GossipSender:
        return self.core.gossip

    @gossip.setter
    def gossip(self, sender: GossipSender) -> None:
        self.core.gossip = sender

    @property
    def claims(self) -> Receipts[Receipt]:
        return self.claimer.claims

    @property
    def proofs(self) -> Receipts[Receipt]:
        return self.fraud.proofs

    @property
    def commits(self) -> Receipts[Receipt]:
        return self.fraud.commits

    @property
    def _filing(self) -> set[bytes]:
        return self.fraud.filing

    def start(self) -> None:
        """Start gossiping, the claim loop, and the holds left by a previous run."""
        self.core.gossip.start()
        self.intake.resume()
        self._claim_task = asyncio.create_task(self.claimer.loop(), name="rpcpay-lottery-claims")

    async def close(self) -> None:
        if self._claim_task is not None:
            self._claim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._claim_task
        await self.intake.close()
        await self.gossip_in.close()
        await self.fraud.close()
        await self.core.gossip.close()

    def info(self) -> dict[str, object]:
        """What a payer (or a peer) needs to pay this gateway (``lottery_info``)."""
        s = self.core.settings
        return {
            "recipient": checksum_address(self.core.key.address),
            "chain_id": self.core.domain.chain_id,
            "contract": checksum_address(self.core.domain.contract),
            "credit_price_wei": str(s.credit_price_wei),
            "min_stamper_deposit": str(s.min_stamper_deposit),
            "reveal_margin": s.reveal_margin,
            "confirmations": s.confirmations,
            "rate_wei_per_minute": str(s.rate_wei_per_minute),
            "burst_wei": str(s.burst_wei),
            "hold_s": s.hold_s,
            "gossip_url": s.public_url,
            "gossip_peers": self.core.gossip.peer_urls(),
        }

    def ours(self, lottery_id: bytes) -> list[StampedCheque]:
        """Our own cheques of a lottery (credited or held)."""
        self.core.load(lottery_id)
        return [k.sc for k in self.core.book.ours(lottery_id)]

    def kept(self, lottery_id: bytes) -> list[StampedCheque]:
        """Every cheque of a lottery in memory: ours and peers' gossip."""
        self.core.load(lottery_id)
        book = self.core.book
        return [k.sc for k in book.overlapping(lottery_id, 0, 2**256)]

    async def pay(self, client: bytes, wire: bytes, account_sig: bytes) -> Credited | ChequeRefused:
        return await self.intake.pay(client, wire, account_sig)

    async def receive_gossip(self, wires: list[bytes], sender: str = "unknown") -> tuple[int, int]:
        """(kept, fraud pairs found) of a gossip batch; ``receive_gossip_report`` says more."""
        report = await self.gossip_in.receive(sender, wires)
        return report.held, report.fraud

    async def receive_gossip_report(self, sender: str, wires: list[bytes]) -> GossipReport:
        return await self.gossip_in.receive(sender, wires)

    def admit_gossip(self, sender: str, count: int) -> bool:
        return self.gossip_in.admit(sender, count, time.monotonic())

    def learn_peer(self, url: str) -> None:
        self.gossip_in.learn(url)

    async def retry_evidence(self) -> None:
        await self.fraud.retry_evidence()

    async def settle_once(self) -> None:
        await self.claimer.settle_once()
