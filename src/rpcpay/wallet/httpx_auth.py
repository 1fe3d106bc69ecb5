"""``PayingAuth``: an httpx ``Auth`` that signs requests to a paying gateway and pays.

    import httpx
    from rpcpay import MiningFunder, PayingAuth

    auth = PayingAuth("http://127.0.0.1:18089", funder=MiningFunder())
    httpx.post("http://127.0.0.1:18089/", json={...}, auth=auth)

Each request gets a fresh client id in the ``X-Rpc-Client`` header (the gateway reads it for
any params shape and for batches, and the body reaches the backend unchanged). An HTTP 402
whose terms say ``PAYMENT REQUIRED`` makes the funder earn credits (through a paying client
on the same key) and the request is sent again, at most ``max_funding_rounds`` times; any
other answer, paid or not, is the caller's. Works with ``httpx.Client`` and
``httpx.AsyncClient``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Generator

import httpx

from rpcpay.wallet.client import Funder, PayingClient, SyncPayingClient
from rpcpay.wallet.keys import ClientKey
from rpcpay.wire.rpc import HEADER_CLIENT, HTTP_PAYMENT_REQUIRED, STATUS_PAYMENT_REQUIRED


def is_payment_required(status: int, body: bytes) -> bool:
    """A 402 whose error data says the balance is short (not a bad signature)."""
    if status != HTTP_PAYMENT_REQUIRED:
        return False
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    items = answer if isinstance(answer, list) else [answer]
    return any(
        isinstance(item, dict)
        and isinstance(item.get("error"), dict)
        and isinstance(item["error"].get("data"), dict)
        and item["error"]["data"].get("status") == STATUS_PAYMENT_REQUIRED
        for item in items
    )


class PayingAuth(httpx.Auth):
    """Signs every request with ``key``; funds and retries on payment refusals."""

    def __init__(
        self,
        gateway_url: str,
        key: ClientKey | None = None,
        *,
        funder: Funder | None = None,
        max_funding_rounds: int = 20,
    ) -> None:
        self.gateway_url = gateway_url
        self.key = key or ClientKey()
        self.funder = funder
        self.max_funding_rounds = max_funding_rounds
        self._sync: SyncPayingClient | None = None
        self._async: PayingClient | None = None

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        for _ in range(self.max_funding_rounds + 1):
            request.headers[HEADER_CLIENT] = self.key.client_id()
            response = yield request
            if self.funder is None or not is_payment_required(
                response.status_code, response.read()
            ):
                return
            if self._sync is None:
                self._sync = SyncPayingClient(self.gateway_url, self.key, funder=self.funder)
            self._sync.fund()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        for _ in range(self.max_funding_rounds + 1):
            request.headers[HEADER_CLIENT] = self.key.client_id()
            response = yield request
            if self.funder is None or not is_payment_required(
                response.status_code, await response.aread()
            ):
                return
            if self._async is None:
                self._async = PayingClient(self.gateway_url, self.key, funder=self.funder)
            await self._async.fund()

    def close(self) -> None:
        """Close the paying clients used for funding."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.close()
            self._async = None
