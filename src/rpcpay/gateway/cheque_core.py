"""What the payee's parts share: its settings, its chain reads (cached), its cheque book.

``PayeeCore`` is owned by ``ChequeDesk`` (gateway/cheques.py) and handed to the four
parts: intake (``cheque_intake``), gossip (``cheque_gossip``), fraud filing
(``cheque_fraud``) and claims (``cheque_claims``).

Chain reads go through ``asyncio.to_thread`` and are cached: an open lottery for good
(its terms never change), a lottery the chain does not know for the confirmed block it
was asked at (a bounded LRU, so a flood of made-up ids costs one ``eth_call`` each per
block at most, never one per request), a stamper per confirmed block.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from rpcpay.gateway.cheque_book import ChequeBook, Kept
from rpcpay.ledger.cheque_bridge import ChequeDeskLedger
from rpcpay.ledger.sqlite_store import SqliteLedgerStore
from rpcpay.lottery.cheque import Domain, decode_stamped
from rpcpay.lottery.eth import EthKey
from rpcpay.lottery.gossip import GossipSender
from rpcpay.lottery.pacing import (
    DEFAULT_BURST_WEI,
    DEFAULT_HOLD_S,
    DEFAULT_RATE_WEI_PER_MINUTE,
    PacePolicy,
)
from rpcpay.lottery.payee import DEFAULT_CREDIT_PRICE_WEI, DEFAULT_MIN_STAMPER_DEPOSIT
from rpcpay.lottery.rules import (
    BPS,
    DEFAULT_CONFIRMATIONS,
    DEFAULT_REVEAL_MARGIN,
    PayeePolicy,
)
from rpcpay.lottery.state import LotteryState, StamperState

if TYPE_CHECKING:  # the chain package loads py-evm: only a gateway with the rail pays for it
    from rpcpay.chain.settlement import SettlementChain

__all__ = ["LotterySettings", "PayeeCore", "Receipts"]

log = logging.getLogger("rpcpay.lottery.payee")

UNKNOWN_CACHE = 4096
"""Lottery ids remembered as unknown (per confirmed block)."""
MAX_RECEIPTS = 256
"""Claim, proof and commitment receipts kept in memory (for operators and tests)."""

T = TypeVar("T")


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
    rate_wei_per_minute: int = DEFAULT_RATE_WEI_PER_MINUTE  # credited at once, per lottery
    burst_wei: int = DEFAULT_BURST_WEI  # ... plus this much
    hold_s: float = DEFAULT_HOLD_S  # a cheque beyond that waits this long (gossip rounds)
    public_url: str | None = None  # announced to peers (Rpcpay-Gossip-From, lottery_info)

    @property
    def pace(self) -> PacePolicy:
        return PacePolicy(self.rate_wei_per_minute, self.burst_wei, self.hold_s)


class Receipts(list[T], Generic[T]):
    """A list that keeps only its newest ``MAX_RECEIPTS`` items (a long-running gateway)."""

    def append(self, item: T) -> None:
        super().append(item)
        if len(self) > MAX_RECEIPTS:
            del self[0]


@dataclass
class PayeeCore:
    """The payee's shared state and cached chain reads (see the module docstring)."""

    chain: SettlementChain
    key: EthKey
    store: SqliteLedgerStore
    ledger: ChequeDeskLedger
    settings: LotterySettings
    gossip: GossipSender
    domain: Domain = field(init=False)
    policy: PayeePolicy = field(init=False)
    book: ChequeBook = field(default_factory=ChequeBook)
    caught: set[bytes] = field(default_factory=set)  # stampers we know cheated
    lotteries: dict[bytes, LotteryState] = field(default_factory=dict)
    unknown: OrderedDict[bytes, int] = field(default_factory=OrderedDict)
    stampers: tuple[int, dict[bytes, StamperState]] = (-1, {})
    # Our open lotteries (cheques paid to us, not closed): what a colluding stamper could
    # steal from us. None until loaded.
    open: dict[bytes, LotteryState] | None = None
    chain_reads: int = 0

    def __post_init__(self) -> None:
        self.domain = self.chain.domain
        self.policy = PayeePolicy(
            recipient=self.key.address,
            domain=self.domain,
            min_stamper_deposit=self.settings.min_stamper_deposit,
            reveal_margin=self.settings.reveal_margin,
            min_value=self.settings.credit_price_wei,
        )

    async def open_lotteries(self) -> dict[bytes, LotteryState]:
        """Our open lotteries, read from the chain once per process, then kept up to date
        as we credit and close; also loads the contract's burnt share into the policy."""
        if self.open is None:
            params = await asyncio.to_thread(self.chain.params)
            burnt = BPS - params.whistleblower_bps - params.compensation_bps
            self.policy = replace(self.policy, burnt_bps=burnt)
            found: dict[bytes, LotteryState] = {}
            for lottery_id, _reveal in self.store.open_lotteries():
                state = await asyncio.to_thread(self.chain.lottery, lottery_id, None)
                # A lottery reorged away holds nothing anyone can steal.
                if state is not None:
                    found[lottery_id] = state
            if self.open is None:  # another request may have loaded it meanwhile
                self.open = found
        return self.open

    async def head(self) -> tuple[int, int]:
        head = await asyncio.to_thread(self.chain.block_number)
        return head, max(head - self.settings.confirmations, 0)

    def known_unknown(self, lottery_id: bytes, confirmed: int) -> bool:
        """True when the chain said at this confirmed block that the lottery does not exist."""
        return self.unknown.get(lottery_id) == confirmed

    async def lottery(self, lottery_id: bytes, confirmed: int | None) -> LotteryState | None:
        """The lottery at the confirmed block (``None``: the newest). An open one is cached:
        its terms never change and it cannot settle before its reveal, which the margin
        keeps every credit before; an unknown one is cached for that block."""
        cached = self.lotteries.get(lottery_id)
        if cached is not None:
            return cached
        if confirmed is not None and self.known_unknown(lottery_id, confirmed):
            return None
        self.chain_reads += 1
        state = await asyncio.to_thread(self.chain.lottery, lottery_id, confirmed)
        if state is not None and not state.settled:
            self.lotteries[lottery_id] = state
        if state is None and confirmed is not None:
            self.unknown[lottery_id] = confirmed
            self.unknown.move_to_end(lottery_id)
            while len(self.unknown) > UNKNOWN_CACHE:
                self.unknown.popitem(last=False)
        return state

    async def stamper(self, address: bytes, confirmed: int) -> StamperState:
        """The stamper's entry at the confirmed block, read once per block; a stamper we
        caught cheating counts as slashed at once, before the chain's view confirms it."""
        block, cache = self.stampers
        if block != confirmed:
            cache = {}
            self.stampers = (confirmed, cache)
        state = cache.get(address)
        if state is None:
            state = await asyncio.to_thread(self.chain.stamper, address, confirmed)
            cache[address] = state
        return replace(state, slashed=True) if address in self.caught else state

    def load(self, lottery_id: bytes) -> None:
        """Bring a lottery's stored cheques into the book once (ours; peers' from older
        versions; evidence rows overlap and stay in the database only)."""
        if lottery_id in self.book.loaded:
            return
        self.book.loaded.add(lottery_id)
        rows = self.store.cheques_of(lottery_id)
        # Ours first: a stored peer's cheque (or evidence) never displaces one of ours.
        for row in sorted(rows, key=lambda r: r.client is None):
            if row.cheque_id in self.book:
                continue
            _, sc = decode_stamped(row.wire)
            kept = Kept(sc, row.wire, row.cheque_id, None if row.client else "stored")
            if row.client is not None:
                self.book.add_ours(kept)
            else:
                self.book.add_peers(kept)
