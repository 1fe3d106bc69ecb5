"""The local paying proxy (``rpcpay wallet proxy``): a free endpoint for unmodified clients.

A client that knows nothing of payment (web3.py's stock ``HTTPProvider``, curl, ethers,
monero-wallet-cli) talks to the proxy on loopback; the proxy pays the remote gateways for it
and answers as a free node would.

- **JSON-RPC** (``POST /`` or ``/json_rpc``, single calls and batches): each call goes through
  a ``PayingClient`` for the chosen server, signed, and funded (mining or a cheque, below)
  when refused; the answer keeps the caller's id. Calls the paying protocol itself defines
  (``rpc_access_*``) are answered by the proxy as a monerod without payment answers them:
  the caller has nothing to pay.
- **When to pay** (``policy``, ``rpcpay wallet --pay-when``): JSON-RPC calls follow
  ``rpcpay.wallet.pay_when`` (free service while it serves, paying once refused or slow);
  Monero's JSON and epee endpoints are always signed.
- **Monero's JSON endpoints** (``/get_info``, ``/get_transactions``, …): the body gets a
  fresh ``client`` field and goes to the same path; a "PAYMENT REQUIRED" status is paid
  for (mined, or by cheque) and the call sent again.
- **Monero's epee endpoints** (the ``*.bin`` paths that speak epee; monerod's
  ``/get_transaction_pool_hashes.bin`` is JSON and handled as such): the same, with
  ``client`` inserted in the epee section (``rpcpay.wire.epee``); the answer's bytes are
  returned unchanged.
- **The market** (``rpcpay.wallet.market``): the proxy asks every server's free
  ``rpc_access_info`` (and ``lottery_info``) at start and every ``probe_interval``; it
  learns per-call prices from refusals and balances, measures latency, sends each call to
  the cheapest server (in hashes) within ``max_latency``, and on an unreachable server, a
  failed backend or a refusal it cannot pay, moves to the next (the failed one is passed
  over for ``DOWN_FOR_S`` or until a probe answers). The server's own JSON-RPC errors (a revert)
  are answers, returned as they are.
- **Credits per server**: one client key, one ``PayingClient`` (balance) per server; all
  servers' mining shares one light-mode miner, one funding at a time.
- **Mining or cheques** (``cheaper_rail``): given ``cheques`` (a funder per server URL, a
  ``ChequeFunder`` in ``rpcpay wallet proxy``), each refusal is paid by the rail that is
  cheaper at that server right now: a lottery cheque at its ``credit_price_wei`` or hashes
  valued at ``hash_value_wei`` each. Without ``cheques`` the proxy only mines.

Listening off loopback gives anyone free calls paid by this wallet: the command refuses it
unless told ``--allow-remote``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import aiohttp
from aiohttp import web

from rpcpay.errors import RpcPayError
from rpcpay.gateway.binary_costs import BINARY_RULES
from rpcpay.gateway.envelope import Call, Invalid, parse_request
from rpcpay.gateway.jsoncodec import decode_json, encode_json
from rpcpay.gateway.paywall import unsplice_balance
from rpcpay.wallet.client import (
    AccessInfo,
    ClientError,
    Funder,
    NodeError,
    PayingClient,
    PaymentRequired,
    UpstreamDown,
)
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.market import (
    Rail,
    ServerTerms,
    WeiPrices,
    cheaper_rail,
    rank_servers,
    with_access_info,
    with_failure,
    with_latency,
    with_price,
)
from rpcpay.wallet.pay_when import PayPolicy
from rpcpay.wallet.proxy_monero import (
    BadRequest,
    check_epee_body,
    check_json_body,
    epee_status,
    json_status,
    sign_epee,
    sign_json,
)
from rpcpay.wire.rpc import (
    ACCESS_INFO,
    ACCESS_PAY,
    ERROR_UPSTREAM,
    HEADER_CLIENT,
    HEADER_CREDITS,
    HTTP_PAYMENT_REQUIRED,
    LOTTERY_INFO,
    PARSE_ERROR,
    SIGNATURE_STATUS_PREFIX,
    STATUS_OK,
    STATUS_PAYMENT_REQUIRED,
    SUBMIT_NONCE,
)

log = logging.getLogger("rpcpay.proxy")

JSON = Any
NO_SERVER: Final = "No server could serve this call; nothing was paid for it"
PAYMENT_METHODS: Final = frozenset({ACCESS_INFO, SUBMIT_NONCE, ACCESS_PAY})
EPEE_CONTENT_TYPE: Final = "application/octet-stream"
FUNDING_ROUNDS: Final = 20
RACE_RETRIES: Final = 3
JSON_TYPE: Final = "application/json"


class ServerFailed(Exception):
    """This server cannot serve the call now (unreachable, backend down, unpaid): try the
    next one."""


class SerialFunder:
    """Funds one server's client, by the rail ``rail()`` names: mining, one funding at a time
    across the proxy (one miner), or a cheque, one at a time for this server; and not at all
    when another call funded the same server meanwhile; a cheque that fails is replaced by
    mining. Counts its rounds, cheques paid and cheques failed."""

    def __init__(
        self,
        inner: Funder,
        lock: asyncio.Lock,
        cheque: Funder | None = None,
        rail: Callable[[], Rail] = lambda: "mine",
    ) -> None:
        self.inner = inner
        self.lock = lock
        self.cheque = cheque
        self.rail = rail
        self.rounds = 0
        self.cheques = 0
        self.cheque_failures = 0
        self._cheque_lock = asyncio.Lock()

    async def __call__(self, client: PayingClient, info: AccessInfo) -> None:
        if self.cheque is not None and self.rail() == "cheque":
            async with self._cheque_lock:
                fresh = await client.access_info()
                # Another call earned credits while this one waited: try them first.
                if fresh.credits > info.credits:
                    return
                self.rounds += 1
                try:
                    await self.cheque(client, fresh)
                    self.cheques += 1
                    return
                except (ClientError, RpcPayError, aiohttp.ClientError, OSError) as exc:
                    # A cheque that cannot be paid now (stamper down, payer unfunded): the
                    # call is still owed an answer, and hashes still pay.
                    self.cheque_failures += 1
                    log.warning("cheque not paid, mining instead",
                                extra={"server": client.url, "error": str(exc)})  # fmt: skip
                info = fresh
        async with self.lock:
            fresh = await client.access_info()
            # Another call earned credits while this one waited: try them first.
            if fresh.credits > info.credits:
                return
            self.rounds += 1
            await self.inner(client, fresh)


@dataclass
class Server:
    """One remote gateway: its terms, and the paying client that holds its credits."""

    terms: ServerTerms
    client: PayingClient
    funder: SerialFunder
    http: aiohttp.ClientSession
    in_flight: int = 0
    races: int = 0

    @property
    def url(self) -> str:
        return self.terms.url


class PayingProxy:
    """Serves unmodified clients on ``host:port`` and pays ``servers`` for them."""

    def __init__(
        self,
        servers: Sequence[str],
        funder: Funder,
        *,
        key: ClientKey | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_latency: float = 1.0,
        probe_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        cheques: Callable[[str], Funder] | None = None,
        hash_value_wei: float = 0.0,
        policy: PayPolicy | None = None,
    ) -> None:
        # A proxy needs somewhere to send calls.
        if not servers:
            raise ValueError("the proxy needs at least one --server")
        self.key = key or ClientKey()
        self.host = host
        self.port = port
        self.max_latency = max_latency
        self.probe_interval = probe_interval
        self.clock = clock
        self._funder = funder
        self._cheques = cheques
        self.hash_value_wei = hash_value_wei
        self.policy = policy
        self._urls = [u.rstrip("/") for u in servers]
        self.servers: list[Server] = []
        self._runner: web.ServerRunner | None = None
        self._prober: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> int:
        """Probe the servers, open the listener; the port it listens on."""
        lock = asyncio.Lock()
        for url in self._urls:
            cheque = self._cheques(url) if self._cheques is not None else None
            funder = SerialFunder(self._funder, lock, cheque)
            client = PayingClient(
                url, self.key, funder=funder, max_funding_rounds=FUNDING_ROUNDS, policy=self.policy
            )
            http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
            server = Server(ServerTerms(url), client, funder, http)
            funder.rail = self._rail_for(server)
            self.servers.append(server)
        await self.probe_all()
        runner = web.ServerRunner(web.Server(self.handle, access_log=None))
        await runner.setup()
        self._runner = runner
        await web.TCPSite(runner, self.host, self.port).start()
        self.port = int(runner.addresses[0][1])
        self._prober = asyncio.create_task(self._probe_forever(), name="rpcpay-proxy-probe")
        log.info(
            "proxy listening",
            extra={"listen": f"{self.host}:{self.port}", "servers": self.describe()},
        )
        return self.port

    def _rail_for(self, server: Server) -> Callable[[], Rail]:
        def rail() -> Rail:
            return cheaper_rail(server.terms, self.hash_value_wei, server.funder.cheque is not None)

        return rail

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        for server in self.servers:
            await server.client.close()
            await server.http.close()
            aclose = getattr(server.funder.cheque, "aclose", None)
            if aclose is not None:
                await aclose()

    def describe(self) -> list[dict[str, JSON]]:
        """Each server as the proxy sees it (for logs and the status line)."""
        now = self.clock()
        return [
            {
                "url": s.url,
                "up": s.terms.down_until <= now,
                "hashes_per_credit": (
                    s.terms.diff / s.terms.credits_per_hash if s.terms.credits_per_hash else 0
                ),
                "latency_ms": None
                if s.terms.latency_s is None
                else round(s.terms.latency_s * 1000, 1),
                "credits": s.client.credits,
                "prices": s.terms.method_prices,
                "credit_price_wei": s.terms.credit_price_wei,
                "pays_by": cheaper_rail(s.terms, self.hash_value_wei, s.funder.cheque is not None),
                "cheques": s.funder.cheques,
                "cheque_failures": s.funder.cheque_failures,
            }
            for s in self.servers
        ]

    # -- probes ----------------------------------------------------------------------------

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            await self.probe_all()

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(s) for s in self.servers))

    async def probe(self, server: Server) -> None:
        """Ask the free ``rpc_access_info`` (rate, balance, latency) and ``lottery_info``."""
        started = self.clock()
        try:
            info = await server.client.access_info()
        except (ClientError, OSError) as exc:
            server.terms = with_failure(server.terms, self.clock())
            log.warning("server probe failed", extra={"server": server.url, "error": str(exc)})
            return
        terms = with_access_info(server.terms, info.difficulty, info.credits_per_hash_found)
        server.terms = with_latency(terms, self.clock() - started)
        try:
            answer = await server.client.request(LOTTERY_INFO, {})
        except ClientError:
            return
        result = answer.get("result")
        if isinstance(result, dict) and str(result.get("credit_price_wei", "")).isdigit():
            price = int(result["credit_price_wei"])
            server.terms = replace(server.terms, credit_price_wei=price)

    # -- choosing and paying -----------------------------------------------------------------

    def ranked(self, methods: list[str]) -> list[Server]:
        # With cheques on, servers compare in wei, each by its cheaper rail.
        wei = WeiPrices(self.hash_value_wei, True) if self._cheques is not None else None
        order = rank_servers([s.terms for s in self.servers], methods, self.max_latency,
                             self.clock(), wei)  # fmt: skip
        by_url = {s.url: s for s in self.servers}
        return [by_url[t.url] for t in order]

    async def _through(
        self, methods: list[str], attempt: Callable[[Server], Awaitable[JSON]]
    ) -> JSON:
        """Run ``attempt`` on the best server, failing over to the next; ServerFailed when
        every server failed."""
        last = ""
        for server in self.ranked(methods):
            before_rounds, before_credits = server.funder.rounds, server.client.credits
            alone = server.in_flight == 0
            server.in_flight += 1
            started = self.clock()
            try:
                outcome = await attempt(server)
            except PaymentRequired as refusal:
                self._learn_refusal(server, methods, refusal)
                last = f"{server.url}: payment required and not earned"
                self._fail(server, last)
                continue
            except (ServerFailed, UpstreamDown, OSError) as exc:
                last = f"{server.url}: {exc}"
                self._fail(server, last)
                continue
            except NodeError as exc:
                # Unreachable or unusable: the server's fault. Its own errors are answers.
                if exc.code != 0:
                    raise
                last = f"{server.url}: {exc}"
                self._fail(server, last)
                continue
            finally:
                server.in_flight -= 1
            if server.funder.rounds == before_rounds:
                server.terms = with_latency(server.terms, self.clock() - started)
                used = before_credits - server.client.credits
                # Only a lone call's balance change is its price.
                if alone and len(methods) == 1 and used >= 0 and server.client.credits > 0:
                    server.terms = with_price(server.terms, methods[0], used)
            return outcome
        raise ServerFailed(last or "no server")

    @staticmethod
    def _learn_refusal(server: Server, methods: list[str], refusal: PaymentRequired) -> None:
        terms = refusal.terms or {}
        price = terms.get("item_price")
        if len(methods) == 1 and isinstance(price, int):
            server.terms = with_price(server.terms, methods[0], price)

    def _fail(self, server: Server, reason: str) -> None:
        server.terms = with_failure(server.terms, self.clock())
        log.warning("server passed over", extra={"server": server.url, "reason": reason})

    # -- HTTP --------------------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if request.method != "POST":
            return web.json_response({"status": "POST JSON-RPC here"}, status=405)
        try:
            if path in ("/", "/json_rpc"):
                return await self._json_rpc(await request.read())
            if path in BINARY_RULES:
                return await self._binary(path, await request.read())
            return await self._json_endpoint(path, await request.read())
        except ServerFailed as exc:
            log.warning("call failed on every server", extra={"path": path, "error": str(exc)})
            return web.json_response({"status": NO_SERVER}, status=502)

    # -- JSON-RPC ----------------------------------------------------------------------------

    async def _json_rpc(self, body: bytes) -> web.Response:
        try:
            document = decode_json(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError):
            return _json(_error(None, PARSE_ERROR, "Parse error"))
        envelope = parse_request(document)
        if isinstance(envelope, Invalid):
            return _json(_error(None, envelope.code, envelope.message))
        answers: list[JSON] = []
        calls: list[Call] = []
        for item in envelope.items:
            if isinstance(item, Invalid):
                answers.append(_error(item.request_id, item.code, item.message))
            elif item.method in PAYMENT_METHODS:
                answers.append(free_node_answer(item))
            else:
                calls.append(item)
        if len(calls) == 1 and not envelope.is_batch and not isinstance(calls[0].params, dict):
            try:
                raw = await self._through([calls[0].method], lambda s: self._relay(s, body))
            except ServerFailed:
                raw = None
            if calls[0].is_notification:
                return web.Response(status=204)
            if raw is None:
                return _json(_error(calls[0].request_id, ERROR_UPSTREAM, NO_SERVER))
            return web.Response(body=raw, content_type="application/json")
        if calls:
            answers += await self._forward_calls(calls, envelope.is_batch)
        answers = [a for a in answers if a is not None]
        if not envelope.is_batch:
            return _json(answers[0]) if answers else web.Response(status=204)
        return _json(answers) if answers else web.Response(status=204)

    async def _relay(self, server: Server, body: bytes) -> bytes:
        """One call without object params, relayed as the caller wrote it (the client id in
        the header): the gateway's answer bytes come back unchanged, so the backend's result
        is byte for byte what the caller gets. Refusals are paid for and the call resent."""
        for _ in range(FUNDING_ROUNDS + 1):
            headers = {
                "Content-Type": "application/json",
                HEADER_CLIENT: server.client.key.client_id(),
            }
            try:
                async with server.http.post(
                    server.url + "/json_rpc", data=body, headers=headers
                ) as reply:
                    raw, status = await reply.read(), reply.status
                    credits = reply.headers.get(HEADER_CREDITS)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ServerFailed(f"unreachable: {type(exc).__name__}") from exc
            if credits is not None and credits.isdigit():
                server.client.credits = int(credits)
            if status == HTTP_PAYMENT_REQUIRED:
                await self._pay_refusal(server, raw)
                continue
            # The gateway's 502, and other server errors: the next server.
            if status >= 500:
                raise ServerFailed(f"HTTP {status}")
            suspect = (STATUS_PAYMENT_REQUIRED, SIGNATURE_STATUS_PREFIX, str(ERROR_UPSTREAM))
            if _mentions(raw, suspect) and _monerod_refusal(raw):
                await server.client.fund()
                continue
            # The gateway adds the balance to paid answers only (and says so in the header).
            return unsplice_balance(raw) if credits is not None else raw
        raise PaymentRequired(server.client.credits)

    async def _pay_refusal(self, server: Server, raw: bytes) -> None:
        """Earn what a paywall refusal asks for, unless the balance already covers it (a
        concurrent call's id overtook this one: the refusal was for its timestamp)."""
        try:
            answer = decode_json(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ServerFailed("HTTP 402 without JSON") from exc
        error = answer.get("error") if isinstance(answer, dict) else None
        data = error.get("data") if isinstance(error, dict) else None
        # A refusal that is not about the balance (a bad signature) cannot be paid.
        if not isinstance(data, dict) or data.get("status") != STATUS_PAYMENT_REQUIRED:
            raise ServerFailed(f"refused: {error}")
        price = data.get("price")
        await self._earn(server, price if isinstance(price, int) else 1)

    async def _earn(self, server: Server, price: int) -> None:
        """Earn credits for a refused call (mining or a cheque), unless the balance already
        covers its price: then a concurrent call's id overtook this one's and the refusal was
        for its timestamp (at most ``RACE_RETRIES`` times in a row, then earn anyway)."""
        info = await server.client.access_info()
        if info.credits >= price and server.races < RACE_RETRIES:
            server.races += 1
            return
        server.races = 0
        await server.client.fund()

    async def _forward_calls(self, calls: list[Call], is_batch: bool) -> list[JSON]:
        methods = [c.method for c in calls]
        params = [c.forwarded.get("params") for c in calls]
        try:
            if not is_batch:
                (call,) = calls

                async def one(server: Server) -> JSON:
                    return await server.client.call(call.method, params[0])

                outcomes = [await self._through(methods, one)]
            else:

                async def batch(server: Server) -> JSON:
                    return await server.client.call_batch(list(zip(methods, params, strict=True)))

                outcomes = await self._through(methods, batch)
        except ServerFailed:
            outcomes = [ServerFailed(NO_SERVER)] * len(calls)
        except NodeError as error:
            outcomes = [error] * len(calls)
        answers: list[JSON] = []
        for call, outcome in zip(calls, outcomes, strict=True):
            if call.is_notification:
                continue
            if isinstance(outcome, NodeError):
                answers.append(_error(call.request_id, outcome.code, outcome.message, outcome.data))
            elif isinstance(outcome, ServerFailed):
                answers.append(_error(call.request_id, ERROR_UPSTREAM, NO_SERVER))
            else:
                answers.append({"jsonrpc": "2.0", "id": call.request_id, "result": outcome})
        return answers

    # -- Monero's JSON and epee endpoints ------------------------------------------------------

    async def _json_endpoint(self, path: str, body: bytes) -> web.Response:
        try:
            document = check_json_body(body)
        except BadRequest as exc:
            return web.json_response({"status": str(exc)}, status=400)
        raw, content_type = await self._through(
            [path],
            lambda server: self._paid_post(
                server, path, lambda key: sign_json(document, key), json_status, JSON_TYPE
            ),
        )
        return web.Response(body=raw, content_type=content_type)

    async def _binary(self, path: str, body: bytes) -> web.Response:
        try:
            check_epee_body(body)
        except BadRequest as exc:
            return web.Response(status=400, text=str(exc))
        raw, content_type = await self._through(
            [path],
            lambda server: self._paid_post(
                server, path, lambda key: sign_epee(body, key), epee_status, EPEE_CONTENT_TYPE
            ),
        )
        return web.Response(body=raw, content_type=content_type)

    async def _paid_post(
        self,
        server: Server,
        path: str,
        sign: Callable[[str], bytes],
        status_of: Callable[[bytes], str | None],
        content_type: str,
    ) -> tuple[bytes, str]:
        """POST a signed body; mine and resend while the answer says PAYMENT REQUIRED."""
        for _ in range(FUNDING_ROUNDS + 1):
            try:
                async with server.http.post(
                    server.url + path,
                    data=sign(server.client.key.client_id()),
                    headers={"Content-Type": content_type},
                ) as reply:
                    raw, status, kind = await reply.read(), reply.status, reply.content_type
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ServerFailed(f"unreachable: {type(exc).__name__}") from exc
            # The gateway's 502 (its backend failed) and other server errors: next server.
            if status >= 500:
                raise ServerFailed(f"HTTP {status}")
            answer_status = status_of(raw) if status == 200 else None
            if answer_status == STATUS_PAYMENT_REQUIRED:
                await self._earn(server, 1)
                continue
            if answer_status is not None and answer_status.startswith(SIGNATURE_STATUS_PREFIX):
                raise ServerFailed(answer_status)
            return raw, kind
        raise PaymentRequired(server.client.credits)


def _monerod_refusal(raw: bytes) -> bool:
    """Is a 200 answer a refusal in monerod's form (True), a backend failure or a bad
    signature (``ServerFailed``), or an answer (False)?"""
    try:
        answer = decode_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServerFailed("answer is not JSON") from exc
    error = answer.get("error") if isinstance(answer, dict) else None
    result = answer.get("result") if isinstance(answer, dict) else None
    if isinstance(error, dict) and error.get("code") == ERROR_UPSTREAM:
        raise ServerFailed("the gateway's backend failed")
    status = result.get("status") if isinstance(result, dict) else None
    if isinstance(status, str) and status.startswith(SIGNATURE_STATUS_PREFIX):
        raise ServerFailed(status)
    return status == STATUS_PAYMENT_REQUIRED or (
        isinstance(error, dict) and error.get("message") == STATUS_PAYMENT_REQUIRED
    )


def _mentions(raw: bytes, texts: tuple[str, ...]) -> bool:
    return any(text.encode() in raw for text in texts)


def free_node_answer(call: Call) -> JSON:
    """What a monerod without payment answers to the payment methods: nothing to pay."""
    if call.is_notification:
        return None
    if call.method == ACCESS_INFO:
        result = {"credits": 0, "credits_per_hash_found": 0, "diff": 0, "cookie": 0,
                  "height": 0, "hashing_blob": "", "seed_hash": "", "next_seed_hash": "",
                  "seed_height": 0, "status": STATUS_OK, "top_hash": "",
                  "untrusted": False}  # fmt: skip
        return {"jsonrpc": "2.0", "id": call.request_id, "result": result}
    return _error(call.request_id, -21, "Payments not enabled")


def _error(request_id: JSON, code: int, message: str, data: JSON = None) -> JSON:
    error: dict[str, JSON] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _json(document: JSON) -> web.Response:
    return web.Response(body=encode_json(document), content_type="application/json")
