"""Test helpers for code that uses rpcpay, as httpx offers ``MockTransport``.

- ``open_test_ledger(directory)``: a ``SharedLedger`` on a real SQLite ledger file in
  ``directory`` (``ThreadedSqliteStore``, durability ``normal``), the engine the gateway
  runs by default. There is no in-memory ledger store: a second implementation of the
  transactional seam would be one more engine to keep identical to the two real ones, and
  the file costs about 0.07 ms per call. Close it with ``await ledger.close()``.
- ``ToyBackend``: a real JSON-RPC 2.0 service on loopback (aiohttp) to put behind a gateway
  (``start_gateway(GatewayConfig(upstream=backend.url, upstream_kind="jsonrpc", ...))``). It
  records every request body and path, echoes ``{"echo": params, "method": method}`` unless
  told a fixed result (``results``) or error (``errors``) for a method, answers batches item
  by item and notifications with nothing, and answers HTTP 500 while ``failing``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from rpcpay.ledger.location import open_transactional_store
from rpcpay.ledger.shared_ledger import SharedLedger

JSON = Any

__all__ = ["ToyBackend", "open_test_ledger"]


async def open_test_ledger(directory: Path) -> SharedLedger:
    """A ledger on a fresh (or existing) SQLite file in ``directory``."""
    store = await open_transactional_store(None, Path(directory), synchronous="normal")
    return SharedLedger(store)


@dataclass
class ToyBackend:
    """A JSON-RPC service that records what reaches it; ``start()`` it on loopback."""

    port: int = 0
    requests: list[JSON] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    failing: bool = False
    results: dict[str, JSON] = field(default_factory=dict)  # method -> fixed result
    errors: dict[str, JSON] = field(default_factory=dict)  # method -> JSON-RPC error object
    _runner: web.AppRunner | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def answer(self, document: JSON) -> JSON:
        """The answer object for one request object."""
        method = document.get("method")
        if method in self.errors:
            return {"jsonrpc": "2.0", "id": document.get("id"), "error": self.errors[method]}
        result = self.results.get(method, {"echo": document.get("params"), "method": method})
        return {"jsonrpc": "2.0", "id": document.get("id"), "result": result}

    async def handle(self, request: web.Request) -> web.Response:
        document = await request.json()
        self.requests.append(document)
        self.paths.append(request.path_qs)
        if self.failing:
            return web.Response(status=500, text="backend exploded")
        if isinstance(document, list):
            answers = [self.answer(item) for item in document if "id" in item]
            return web.json_response(answers)
        if "id" not in document:
            return web.Response(status=200)
        return web.json_response(self.answer(document))

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> ToyBackend:
        """Listen on ``host:port`` (0: a free port, then in ``self.port``)."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ToyBackend:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
