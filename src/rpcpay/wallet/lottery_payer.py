"""The lottery payer: pay each server a stamped cheque about every minute (docs/lottery.md §12).

The payer locks a prize in a lottery naming one stamper, then, every ``interval``
seconds and for each server it uses, hands out the next ``price * interval / 60`` wei
of the lottery's tickets: it signs the cheque and the stamper's fee cheque, moves its
cursor past both **on disk**, has the stamper stamp them (``POST /stamp``), and sends
the stamped cheque to the server's JSON-RPC method ``lottery_pay_cheque``. A cheque
is worth its value in expectation, so a server is paid its price per minute.

Lotteries rotate: a new one is created once the open ones are about to become
unusable (the stamper's reveal margin comes close, or the tickets run out), early
enough to be confirmed before the old one stops; lotteries nobody won are refunded
after their redeem window.

The rules are pure functions over the state (``lottery_payer_state``); ``LotteryPayer``
does the I/O: the chain through ``asyncio.to_thread`` (the ``SettlementChain`` calls are
synchronous), the stamper and the servers over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import aiohttp

from rpcpay.errors import ChainError, ConfigError, LotteryPaymentError
from rpcpay.lottery.cheque import Cheque, Domain, StampedCheque, decode_stamped, encode_stamped
from rpcpay.lottery.eip712 import sign_cheque, sign_credit
from rpcpay.lottery.eth import EthKey, checksum_address
from rpcpay.lottery.stamper import StamperPolicy, StampRequest, fee_cheque, fee_for
from rpcpay.lottery.stamper_wire import request_to_json, result_from_json
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.lottery_payer_fit import (
    GatewayTerms,
    check_gateway,
    credit_value,
    parse_lottery_info,
    payable,
    stricter_terms,
    unannounced_terms,
)
from rpcpay.wallet.lottery_payer_state import (
    LotteryStatus,
    PayerLottery,
    PayerStateFile,
    with_lottery,
)
from rpcpay.wire.rpc import ERROR_CHEQUE_REFUSED, METHOD_NOT_FOUND, STATUS_OK

if TYPE_CHECKING:  # the chain package loads py-evm: `rpcpay wallet` should not pay for it
    from rpcpay.chain.settlement import SettlementChain

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_PRICE_PER_MINUTE",
    "DEFAULT_PRIZE",
    "DEFAULT_REVEAL_BLOCKS",
    "GATEWAY_REFUSAL",
    "ChequePlan",
    "Delivery",
    "LotteryPayer",
    "RoundReport",
    "ServerSpec",
    "StamperInfo",
    "cheque_value",
    "choose_lottery",
    "is_refundable",
    "is_usable",
    "needs_new_lottery",
    "plan_cheque",
    "reveal_block_for",
]

log = logging.getLogger("rpcpay.wallet.lottery")

DEFAULT_INTERVAL = 60.0
"""Seconds between cheques to one server: the seed's "cca every minute per connection"."""
DEFAULT_PRICE_PER_MINUTE = 100 * 10**9
"""100 gwei per minute per server: vipnode's default host price (the seed's example)."""
DEFAULT_PRIZE = 6 * 10**15
"""0.006 ETH: small enough that a default gateway takes **two** at once (its minimum stamper
deposit of 0.033 ETH burns 40% = 0.0132 ETH if slashed, which must cover the prizes it
holds cheques in with that stamper, docs §9 T9): at a rotation the old lottery stays open
at the gateway until its reveal while the new one is paid, so 0.01 ETH stalled payments
for ~26 blocks every rotation (issue 9). Still ≥ 5 claims' gas at 10 gwei (docs §8)."""
BLOCK_S = 12.0
"""Seconds a block, to size a lottery's life to what its tickets last (Ethereum's slot)."""
DEFAULT_REVEAL_BLOCKS = 216_000
"""30 days of 12-second blocks, the default contract's ``max_reveal_delay`` (and capped by
the deployed one's): creating and refunding a lottery costs ~193k gas, which only a long
lottery amortises (bench/lottery_pricing.py: 64% of 3 vipnode servers' pay at 10 gwei/gas
for a week-long lottery, 15% for a 30-day one). The prize is locked that long, plus the
redeem window."""
ROTATION_SLACK = 5
"""Blocks, beyond the stamper's confirmations, by which a new lottery is created before the
current one becomes unusable (a minute of 12-second blocks)."""
GATEWAY_REFUSAL = ERROR_CHEQUE_REFUSED
"""The JSON-RPC error code with which a gateway refuses a cheque (no credit granted)."""
STAMP_ATTEMPTS = 3
MAX_OWED_INTERVALS = 60
"""A gateway whose one credit costs more than this many intervals of the payer's price for
it is dropped: the payer would pay it once an hour at best (docs/lottery.md §12)."""


# --- configuration and answers -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ServerSpec:
    """A server this payer pays: its JSON-RPC URL, its payee address (``None``: ask the
    gateway's ``lottery_info``), its price per minute in wei."""

    url: str
    recipient: bytes | None = None
    price_per_minute: int = DEFAULT_PRICE_PER_MINUTE

    @property
    def rpc_url(self) -> str:
        """Where ``lottery_pay_cheque`` goes: ``URL/json_rpc`` unless the URL names a path."""
        return (
            self.url
            if self.url.rstrip("/").endswith("/json_rpc")
            else self.url.rstrip("/") + ("/json_rpc")
        )


@dataclass(frozen=True, slots=True)
class StamperInfo:
    """A stamper's ``GET /info``: who it is and its terms."""

    stamper: bytes
    domain: Domain
    fee_bps: int
    reveal_margin: int
    confirmations: int

    @property
    def policy(self) -> StamperPolicy:
        return StamperPolicy(self.stamper, self.domain, self.fee_bps, self.reveal_margin)


@dataclass(frozen=True, slots=True)
class ChequePlan:
    """The next cheque to a server, its fee cheque, and where the cursor goes after both."""

    cheque: Cheque
    fee: Cheque | None
    next_cursor: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one cheque: ``paid`` (the server credited it), ``refused`` (the
    stamper or the server said no), or ``failed`` (unreachable)."""

    server: str
    value: int
    fee: int
    outcome: str
    message: str = ""
    credited: int = 0
    lottery: bytes = b""


@dataclass
class RoundReport:
    """One round: a delivery per server, and what the payer did on chain."""

    deliveries: list[Delivery] = field(default_factory=list)
    created: list[bytes] = field(default_factory=list)
    refunded: list[bytes] = field(default_factory=list)


# --- rules (pure) ------------------------------------------------------------------------
def cheque_value(price_per_minute: int, interval: float) -> int:
    """Wei of expected value for one interval at a per-minute price (at least 1 wei)."""
    return max(1, int(price_per_minute * interval) // 60)


def plan_cheque(
    lottery: PayerLottery, recipient: bytes, value: int, policy: StamperPolicy
) -> ChequePlan:
    """The cheque for ``value`` at the lottery's cursor, its fee cheque right after it (§5),
    and the cursor past both."""
    cheque = Cheque(lottery=lottery.id, recipient=recipient, start=lottery.cursor, value=value)
    fee = fee_cheque(policy, cheque)
    return ChequePlan(cheque, fee, (fee or cheque).end)


def is_usable(lottery: PayerLottery, head: int, info: StamperInfo, need: int) -> bool:
    """True when the stamper will stamp ``need`` more tickets of this lottery now."""
    # The payer still uses it, and it names this stamper.
    if lottery.status is not LotteryStatus.OPEN or lottery.terms.stamper != info.stamper:
        return False
    # It is confirmed as deep as the stamper wants.
    if head < lottery.created_block + info.confirmations:
        return False
    # The reveal is beyond the stamper's margin, and the tickets suffice.
    return head + info.reveal_margin < lottery.terms.reveal_block and lottery.left >= need


def choose_lottery(
    lotteries: Sequence[PayerLottery], head: int, info: StamperInfo, need: int
) -> PayerLottery | None:
    """The usable lottery that reveals first (spend the ones that end soonest)."""
    usable = [x for x in lotteries if is_usable(x, head, info, need)]
    return min(usable, key=lambda x: x.terms.reveal_block, default=None)


def needs_new_lottery(
    lotteries: Sequence[PayerLottery], head: int, info: StamperInfo, need: int
) -> bool:
    """True when no open lottery of this stamper will still take ``need`` tickets once a
    lottery created now is confirmed: then create one now, so payments never pause."""
    lead = info.confirmations + ROTATION_SLACK
    # No open lottery of this stamper has room and a margin beyond the lead.
    return not any(
        x.status is LotteryStatus.OPEN
        and x.terms.stamper == info.stamper
        and x.left >= need
        and head + lead + info.reveal_margin < x.terms.reveal_block
        for x in lotteries
    )


def reveal_block_for(head: int, reveal_blocks: int, max_reveal_delay: int) -> int:
    """The reveal block of a lottery created now: ``reveal_blocks`` ahead, within the
    contract's ``max_reveal_delay`` of the block the creation is mined in (≥ head + 1)."""
    return head + min(reveal_blocks, max_reveal_delay)


def lasting_blocks(prize: int, spend_per_round: int, interval: float) -> int:
    """Blocks a prize's tickets last at ``spend_per_round`` wei every ``interval`` seconds.

    A lottery should not run out of tickets long before its reveal: the payer would open
    the next one while the gateways still count the old one against the stamper (T9), and
    a third open lottery of one stamper is more than a default gateway accepts."""
    rounds = prize // max(1, spend_per_round)
    return max(1, int(rounds * interval / BLOCK_S))


def is_refundable(lottery: PayerLottery, head: int, redeem_blocks: int) -> bool:
    """True when the redeem window is over and the payer has not seen the lottery settle."""
    # Only lotteries not known to be paid or refunded.
    if lottery.status in (LotteryStatus.PAID, LotteryStatus.REFUNDED):
        return False
    return head > lottery.terms.reveal_block + redeem_blocks


def parse_stamper_info(obj: Any) -> StamperInfo:
    """``GET /info``'s answer; ``ValueError`` names what is missing."""
    # The answer is a protocol-1 object with every field.
    if not isinstance(obj, dict) or obj.get("protocol") != 1:
        raise ValueError("not a protocol 1 stamper")
    try:
        stamper = bytes.fromhex(str(obj["stamper"]).removeprefix("0x"))
        contract = bytes.fromhex(str(obj["contract"]).removeprefix("0x"))
        return StamperInfo(
            stamper=stamper,
            domain=Domain(chain_id=int(obj["chain_id"]), contract=contract),
            fee_bps=int(obj["fee_bps"]),
            reveal_margin=int(obj["reveal_margin"]),
            confirmations=int(obj["confirmations"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad stamper info: {exc}") from None


# --- the service ---------------------------------------------------------------------------
class LotteryPayer:
    """Issues, stamps and delivers cheques for a set of servers, from rotating lotteries."""

    def __init__(
        self,
        chain: SettlementChain,
        key: EthKey,
        state_file: PayerStateFile,
        stamper_url: str,
        servers: Sequence[ServerSpec],
        client_key: ClientKey,
        session: aiohttp.ClientSession,
        *,
        interval: float = DEFAULT_INTERVAL,
        prize: int = DEFAULT_PRIZE,
        reveal_blocks: int = DEFAULT_REVEAL_BLOCKS,
        timeout: float = 10.0,
    ) -> None:
        self.chain = chain
        self.key = key
        self.file = state_file
        self.stamper_url = stamper_url.rstrip("/")
        self.servers = tuple(servers)
        self.client_key = client_key
        self.session = session
        self.interval = interval
        self.prize = prize
        self.reveal_blocks = reveal_blocks
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.state = state_file.load_for(chain.chain_id, chain.contract, key.address)
        self.info: StamperInfo | None = None
        self.gateways: dict[str, GatewayTerms] = {}
        self.dropped: dict[str, str] = {}  # server URL -> why this payer will not pay it
        self.owed: dict[str, int] = {}  # server URL -> wei owed and not yet paid (< a credit)
        self.rounds = 0
        self.paid_value = 0
        self.paid_fees = 0
        self.failures = 0
        self.last_round: RoundReport | None = None

    # --- state ------------------------------------------------------------------------
    def _commit(self, lottery: PayerLottery) -> None:
        """Save ``lottery`` durably, then adopt it: nothing acts on a state not on disk."""
        state = with_lottery(self.state, lottery)
        self.file.save(state)
        self.state = state

    # --- stamper ------------------------------------------------------------------------
    async def _get_json(self, url: str) -> tuple[int, Any]:
        async with self.session.get(url, timeout=self.timeout) as response:
            return response.status, await response.json(content_type=None)

    async def stamper_info(self) -> StamperInfo:
        """Ask the stamper who it is, once; refuse one on another chain or contract."""
        if self.info is not None:
            return self.info
        try:
            _status, body = await self._get_json(self.stamper_url + "/info")
            info = parse_stamper_info(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise LotteryPaymentError(
                f"cannot get the stamper's terms from {self.stamper_url}/info: {exc}"
            ) from None
        # The stamper stamps on the chain and contract this payer settles on.
        if info.domain != self.chain.domain:
            raise ConfigError(
                f"the stamper at {self.stamper_url} serves chain {info.domain.chain_id}, "
                f"contract {checksum_address(info.domain.contract)}, not this one"
            )
        self.info = info
        return info

    # --- gateways -----------------------------------------------------------------------
    async def gateway_terms(self, server: ServerSpec) -> GatewayTerms | str:
        """The server's terms from its ``lottery_info``, asked once and checked against this
        payer (``ConfigError`` on a mismatch: every cheque would be refused); a string says
        why they are not known yet (asked again next round)."""
        known = self.gateways.get(server.url)
        if known is not None:
            return known
        if server.url in self.dropped:
            return self.dropped[server.url]
        body = {"jsonrpc": "2.0", "id": "0", "method": "lottery_info"}
        try:
            async with self.session.post(server.rpc_url, json=body, timeout=self.timeout) as r:
                raw = await r.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"server unreachable: {exc or type(exc).__name__}"
        try:
            answer = json.loads(raw)
        except ValueError:
            return f"server answered lottery_info with no JSON: {raw[:80]!r}"
        error = answer.get("error") if isinstance(answer, dict) else None
        terms: GatewayTerms | None
        if isinstance(error, dict) and error.get("code") == METHOD_NOT_FOUND:
            # Not an rpcpay gateway (or its rail is off): usable only with a typed-in address.
            terms = unannounced_terms(server)
            if terms is None:
                return (
                    f"server has no lottery_info ({error.get('message', '')}): it takes no "
                    "lottery cheques, or give its payee address as --server URL,0xADDRESS"
                )
            log.warning("server has no lottery_info: paying the address given, values not "
                        "rounded to its credits", extra={"server": server.url})  # fmt: skip
        elif isinstance(error, dict):
            message, code = error.get("message", ""), error.get("code")
            return f"server: lottery_info failed: {message} (code {code})"
        else:
            try:
                theirs, announced = parse_lottery_info(
                    answer.get("result") if isinstance(answer, dict) else None
                )
            except ValueError as exc:
                return f"server: {exc}"
            info = await self.stamper_info()
            deposit = (await asyncio.to_thread(self.chain.stamper, info.stamper)).deposit
            try:
                terms = check_gateway(server, self.chain.domain, theirs, announced, deposit)
                self._check_terms(server, terms)
            except ConfigError as exc:
                # One gateway's terms never stop the payments to the others.
                self.dropped[server.url] = f"dropped: {exc}"
                log.warning("gateway dropped", extra={"server": server.url, "reason": str(exc)})
                return self.dropped[server.url]
        self.gateways[server.url] = terms
        return terms

    def _check_terms(self, server: ServerSpec, terms: GatewayTerms) -> None:
        """``ConfigError`` when this payer will not pay the gateway on its terms."""
        per_interval = cheque_value(server.price_per_minute, self.interval)
        # The payer sets its price: a credit dearer than an hour of it is not worth waiting for.
        if terms.credit_price_wei > MAX_OWED_INTERVALS * per_interval:
            raise ConfigError(
                f"the gateway at {server.url} sells a credit for {terms.credit_price_wei} wei, "
                f"more than {MAX_OWED_INTERVALS} intervals of this payer's price for it "
                f"({per_interval} wei an interval): raise its price in --server or drop it"
            )
        # Its margins leave most of a lottery usable, or one gateway would stall them all.
        blocks = terms.reveal_margin + terms.confirmations + ROTATION_SLACK
        if blocks * 2 > self.reveal_blocks:
            raise ConfigError(
                f"the gateway at {server.url} wants a reveal margin of {terms.reveal_margin} "
                f"and {terms.confirmations} confirmations: more than half of this payer's "
                f"{self.reveal_blocks}-block lotteries would be unusable for it"
            )

    def value_for(self, server: ServerSpec, terms: GatewayTerms) -> int:
        """One interval's cheque to ``server`` when nothing is owed: its price for the
        interval as a whole number of its credits, at least one credit (docs/lottery.md
        §12, "the value rule"); what is actually sent is ``payable`` of what is owed."""
        return credit_value(cheque_value(server.price_per_minute, self.interval),
                            terms.credit_price_wei)  # fmt: skip

    def owe(self, server: ServerSpec, terms: GatewayTerms) -> tuple[int, int]:
        """(wei owed to ``server`` after this interval, the cheque to send now): whole
        credits, never more than owed; 0 when less than a credit is owed (paid later)."""
        per_interval = cheque_value(server.price_per_minute, self.interval)
        # What is owed never exceeds one credit or one interval: no catch-up bursts.
        owed = min(self.owed.get(server.url, 0) + per_interval,
                   max(per_interval, terms.credit_price_wei))  # fmt: skip
        return owed, payable(owed, terms.credit_price_wei)

    async def prepare(self) -> list[str]:
        """Ask the stamper and every server for their terms; a line per server saying
        whom and how much this payer will pay (or why it cannot yet)."""
        info = await self.stamper_info()
        lines = [
            f"stamper {checksum_address(info.stamper)} at {self.stamper_url}: fee "
            f"{info.fee_bps / 100:g}%, reveal margin {info.reveal_margin}, confirmations "
            f"{info.confirmations}"
        ]
        for server in self.servers:
            terms = await self.gateway_terms(server)
            if isinstance(terms, str):
                lines.append(f"server {server.url}: not yet: {terms}")
                continue
            value = self.value_for(server, terms)
            credits = (
                f" = {value // terms.credit_price_wei} credits of {terms.credit_price_wei} wei"
                if terms.announced
                else " (no lottery_info: payee as given, value not rounded)"
            )
            lines.append(
                f"server {server.url}: payee {checksum_address(terms.recipient)}, a cheque of "
                f"{value} wei{credits} every {self.interval:g} s"
            )
        return lines

    async def _post_stamp(self, request: StampRequest) -> tuple[int, Any]:
        """POST the request, resending the very same one on a timeout or 503 (the stamper
        answers a repeat with the same stamps, D13)."""
        body = request_to_json(request)
        last: str = ""
        for attempt in range(STAMP_ATTEMPTS):
            try:
                async with self.session.post(
                    self.stamper_url + "/stamp", json=body, timeout=self.timeout
                ) as response:
                    answer = await response.json(content_type=None)
                    if response.status != 503:
                        return response.status, answer
                    last = "stamper unavailable (503)"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                last = str(exc) or type(exc).__name__
            await asyncio.sleep(0.1 * 2**attempt)
        return 0, {"error": {"code": "unreachable", "message": last}}

    async def _resync_cursor(self, lottery: PayerLottery) -> None:
        """After an ``overlap``: move the cursor to where the stamper's ranges end."""
        try:
            status, body = await self._get_json(f"{self.stamper_url}/lottery/0x{lottery.id.hex()}")
            next_start = int(body["next_start"]) if status == 200 else 0
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            return  # the cursor stays; the next overlap answer tries again
        # Only forward: the cursor never moves back onto tickets already sent.
        if next_start > lottery.cursor:
            self._commit(replace(lottery, cursor=min(next_start, lottery.terms.prize)))

    # --- chain --------------------------------------------------------------------------
    async def create_lottery(
        self, info: StamperInfo, head: int, spend_per_round: int = 0
    ) -> PayerLottery:
        """Lock a new prize naming this stamper; the terms are saved before anything else.
        Its reveal comes no later than its tickets last at ``spend_per_round``."""
        params = await asyncio.to_thread(self.chain.params)
        blocks = self.reveal_blocks
        if spend_per_round > 0:
            floor = 2 * (info.confirmations + info.reveal_margin + ROTATION_SLACK)
            blocks = min(blocks, max(floor, lasting_blocks(self.prize, spend_per_round,
                                                           self.interval)))  # fmt: skip
        reveal = reveal_block_for(head, blocks, params.max_reveal_delay)
        # The lottery must outlive the stamper's margin and confirmations, or it is useless.
        if reveal <= head + info.confirmations + info.reveal_margin + 1:
            raise ConfigError(
                f"a lottery revealing {reveal - head} blocks ahead is never stamped: the stamper "
                f"wants {info.confirmations} confirmations and a margin of {info.reveal_margin}; "
                "raise --reveal-blocks"
            )
        salt = os.urandom(32)
        terms, receipt = await asyncio.to_thread(
            self.chain.create_lottery, self.key, info.stamper, self.prize, reveal, salt
        )
        lottery = PayerLottery(terms, 0, receipt.block_number)
        self._commit(lottery)
        log.info(
            "lottery created",
            extra={"lottery": terms.id.hex()[:16], "prize": self.prize, "reveal_block": reveal,
                   "gas_used": receipt.gas_used},
        )  # fmt: skip
        return lottery

    async def refund_due(self, head: int) -> list[bytes]:
        """Refund every lottery whose window is over and nobody won; note the paid ones."""
        params = await asyncio.to_thread(self.chain.params)
        done: list[bytes] = []
        for lottery in self.state.lotteries:
            if not is_refundable(lottery, head, params.redeem_blocks):
                continue
            onchain = await asyncio.to_thread(self.chain.lottery, lottery.id)
            if onchain is not None and onchain.paid:
                self._commit(replace(lottery, status=LotteryStatus.PAID))
                continue
            if onchain is not None and not onchain.refunded:
                await asyncio.to_thread(self.chain.refund, self.key, lottery.id)
            self._commit(replace(lottery, status=LotteryStatus.REFUNDED))
            done.append(lottery.id)
        return done

    # --- one cheque ---------------------------------------------------------------------
    async def _stamp(
        self,
        lottery: PayerLottery,
        server: ServerSpec,
        recipient: bytes,
        value: int,
        info: StamperInfo,
    ) -> tuple[StampedCheque, bytes] | Delivery:
        policy = info.policy
        plan = plan_cheque(lottery, recipient, value, policy)
        domain = info.domain
        request = StampRequest(
            cheque=plan.cheque,
            payer_sig=sign_cheque(self.key, domain, plan.cheque),
            fee_sig=None if plan.fee is None else sign_cheque(self.key, domain, plan.fee),
        )
        fee = 0 if plan.fee is None else plan.fee.value
        # The cursor moves past both cheques on disk before the request leaves the process.
        self._commit(replace(lottery, cursor=plan.next_cursor))
        status, answer = await self._post_stamp(request)
        if status == 200:
            try:
                _, stamped, _ = result_from_json(answer)
            except ValueError as exc:
                return Delivery(server.url, value, fee, "failed", f"stamper answered: {exc}")
            # The stamps are for the cheque the payer signed.
            if stamped.cheque != plan.cheque:
                return Delivery(server.url, value, fee, "failed", "stamper stamped another cheque")
            return stamped, encode_stamped(domain, stamped)
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        code = str(error.get("code", f"HTTP {status}"))
        message = f"stamper: {code}: {error.get('message', '')}"
        current = self.state.find(lottery.id) or lottery
        if code == "overlap":
            await self._resync_cursor(current)
        elif code in ("reveal_too_close", "lottery_settled", "range_outside", "wrong_stamper",
                      "unknown_lottery"):  # fmt: skip
            # This lottery takes no more stamps from this stamper: stop using it.
            self._commit(replace(current, status=LotteryStatus.RETIRED))
        return Delivery(server.url, value, fee, "failed" if status == 0 else "refused", message)

    async def _deliver(self, server: ServerSpec, wire: bytes) -> tuple[str, str, int]:
        # Only we name the account the cheque pays for: whoever sees the cheque on its way
        # (the stamper first) cannot redeem it to an account of its own.
        domain, stamped = decode_stamped(wire)
        account_sig = sign_credit(self.key, domain, stamped.cheque, self.client_key.public)
        body = {
            "jsonrpc": "2.0",
            "id": "0",
            "method": "lottery_pay_cheque",
            "params": {
                "client": self.client_key.client_id(),
                "cheque": wire.hex(),
                "account_sig": account_sig.hex(),
            },
        }
        try:
            async with self.session.post(server.rpc_url, json=body, timeout=self.timeout) as r:
                answer = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return "failed", f"server unreachable: {exc or type(exc).__name__}", 0
        if not isinstance(answer, dict):
            return "failed", "server answered no JSON-RPC object", 0
        error = answer.get("error")
        if isinstance(error, dict):
            outcome = "refused" if error.get("code") == GATEWAY_REFUSAL else "failed"
            return outcome, f"server: {error.get('message', '')} (code {error.get('code')})", 0
        result = answer.get("result")
        if isinstance(result, dict) and result.get("status") == STATUS_OK:
            return "paid", "", int(result.get("credited", 0))
        return "failed", f"server answered {str(result)[:100]}", 0

    async def pay_server(self, server: ServerSpec, head: int) -> Delivery:
        """One cheque to one server, from the lottery that reveals first and suits the
        stamper and every server whose terms are known."""
        terms = await self.gateway_terms(server)
        if isinstance(terms, str):
            outcome = "dropped" if terms.startswith("dropped:") else "failed"
            return Delivery(server.url, 0, 0, outcome, terms)
        # Only this gateway's margins: another gateway's never hold this one back.
        info = stricter_terms(await self.stamper_info(), [terms])
        owed, value = self.owe(server, terms)
        # Less than one of its credits owed: nothing to send yet.
        if value == 0:
            self.owed[server.url] = owed
            return Delivery(server.url, 0, 0, "waiting", f"owed {owed} wei; one credit costs "
                            f"{terms.credit_price_wei} wei: paid once enough is owed")  # fmt: skip
        need = value + fee_for(value, info.fee_bps)
        lottery = choose_lottery(self.state.lotteries, head, info, need)
        if lottery is None:
            return Delivery(server.url, value, 0, "failed", "no confirmed lottery with room yet")
        stamped = await self._stamp(lottery, server, terms.recipient, value, info)
        if isinstance(stamped, Delivery):
            return replace(stamped, lottery=lottery.id)
        _, wire = stamped
        fee = need - value
        outcome, message, credited = await self._deliver(server, wire)
        self.owed[server.url] = owed - value if outcome == "paid" else owed
        return Delivery(server.url, value, fee, outcome, message, credited, lottery.id)

    # --- rounds -------------------------------------------------------------------------
    async def pay_round(self) -> RoundReport:
        """Refund what is due, create a lottery if the open ones are running out, and send
        each server its cheque."""
        report = RoundReport()
        info = await self.stamper_info()
        head = await asyncio.to_thread(self.chain.block_number)
        report.refunded = await self.refund_due(head)
        values = [1]
        for server in self.servers:
            terms = await self.gateway_terms(server)
            if isinstance(terms, GatewayTerms):
                values.append(self.value_for(server, terms))
        need = max(values)
        need += fee_for(need, info.fee_bps)
        strict = stricter_terms(info, self.gateways.values())
        # Keep an open lottery that lasts past the next one's confirmations.
        if needs_new_lottery(self.state.lotteries, head, strict, need * len(self.servers)):
            created = await self.create_lottery(strict, head, need * len(self.servers))
            report.created.append(created.id)
        for server in self.servers:
            delivery = await self.pay_server(server, head)
            report.deliveries.append(delivery)
            if delivery.outcome == "paid":
                self.paid_value += delivery.value
                self.paid_fees += delivery.fee
            elif delivery.outcome != "waiting":
                self.failures += 1
                log.warning(
                    "cheque not paid",
                    extra={"server": delivery.server, "outcome": delivery.outcome,
                           "reason": delivery.message},
                )  # fmt: skip
        self.rounds += 1
        self.last_round = report
        return report

    def progress_line(self) -> str:
        """One line for the terminal: rounds, wei paid, fees, failures, the open lottery."""
        open_ = [x for x in self.state.lotteries if x.status is LotteryStatus.OPEN]
        current = min(open_, key=lambda x: x.terms.reveal_block, default=None)
        where = "no open lottery"
        if current is not None:
            used = 100 * current.cursor / current.terms.prize
            where = (
                f"lottery 0x{current.id.hex()[:12]} {used:.3f}% used, "
                f"reveals at block {current.terms.reveal_block}"
            )
        last = ""
        if self.last_round is not None:
            ok = sum(d.outcome == "paid" for d in self.last_round.deliveries)
            last = f"last round {ok}/{len(self.last_round.deliveries)} paid; "
        return (
            f"round {self.rounds}: {last}paid {self.paid_value} wei + fees {self.paid_fees} wei "
            f"to {len(self.servers)} servers, {self.failures} unpaid; {where}"
        )

    async def run(
        self,
        rounds: int | None = None,
        duration: float | None = None,
        progress: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Pay a round every ``interval`` seconds until ``rounds`` or ``duration`` is reached
        (neither: until cancelled). Chain failures skip a round; they do not end the run."""
        end = None if duration is None else clock() + duration
        next_at = clock()
        while rounds is None or self.rounds < rounds:
            try:
                await self.pay_round()
            except ChainError as exc:
                self.failures += 1
                log.warning("round skipped: chain failed", extra={"error": str(exc)})
            if progress is not None:
                progress(self.progress_line())
            next_at += self.interval
            if rounds is not None and self.rounds >= rounds:
                break
            if end is not None and next_at >= end:
                break
            await asyncio.sleep(max(0.0, next_at - clock()))
