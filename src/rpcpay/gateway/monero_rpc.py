"""monerod's JSON calls as pipeline envelopes: JSON-RPC on ``/json_rpc`` and the JSON
endpoints (``/get_info``, ``/get_transactions``, ...).

Each front reads and prices the request as monerod 0.18 does and answers bad input itself
(nothing charged); ``Pipeline.run`` does the rest. The envelopes add monerod's shapes:

- JSON-RPC: a refused charge is a ``result`` with status, credits and top hash (``get_info``:
  error -5 with the status, as monerod's get_info turns any non-OK status into); an upstream
  failure is error ``ERROR_UPSTREAM`` with the refunded balance beside it; the balance is
  stamped into the ``result`` object (beside it when the upstream answered an error).
- JSON endpoints: a refusal is the status object (HTTP 200), an upstream failure HTTP 502
  with the refunded balance; the balance is stamped into the answer object.

``get_info`` answers (both forms) come from the ``InfoCache`` within one chain top; the
client still pays for each. Their JSON is made once per cached answer (``known_json``): a
paid call encodes only its id, balance and top hash (3.7 us against 7.9 us per answer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rpcpay.errors import UpstreamError
from rpcpay.gateway.costs import (
    MONERO_FREE_JSON_RPC,
    MONERO_JSON_ENDPOINT_PRICES,
    MONERO_JSON_RPC_PRICES,
    Price,
    PriceError,
    after_charge_amount,
)
from rpcpay.gateway.info_cache import InfoCache
from rpcpay.gateway.jsoncodec import decode_json, encode_json
from rpcpay.gateway.known_json import encode_known
from rpcpay.gateway.observe import note_call
from rpcpay.gateway.payment import Charge
from rpcpay.gateway.pipeline import Forward, PaidCall, Pipeline, PipelineParts
from rpcpay.gateway.protocol import (
    ERROR_INTERNAL,
    ERROR_UPSTREAM,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    STATUS_BUSY,
    STATUS_OK,
    RpcFault,
    error_response,
    result_response,
)

JSON = Any
UPSTREAM_FAILED = "Upstream unavailable; nothing was charged"
LocalMethod = Callable[[str, JSON, str], Awaitable[dict[str, JSON]]]
"""Answers a method the gateway serves itself (payments, the lottery) or raises RpcFault."""


def json_response(document: JSON, status: int = 200) -> web.Response:
    return web.Response(body=encode_known(document), status=status, content_type="application/json")


async def read_json_body(request: web.BaseRequest) -> JSON:
    """The request body as JSON; ``ValueError`` if it is not JSON at all."""
    body = await request.read()
    if not body.strip():
        return None
    return decode_json(body)


def object_params(params: JSON) -> dict[str, JSON]:
    """monerod's methods take an object (or nothing) as params; RpcFault otherwise."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RpcFault(INVALID_PARAMS, "Invalid params")
    return params


def payment_answer(charge: Charge) -> dict[str, JSON]:
    """The body monerod returns for a refused charge: status, credits, top_hash."""
    return status_answer(charge.status, charge.credits, charge.top_hash)


def status_answer(status: str, credits: int, top_hash: str) -> dict[str, JSON]:
    """monerod's body for a call it does not serve: its status, the balance, the top."""
    return {"credits": credits, "status": status, "top_hash": top_hash, "untrusted": False}


def _strip_client(params: Mapping[str, JSON]) -> dict[str, JSON]:
    return {k: v for k, v in params.items() if k != "client"}


async def upstream_object(forward: Forward, path: str, document: JSON) -> dict[str, JSON]:
    """Forward ``document`` and decode the answer; UpstreamError unless it is a JSON object
    with HTTP 200."""
    reply = await forward(path, encode_json(document), "application/json")
    try:
        answer = decode_json(reply.body)
    except ValueError as exc:
        raise UpstreamError(f"upstream answered non-JSON for {path}") from exc
    # The upstream must answer 200 with a JSON object.
    if reply.status != 200 or not isinstance(answer, dict):
        raise UpstreamError(f"upstream answered HTTP {reply.status} for {path}")
    return answer


def _cached(cache: InfoCache, key: str | None, charge: Charge | None) -> dict[str, JSON] | None:
    """A cached answer for a paid call, if the call is cacheable and one is fresh."""
    if key is None or charge is None:
        return None
    return cache.get(key, charge.top_hash)


def _remember(cache: InfoCache, key: str | None, charge: Charge | None, answer: JSON) -> None:
    # Only a successful answer, fetched at a known top, is worth keeping.
    if key is None or charge is None or not isinstance(answer, dict):
        return
    if answer.get("status") == STATUS_OK:
        cache.put(key, charge.top_hash, answer)


def _after(price: Price | None, counted: JSON) -> int:
    """The second charge's amount for the items counted in ``counted``."""
    if price is None or price.after is None or not isinstance(counted, dict):
        return 0
    return after_charge_amount(price.after, counted)


# -- JSON-RPC ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RpcRequest:
    """One JSON-RPC request object: its id, method, params and price (None: free)."""

    document: dict[str, JSON]
    request_id: JSON
    method: str
    params: JSON
    price: Price | None


def rpc_price(method: str, params: JSON) -> Price | None:
    """The call's price; None if it is free. RpcFault if it is not served or malformed."""
    if method in MONERO_FREE_JSON_RPC:
        return None
    rule = MONERO_JSON_RPC_PRICES.get(method)
    # Only monerod's restricted-safe methods are served to the public.
    if rule is None:
        raise RpcFault(METHOD_NOT_FOUND, "Method not found")
    try:
        return rule(object_params(params))
    except PriceError as exc:
        raise RpcFault(INVALID_PARAMS, f"Invalid params: {exc}") from exc


def _client_of(request: web.BaseRequest, document: dict[str, JSON], params: JSON) -> JSON:
    """Where the client id travels: in object params (monerod's way), else beside them in
    the request object or in an X-Rpc-Client header (for array-params callers)."""
    if isinstance(params, dict) and "client" in params:
        return params["client"]
    if "client" in document:
        return document["client"]
    return request.headers.get("X-Rpc-Client")


class MoneroJsonRpc(Pipeline[RpcRequest, dict[str, JSON]]):
    """``/json_rpc`` in front of monerod."""

    def __init__(
        self,
        parts: PipelineParts,
        info_cache: InfoCache,
        local_methods: frozenset[str],
        local: LocalMethod,
        upstream_path: str = "/json_rpc",
    ) -> None:
        super().__init__(parts)
        self.info_cache = info_cache
        self.local_methods = local_methods
        self.local = local
        self.upstream_path = upstream_path

    async def handle(self, request: web.BaseRequest, peer: str) -> web.Response:
        """Parse and price one request; gateway methods are answered here, the rest run."""
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
            if method in self.local_methods:
                result = await self.local(method, params, peer)
                return json_response(result_response(request_id, result))
            price = rpc_price(method, params)
            call = PaidCall(
                RpcRequest(document, request_id, method, params, price),
                price.rpc if price is not None else method,
                price.upfront if price is not None else None,
                _client_of(request, document, params),
                peer,
            )
            return await self.run(call)
        except RpcFault as fault:
            note_call(outcome="error")
            return json_response(error_response(request_id, fault.code, fault.message))

    async def fetch(
        self, call: PaidCall[RpcRequest], charge: Charge | None, forward: Forward
    ) -> dict[str, JSON]:
        rpc = call.request
        cache_key = "get_info" if rpc.method == "get_info" else None
        cached = _cached(self.info_cache, cache_key, charge)
        if cached is not None:
            return {"id": rpc.request_id, "jsonrpc": "2.0", "result": cached}
        forwarded = {k: v for k, v in rpc.document.items() if k != "client"}
        if isinstance(rpc.params, dict):
            forwarded["params"] = _strip_client(rpc.params)
        answer = await upstream_object(forward, self.upstream_path, forwarded)
        _remember(self.info_cache, cache_key, charge, answer.get("result"))
        return answer

    def price_after(self, call: PaidCall[RpcRequest], answer: dict[str, JSON]) -> int:
        return _after(call.request.price, answer.get("result"))

    def stamp(
        self, call: PaidCall[RpcRequest], answer: dict[str, JSON], charge: Charge
    ) -> dict[str, JSON]:
        """Tell the client its balance and the chain top, where monerod puts them."""
        result = answer.get("result")
        if isinstance(result, dict):
            result["credits"] = charge.credits
            result["top_hash"] = charge.top_hash
        else:
            answer["credits"] = charge.credits
            answer["top_hash"] = charge.top_hash
        return answer

    def encode(
        self, call: PaidCall[RpcRequest], answer: dict[str, JSON], charge: Charge | None
    ) -> web.Response:
        return json_response(answer)

    def refuse(self, call: PaidCall[RpcRequest], charge: Charge) -> web.Response:
        request_id = call.request.request_id
        if call.request.method == "get_info":
            # monerod's JSON-RPC get_info turns any non-OK status into error -5.
            return json_response(error_response(request_id, ERROR_INTERNAL, charge.status))
        return json_response(result_response(request_id, payment_answer(charge)))

    def failed(
        self, call: PaidCall[RpcRequest], charge: Charge | None, credits: int
    ) -> web.Response:
        failed = error_response(call.request.request_id, ERROR_UPSTREAM, UPSTREAM_FAILED)
        return json_response({**failed, "credits": credits})

    def busy(self, call: PaidCall[RpcRequest], charge: Charge | None, credits: int) -> web.Response:
        """A shed free call: monerod's own "busy": status BUSY in the result (a wallet retries
        later)."""
        busy = status_answer(STATUS_BUSY, credits, "")
        return json_response(result_response(call.request.request_id, busy))


# -- JSON endpoints (monerod's /get_info, /get_transactions, ...) ----------------------------


@dataclass(frozen=True, slots=True)
class EndpointRequest:
    """One JSON endpoint request: its path, body object and price (None: free)."""

    path: str
    body: dict[str, JSON]
    price: Price | None


class MoneroJsonEndpoint(Pipeline[EndpointRequest, dict[str, JSON]]):
    """monerod's JSON endpoints."""

    def __init__(self, parts: PipelineParts, info_cache: InfoCache) -> None:
        super().__init__(parts)
        self.info_cache = info_cache

    async def handle(self, request: web.BaseRequest, path: str, peer: str) -> web.Response:
        """Parse and price one request to ``path``, then run it."""
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
        name = path.lstrip("/")
        note_call(method=name)
        price = None
        if rule is not None:
            try:
                price = rule(body)
            except PriceError as exc:
                return json_response({"status": f"Invalid parameters: {exc}"}, 400)
        call = PaidCall(
            EndpointRequest(path, body, price),
            price.rpc if price is not None else name,
            price.upfront if price is not None else None,
            body.get("client"),
            peer,
        )
        return await self.run(call)

    async def fetch(
        self, call: PaidCall[EndpointRequest], charge: Charge | None, forward: Forward
    ) -> dict[str, JSON]:
        path = call.request.path
        cache_key = "get_info" if path in ("/get_info", "/getinfo") else None
        cached = _cached(self.info_cache, cache_key, charge)
        if cached is not None:
            return cached
        answer = await upstream_object(forward, path, _strip_client(call.request.body))
        _remember(self.info_cache, cache_key, charge, answer)
        return answer

    def price_after(self, call: PaidCall[EndpointRequest], answer: dict[str, JSON]) -> int:
        return _after(call.request.price, answer)

    def stamp(
        self, call: PaidCall[EndpointRequest], answer: dict[str, JSON], charge: Charge
    ) -> dict[str, JSON]:
        answer["credits"] = charge.credits
        answer["top_hash"] = charge.top_hash
        return answer

    def encode(
        self, call: PaidCall[EndpointRequest], answer: dict[str, JSON], charge: Charge | None
    ) -> web.Response:
        return json_response(answer)

    def refuse(self, call: PaidCall[EndpointRequest], charge: Charge) -> web.Response:
        return json_response(payment_answer(charge))

    def failed(
        self, call: PaidCall[EndpointRequest], charge: Charge | None, credits: int
    ) -> web.Response:
        return json_response({"status": UPSTREAM_FAILED, "credits": credits}, 502)

    def busy(
        self, call: PaidCall[EndpointRequest], charge: Charge | None, credits: int
    ) -> web.Response:
        """A shed free call: monerod's own "busy" status, HTTP 200."""
        return json_response({"credits": credits, "status": STATUS_BUSY, "untrusted": False})
