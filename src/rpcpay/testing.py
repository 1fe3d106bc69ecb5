"""Test helpers for code that uses rpcpay, as httpx offers ``MockTransport``.

- ``MemoryLedgerStore``: a ``LedgerStore`` in a dict, for ``Ledger`` unit tests. It keeps
  the store's contract (copies out, all-or-nothing ``save_many``) except durability: every
  account is gone with the process. Never for a gateway that tells clients their balance.
- ``ToyBackend``: a real JSON-RPC 2.0 service on loopback (aiohttp) to put behind a gateway
  (``start_gateway(GatewayConfig(upstream=backend.url, upstream_kind="jsonrpc", ...))``). It
  records every request body and path, echoes ``{"echo": params, "method": method}`` unless
  told a fixed result (``results``) or error (``errors``) for a method, answers batches item
  by item and notifications with nothing, and answers HTTP 500 while ``failing``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from rpcpay.ledger.account import Account

JSON = Any

__all__ = ["MemoryLedgerStore", "ToyBackend"]


class MemoryLedgerStore:
    """A ``LedgerStore`` in memory (not durable: tests only)."""

    def __init__(self) -> None:
        self._accounts: dict[bytes, Account] = {}
        self.closed = False

    def load(self, client: bytes) -> Account | None:
        return self._accounts.get(client)

    def save(self, account: Account) -> None:
        self._accounts[account.client] = account

    def save_many(self, accounts: Iterable[Account]) -> None:
        batch = list(accounts)  # all or none: nothing is stored before the list is whole
        self._accounts.update((a.client, a) for a in batch)

    def delete(self, clients: Iterable[bytes]) -> None:
        for client in list(clients):
            self._accounts.pop(client, None)

    def iter_accounts(self) -> Iterator[Account]:
        return iter(list(self._accounts.values()))

    def count(self) -> int:
        return len(self._accounts)

    def close(self) -> None:
        self.closed = True


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
