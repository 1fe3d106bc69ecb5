"""``rpcpay stamper``: the HTTP service through which payers get cheques stamped.

``StamperService`` is the whole decision for one request: read the chain (the head,
this stamper's registry entry, the lottery at the confirmed block), apply the rules
(``stamper.check_request``), sign the stamps, commit them to the store, and only then
answer. ``StamperHandler`` is its HTTP face (docs/lottery.md §13):

- ``GET /info``: who the stamper is, where, and its terms (the fee, the margins);
- ``POST /stamp``: a payer-signed cheque and its fee cheque's signature -> the stamps;
- ``GET /lottery/0x<id>``: how much of a lottery is stamped and where the next free
  range starts (a payer that lost its cursor resumes there).

Chain reads run in threads (``asyncio.to_thread``): a JSON-RPC read is a blocking
request, and an in-process EVM read is CPU. A chain or store failure answers 503 and
stamps nothing; nothing a client sends raises out of a handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from rpcpay.chain.settlement import SettlementChain
from rpcpay.errors import ChainError, ConfigError, StampStoreError
from rpcpay.lottery.cheque import StampedCheque
from rpcpay.lottery.eip712 import sign_stamp
from rpcpay.lottery.eth import EthKey, checksum_address
from rpcpay.lottery.stamper import (
    DEFAULT_FEE_BPS,
    DEFAULT_STAMPER_CONFIRMATIONS,
    DEFAULT_STAMPER_REVEAL_MARGIN,
    Conflict,
    Repeat,
    StamperPolicy,
    StampRecord,
    StampRefusal,
    StampRefused,
    StampRequest,
    check_request,
)
from rpcpay.lottery.stamper_claims import FeeClaimer
from rpcpay.lottery.stamper_store import Overspend, SqliteStampStore, StampStore
from rpcpay.lottery.stamper_wire import (
    PROTOCOL_VERSION,
    StampResult,
    request_from_json,
    result_to_json,
)
from rpcpay.lottery.state import LotteryState, StamperState

__all__ = [
    "RunningStamper",
    "StamperConfig",
    "StamperHandler",
    "StamperService",
    "serve_forever",
    "start_stamper",
]

log = logging.getLogger("rpcpay.stamper")

STORE_FILE = "stamps.sqlite3"
LOTTERY_CACHE_SIZE = 4096
HTTP_STATUS = {
    StampRefusal.MALFORMED: 400,
    StampRefusal.OVERLAP: 409,
    StampRefusal.OVERSPEND: 409,
}
"""Overlaps are conflicts with earlier state; every other refusal is 422 (understood,
refused)."""


@dataclass(frozen=True, slots=True)
class StamperConfig:
    """Everything ``rpcpay stamper run`` is told on its command line, but the chain."""

    bind_ip: str = "127.0.0.1"
    bind_port: int = 18100
    data_dir: Path = Path("rpcpay-stamper")
    fee_bps: int = DEFAULT_FEE_BPS
    reveal_margin: int = DEFAULT_STAMPER_REVEAL_MARGIN
    confirmations: int = DEFAULT_STAMPER_CONFIRMATIONS
    store_sync: Literal["full", "normal"] = "full"
    max_body_bytes: int = 16 * 1024
    claim_interval_s: float = 12.0  # how often it looks for winning fee cheques to claim


class StamperService:
    """Stamps requests that pass the rules, never an overlap, durably before answering."""

    def __init__(
        self,
        chain: SettlementChain,
        key: EthKey,
        store: StampStore,
        policy: StamperPolicy,
        confirmations: int = DEFAULT_STAMPER_CONFIRMATIONS,
    ) -> None:
        # The policy is this key's, on this chain's contract.
        if policy.stamper != key.address or policy.domain != chain.domain:
            raise ValueError("policy names another stamper or domain")
        self.chain = chain
        self.key = key
        self.store = store
        self.policy = policy
        self.confirmations = confirmations
        self._lotteries: OrderedDict[bytes, LotteryState] = OrderedDict()
        self._own: tuple[int, StamperState] | None = None

    async def _own_state(self, head: int) -> StamperState:
        """This stamper's registry entry at the newest block (read once per block)."""
        if self._own is None or self._own[0] != head:
            state = await asyncio.to_thread(self.chain.stamper, self.key.address)
            self._own = (head, state)
        return self._own[1]

    async def _lottery(self, lottery_id: bytes, head: int) -> LotteryState | None:
        """The lottery at the confirmed block. An open, confirmed lottery is cached: its
        terms never change, and it cannot settle before its reveal, which the margin
        keeps every stamp well before."""
        cached = self._lotteries.get(lottery_id)
        if cached is not None:
            self._lotteries.move_to_end(lottery_id)
            return cached
        confirmed = max(head - self.confirmations, 0)
        state = await asyncio.to_thread(self.chain.lottery, lottery_id, confirmed)
        if state is not None and not state.settled:
            self._lotteries[lottery_id] = state
            if len(self._lotteries) > LOTTERY_CACHE_SIZE:
                self._lotteries.popitem(last=False)
        return state

    async def stamp(self, request: StampRequest) -> StampResult | StampRefused:
        """Check, sign, commit, answer: the stamps exist outside only once committed.

        Raises ``ChainError`` or ``StampStoreError`` when the chain or the store fails;
        nothing is stamped then.
        """
        head = await asyncio.to_thread(self.chain.block_number)
        own = await self._own_state(head)
        lottery = await self._lottery(request.cheque.lottery, head)
        plan = check_request(self.policy, request, lottery, own, head)
        if isinstance(plan, StampRefused):
            return plan
        now = int(time.time())
        domain = self.policy.domain
        records = [
            StampRecord(cheque, payer_sig, sign_stamp(self.key, domain, cheque), i > 0, now)
            for i, (cheque, payer_sig) in enumerate(plan.cheques)
        ]
        outcome = await asyncio.to_thread(self.store.stamp, plan.prize, records)
        if isinstance(outcome, Conflict):
            c, e = request.cheque, outcome.existing.cheque
            usage = await asyncio.to_thread(self.store.usage, c.lottery)
            return StampRefused(
                StampRefusal.OVERLAP,
                f"tickets [{e.start}, {e.end}) of this lottery are already stamped to another "
                f"cheque; stamped ranges end at {usage.next_start}",
            )
        if isinstance(outcome, Overspend):
            return StampRefused(
                StampRefusal.OVERSPEND,
                f"{outcome.stamped} of the prize {outcome.prize} is stamped already",
            )
        stored = outcome.records
        main, fee = stored[0], (stored[1] if len(stored) > 1 else None)
        stamped = StampedCheque(main.cheque, main.payer_sig, main.stamp_sig)
        result = StampResult(stamped, fee, plan.next_start, isinstance(outcome, Repeat))
        log.info(
            "stamped",
            extra={
                "lottery": main.cheque.lottery.hex()[:16],
                "start": main.cheque.start,
                "value": main.cheque.value,
                "fee": fee.cheque.value if fee else 0,
                "repeat": result.repeat,
            },
        )
        return result


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(document).encode(), status=status, content_type="application/json"
    )


def _refusal(refused: StampRefused) -> web.Response:
    body = {"error": {"code": refused.reason.value, "message": refused.message}}
    return _json(body, HTTP_STATUS.get(refused.reason, 422))


class StamperHandler:
    """The HTTP routes of the stamper; every request gets a JSON answer."""

    def __init__(self, service: StamperService, max_body_bytes: int = 16 * 1024) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes

    def info(self) -> dict[str, Any]:
        policy = self.service.policy
        return {
            "protocol": PROTOCOL_VERSION,
            "stamper": checksum_address(policy.stamper),
            "chain_id": policy.domain.chain_id,
            "contract": checksum_address(policy.domain.contract),
            "fee_bps": policy.fee_bps,
            "reveal_margin": policy.reveal_margin,
            "confirmations": self.service.confirmations,
        }

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        try:
            if path == "/stamp":
                if request.method != "POST":
                    return _json({"error": {"code": "method", "message": "POST /stamp"}}, 405)
                return await self._stamp(request)
            if path == "/info" and request.method == "GET":
                return _json(self.info())
            if path.startswith("/lottery/") and request.method == "GET":
                return await self._usage(path.removeprefix("/lottery/"))
        except ChainError as exc:
            log.warning("chain unavailable", extra={"error": str(exc)})
            message = "the chain is unavailable; nothing was stamped"
            return _json({"error": {"code": "unavailable", "message": message}}, 503)
        except StampStoreError as exc:
            log.error("stamp store failed", extra={"error": str(exc)})
            message = "the stamp store failed; nothing was stamped"
            return _json({"error": {"code": "unavailable", "message": message}}, 503)
        return _json({"error": {"code": "not_found", "message": f"no route {path}"}}, 404)

    async def _stamp(self, request: web.BaseRequest) -> web.Response:
        # A request body is small; anything bigger is not a stamp request.
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return _refusal(StampRefused(StampRefusal.MALFORMED, "request body too large"))
        try:
            body = await request.read()
            parsed = request_from_json(json.loads(body))
        except web.HTTPRequestEntityTooLarge:
            return _refusal(StampRefused(StampRefusal.MALFORMED, "request body too large"))
        except (ValueError, UnicodeDecodeError) as exc:
            return _refusal(StampRefused(StampRefusal.MALFORMED, str(exc)))
        outcome = await self.service.stamp(parsed)
        if isinstance(outcome, StampRefused):
            log.info(
                "refused",
                extra={"reason": outcome.reason.value, "lottery": parsed.cheque.lottery.hex()[:16]},
            )
            return _refusal(outcome)
        return _json(result_to_json(self.service.policy.domain, outcome))

    async def _usage(self, text: str) -> web.Response:
        try:
            lottery = bytes.fromhex(text.removeprefix("0x"))
        except ValueError:
            lottery = b""
        # A lottery id is 32 bytes.
        if len(lottery) != 32:
            message = "GET /lottery/0x<64 hex digits>"
            return _refusal(StampRefused(StampRefusal.MALFORMED, message))
        usage = await asyncio.to_thread(self.service.store.usage, lottery)
        return _json(
            {
                "lottery": "0x" + lottery.hex(),
                "stamped": str(usage.stamped),
                "next_start": str(usage.next_start),
            }
        )


def _server(
    handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]], max_body: int
) -> web.Server:
    """aiohttp's low-level server: one handler for every path (the house pattern)."""
    loop = asyncio.get_running_loop()

    def make_request(
        message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=max_body
        )

    return web.Server(handler, request_factory=make_request, access_log=None)


@dataclass
class RunningStamper:
    """A started stamper; ``close()`` stops it (the store is durable already)."""

    service: StamperService
    runner: web.BaseRunner
    port: int
    fees: FeeClaimer | None = None
    claim_task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self.claim_task is not None:
            self.claim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.claim_task
        await self.runner.cleanup()
        self.service.store.close()


def check_config(config: StamperConfig) -> None:
    """Refuse settings that cannot work, with a clear message."""
    # The fee is a share of a cheque's value, below all of it.
    if not 0 <= config.fee_bps < 10_000:
        raise ConfigError("--fee-bps must be between 0 and 9999")
    # Margins and depths are block counts.
    if config.reveal_margin < 0 or config.confirmations < 0:
        raise ConfigError("--reveal-margin and --confirmations must be 0 or more")


async def start_stamper(
    config: StamperConfig, chain: SettlementChain, key: EthKey, store: StampStore | None = None
) -> RunningStamper:
    """Open the store, check the stamper on chain, and listen. Port 0 picks a free port."""
    check_config(config)
    domain = chain.domain
    if store is None:
        try:
            store = SqliteStampStore(
                config.data_dir / STORE_FILE, domain, key.address, synchronous=config.store_sync
            )
        except StampStoreError as exc:
            raise ConfigError(str(exc)) from exc
    policy = StamperPolicy(key.address, domain, config.fee_bps, config.reveal_margin)
    service = StamperService(chain, key, store, policy, config.confirmations)
    try:
        own = await asyncio.to_thread(chain.stamper, key.address)
    except ChainError:
        store.close()
        raise
    if not own.active:
        log.warning(
            "stamper not active on chain: no lottery can name it",
            extra={"stamper": checksum_address(key.address), "deposit": own.deposit,
                   "exit_block": own.exit_block, "slashed": own.slashed},
        )  # fmt: skip
    handler = StamperHandler(service, config.max_body_bytes)
    runner = web.ServerRunner(_server(handler.handle, config.max_body_bytes))
    await runner.setup()
    site = web.TCPSite(runner, config.bind_ip, config.bind_port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        store.close()
        raise ConfigError(f"cannot listen on {config.bind_ip}:{config.bind_port}: {exc}") from exc
    port = int(runner.addresses[0][1]) if runner.addresses else config.bind_port
    log.info(
        "stamper listening",
        extra={
            "listen": f"{config.bind_ip}:{port}",
            "stamper": checksum_address(key.address),
            "chain_id": domain.chain_id,
            "contract": checksum_address(domain.contract),
            "fee_bps": config.fee_bps,
            "deposit": own.deposit,
        },
    )
    # The stamper claims its own winning fee cheques (issue 9).
    fees = FeeClaimer(chain, key, store, config.claim_interval_s)
    task = asyncio.create_task(fees.loop(), name="rpcpay-stamper-fee-claims")
    return RunningStamper(service, runner, port, fees, task)


async def serve_forever(config: StamperConfig, chain: SettlementChain, key: EthKey) -> None:
    """Run until SIGINT/SIGTERM, then close cleanly."""
    stamper = await start_stamper(config, chain, key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(asyncio.CancelledError):
        await stop.wait()
    log.info("shutting down")
    await stamper.close()
