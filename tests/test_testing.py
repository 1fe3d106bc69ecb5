"""``rpcpay.testing`` and the public API: the test ledger is the real SQLite ledger (kept
across a reopen, seen by a second instance on the file), the toy backend is a real JSON-RPC
service, and every name in ``rpcpay.__all__`` resolves."""

from __future__ import annotations

from pathlib import Path

import aiohttp

import rpcpay
from rpcpay.testing import ToyBackend, open_test_ledger


async def test_the_test_ledger_is_the_real_shared_ledger(tmp_path: Path) -> None:
    one, two = await open_test_ledger(tmp_path), await open_test_ledger(tmp_path)
    client = b"a" * 32
    for amount in (5, 7, 11):
        await one.adjust_balance(client, amount)
    assert (await one.refund(client, 3)).balance == 26
    account = await two.get(client)
    assert account is not None and account.balance == 26
    await one.close()
    await two.close()
    again = await open_test_ledger(tmp_path)
    assert (await again.totals()).balance == 26
    await again.close()


async def test_toy_backend_answers_calls_batches_and_notifications() -> None:
    async with ToyBackend() as backend, aiohttp.ClientSession() as http:
        backend.results["eth_chainId"] = "0x539"
        async with http.post(
            backend.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}
        ) as r:
            assert (await r.json())["result"] == "0x539"
        batch = [{"jsonrpc": "2.0", "id": 2, "method": "m", "params": [1]},
                 {"jsonrpc": "2.0", "method": "note"}]  # fmt: skip
        async with http.post(backend.url, json=batch) as r:
            assert await r.json() == [
                {"jsonrpc": "2.0", "id": 2, "result": {"echo": [1], "method": "m"}}
            ]
        assert backend.paths == ["/", "/"] and len(backend.requests) == 2


def test_every_public_name_resolves() -> None:
    for name in rpcpay.__all__:
        assert getattr(rpcpay, name) is not None, name
    assert rpcpay.PayingClient.__module__ == "rpcpay.wallet.client"
