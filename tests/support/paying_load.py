"""Paying clients for fault tests: they mine shares and make paid calls against one or more
gateway ports while a test breaks things, and keep what each was told, so that the ledger
can be checked against it afterwards.

Every request goes on a new TCP connection, to a port picked at random: with
``--workers N`` the kernel spreads the connections over the workers, with several
instances the pick does, so a job issued by one process is often submitted to another.
With ``sticky_mining`` a share is mined from a job and submitted on one kept-alive
connection (one process), for gateways whose jobs are not shared.

What a client hears is sorted into:

* ``told``: a balance in a successful answer (a share credited, or a paid call served);
* ``clean`` errors: an HTTP answer with a JSON-RPC error object (or monerod's status
  string), never HTTP 500;
* ``lost``: no answer at all (the connection was cut, e.g. its worker was killed);
* ``broken``: anything else (HTTP 500, a body that is not JSON, an error without a
  message): a fault test asserts there are none.

``check_ledger`` then holds the gateway to its promises, given the ledger's accounts read
afterwards (``rpc_access_data``) and the calls the upstream received:

* durable before the client hears: every client's balance now is at least the last one it
  was told, less the paid calls it made after that without hearing a balance (those may
  have been charged: a cut connection, or a database error after an ambiguous commit);
* no call uncharged: the upstream received no more of these clients' paid calls than the
  ledger charged them for (price 1 each), and at least as many as they were served;
* no double credit: each client's credits earned are those of its credited shares, plus at
  most those of the shares whose answer it did not hear.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from rpcpay.testing import ToyBackend
from rpcpay.wallet.keys import ClientKey
from rpcpay.wallet.miner import LightMiner

JSON = Any
PAID_METHOD = "fault_call"
LOW_BALANCE = 4


@dataclass
class ClientRecord:
    """What one client did and heard, in order."""

    key: ClientKey
    tag: int
    told: list[int] = field(default_factory=list)
    shares_credited: int = 0
    shares_unheard: int = 0
    calls_served: int = 0
    calls_unsure_since_told: int = 0  # paid calls since the last told balance, not served
    clean: list[str] = field(default_factory=list)
    lost: int = 0
    broken: list[str] = field(default_factory=list)
    served_at: list[float] = field(default_factory=list)  # monotonic time of each served call


@dataclass
class PayingLoad:
    """``clients`` clients against ``ports``, from ``start()`` until ``stop()``."""

    ports: Sequence[int]
    miner: LightMiner
    clients: int = 4
    max_requests: int = 400  # per client: the load is bounded in count as well as time
    sticky_mining: bool = False
    records: list[ClientRecord] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        base = random.randrange(1 << 30)
        for n in range(self.clients):
            record = ClientRecord(ClientKey(), base + n)
            self.records.append(record)
            self._tasks.append(asyncio.create_task(self._run(record)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def served_since(self, moment: float) -> list[int]:
        """Per client, the paid calls served after ``moment`` (time.monotonic)."""
        return [sum(1 for t in r.served_at if t > moment) for r in self.records]

    async def _run(self, record: ClientRecord) -> None:
        connector = aiohttp.TCPConnector(force_close=True)
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            balance = 0
            for seq in range(self.max_requests):
                if self._stop.is_set():
                    return
                if balance < LOW_BALANCE and self.sticky_mining:
                    async with aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=1), timeout=timeout
                    ) as one_connection:
                        heard = await self._mine(one_connection, record, self._port())
                elif balance < LOW_BALANCE:
                    heard = await self._mine(session, record)
                else:
                    heard = await self._call(session, record, seq)
                if heard is not None:
                    balance = heard
                else:
                    # Unsure of the balance: earn before calling again (a share is never lost).
                    balance = 0
                    await asyncio.sleep(0.05)

    def _port(self) -> int:
        return random.choice(list(self.ports))

    async def _post(
        self,
        session: aiohttp.ClientSession,
        record: ClientRecord,
        body: JSON,
        port: int | None = None,
    ) -> JSON | None:
        """The answer's JSON if it is a success or a clean error, else None (recorded)."""
        try:
            async with session.post(
                f"http://127.0.0.1:{port or self._port()}/json_rpc", data=json.dumps(body)
            ) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError):
            record.lost += 1
            return None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        # A server error or a body that is not JSON is never a clean answer.
        if (status >= 500 and status != 503) or not isinstance(answer, dict):
            record.broken.append(f"HTTP {status}: {raw[:300]!r}")
            return None
        error = answer.get("error")
        if error is not None or "result" not in answer:
            ok = isinstance(error, dict) and isinstance(error.get("message"), str)
            ok = ok or isinstance(answer.get("status"), str)
            if not ok or b"Traceback" in raw:
                record.broken.append(f"HTTP {status}: {raw[:300]!r}")
            else:
                record.clean.append(f"HTTP {status}: {raw[:200]!r}")
            return None
        return answer

    async def _mine(
        self, session: aiohttp.ClientSession, record: ClientRecord, port: int | None = None
    ) -> int | None:
        info = await self._post(
            session, record, _rpc("rpc_access_info", {"client": record.key.client_id()}), port
        )
        if info is None:
            return None
        job = info["result"]
        nonce, _ = await self.miner.find_share(
            bytes.fromhex(job["seed_hash"]),
            bytes.fromhex(job["hashing_blob"]),
            int(job["diff"]),
            random.randrange(1 << 31),
            10_000,
        )
        assert nonce is not None
        submitted = await self._post(
            session,
            record,
            _rpc(
                "rpc_access_submit_nonce",
                {"client": record.key.client_id(), "nonce": nonce, "cookie": job["cookie"]},
            ),
            port,
        )
        if submitted is None:
            record.shares_unheard += 1
            return None
        record.shares_credited += 1
        credits = int(submitted["result"]["credits"])
        self._tell(record, credits)
        return credits

    async def _call(
        self, session: aiohttp.ClientSession, record: ClientRecord, seq: int
    ) -> int | None:
        answer = await self._post(
            session,
            record,
            _rpc(PAID_METHOD, {"tag": record.tag, "seq": seq, "client": record.key.client_id()}),
        )
        if answer is None:
            record.calls_unsure_since_told += 1
            return None
        record.calls_served += 1
        record.served_at.append(time.monotonic())
        credits = int(answer["credits"])
        self._tell(record, credits)
        return credits

    @staticmethod
    def _tell(record: ClientRecord, balance: int) -> None:
        record.told.append(balance)
        record.calls_unsure_since_told = 0


def summary(records: Sequence[ClientRecord], forwarded: int) -> str:
    """One line of what the clients saw (printed by the tests; shown when one fails)."""
    return (
        f"clients={len(records)} shares={sum(r.shares_credited for r in records)} "
        f"served={sum(r.calls_served for r in records)} forwarded={forwarded} "
        f"clean_errors={sum(len(r.clean) for r in records)} "
        f"lost={sum(r.lost for r in records)} broken={sum(len(r.broken) for r in records)}"
    )


def _rpc(method: str, params: JSON) -> JSON:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def forwarded_calls(backend: ToyBackend, records: Sequence[ClientRecord]) -> int:
    """The paid calls of ``records``' clients that reached the upstream."""
    tags = {r.tag for r in records}
    return sum(
        1
        for request in backend.requests
        if isinstance(request, dict)
        and request.get("method") == PAID_METHOD
        and request.get("params", {}).get("tag") in tags
    )


def check_ledger(
    records: Sequence[ClientRecord],
    accounts: dict[str, JSON],
    forwarded: int,
    credits_per_share: int,
) -> None:
    """Assert the promises in this module's docstring; ``accounts`` maps a client's public
    key (hex) to its ``rpc_access_data`` entry."""
    print(summary(records, forwarded))
    charged = 0
    served = 0
    for record in records:
        assert not record.broken, record.broken[:3]
        account = accounts.get(record.key.public.hex())
        if not record.told:
            continue
        assert account is not None, f"client {record.tag} was told {record.told[-1]}, is gone"
        # Durable before the client hears (less the calls it may have paid for since).
        assert account["balance"] >= record.told[-1] - record.calls_unsure_since_told, (
            record,
            account,
        )
        # Credited once: the shares heard, plus at most those unheard.
        earned = account["credits_total"]
        assert earned >= record.shares_credited * credits_per_share, (record, account)
        assert earned <= (record.shares_credited + record.shares_unheard) * credits_per_share
        charged += account["credits_used"]
        served += record.calls_served
    # No call uncharged; every served call was forwarded.
    assert served <= forwarded <= charged, (served, forwarded, charged)


async def ledger_accounts(admin_port: int) -> dict[str, JSON]:
    """Every account, by client key (hex), from ``rpc_access_data`` on an admin listener."""
    body = _rpc("rpc_access_data", {})
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{admin_port}/json_rpc", data=json.dumps(body)) as reply,
    ):
        answer = json.loads(await reply.read())
    return {entry["client"]: entry for entry in answer["result"]["entries"]}


def wait_served(load: PayingLoad, since: float, each: int, timeout: float) -> asyncio.Future[None]:
    """Wait until every client has been served ``each`` paid calls after ``since``."""

    async def waiting() -> None:
        deadline = time.monotonic() + timeout
        while min(load.served_since(since)) < each:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"clients served since: {load.served_since(since)}; "
                    f"clean errors: {[r.clean[-3:] for r in load.records]}"
                )
            await asyncio.sleep(0.1)

    return asyncio.ensure_future(waiting())
