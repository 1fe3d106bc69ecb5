"""``rpcpay.testing`` and the public API: the in-memory store keeps the ``LedgerStore``
contract a ``Ledger`` relies on, the toy backend is a real JSON-RPC service, and every name in
``rpcpay.__all__`` resolves."""

from __future__ import annotations

import aiohttp
from hypothesis import given
from hypothesis import strategies as st

import rpcpay
from rpcpay.ledger.ledger import Ledger
from rpcpay.testing import MemoryLedgerStore, ToyBackend


@given(
    st.lists(st.tuples(st.sampled_from([b"a" * 32, b"b" * 32]), st.integers(0, 1000)), max_size=20)
)
def test_memory_store_behind_a_ledger_conserves_credits(changes: list[tuple[bytes, int]]) -> None:
    ledger = Ledger(MemoryLedgerStore())
    for client, amount in changes:
        ledger.adjust_balance(client, amount)
    for client in {c for c, _ in changes}:
        account = ledger.get(client)
        assert account is not None
        assert account.balance == sum(a for c, a in changes if c == client)
    ledger.close()


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
