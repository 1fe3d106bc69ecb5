"""HTTP handling: the public listener (paid calls, forwarding) and the admin listener.

Every request is answered in monerod's form. Unpaid calls never reach the upstream; an
upstream failure is refunded before the client hears about it. Charged calls of every kind
run through one pipeline (``rpcpay.gateway.pipeline``), in the envelope of their protocol:
``monero_rpc`` (JSON-RPC, JSON endpoints), ``binary`` (epee) and ``paywall`` (a JSON-RPC
backend). Payment and lottery methods are answered here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from rpcpay.errors import ChainError, LedgerError
from rpcpay.gateway.binary import BinaryHandler
from rpcpay.gateway.binary_costs import BINARY_RULES
from rpcpay.gateway.chain_cache import ChainCache
from rpcpay.gateway.cheques import ChequeDesk, ChequeRefused
from rpcpay.gateway.client_address import TrustedProxies, client_address
from rpcpay.gateway.connections import InFlight
from rpcpay.gateway.costs import (
    MONERO_FREE_JSON_ENDPOINTS,
    MONERO_JSON_ENDPOINT_PRICES,
    PriceList,
)
from rpcpay.gateway.info_cache import InfoCache
from rpcpay.gateway.monero_rpc import (
    MoneroJsonEndpoint,
    MoneroJsonRpc,
    object_params,
    payment_answer,
)
from rpcpay.gateway.monero_rpc import (
    json_response as json_response,
)
from rpcpay.gateway.monero_rpc import (
    read_json_body as read_json_body,
)
from rpcpay.gateway.param_checks import is_uint
from rpcpay.gateway.payment import PaymentService
from rpcpay.gateway.paywall import JsonRpcPaywall
from rpcpay.gateway.pipeline import PipelineParts, Seams
from rpcpay.gateway.protocol import (
    ERROR_CHEQUE_REFUSED,
    ERROR_INVALID_CLIENT,
    INVALID_PARAMS,
    MESSAGE_INVALID_CLIENT,
    METHOD_NOT_FOUND,
    STATUS_OK,
    RpcFault,
)
from rpcpay.gateway.tracking import Tracker
from rpcpay.gateway.upstream import Upstream
from rpcpay.ledger.account import U64_MAX
from rpcpay.lottery.cheque import STAMPED_CHEQUE_LENGTH
from rpcpay.lottery.gossip import FROM_HEADER, GOSSIP_PATH, split_batch

JSON = Any
Mode = Literal["monero", "jsonrpc"]

PAYMENT_METHODS = frozenset({"rpc_access_info", "rpc_access_submit_nonce", "rpc_access_pay"})
LOTTERY_METHODS = frozenset({"lottery_pay_cheque", "lottery_info"})
ADMIN_METHODS = frozenset({"rpc_access_tracking", "rpc_access_data", "rpc_access_account"})
U32_MAX = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class GatewayCore:
    """What the HTTP layer needs: the payment service, the upstream and the pricing."""

    payment: PaymentService
    upstream: Upstream
    tracker: Tracker
    mode: Mode
    prices: PriceList
    info_cache: InfoCache
    upstream_path: str = "/json_rpc"
    chain_cache: ChainCache | None = None
    cheques: ChequeDesk | None = None
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    upstream_timeout_s: float = 20.0  # a charged call's forward; refunded past it


def _account_sig_bytes(value: JSON) -> bytes:
    """The ``account_sig`` param: hex (``0x`` optional) of the payer's 65-byte signature of
    ``Credit(cheque, account)`` (docs/lottery.md §15)."""
    text = value.removeprefix("0x") if isinstance(value, str) else ""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    # Exactly one 65-byte signature.
    if len(raw) != 65:
        raise RpcFault(
            ERROR_CHEQUE_REFUSED,
            "malformed: account_sig must be the hex of the payer's 65-byte signature of "
            "Credit(cheque, account); nothing was credited",
        )
    return raw


def _cheque_bytes(value: JSON) -> bytes:
    """The ``cheque`` param: hex (``0x`` optional) of the 274-byte wire form."""
    text = value.removeprefix("0x") if isinstance(value, str) else ""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    # Exactly one wire-form cheque.
    if len(raw) != STAMPED_CHEQUE_LENGTH:
        raise RpcFault(
            ERROR_CHEQUE_REFUSED,
            f"malformed: cheque must be the hex of the {STAMPED_CHEQUE_LENGTH}-byte wire form; "
            "nothing was credited",
        )
    return raw


class PublicHandler:
    """Routes every public request: payment methods, charged calls, free calls."""

    def __init__(
        self, core: GatewayCore, inflight: InFlight | None = None, seams: Seams | None = None
    ) -> None:
        """``inflight``: the set the shutdown drains (a cancelled call's refund joins it);
        ``seams``: issue 14's free tier and priority slots (default: off)."""
        self.core = core
        parts = PipelineParts(
            core.payment,
            core.upstream,
            core.tracker,
            inflight if inflight is not None else InFlight(),
            core.upstream_timeout_s,
            seams if seams is not None else Seams(),
        )
        local_methods = PAYMENT_METHODS | LOTTERY_METHODS | ADMIN_METHODS
        self.json_rpc = MoneroJsonRpc(
            parts, core.info_cache, local_methods, self.local_method, core.upstream_path
        )
        self.json_endpoint = MoneroJsonEndpoint(parts, core.info_cache)
        self.binary = BinaryHandler(parts, core.chain_cache)
        self.paywall = JsonRpcPaywall(
            parts,
            lambda: self.core.prices,
            local_methods,
            self.local_method,
            lambda: self.core.cheques.info() if self.core.cheques is not None else None,
        )

    def peer(self, request: web.BaseRequest) -> str:
        """The real client address (behind ``--trusted-proxy`` proxies, what they forwarded)."""
        return client_address(request, self.core.proxies)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if self.core.mode == "jsonrpc" and path in ("/", "/json_rpc"):
            return await self.paywall.handle(request, self.peer(request))
        if path == "/json_rpc":
            return await self.json_rpc.handle(request, self.peer(request))
        if path == GOSSIP_PATH and self.core.cheques is not None:
            return await self._gossip(request, self.core.cheques)
        if self.core.mode == "monero":
            if path in MONERO_JSON_ENDPOINT_PRICES or path in MONERO_FREE_JSON_ENDPOINTS:
                return await self.json_endpoint.handle(request, path, self.peer(request))
            if path in BINARY_RULES:
                return await self.binary.handle(request, path, self.peer(request))
        return json_response({"status": f"Unknown endpoint {path}"}, 404)

    # -- methods the gateway answers itself ------------------------------------------------

    async def local_method(self, method: str, params: JSON, peer: str) -> dict[str, JSON]:
        """A method the gateway answers itself (payments, the lottery); RpcFault otherwise."""
        if method in PAYMENT_METHODS:
            return await self._payment_method(method, object_params(params), peer)
        if method in LOTTERY_METHODS:
            return await self._lottery_method(method, object_params(params))
        raise RpcFault(METHOD_NOT_FOUND, "Method not found")

    async def _payment_method(
        self, method: str, params: dict[str, JSON], peer: str
    ) -> dict[str, JSON]:
        payment = self.core.payment
        started = time.perf_counter()
        client = params.get("client", "")
        if method == "rpc_access_info":
            result = await payment.access_info(client, peer)
        elif method == "rpc_access_submit_nonce":
            nonce, cookie = params.get("nonce", 0), params.get("cookie", 0)
            # nonce and cookie are u32 numbers.
            if not is_uint(nonce, U32_MAX) or not is_uint(cookie, U32_MAX):
                raise RpcFault(INVALID_PARAMS, "Invalid params")
            result = await payment.submit_nonce(client, nonce, cookie, peer)
        else:
            result = await self._access_pay(params, peer)
        self.core.tracker.record(method, int((time.perf_counter() - started) * 1e6), 0)
        return result

    async def _access_pay(self, params: dict[str, JSON], peer: str) -> dict[str, JSON]:
        """rpc_access_pay: a third party's paywall debits the client's credits."""
        paying_for, amount = params.get("paying_for", ""), params.get("payment", 0)
        # paying_for is a label and payment a u64 amount.
        if not isinstance(paying_for, str) or not is_uint(amount, U64_MAX):
            raise RpcFault(INVALID_PARAMS, "Invalid params")
        payment = self.core.payment
        # The client id must verify before anything else (error, not status).
        if payment.authenticate(params.get("client", "")) is None:
            raise RpcFault(ERROR_INVALID_CLIENT, MESSAGE_INVALID_CLIENT)
        charge = await payment.charge(params.get("client"), amount, paying_for, peer)
        if not charge.ok:
            return payment_answer(charge)
        self.core.tracker.record("external:" + paying_for, 0, amount)
        return {
            "credits": charge.credits,
            "status": STATUS_OK,
            "top_hash": charge.top_hash,
            "untrusted": False,
        }

    async def _lottery_method(self, method: str, params: dict[str, JSON]) -> dict[str, JSON]:
        """lottery_info, and lottery_pay_cheque: credit a stamped lottery cheque."""
        desk = self.core.cheques
        # The rail is off unless the operator configured a contract.
        if desk is None:
            raise RpcFault(METHOD_NOT_FOUND, "Method not found: lottery payments are off here")
        if method == "lottery_info":
            return {**desk.info(), "status": STATUS_OK, "untrusted": False}
        started = time.perf_counter()
        payment = self.core.payment
        auth = payment.authenticate(params.get("client", ""))
        # The client id must verify: the credit goes to its key.
        if auth is None:
            raise RpcFault(ERROR_INVALID_CLIENT, MESSAGE_INVALID_CLIENT)
        wire = _cheque_bytes(params.get("cheque"))
        account_sig = _account_sig_bytes(params.get("account_sig"))
        try:
            outcome = await desk.pay(auth.public_key, wire, account_sig)
        except (ChainError, LedgerError) as exc:
            raise RpcFault(
                ERROR_CHEQUE_REFUSED,
                f"unavailable: {type(exc).__name__}; nothing was credited, send the same "
                "cheque again later",
            ) from exc
        if isinstance(outcome, ChequeRefused):
            raise RpcFault(ERROR_CHEQUE_REFUSED, outcome.message)
        top = await payment.jobs.top()
        self.core.tracker.record(method, int((time.perf_counter() - started) * 1e6), 0)
        return {
            "status": STATUS_OK,
            "credited": outcome.credited,
            "held": outcome.held,  # credited after the gossip hold (docs/lottery.md §15)
            "credits": outcome.balance,
            "top_hash": top.top_hash,
            "untrusted": False,
        }

    async def _gossip(self, request: web.BaseRequest, desk: ChequeDesk) -> web.Response:
        """POST /lottery/gossip: peers' stamped cheques, checked for overlaps."""
        # Gossip is a POST of whole wire-form cheques.
        if request.method != "POST":
            return json_response({"status": "POST wire-form cheques here"}, 405)
        sender = self.peer(request)
        # A sender over its rate is refused before its body is read (it retries later).
        if not desk.admit_gossip(sender, (request.content_length or 0) // STAMPED_CHEQUE_LENGTH):
            return json_response({"status": "busy: over this sender's gossip rate"}, 429)
        try:
            wires = split_batch(await request.read())
        except ValueError as exc:
            return json_response({"status": str(exc)}, 400)
        try:
            report = await desk.receive_gossip_report(sender, wires)
        except (ChainError, LedgerError) as exc:
            return json_response({"status": f"unavailable: {type(exc).__name__}"}, 503)
        # A sender that named its public URL and sent something worth keeping is a peer.
        if (report.held or report.fraud) and FROM_HEADER in request.headers:
            desk.learn_peer(request.headers[FROM_HEADER])
        return json_response({"status": STATUS_OK, **report.to_json()})
