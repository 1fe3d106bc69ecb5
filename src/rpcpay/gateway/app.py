"""HTTP handling: the public listener (paid calls, forwarding) and the admin listener.

Every request is answered in monerod's form. Unpaid calls never reach the upstream; an
upstream failure is refunded before the client hears about it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from rpcpay.errors import ChainError, LedgerError, UpstreamError
from rpcpay.gateway.binary import BinaryHandler
from rpcpay.gateway.binary_costs import BINARY_RULES
from rpcpay.gateway.capacity import Capacity
from rpcpay.gateway.chain_cache import ChainCache
from rpcpay.gateway.cheques import ChequeDesk, ChequeRefused
from rpcpay.gateway.client_address import TrustedProxies, client_address
from rpcpay.gateway.costs import (
    MONERO_FREE_JSON_ENDPOINTS,
    MONERO_FREE_JSON_RPC,
    MONERO_JSON_ENDPOINT_PRICES,
    MONERO_JSON_RPC_PRICES,
    Price,
    PriceError,
    PriceList,
    after_charge_amount,
)
from rpcpay.gateway.info_cache import InfoCache
from rpcpay.gateway.jsoncodec import decode_json, encode_json
from rpcpay.gateway.observe import note_call
from rpcpay.gateway.param_checks import is_uint
from rpcpay.gateway.payment import Charge, PaymentService
from rpcpay.gateway.paywall import JsonRpcPaywall
from rpcpay.gateway.protocol import (
    ERROR_CHEQUE_REFUSED,
    ERROR_INTERNAL,
    ERROR_INVALID_CLIENT,
    ERROR_UPSTREAM,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MESSAGE_INVALID_CLIENT,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    STATUS_OK,
    RpcFault,
    error_response,
    result_response,
)
from rpcpay.gateway.tracking import Tracker
from rpcpay.gateway.upstream import Upstream, UpstreamReply
from rpcpay.ledger.account import U64_MAX
from rpcpay.lottery.cheque import STAMPED_CHEQUE_LENGTH
from rpcpay.lottery.gossip import FROM_HEADER, GOSSIP_PATH, split_batch

JSON = Any
Mode = Literal["monero", "jsonrpc"]

PAYMENT_METHODS = frozenset({"rpc_access_info", "rpc_access_submit_nonce", "rpc_access_pay"})
LOTTERY_METHODS = frozenset({"lottery_pay_cheque", "lottery_info"})
ADMIN_METHODS = frozenset({"rpc_access_tracking", "rpc_access_data", "rpc_access_account"})
UPSTREAM_FAILED = "Upstream unavailable; nothing was charged"
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
    capacity: Capacity | None = None  # the free tier and paid priority, when configured


def json_response(document: JSON, status: int = 200) -> web.Response:
    return web.Response(body=encode_json(document), status=status, content_type="application/json")


async def read_json_body(request: web.BaseRequest) -> JSON:
    """The request body as JSON; ``ValueError`` if it is not JSON at all."""
    body = await request.read()
    if not body.strip():
        return None
    return decode_json(body)


def _strip_client(params: Mapping[str, JSON]) -> dict[str, JSON]:
    return {k: v for k, v in params.items() if k != "client"}


def _payment_answer(charge: Charge) -> dict[str, JSON]:
    """The body monerod returns for a refused charge: status, credits, top_hash."""
    return {
        "credits": charge.credits,
        "status": charge.status,
        "top_hash": charge.top_hash,
        "untrusted": False,
    }


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

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.binary = BinaryHandler(
            core.payment, core.upstream, core.tracker, core.chain_cache, core.proxies
        )
        self.paywall = JsonRpcPaywall(
            core.payment,
            core.upstream,
            core.tracker,
            core.prices,
            PAYMENT_METHODS | LOTTERY_METHODS | ADMIN_METHODS,
            self.local_method,
            lambda: core.cheques.info() if core.cheques is not None else None,
        )

    def peer(self, request: web.BaseRequest) -> str:
        """The real client address (behind ``--trusted-proxy`` proxies, what they forwarded)."""
        return client_address(request, self.core.proxies)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if self.core.mode == "jsonrpc" and path in ("/", "/json_rpc"):
            return await self.paywall.handle(request, self.peer(request))
        if path == "/json_rpc" or (self.core.mode == "jsonrpc" and path == "/"):
            return await self._json_rpc(request)
        if path == GOSSIP_PATH and self.core.cheques is not None:
            return await self._gossip(request, self.core.cheques)
        if self.core.mode == "monero":
            if path in MONERO_JSON_ENDPOINT_PRICES or path in MONERO_FREE_JSON_ENDPOINTS:
                return await self._json_endpoint(request, path)
            if path in BINARY_RULES:
                return await self.binary.handle(request, path)
        return json_response({"status": f"Unknown endpoint {path}"}, 404)

    # -- JSON-RPC ----------------------------------------------------------------------------

    async def _json_rpc(self, request: web.BaseRequest) -> web.Response:
        try:
            document = await read_json_body(request)
        except (ValueError, UnicodeDecodeError):
            note_call(outcome="error")
            return json_response(error_response(None, PARSE_ERROR, "Parse error"))
        # A request is one object with a string method (batches are not served).
        if not isinstance(document, dict) or not isinstance(document.get("method"), str):
            note_call(outcome="error")
            return json_response(error_response(None, INVALID_REQUEST, "Invalid Request"))
        request_id = document.get("id", "")
        method: str = document["method"]
        note_call(method=method)
        params = document.get("params")
        try:
            if method in PAYMENT_METHODS | LOTTERY_METHODS | ADMIN_METHODS:
                result = await self.local_method(method, params, self.peer(request))
                return json_response(result_response(request_id, result))
            return await self._charged_rpc(request, document, method, params)
        except RpcFault as fault:
            note_call(outcome="error")
            return json_response(error_response(request_id, fault.code, fault.message))

    async def local_method(self, method: str, params: JSON, peer: str) -> dict[str, JSON]:
        """A method the gateway answers itself (payments, the lottery); RpcFault otherwise."""
        if method in PAYMENT_METHODS:
            return await self._payment_method(method, self._object_params(params), peer)
        if method in LOTTERY_METHODS:
            return await self._lottery_method(method, self._object_params(params))
        raise RpcFault(METHOD_NOT_FOUND, "Method not found")

    @staticmethod
    def _object_params(params: JSON) -> dict[str, JSON]:
        # monerod's methods take an object (or nothing) as params.
        if params is None:
            return {}
        if not isinstance(params, dict):
            raise RpcFault(INVALID_PARAMS, "Invalid params")
        return params

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
        charge = await payment.charge(params.get("client"), amount, paying_for, peer, free=False)
        if not charge.ok:
            return _payment_answer(charge)
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

    def _price_of(self, method: str, params: JSON) -> Price | None:
        """The call's price; None if it is free. RpcFault if it is not served or malformed."""
        if self.core.mode == "jsonrpc":
            price = self.core.prices.price(method)
            return price if price.upfront > 0 else None
        if method in MONERO_FREE_JSON_RPC:
            return None
        rule = MONERO_JSON_RPC_PRICES.get(method)
        # Only monerod's restricted-safe methods are served to the public.
        if rule is None:
            raise RpcFault(METHOD_NOT_FOUND, "Method not found")
        try:
            return rule(self._object_params(params))
        except PriceError as exc:
            raise RpcFault(INVALID_PARAMS, f"Invalid params: {exc}") from exc

    @staticmethod
    def _client_of(request: web.BaseRequest, document: dict[str, JSON], params: JSON) -> JSON:
        """Where the client id travels: in object params (monerod's way), else beside them
        in the request object or in an X-Rpc-Client header (for array-params backends)."""
        if isinstance(params, dict) and "client" in params:
            return params["client"]
        if "client" in document:
            return document["client"]
        return request.headers.get("X-Rpc-Client")

    async def _charged_rpc(
        self, request: web.BaseRequest, document: dict[str, JSON], method: str, params: JSON
    ) -> web.Response:
        request_id = document.get("id", "")
        price = self._price_of(method, params)
        client = self._client_of(request, document, params)
        started = time.perf_counter()
        charge = None
        paid = 0
        if price is not None:
            charge = await self.core.payment.charge(
                client, price.upfront, price.rpc, self.peer(request)
            )
            paid = charge.amount
            if not charge.ok:
                note_call(outcome="unpaid")
                if method == "get_info":
                    # monerod's JSON-RPC get_info turns any non-OK status into error -5.
                    return json_response(error_response(request_id, ERROR_INTERNAL, charge.status))
                return json_response(result_response(request_id, _payment_answer(charge)))
        forwarded = {k: v for k, v in document.items() if k != "client"}
        if isinstance(params, dict):
            forwarded["params"] = _strip_client(params)
        cache_key = "get_info" if self.core.mode == "monero" and method == "get_info" else None
        cached = self._cached(cache_key, charge)
        if cached is not None:
            answer: dict[str, JSON] = {"id": request_id, "jsonrpc": "2.0", "result": cached}
        else:
            try:
                answer = await self._upstream_object(self.core.upstream_path, forwarded)
            except asyncio.CancelledError:  # shutdown past its grace: the call never happened
                if charge is not None:
                    self.core.payment.refund(charge)
                raise
            except UpstreamError:
                note_call(outcome="upstream_error")
                credits = self.core.payment.refund(charge) if charge is not None else 0
                failed = error_response(request_id, ERROR_UPSTREAM, UPSTREAM_FAILED)
                return json_response({**failed, "credits": credits})
            self._remember(cache_key, charge, answer.get("result"))
        if charge is not None and price is not None:
            final = self._charge_rest(price, charge, answer.get("result"))
            if not final.ok:
                note_call(outcome="unpaid")
                return json_response(result_response(request_id, _payment_answer(final)))
            paid += final.amount if final is not charge else 0
            self._stamp(answer, final)
        note_call(outcome="paid" if paid else "free", credits=paid)
        self.core.tracker.record(
            price.rpc if price else method, int((time.perf_counter() - started) * 1e6), paid
        )
        return json_response(answer)

    def _cached(self, key: str | None, charge: Charge | None) -> dict[str, JSON] | None:
        """A cached answer for a paid call, if the call is cacheable and one is fresh."""
        if key is None or charge is None:
            return None
        return self.core.info_cache.get(key, charge.top_hash)

    def _remember(self, key: str | None, charge: Charge | None, answer: JSON) -> None:
        # Only a successful answer, fetched at a known top, is worth keeping.
        if key is None or charge is None or not isinstance(answer, dict):
            return
        if answer.get("status") == STATUS_OK:
            self.core.info_cache.put(key, charge.top_hash, answer)

    async def _upstream_object(self, path: str, document: JSON) -> dict[str, JSON]:
        """Forward ``document`` and decode the answer; UpstreamError unless it is a JSON object
        with HTTP 200."""
        reply = await self._forward(path, document)
        try:
            answer = decode_json(reply.body)
        except ValueError as exc:
            raise UpstreamError(f"upstream answered non-JSON for {path}") from exc
        # The upstream must answer 200 with a JSON object.
        if reply.status != 200 or not isinstance(answer, dict):
            raise UpstreamError(f"upstream answered HTTP {reply.status} for {path}")
        return answer

    def _charge_rest(self, price: Price, charge: Charge, counted: JSON) -> Charge:
        """monerod's second, same-timestamp charge for items counted in the answer."""
        if price.after is None or not isinstance(counted, dict):
            return charge
        return self.core.payment.charge_more(charge, after_charge_amount(price.after, counted))

    def _stamp(self, answer: dict[str, JSON], charge: Charge) -> None:
        """Tell the client its balance and the chain top, where monerod puts them."""
        result = answer.get("result")
        if self.core.mode == "monero" and isinstance(result, dict):
            result["credits"] = charge.credits
            result["top_hash"] = charge.top_hash
        else:
            answer["credits"] = charge.credits
            answer["top_hash"] = charge.top_hash

    async def _forward(self, path: str, document: JSON) -> UpstreamReply:
        return await self.core.upstream.post(path, encode_json(document), "application/json")

    # -- JSON endpoints (monerod's /get_info, /get_transactions, ...) ---------------------------

    async def _json_endpoint(self, request: web.BaseRequest, path: str) -> web.Response:
        try:
            body = await read_json_body(request)
        except (ValueError, UnicodeDecodeError):
            return json_response({"status": "Failed to parse JSON request"}, 400)
        body = {} if body is None else body
        # A JSON endpoint takes an object.
        if not isinstance(body, dict):
            return json_response(
                {"status": "Failed to parse JSON request: expected an object"}, 400
            )
        rule = MONERO_JSON_ENDPOINT_PRICES.get(path)
        note_call(method=path.lstrip("/"))
        started = time.perf_counter()
        charge = None
        price = None
        paid = 0
        if rule is not None:
            try:
                price = rule(body)
            except PriceError as exc:
                return json_response({"status": f"Invalid parameters: {exc}"}, 400)
            charge = await self.core.payment.charge(
                body.get("client"), price.upfront, price.rpc, self.peer(request)
            )
            if not charge.ok:
                note_call(outcome="unpaid")
                return json_response(_payment_answer(charge))
            paid = charge.amount
        cache_key = "get_info" if path in ("/get_info", "/getinfo") else None
        cached = self._cached(cache_key, charge)
        if cached is not None:
            answer: dict[str, JSON] = cached
        else:
            try:
                answer = await self._upstream_object(path, _strip_client(body))
            except asyncio.CancelledError:  # shutdown past its grace: the call never happened
                if charge is not None:
                    self.core.payment.refund(charge)
                raise
            except UpstreamError:
                note_call(outcome="upstream_error")
                credits = self.core.payment.refund(charge) if charge is not None else 0
                return json_response({"status": UPSTREAM_FAILED, "credits": credits}, 502)
            self._remember(cache_key, charge, answer)
        if charge is not None and price is not None:
            final = self._charge_rest(price, charge, answer)
            if not final.ok:
                note_call(outcome="unpaid")
                return json_response(_payment_answer(final))
            paid += final.amount if final is not charge else 0
            answer["credits"] = final.credits
            answer["top_hash"] = final.top_hash
        note_call(outcome="paid" if paid else "free", credits=paid)
        self.core.tracker.record(
            price.rpc if price else path.lstrip("/"),
            int((time.perf_counter() - started) * 1e6),
            paid,
        )
        return json_response(answer)
