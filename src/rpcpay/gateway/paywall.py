"""The standard paywall in front of a JSON-RPC 2.0 backend (an Ethereum node, say).

Contract (docs/gateway.md, "The paywall for JSON-RPC backends"):

- Bad input (not JSON, not a request, wrong ``jsonrpc``, no method, an empty batch, a batch
  over ``MAX_BATCH_ITEMS``) gets the spec's error; nothing is charged and nothing reaches the
  backend.
- Every item of a batch is priced; the whole batch is charged **once**, before anything is
  forwarded. A refusal is HTTP 402 with an ``error`` (code ``ERROR_PAYWALL``) per item whose
  ``data`` carries the terms: the price, the client's credits, and how to earn credits (the
  hash job methods; the lottery terms when that rail is on).
- The backend is called at its URL exactly as given. A single request without a client id
  in it is forwarded byte for byte; results come back byte for byte (the balance is added as
  ``credits``/``top_hash`` members beside ``result`` and as ``X-Rpc-Credits`` /
  ``X-Rpc-Top-Hash`` headers). A whole batch forwarded gets the backend's bytes unchanged.
- A backend failure (unreachable, non-200, not JSON, not the answer shape) refunds the whole
  charge and answers ``ERROR_UPSTREAM``. An item the backend answers with its own error is
  still charged: the backend did the work, and the gateway cannot tell a failed item from a
  cheap one.
- Notifications are forwarded and charged like calls, and get no answer (HTTP 204 when
  nothing at all is left to answer).

The paywall is a pipeline envelope (``rpcpay.gateway.pipeline``): the charge, the refund and
the tracking are the pipeline's; here are the parsing, the pricing, the splice and the
answers' shapes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rpcpay.errors import UpstreamError
from rpcpay.gateway.costs import PriceList
from rpcpay.gateway.envelope import Call, Envelope, Invalid, parse_request
from rpcpay.gateway.jsoncodec import decode_json, encode_json
from rpcpay.gateway.observe import note_call
from rpcpay.gateway.payment import Charge, PaymentService
from rpcpay.gateway.pipeline import Forward, PaidCall, Pipeline, PipelineParts
from rpcpay.gateway.protocol import RpcFault, error_response
from rpcpay.wire.rpc import (
    ACCESS_INFO,
    ERROR_PAYWALL,
    ERROR_RATE_LIMITED,
    ERROR_UPSTREAM,
    HEADER_CLIENT,
    HEADER_CREDITS,
    HEADER_TOP_HASH,
    HTTP_PAYMENT_REQUIRED,
    LOTTERY_INFO,
    LOTTERY_PAY_CHEQUE,
    MESSAGE_BUSY,
    MESSAGE_PAYMENT_REQUIRED,
    MESSAGE_UPSTREAM_FAILED,
    PARSE_ERROR,
    STATUS_PAYMENT_REQUIRED,
    SUBMIT_NONCE,
)

JSON = Any
LocalMethod = Callable[[str, JSON, str], Awaitable[dict[str, object]]]
"""Answers a gateway method (payment, lottery, admin-refusal) or raises ``RpcFault``."""


@dataclass(frozen=True, slots=True)
class Priced:
    """A call to forward, with its position in the batch and its price."""

    position: int
    call: Call
    price: int


def earning_terms(payment: PaymentService, lottery: dict[str, object] | None) -> dict[str, JSON]:
    """How a client earns credits here: the hash job methods, and the lottery when it is on."""
    terms: dict[str, JSON] = {
        "hashes": {
            "job": ACCESS_INFO,
            "submit": SUBMIT_NONCE,
            "diff": payment.settings.difficulty,
            "credits_per_hash_found": payment.settings.credits_per_hash_found,
        }
    }
    if lottery is not None:
        terms["lottery"] = {"pay": LOTTERY_PAY_CHEQUE, "info": LOTTERY_INFO, **lottery}
    return terms


def splice_balance(body: bytes, credits: int, top_hash: str) -> bytes:
    """The backend's answer object with ``credits`` and ``top_hash`` members added first, every
    byte of the backend's own text kept (so ``result`` is exactly what the backend wrote)."""
    start = body.index(b"{") + 1
    rest = body[start:].lstrip()
    members = b'"credits":%d,"top_hash":%s' % (credits, encode_json(top_hash))
    separator = b"" if rest.startswith(b"}") else b","
    return body[:start] + members + separator + body[start:]


_SPLICED = re.compile(rb'^(\s*\{)"credits":\d+,"top_hash":"[0-9a-f]*",?')


def unsplice_balance(body: bytes) -> bytes:
    """The backend's own answer bytes again, without what ``splice_balance`` added (a local
    proxy hands its callers the answer as a free node would give it)."""
    return _SPLICED.sub(rb"\1", body, count=1)


def balance_headers(charge: Charge | None) -> dict[str, str]:
    if charge is None or charge.client is None:
        return {}
    return {HEADER_CREDITS: str(charge.credits), HEADER_TOP_HASH: charge.top_hash}


def _response(
    document: JSON, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=encode_json(document), status=status, content_type="application/json", headers=headers
    )


@dataclass(frozen=True, slots=True)
class PaywallRequest:
    """One request body: its items, the raw bytes, the answers made before the charge
    (invalid and gateway items) and the items to price and forward."""

    envelope: Envelope
    raw: bytes
    answers: list[JSON]
    priced: list[Priced]


class JsonRpcPaywall(Pipeline[PaywallRequest, JSON]):
    """Answers ``/`` and ``/json_rpc`` for a JSON-RPC backend (a pipeline envelope)."""

    def __init__(
        self,
        parts: PipelineParts,
        prices: Callable[[], PriceList],
        local_methods: frozenset[str],
        local: LocalMethod,
        lottery_terms: Callable[[], dict[str, object] | None],
    ) -> None:
        super().__init__(parts)
        self.payment = parts.payment
        self.prices = prices
        self.local_methods = local_methods
        self.local = local
        self.lottery_terms = lottery_terms

    async def handle(self, request: web.BaseRequest, peer: str) -> web.Response:
        """Answer one request from ``peer`` (the real client address, behind trusted proxies:
        abuse budgets and free loopback key on it)."""
        raw = await request.read()
        try:
            document = decode_json(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            note_call(outcome="error")
            return _response(error_response(None, PARSE_ERROR, "Parse error"))
        envelope = parse_request(document)
        if isinstance(envelope, Invalid):
            note_call(outcome="error")
            return _response(error_response(None, envelope.code, envelope.message))
        return await self._serve(request, peer, raw, envelope)

    async def _serve(
        self, request: web.BaseRequest, peer: str, raw: bytes, envelope: Envelope
    ) -> web.Response:
        first = envelope.items[0] if envelope.items else None
        single = not envelope.is_batch and isinstance(first, Call)
        note_call(method=first.method if single and isinstance(first, Call) else "batch")
        answers: list[JSON] = []
        priced: list[Priced] = []
        prices = self.prices()
        for position, item in enumerate(envelope.items):
            if isinstance(item, Invalid):
                answers.append(error_response(item.request_id, item.code, item.message))
            elif item.method in self.local_methods:
                answer = await self._local(item, peer)
                if not item.is_notification:
                    answers.append(answer)
            else:
                priced.append(Priced(position, item, prices.price(item.method).upfront))
        if not priced:
            return self._compose(envelope, answers, None, None)
        total = sum(p.price for p in priced)
        client = request.headers.get(HEADER_CLIENT) or next(
            (p.call.client for p in priced if p.call.client is not None), None
        )
        call = PaidCall(
            PaywallRequest(envelope, raw, answers, priced),
            priced[0].call.method if not envelope.is_batch else "batch",
            total if total > 0 else None,
            client,
            peer,
            tuple((p.call.method, p.price) for p in priced),
        )
        return await self.run(call)

    async def fetch(
        self, call: PaidCall[PaywallRequest], charge: Charge | None, forward: Forward
    ) -> JSON:
        request = call.request
        return await self._forward(request.envelope, request.raw, request.priced, forward)

    def stamp(self, call: PaidCall[PaywallRequest], answer: JSON, charge: Charge) -> JSON:
        """One call's answer gets the balance spliced in; a batch only in the headers."""
        single = not call.request.envelope.is_batch
        if single and isinstance(answer, bytes) and charge.client is not None:
            return splice_balance(answer, charge.credits, charge.top_hash)
        return answer

    def encode(
        self, call: PaidCall[PaywallRequest], answer: JSON, charge: Charge | None
    ) -> web.Response:
        return self._compose(call.request.envelope, call.request.answers, answer, charge)

    def refuse(self, call: PaidCall[PaywallRequest], charge: Charge) -> web.Response:
        request = call.request
        total = call.upfront or 0
        return self._refuse(request.envelope, request.answers, request.priced, total, charge)

    def failed(
        self, call: PaidCall[PaywallRequest], charge: Charge | None, credits: int
    ) -> web.Response:
        return self._errors(call.request, ERROR_UPSTREAM, MESSAGE_UPSTREAM_FAILED, credits)

    def busy(
        self, call: PaidCall[PaywallRequest], charge: Charge | None, credits: int
    ) -> web.Response:
        """A shed free call: JSON-RPC error -32005 "busy" for each call (HTTP 200); nothing was
        charged."""
        return self._errors(call.request, ERROR_RATE_LIMITED, MESSAGE_BUSY, credits)

    def _errors(
        self, request: PaywallRequest, code: int, message: str, credits: int
    ) -> web.Response:
        """Error ``code`` for each forwarded call (not notifications), with the balance."""
        errors = [
            {**error_response(p.call.request_id, code, message), "credits": credits}
            for p in request.priced
            if not p.call.is_notification
        ]
        return self._compose(request.envelope, request.answers + errors, None, None)

    async def _local(self, call: Call, peer: str) -> JSON:
        try:
            result = await self.local(call.method, call.params, peer)
        except RpcFault as fault:
            note_call(outcome="error")
            return error_response(call.request_id, fault.code, fault.message)
        return {"id": call.request_id, "jsonrpc": "2.0", "result": result}

    async def _forward(
        self, envelope: Envelope, raw: bytes, priced: list[Priced], forward: Forward
    ) -> JSON:
        """Send the calls; the backend's answer: bytes for one call, a list for a batch."""
        if not envelope.is_batch:
            call = priced[0].call
            body = raw if not call.stripped else encode_json(call.forwarded)
        else:
            body = encode_json([p.call.forwarded for p in priced])
        reply = await forward("", body, "application/json")
        # The backend answers 200 (a notification's answer may be empty).
        if reply.status not in (200, 204):
            raise UpstreamError(f"upstream answered HTTP {reply.status}")
        # Notifications get no answer, whatever the backend wrote back.
        if all(p.call.is_notification for p in priced):
            return None
        try:
            answer = decode_json(reply.body)
        except ValueError as exc:
            raise UpstreamError("upstream answered non-JSON") from exc
        # One call gets one answer object; a batch gets an array.
        if envelope.is_batch and isinstance(answer, list):
            whole = len(priced) == len(envelope.items)
            return reply.body if whole else answer
        if not envelope.is_batch and isinstance(answer, dict):
            return reply.body
        raise UpstreamError("upstream answered the wrong JSON-RPC shape")

    def _compose(
        self, envelope: Envelope, answers: list[JSON], upstream: JSON, charge: Charge | None
    ) -> web.Response:
        headers = balance_headers(charge)
        if not envelope.is_batch:
            if isinstance(upstream, bytes):
                return web.Response(body=upstream, content_type="application/json", headers=headers)
            if not answers:
                return web.Response(status=204, headers=headers)
            return _response(answers[0], headers=headers)
        if isinstance(upstream, bytes) and not answers:
            return web.Response(body=upstream, content_type="application/json", headers=headers)
        combined = answers + (upstream if isinstance(upstream, list) else [])
        if not combined:
            return web.Response(status=204, headers=headers)
        return _response(combined, headers=headers)

    def _refuse(
        self,
        envelope: Envelope,
        answers: list[JSON],
        priced: list[Priced],
        total: int,
        charge: Charge,
    ) -> web.Response:
        """HTTP 402 with the terms; nothing was charged and nothing forwarded."""
        message = (
            MESSAGE_PAYMENT_REQUIRED if charge.status == STATUS_PAYMENT_REQUIRED else charge.status
        )
        data = {
            "status": charge.status,
            "price": total,
            "credits": charge.credits,
            "top_hash": charge.top_hash,
            "client": f"a 208-character client id in the {HEADER_CLIENT} header",
            "earn": earning_terms(self.payment, self.lottery_terms()),
        }
        refusals = [
            {
                "error": {
                    "code": ERROR_PAYWALL,
                    "message": message,
                    "data": {**data, "item_price": p.price},
                },
                "id": p.call.request_id,
                "jsonrpc": "2.0",
            }
            for p in priced
            if not p.call.is_notification or not envelope.is_batch
        ]
        combined = answers + refusals
        document: JSON = combined if envelope.is_batch else combined[0]
        if envelope.is_batch and not combined:
            document = {"error": {"code": ERROR_PAYWALL, "message": message, "data": data},
                        "id": None, "jsonrpc": "2.0"}  # fmt: skip
        return _response(document, HTTP_PAYMENT_REQUIRED, {HEADER_CREDITS: str(charge.credits)})
