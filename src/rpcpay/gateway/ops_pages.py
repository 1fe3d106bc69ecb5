"""The operator's HTTP pages on the admin listener: health, readiness and metrics.

Contract:
- ``GET /healthz``: 200 ``{"status": "OK"}`` while the process serves (liveness).
- ``GET /readyz``: 200 only when the upstream answers (any HTTP answer below 500 within
  ``READY_TIMEOUT_S``) and the ledger takes its write lock; 503 otherwise, with which part
  failed. Neither needs the admin token (they reveal nothing but up or down), so load
  balancers and orchestrators can probe them.
- ``GET /metrics``: the Prometheus text format (``metrics.GatewayMetrics``), behind the admin
  token when one is set (Prometheus sends it as ``authorization: {credentials: ...}``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from rpcpay.errors import LedgerError, UpstreamError
from rpcpay.gateway.app import GatewayCore, json_response
from rpcpay.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from rpcpay.gateway.protocol import STATUS_OK

READY_TIMEOUT_S = 3.0
UNAUTHENTICATED = frozenset({"/healthz", "/readyz"})


class OpsPages:
    """Serves the pages above for the admin handler."""

    def __init__(
        self,
        core: GatewayCore,
        metrics: GatewayMetrics | None,
        probe_ledger: Callable[[], Awaitable[None]],
        extra: dict[str, Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]] | None = None,
    ) -> None:
        self.core = core
        self.metrics = metrics
        self._probe_ledger = probe_ledger
        self._routes: dict[str, Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            **(extra or {}),
        }
        if metrics is not None:
            self._routes["/metrics"] = self._metrics

    def serves(self, path: str) -> bool:
        return path in self._routes

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        # Pages are read-only.
        if request.method not in ("GET", "HEAD"):
            return json_response({"status": "use GET"}, 405)
        return await self._routes[request.path](request)

    async def _healthz(self, request: web.BaseRequest) -> web.StreamResponse:
        return json_response({"status": STATUS_OK})

    async def _readyz(self, request: web.BaseRequest) -> web.StreamResponse:
        upstream = await self._upstream_answers()
        ledger = await self._ledger_writable()
        ready = upstream is None and ledger is None
        body = {
            "status": STATUS_OK if ready else "NOT READY",
            "upstream": upstream or STATUS_OK,
            "ledger": ledger or STATUS_OK,
        }
        return json_response(body, 200 if ready else 503)

    async def _upstream_answers(self) -> str | None:
        """None if the upstream answered; else why not."""
        path = "/get_height" if self.core.mode == "monero" else self.core.upstream_path
        try:
            reply = await asyncio.wait_for(
                self.core.upstream.post(path, b"{}", "application/json"), READY_TIMEOUT_S
            )
        except TimeoutError:
            return f"no answer within {READY_TIMEOUT_S:g} s"
        except UpstreamError as exc:
            return str(exc)
        # A 5xx is a backend that is up but broken.
        if reply.status >= 500:
            return f"HTTP {reply.status}"
        return None

    async def _ledger_writable(self) -> str | None:
        try:
            await self._probe_ledger()
        except LedgerError as exc:
            return str(exc)
        return None

    async def _metrics(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self.metrics is not None
        await self.metrics.refresh(self.core)
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


__all__ = ["UNAUTHENTICATED", "OpsPages"]
