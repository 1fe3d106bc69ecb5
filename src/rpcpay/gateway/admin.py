"""The admin listener: rpc_access_tracking, rpc_access_data and rpc_access_account.

monerod serves these on its unrestricted port, so in regtest anyone who can reach it can mint
credits. rpcpay never serves them on the public listener: they live on a separate listener,
bound to loopback by default, and behind a bearer token whenever one is configured (a token is
required to bind anywhere else).
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from typing import Any

from aiohttp import web

from rpcpay.gateway.app import GatewayCore, json_response
from rpcpay.gateway.ops_pages import UNAUTHENTICATED, OpsPages
from rpcpay.gateway.protocol import (
    ERROR_INVALID_CLIENT,
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
from rpcpay.ledger.account import last_activity

JSON = Any


def basic_password(header: str) -> str:
    """The password of an HTTP Basic ``Authorization`` header ("" if malformed)."""
    try:
        decoded = base64.b64decode(header.removeprefix("Basic ").strip(), validate=True)
        return decoded.decode("utf-8").partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return ""


I64_MIN, I64_MAX = -(2**63), 2**63 - 1


class AdminHandler:
    """JSON-RPC on /json_rpc for the operator's own tools (``rpcpay payments``)."""

    def __init__(self, core: GatewayCore, token: str | None, pages: OpsPages | None = None) -> None:
        self.core = core
        self._token = token
        self.pages = pages

    def _authorised(self, request: web.BaseRequest) -> bool:
        if self._token is None:
            return True
        given = request.headers.get("Authorization", "")
        # A browser (the dashboard) sends the token as Basic auth's password.
        if given.startswith("Basic "):
            return hmac.compare_digest(basic_password(given).encode(), self._token.encode())
        return hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode())

    def _refuse(self, request: web.BaseRequest) -> web.Response:
        response = json_response({"status": "Unauthorized"}, 401)
        # Ask a browser for the token (as a password) on the dashboard's pages.
        if request.path.startswith("/dashboard"):
            response.headers["WWW-Authenticate"] = 'Basic realm="rpcpay admin"'
        return response

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        pages = self.pages
        # Health probes answer anyone who reaches the admin listener.
        if pages is not None and request.path in UNAUTHENTICATED:
            return await pages.handle(request)
        # Only the operator, holding the token when one is set, may use the admin methods.
        if not self._authorised(request):
            return self._refuse(request)
        if pages is not None and pages.serves(request.path):
            return await pages.handle(request)
        # Admin calls are JSON-RPC on /json_rpc.
        if request.path != "/json_rpc":
            return json_response({"status": f"Unknown endpoint {request.path}"}, 404)
        try:
            document = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return json_response(error_response(None, PARSE_ERROR, "Parse error"))
        # A request is one object with a string method.
        if not isinstance(document, dict) or not isinstance(document.get("method"), str):
            return json_response(error_response(None, INVALID_REQUEST, "Invalid Request"))
        request_id = document.get("id", "")
        params = document.get("params") or {}
        try:
            # Params are an object.
            if not isinstance(params, dict):
                raise RpcFault(INVALID_PARAMS, "Invalid params")
            result = await self._dispatch(document["method"], params)
        except RpcFault as fault:
            return json_response(error_response(request_id, fault.code, fault.message))
        return json_response(result_response(request_id, result))

    async def _dispatch(self, method: str, params: dict[str, JSON]) -> dict[str, JSON]:
        if method == "rpc_access_tracking":
            return self._tracking(params)
        if method == "rpc_access_data":
            return await self._data()
        if method == "rpc_access_account":
            return await self._account(params)
        raise RpcFault(METHOD_NOT_FOUND, "Method not found")

    def _tracking(self, params: dict[str, JSON]) -> dict[str, JSON]:
        if params.get("clear") is True:
            self.core.tracker.clear()
            return {"status": STATUS_OK, "untrusted": False}
        return {"data": self.core.tracker.rows(), "status": STATUS_OK, "untrusted": False}

    async def _data(self) -> dict[str, JSON]:
        payment = self.core.payment
        entries = [
            {
                "client": a.client.hex(),
                "balance": a.balance,
                "last_update_time": last_activity(a),
                "credits_total": a.credits_total,
                "credits_used": a.credits_used,
                "nonces_good": a.nonces_good,
                "nonces_stale": a.nonces_stale,
                "nonces_bad": a.nonces_bad,
                "nonces_dupe": a.nonces_dupe,
            }
            for a in await payment.ledger.accounts()
        ]
        result: dict[str, JSON] = {
            "hashrate": payment.hashrate.hashes_per_second(time.time()),
            "status": STATUS_OK,
            "untrusted": False,
        }
        # epee leaves an empty list out of the answer; so does monerod.
        if entries:
            result["entries"] = entries
        # rpcpay's extension: the free tier and the upstream line, when configured.
        if self.core.capacity is not None:
            result["capacity"] = self.core.capacity.summary()
        return result

    async def _account(self, params: dict[str, JSON]) -> dict[str, JSON]:
        client, delta = params.get("client", ""), params.get("delta_balance", 0)
        # delta_balance is an i64.
        if isinstance(delta, bool) or not isinstance(delta, int) or not I64_MIN <= delta <= I64_MAX:
            raise RpcFault(INVALID_PARAMS, "Invalid params")
        # The first 64 characters of client are the hex public key.
        try:
            key = bytes.fromhex(client[:64]) if isinstance(client, str) else b""
        except ValueError:
            key = b""
        if len(key) != 32:
            raise RpcFault(ERROR_INVALID_CLIENT, MESSAGE_INVALID_CLIENT)
        account = await self.core.payment.ledger.adjust_balance(key, delta)
        return {"credits": account.balance, "status": STATUS_OK, "untrusted": False}


__all__ = ["AdminHandler"]
