"""An async client for a paying node: monerod 0.18 with payment on, or ``rpcpay serve``.

Errors are typed so a caller can tell "out of credits" from "the server refused the share"
from "the upstream is down"::

    ClientError
    ├── PaymentRequired   the node wants more credits than we have
    ├── ShareRefused      a submitted nonce was refused (stale, duplicate, bad hash)
    ├── UpstreamDown      the gateway's backend failed (nothing was charged)
    └── NodeError         any other JSON-RPC error or unusable answer
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from rpcpay.wallet.keys import ClientKey

JSON = Any
STATUS_PAYMENT_REQUIRED = "PAYMENT REQUIRED"
UPSTREAM_ERROR_CODE = -32003


class ClientError(Exception):
    """Base of the client's errors."""


class PaymentRequired(ClientError):
    """The node wants payment; ``credits`` is what it says we have."""

    def __init__(self, credits: int) -> None:
        super().__init__(f"payment required (credits: {credits})")
        self.credits = credits


class ShareRefused(ClientError):
    """The node refused a share: ``code`` is monerod's error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"share refused ({code}): {message}")
        self.code = code


class UpstreamDown(ClientError):
    """The gateway could not reach its backend; the call cost nothing."""


class NodeError(ClientError):
    """A JSON-RPC error or an answer the client cannot use."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"node error ({code}): {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class AccessInfo:
    """rpc_access_info's answer: the job and the node's terms."""

    hashing_blob: bytes
    seed_hash: bytes
    next_seed_hash: bytes | None
    seed_height: int
    cookie: int
    difficulty: int
    credits_per_hash_found: int
    height: int
    credits: int
    top_hash: str


class PayingClient:
    """Signs every request with ``key`` and tracks credits and top_hash from every answer."""

    def __init__(self, url: str, key: ClientKey | None = None) -> None:
        self.url = url.rstrip("/")
        self.key = key or ClientKey()
        self.credits = 0
        self.top_hash = ""
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> PayingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, params: dict[str, JSON]) -> JSON:
        """Send one unsigned JSON-RPC request and return the decoded answer object."""
        body = {"jsonrpc": "2.0", "id": "0", "method": method, "params": params}
        try:
            async with self._http().post(self.url + "/json_rpc", json=body) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NodeError(0, f"node unreachable: {type(exc).__name__}") from exc
        try:
            answer = json.loads(text)
        except ValueError as exc:
            raise NodeError(0, "node answered non-JSON") from exc
        # A JSON-RPC answer is an object.
        if not isinstance(answer, dict):
            raise NodeError(0, "node answered a non-object")
        return answer

    def _track(self, result: dict[str, JSON]) -> None:
        if isinstance(result.get("credits"), int):
            self.credits = result["credits"]
        if isinstance(result.get("top_hash"), str) and result["top_hash"]:
            self.top_hash = result["top_hash"]

    async def access_info(self) -> AccessInfo:
        """Ask for the current job and balance."""
        answer = await self.request("rpc_access_info", {"client": self.key.client_id()})
        result = self._result(answer)
        try:
            info = AccessInfo(
                hashing_blob=bytes.fromhex(result["hashing_blob"]),
                seed_hash=bytes.fromhex(result["seed_hash"]),
                next_seed_hash=bytes.fromhex(result["next_seed_hash"])
                if result.get("next_seed_hash")
                else None,
                seed_height=int(result["seed_height"]),
                cookie=int(result["cookie"]),
                difficulty=int(result["diff"]),
                credits_per_hash_found=int(result["credits_per_hash_found"]),
                height=int(result["height"]),
                credits=int(result["credits"]),
                top_hash=str(result["top_hash"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise NodeError(0, "rpc_access_info answer is malformed") from exc
        self._track(result)
        return info

    async def submit_nonce(self, nonce: int, cookie: int) -> int:
        """Submit one share; the new balance, or ShareRefused."""
        params = {"client": self.key.client_id(), "nonce": nonce, "cookie": cookie}
        answer = await self.request("rpc_access_submit_nonce", params)
        error = answer.get("error")
        if isinstance(error, dict):
            raise ShareRefused(int(error.get("code", 0)), str(error.get("message", "")))
        result = self._result(answer)
        self._track(result)
        return self.credits

    async def call(self, method: str, params: dict[str, JSON] | None = None) -> dict[str, JSON]:
        """One paid JSON-RPC call; PaymentRequired if the balance is short."""
        signed = dict(params or {})
        signed["client"] = self.key.client_id()
        answer = await self.request(method, signed)
        result = self._result(answer)
        self._track(result)
        status = result.get("status")
        # A refused charge comes back as a status, not an error.
        if status == STATUS_PAYMENT_REQUIRED:
            raise PaymentRequired(self.credits)
        if isinstance(status, str) and status.startswith("Client signature does not verify"):
            raise NodeError(0, status)
        return result

    def _result(self, answer: dict[str, JSON]) -> dict[str, JSON]:
        error = answer.get("error")
        if isinstance(error, dict):
            code, message = int(error.get("code", 0)), str(error.get("message", ""))
            if isinstance(answer.get("credits"), int):
                self.credits = answer["credits"]
            if code == UPSTREAM_ERROR_CODE:
                raise UpstreamDown(message)
            if code == -5 and message == STATUS_PAYMENT_REQUIRED:
                raise PaymentRequired(self.credits)
            raise NodeError(code, message)
        self._track(answer)  # non-Monero backends get credits beside the result
        result = answer.get("result")
        # A successful answer carries a result object.
        if not isinstance(result, dict):
            raise NodeError(0, "answer has no result object")
        return result
