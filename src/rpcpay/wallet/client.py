"""A client for a paying node: monerod 0.18 with payment on, or ``rpcpay serve`` in front of
monerod or of any JSON-RPC service.

``PayingClient`` is asyncio; ``SyncPayingClient`` is the same client for plain threads (it runs
its own event loop on a background thread). A caller just makes calls: give the client a
``funder`` (``rpcpay.wallet.funding``: hashes, or lottery cheques) and a refusal for payment
makes it earn credits, then retry.

Any JSON-RPC: params are an array, an object or nothing; the result is returned whatever its
type; ``call_batch`` sends a batch, charged once. The client id goes in the ``X-Rpc-Client``
header, and also inside object params (monerod's place; the gateway removes it). A call the
node charged is always returned to the caller: an answer is only turned into an error when
the node says it was not paid for, or when it is the node's own error.

Errors are typed so a caller can tell "out of credits" from "the server refused the share"
from "the upstream is down"::

    ClientError
    ├── PaymentRequired   the node wants more credits than we have
    ├── ShareRefused      a submitted nonce was refused (stale, duplicate, bad hash)
    ├── UpstreamDown      the gateway's backend failed (nothing was charged)
    └── NodeError         any other JSON-RPC error (``code``, ``message``, ``data``) or
                          unusable answer
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.pay_when import PayPolicy, PayState, after_free_call, after_refusal, goes_free
from rpcpay.wire.rpc import (
    ERROR_INTERNAL,
    ERROR_PAYWALL,
    ERROR_RATE_LIMITED,
    ERROR_UPSTREAM,
    HEADER_BID,
    HEADER_CLIENT,
    HEADER_CREDITS,
    SIGNATURE_STATUS_PREFIX,
    STATUS_BUSY,
    STATUS_PAYMENT_REQUIRED,
    is_payment_refusal_status,
)

JSON = Any
TIMESTAMP_RETRIES = 3  # refusals retried at once while the balance is positive (races)


class ClientError(Exception):
    """Base of the client's errors."""


class PaymentRequired(ClientError):
    """The node wants payment; ``credits`` is what it says we have, ``terms`` the paywall's
    ``error.data`` (price, how to earn credits) when it sent them."""

    def __init__(self, credits: int, terms: dict[str, JSON] | None = None) -> None:
        super().__init__(f"payment required (credits: {credits})")
        self.credits = credits
        self.terms = terms


class ShareRefused(ClientError):
    """The node refused a share: ``code`` is monerod's error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"share refused ({code}): {message}")
        self.code = code


class FreeRefused(ClientError):
    """An unsigned (free) call was refused: the node wants payment, or is busy for free
    calls. ``PayingClient.call`` then pays; callers of ``call_free`` see it."""


class UpstreamDown(ClientError):
    """The gateway could not reach its backend; the call cost nothing."""


class NodeError(ClientError):
    """A JSON-RPC error (the node's or its backend's) or an answer the client cannot use."""

    def __init__(self, code: int, message: str, data: JSON = None) -> None:
        super().__init__(f"node error ({code}): {message}")
        self.code = code
        self.message = message
        self.data = data


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


T = TypeVar("T")

Funder = Callable[["PayingClient", AccessInfo], Awaitable[None]]
"""Earns credits for a client that was refused a call (mines a share, waits for a miner...)."""


class PayingClient:
    """Signs every request with ``key`` and tracks credits and top_hash from every answer."""

    def __init__(
        self,
        url: str,
        key: ClientKey | None = None,
        *,
        funder: Funder | None = None,
        max_funding_rounds: int = 20,
        policy: PayPolicy | None = None,
        bid: int = 0,
    ) -> None:
        self.url = url.rstrip("/")
        self.bid = bid  # X-Rpc-Bid on signed calls: credits more per call to go first
        self.policy = policy or PayPolicy()
        self.pay_state = PayState()
        self.key = key or ClientKey()
        self._funder = funder
        self._max_funding_rounds = max_funding_rounds
        self.credits = 0
        self.charged = False  # did the last call_once's answer carry a balance (a paid call)?
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

    async def request(
        self, method: str, params: JSON, client: str | None = None
    ) -> dict[str, JSON]:
        """Send one JSON-RPC request (signed with ``client`` when given) and return the
        decoded answer object."""
        body: dict[str, JSON] = {"jsonrpc": "2.0", "id": "0", "method": method}
        if params is not None:
            body["params"] = params
        answer = await self._post(body, client)
        # A JSON-RPC answer is an object.
        if not isinstance(answer, dict):
            raise NodeError(0, "node answered a non-object")
        return answer

    async def _post(self, body: JSON, client: str | None) -> JSON:
        headers = {HEADER_CLIENT: client} if client else {}
        # A bid rides only on signed calls: an unsigned one is not charged.
        if client and self.bid > 0:
            headers[HEADER_BID] = str(self.bid)
        try:
            async with self._http().post(
                self.url + "/json_rpc", json=body, headers=headers
            ) as response:
                raw = await response.read()
                credits = response.headers.get(HEADER_CREDITS)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NodeError(0, f"node unreachable: {type(exc).__name__}") from exc
        if credits is not None and credits.isdigit():
            self.credits = int(credits)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise NodeError(0, f"node answered non-JSON: {raw[:80]!r}") from exc

    def _track(self, result: dict[str, JSON]) -> None:
        if isinstance(result.get("credits"), int):
            self.credits = result["credits"]
        if isinstance(result.get("top_hash"), str) and result["top_hash"]:
            self.top_hash = result["top_hash"]

    async def access_info(self) -> AccessInfo:
        """Ask for the current job and balance."""
        answer = await self.request("rpc_access_info", {"client": self.key.client_id()})
        result = self._object(self._result(answer))
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
        result = self._object(self._result(answer))
        self._track(result)
        return self.credits

    async def fund(self) -> None:
        """Earn credits once with the funder (``PaymentRequired`` without one)."""
        if self._funder is None:
            raise PaymentRequired(self.credits)
        await self._funder(self, await self.access_info())

    async def call(self, method: str, params: JSON = None) -> JSON:
        """One paid JSON-RPC call, paid for however it takes; its result, of any type.

        A refusal is checked against the free rpc_access_info first: another process signing
        with the same key can make a call arrive with an older timestamp, which the node
        refuses although the balance suffices; a retry with a fresh id fixes that.
        Otherwise the funder (if any) earns credits and the call is retried; without one, or
        after ``max_funding_rounds``, ``PaymentRequired`` reaches the caller.

        With a ``policy`` other than ``always`` the call first goes unsigned, to the node's
        free tier, while free service serves (``rpcpay.wallet.pay_when``).
        """
        started = time.monotonic()
        if goes_free(self.policy, self.pay_state, started):
            try:
                result = await self.call_free(method, params)
            except FreeRefused:
                self.pay_state = after_refusal(self.policy, self.pay_state, time.monotonic())
            else:
                now = time.monotonic()
                self.pay_state = after_free_call(self.policy, self.pay_state, now - started, now)
                return result
        if self.policy.when != "always":
            await self._fund_if_empty()
        return await self._paid(lambda: self.call_once(method, params))

    async def _fund_if_empty(self) -> None:
        """Paying after free service failed needs credits up front: a node with a free tier
        serves a signed call from an empty balance free, in the free class it just left."""
        if self.credits > 0 or self._funder is None:
            return
        info = await self.access_info()
        if info.credits <= 0:
            await self._funder(self, info)

    async def call_free(self, method: str, params: JSON = None) -> JSON:
        """One unsigned call (no client id); its result, or ``FreeRefused`` if the node
        wants payment or is too busy for free calls."""
        self.charged = False
        answer = await self.request(method, params)
        error = answer.get("error")
        if isinstance(error, dict):
            code, message = int(error.get("code", 0) or 0), str(error.get("message", ""))
            # The paywall's 402, "busy", and monerod's get_info refusal (error -5).
            if code in (ERROR_PAYWALL, ERROR_RATE_LIMITED) or is_payment_refusal_status(message):
                raise FreeRefused(message)
        result = self._result(answer, track=False)
        status = result.get("status") if isinstance(result, dict) else None
        # monerod refuses with a status in the result.
        if isinstance(status, str) and (is_payment_refusal_status(status) or status == STATUS_BUSY):
            raise FreeRefused(status)
        return result

    async def call_batch(self, calls: Sequence[tuple[str, JSON]]) -> list[JSON]:
        """Several calls in one batch, charged once; per call its result or, for a call the
        node or its backend answered with an error, a ``NodeError`` (returned, not raised:
        the batch was paid for)."""
        return await self._paid(lambda: self.batch_once(calls))

    async def _paid(self, attempt: Callable[[], Awaitable[T]]) -> T:
        retried = funded = 0
        while True:
            try:
                return await attempt()
            except PaymentRequired as refusal:
                info = await self.access_info()
                if retried < TIMESTAMP_RETRIES and info.credits > 0:
                    retried += 1
                    continue
                if self._funder is None or funded >= self._max_funding_rounds:
                    raise PaymentRequired(self.credits, refusal.terms) from None
                funded += 1
                retried = 0
                await self._funder(self, info)

    async def call_once(self, method: str, params: JSON = None) -> JSON:
        """One paid JSON-RPC call, one attempt; PaymentRequired if the node refuses the charge."""
        client = self.key.client_id()
        self.charged = False
        signed = params
        if isinstance(params, dict):
            # monerod reads the client id from object params (the gateway strips it); a
            # call without params gets none, the gateway reads the header.
            signed = {**params, "client": client}
        answer = await self.request(method, signed, client)
        result = self._result(answer, track=False)
        if isinstance(result, dict):
            status = result.get("status")
            # monerod refuses a charge with a status, not an error.
            if status == STATUS_PAYMENT_REQUIRED:
                # Its credits may be 0 for a timestamp refusal: not a balance worth tracking.
                raise PaymentRequired(int(result.get("credits", 0) or 0))
            if isinstance(status, str) and status.startswith(SIGNATURE_STATUS_PREFIX):
                raise NodeError(0, status)
            self._track(result)
        self._track(answer)  # JSON-RPC backends get credits beside the result
        # Only a charged call is stamped with the balance; a free one is answered as is.
        self.charged = (isinstance(result, dict) and isinstance(result.get("credits"), int)) or (
            isinstance(answer, dict) and isinstance(answer.get("credits"), int)
        )
        return result

    async def batch_once(self, calls: Sequence[tuple[str, JSON]]) -> list[JSON]:
        """One attempt at a batch; PaymentRequired if the node refuses it."""
        # A batch holds at least one call.
        if not calls:
            raise ValueError("a batch needs at least one call")
        body = [
            {"jsonrpc": "2.0", "id": n, "method": method,
             **({"params": params} if params is not None else {})}
            for n, (method, params) in enumerate(calls)
        ]  # fmt: skip
        answer = await self._post(body, self.key.client_id())
        if isinstance(answer, dict):
            self._result(answer)  # one error for the whole batch: raise it
            raise NodeError(0, "node answered a batch with one object")
        # A batch is answered with an array of answer objects.
        if not isinstance(answer, list) or not all(isinstance(a, dict) for a in answer):
            raise NodeError(0, "node answered a batch with no array of objects")
        by_id = {a.get("id"): a for a in answer}
        results: list[JSON] = []
        for n in range(len(calls)):
            item = by_id.get(n)
            if item is None:
                results.append(NodeError(0, "no answer for this call in the batch"))
                continue
            try:
                results.append(self._result(item, track=False))
            except PaymentRequired:
                raise
            except ClientError as error:
                results.append(error)
        return results

    def _result(self, answer: dict[str, JSON], *, track: bool = True) -> JSON:
        """The answer's result, of any type, or the typed error it carries."""
        error = answer.get("error")
        if isinstance(error, dict):
            code, message = int(error.get("code", 0) or 0), str(error.get("message", ""))
            data = error.get("data")
            if code == ERROR_UPSTREAM:
                # The gateway refunded the call; its answer carries the unchanged balance.
                if isinstance(answer.get("credits"), int):
                    self.credits = answer["credits"]
                raise UpstreamDown(message)
            if code == ERROR_INTERNAL and message == STATUS_PAYMENT_REQUIRED:
                raise PaymentRequired(self.credits)
            terms = data if isinstance(data, dict) else {}
            if code == ERROR_PAYWALL and terms.get("status") == STATUS_PAYMENT_REQUIRED:
                raise PaymentRequired(int(terms.get("credits", 0) or 0), terms)
            raise NodeError(code, message, data)
        # An answer carries a result or an error.
        if "result" not in answer:
            raise NodeError(0, "answer has neither result nor error")
        if track:
            self._track(answer)  # JSON-RPC backends get credits beside the result
        return answer["result"]

    @staticmethod
    def _object(result: JSON) -> dict[str, JSON]:
        # The payment methods answer objects.
        if not isinstance(result, dict):
            raise NodeError(0, "answer has no result object")
        return result


class SyncPayingClient:
    """``PayingClient`` for code without an event loop: calls block until answered.

    It owns an event loop on a daemon thread; every method hands its coroutine to that loop,
    so one client (one key, one timestamp counter) can be shared by several threads.
    """

    def __init__(
        self, url: str, key: ClientKey | None = None, *, funder: Funder | None = None
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="rpcpay-client", daemon=True
        )
        self._thread.start()
        self.client = PayingClient(url, key, funder=funder)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def credits(self) -> int:
        return self.client.credits

    @property
    def top_hash(self) -> str:
        return self.client.top_hash

    def access_info(self) -> AccessInfo:
        return self._run(self.client.access_info())

    def submit_nonce(self, nonce: int, cookie: int) -> int:
        return self._run(self.client.submit_nonce(nonce, cookie))

    def call(self, method: str, params: JSON = None) -> JSON:
        return self._run(self.client.call(method, params))

    def fund(self) -> None:
        self._run(self.client.fund())

    def call_batch(self, calls: Sequence[tuple[str, JSON]]) -> list[JSON]:
        return self._run(self.client.call_batch(calls))

    def close(self) -> None:
        """Close the HTTP session and stop the loop thread."""
        if not self._loop.is_running():
            return
        self._run(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncPayingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
