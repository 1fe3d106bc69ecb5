"""The free tier in front of a JSON-RPC backend (anvil): free within the allowance, HTTP 402
past it, JSON-RPC error -32005 "busy" when shed; paid calls unaffected."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rpcpay.gateway.client_address import parse_trusted_proxies
from rpcpay.gateway.free_tier import FreeTierSettings
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.keys import ClientKey
from rpcpay.wire.rpc import ERROR_PAYWALL, ERROR_RATE_LIMITED, HEADER_CLIENT
from tests.gateway.conftest import Peer, gateway_config
from tests.support.anvil import AnvilPool, anvil_pool

JSON = Any
__all__ = ["anvil_pool"]


@pytest.fixture
async def gateway(anvil_pool: AnvilPool, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    node = anvil_pool.fresh(1337)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"default": 1, "methods": {"eth_getLogs": 10}}))
    running = await start_gateway(
        gateway_config(
            node.url,
            tmp_path / "gw",
            price_file=prices,
            proxies=parse_trusted_proxies(["127.0.0.1"]),
            free_tier=FreeTierSettings(credits_per_second=0.001, burst=3, share=1.0),
            upstream_concurrency=1,
            upstream_queue=1,
        )
    )
    yield running
    await running.close()


async def call(port: int, body: JSON, address: str, client: str | None = None) -> tuple[int, JSON]:
    headers = {"X-Forwarded-For": address}
    if client is not None:
        headers[HEADER_CLIENT] = client
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/", json=body, headers=headers) as response,
    ):
        return response.status, json.loads(await response.read())


def block_number(n: int = 1) -> JSON:
    return {"jsonrpc": "2.0", "id": n, "method": "eth_blockNumber", "params": []}


async def test_free_within_the_allowance_then_402(gateway: RunningGateway) -> None:
    port = gateway.public_port
    for n in range(3):
        status, answer = await call(port, block_number(n), "192.0.2.1")
        assert status == 200 and answer["result"].startswith("0x"), answer
        assert "credits" not in answer  # a free answer is the backend's, unstamped
    status, answer = await call(port, block_number(), "192.0.2.1")
    assert status == 402 and answer["error"]["code"] == ERROR_PAYWALL
    # A call above the burst is never free (eth_getLogs costs 10).
    logs = {"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [{}]}
    status, answer = await call(port, logs, "192.0.2.2")
    assert status == 402
    # A paying client is charged, as ever.
    key = ClientKey()
    await Peer("rpcpay", port, gateway.admin_port).fund(key, 5)
    status, answer = await call(port, block_number(), "192.0.2.1", key.client_id())
    assert status == 200 and answer["credits"] == 4


async def test_shed_free_calls_get_busy_and_spend_nothing(gateway: RunningGateway) -> None:
    port = gateway.public_port
    capacity = gateway.core.capacity
    assert capacity is not None and capacity.queue is not None
    queue = capacity.queue
    await queue.acquire("paid", "127.0.0.1")
    waiting = asyncio.create_task(call(port, block_number(), "198.51.100.1"))
    while queue.waiting() < 1:
        await asyncio.sleep(0.01)
    batch = [block_number(1), block_number(2)]
    status, answer = await call(port, batch, "198.51.100.2")
    assert status == 200
    assert [a["error"]["code"] for a in answer] == [ERROR_RATE_LIMITED] * 2
    assert [a["id"] for a in answer] == [1, 2]
    queue.release("paid")
    status, answer = await call(port, block_number(), "198.51.100.2")
    assert status == 200 and "result" in answer
    assert (await waiting)[0] == 200
    # The shed batch (2 credits) came back: 3 - 1 for the last call.
    assert capacity.table.tokens("198.51.100.2", 0) == 2
