"""The operator's web page on the admin listener: ``GET /dashboard``.

Contract: the page and its script and style are files of this package
(``rpcpay/gateway/dashboard_assets``), served as they are: no CDN, no third-party script, so
it works on an offline admin network. The script polls ``/dashboard/data.json`` every two
seconds and draws:

- clients and balances (public-key prefixes only: a whole client id is a bearer credential),
  with totals;
- the hash rate and the credits earned over time, as SVG line charts, from ``History``: one
  sample every ``sample_s`` seconds (10 s by default, 24 h kept), plus a live point;
- blocks found by clients' shares, with the heights their rewards sit at;
- with the lottery rail on: lotteries holding our cheques, claims won and fraud proofs filed.

It sits behind the admin token when one is set; a browser sends it as HTTP Basic auth (any
user name, the token as password), which the admin listener accepts beside the bearer form.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rpcpay.errors import LedgerError
from rpcpay.gateway.app import json_response
from rpcpay.gateway.jobs import ChainTop, Job, JobSource

if TYPE_CHECKING:
    from rpcpay.gateway.app import GatewayCore

JSON = Any
HISTORY_POINTS = 8640
MAX_CLIENT_ROWS = 200
ASSETS = {
    "/dashboard": ("index.html", "text/html"),
    "/dashboard/": ("index.html", "text/html"),
    "/dashboard/app.js": ("app.js", "text/javascript"),
    "/dashboard/style.css": ("style.css", "text/css"),
}


@dataclass(frozen=True, slots=True)
class FoundBlock:
    """A block a client's share completed, accepted by the upstream."""

    height: int
    ts: float


class BlockRecorder:
    """A JobSource that remembers which blocks its submissions found (the last 100)."""

    def __init__(self, inner: JobSource) -> None:
        self.inner = inner
        self.found: deque[FoundBlock] = deque(maxlen=100)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def top(self) -> ChainTop:
        return await self.inner.top()

    async def new_job(self, client: bytes, min_timestamp: int) -> Job:
        return await self.inner.new_job(client, min_timestamp)

    async def submit_block(self, job: Job, client: bytes, nonce: int) -> bool:
        accepted = await self.inner.submit_block(job, client, nonce)
        if accepted:
            self.found.append(FoundBlock(job.height, time.time()))
        return accepted

    @property
    def blocks_found(self) -> int:
        return int(getattr(self.inner, "blocks_found", 0))


@dataclass(frozen=True, slots=True)
class Sample:
    ts: float
    hashrate: float
    credits_earned: int
    clients: int


class History:
    """Samples of the gateway's state over time, for the charts."""

    def __init__(self, core: GatewayCore, sample_s: float) -> None:
        self.core = core
        self.sample_s = sample_s
        self.samples: deque[Sample] = deque(maxlen=HISTORY_POINTS)
        self._task: asyncio.Task[None] | None = None

    async def now(self) -> Sample:
        """The state at this moment (the whole shared ledger's totals)."""
        payment = self.core.payment
        try:
            totals = await payment.ledger.totals()
            earned, clients = totals.credits_total, totals.clients
        except LedgerError:
            earned, clients = 0, 0
        return Sample(time.time(), payment.hashrate.rate(time.time()), earned, clients)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rpcpay-dashboard-history")

    async def _run(self) -> None:
        while True:
            self.samples.append(await self.now())
            await asyncio.sleep(self.sample_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def dashboard_data(core: GatewayCore, history: History, blocks: BlockRecorder | None) -> JSON:
    """What the page shows, as JSON."""
    payment = core.payment
    try:
        accounts = sorted(await payment.ledger.accounts(), key=lambda a: -a.balance)
    except LedgerError:
        accounts = []
    live = await history.now()
    data: dict[str, JSON] = {
        "now": live.ts,
        "mode": core.mode,
        "hashrate": live.hashrate,
        "credits_earned": live.credits_earned,
        "clients": [
            {
                "client": a.client.hex()[:16],
                "balance": a.balance,
                "credits_total": a.credits_total,
                "credits_used": a.credits_used,
                "good": a.nonces_good,
                "bad": a.nonces_bad + a.nonces_dupe + a.nonces_stale,
            }
            for a in accounts[:MAX_CLIENT_ROWS]
        ],
        "client_count": len(accounts),
        "balance_total": sum(a.balance for a in accounts),
        "history": [
            [round(s.ts, 3), round(s.hashrate, 3), s.credits_earned] for s in history.samples
        ]
        + [[round(live.ts, 3), round(live.hashrate, 3), live.credits_earned]],
        "blocks_found": payment.blocks_found,
        "blocks": [{"height": b.height, "ts": round(b.ts)} for b in blocks.found]
        if blocks is not None
        else [],
        "lottery": None,
    }
    desk = core.cheques
    if desk is not None:
        with contextlib.suppress(LedgerError):
            data["lottery"] = {
                "open_lotteries": len(desk.store.open_lotteries()),
                "claims": len(desk.claims),
                "fraud_proofs": len(desk.proofs),
                "recipient": desk.info()["recipient"],
            }
    return data


class DashboardPages:
    """The routes the admin listener serves for the page."""

    def __init__(self, history: History, blocks: BlockRecorder | None) -> None:
        self.history = history
        self.blocks = blocks

    def routes(self) -> dict[str, Any]:
        found: dict[str, Any] = {path: self._asset for path in ASSETS}
        found["/dashboard/data.json"] = self._data
        return found

    async def _asset(self, request: web.BaseRequest) -> web.StreamResponse:
        name, content_type = ASSETS[request.path]
        asset = resources.files("rpcpay.gateway").joinpath("dashboard_assets").joinpath(name)
        body = asset.read_bytes()
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={
                "Cache-Control": "no-cache",
                # Nothing but this page's own files, ever.
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
            },
        )

    async def _data(self, request: web.BaseRequest) -> web.StreamResponse:
        return json_response(await dashboard_data(self.history.core, self.history, self.blocks))


__all__ = ["BlockRecorder", "DashboardPages", "History", "dashboard_data"]
