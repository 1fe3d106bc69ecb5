"""``--pay-when``: the wallet uses free service while it serves, and pays once it is refused
or slow. Rules on their own, then a real gateway (anvil behind it) under a free-client flood."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rpcpay.gateway.capacity import Capacity
from rpcpay.gateway.client_address import parse_trusted_proxies
from rpcpay.gateway.free_tier import FreeTierSettings
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.client import FreeRefused, PayingClient
from rpcpay.wallet.funding import MiningFunder
from rpcpay.wallet.pay_when import (
    PayPolicy,
    PayState,
    after_free_call,
    after_refusal,
    goes_free,
)
from tests.gateway.conftest import gateway_config
from tests.support.anvil import AnvilPool, anvil_pool

JSON = Any
__all__ = ["anvil_pool"]


def test_always_never_goes_free() -> None:
    assert not goes_free(PayPolicy("always"), PayState(), 100.0)


def test_refused_pays_for_a_while_then_tries_free_again() -> None:
    policy = PayPolicy("refused", slow_s=0.5, stay_paid_s=60)
    state = after_refusal(policy, PayState(), 100.0)
    assert not goes_free(policy, state, 159.9)
    assert goes_free(policy, state, 160.0)
    # Slowness alone does not make "refused" pay.
    assert goes_free(policy, after_free_call(policy, PayState(), 10.0, 100.0), 100.0)


def test_slow_pays_once_a_free_call_passes_the_bound() -> None:
    policy = PayPolicy("slow", slow_s=0.5, stay_paid_s=60)
    fast = after_free_call(policy, PayState(), 0.4, 100.0)
    assert goes_free(policy, fast, 100.0) and fast.free_calls == 1
    slow = after_free_call(policy, fast, 0.6, 100.0)
    assert not goes_free(policy, slow, 100.0) and slow.slow_calls == 1


@pytest.fixture
async def gateway(anvil_pool: AnvilPool, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """anvil behind a gateway with a free tier: 2 upstream slots, 1 for free calls."""
    node = anvil_pool.fresh(1337)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"default": 1, "methods": {}}))
    running = await start_gateway(
        gateway_config(
            node.url,
            tmp_path / "gw",
            price_file=prices,
            proxies=parse_trusted_proxies(["127.0.0.1"]),
            free_tier=FreeTierSettings(credits_per_second=100, burst=100, share=0.5),
            upstream_concurrency=2,
        )
    )
    yield running
    await running.close()


def capacity_of(running: RunningGateway) -> Capacity:
    assert running.core.capacity is not None
    return running.core.capacity


async def flood(url: str, clients: int, stop: asyncio.Event) -> int:
    """``clients`` free clients, each from its own address, calling until ``stop`` (bounded
    by count); how many answers they got."""
    answers = 0

    async def one(n: int) -> None:
        nonlocal answers
        body = {"jsonrpc": "2.0", "id": n, "method": "eth_blockNumber", "params": []}
        headers = {"X-Forwarded-For": f"10.77.{n // 250}.{n % 250 + 1}"}
        async with aiohttp.ClientSession() as session:
            for _ in range(2000):
                if stop.is_set():
                    return
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
                    answers += 1
                await asyncio.sleep(0.005)

    await asyncio.gather(*(one(n) for n in range(clients)))
    return answers


async def test_refused_uses_free_service_then_pays_under_a_flood(
    gateway: RunningGateway,
) -> None:
    url = f"http://127.0.0.1:{gateway.public_port}"
    queue = capacity_of(gateway).queue
    assert queue is not None
    funder = MiningFunder()
    try:
        policy = PayPolicy("refused", stay_paid_s=60)
        async with PayingClient(url, funder=funder, policy=policy) as client:
            # No flood: free service serves, nothing is paid.
            assert (await client.call("eth_blockNumber", [])).startswith("0x")
            assert not client.charged and client.pay_state.free_calls == 1
            # A flood of free clients fills the free share (the test holds the free slot,
            # so the line of free calls only grows).
            await queue.acquire("free", "10.78.0.1")
            stop = asyncio.Event()
            flooding = asyncio.create_task(flood(url + "/", 40, stop))
            try:
                while not queue.free_backlogged():
                    await asyncio.sleep(0.01)
                with pytest.raises(FreeRefused):
                    await client.call_free("eth_blockNumber", [])
                # The wallet's call is refused free, so it mines and pays: and is served.
                assert (await client.call("eth_blockNumber", [])).startswith("0x")
                assert client.charged and client.pay_state.refusals == 1
                # It keeps paying (no free attempt) while the flood lasts.
                before = client.pay_state
                await client.call("eth_blockNumber", [])
                assert client.charged and client.pay_state == before
            finally:
                stop.set()
                queue.release("free")
                assert await asyncio.wait_for(flooding, 60) > 0
    finally:
        funder.close()


async def test_slow_pays_once_free_service_is_slow(gateway: RunningGateway) -> None:
    url = f"http://127.0.0.1:{gateway.public_port}"
    queue = capacity_of(gateway).queue
    assert queue is not None
    funder = MiningFunder()
    try:
        policy = PayPolicy("slow", slow_s=0.2, stay_paid_s=60)
        async with PayingClient(url, funder=funder, policy=policy) as client:
            # Free calls from a few other clients hold the free slot for 0.5 s.
            await queue.acquire("free", "10.79.0.1")
            asyncio.get_running_loop().call_later(0.5, queue.release, "free")
            slow = await client.call("eth_blockNumber", [])
            assert slow.startswith("0x") and not client.charged
            assert client.pay_state.slow_calls == 1
            # Served, but late: the next call is paid.
            assert (await client.call("eth_blockNumber", [])).startswith("0x")
            assert client.charged
    finally:
        funder.close()


async def test_always_pays_every_call(gateway: RunningGateway) -> None:
    url = f"http://127.0.0.1:{gateway.public_port}"
    funder = MiningFunder()
    try:
        async with PayingClient(url, funder=funder) as client:
            # Every call is signed, so a client with credits is charged for each, as before.
            await client.fund()
            for _ in range(3):
                await client.call("eth_blockNumber", [])
                assert client.charged
            assert client.pay_state.free_calls == 0
    finally:
        funder.close()


async def test_the_command_line_uses_free_service(gateway: RunningGateway, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{gateway.public_port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rpcpay", "wallet", "--daemon", url,
        "--wallet-file", str(tmp_path / "wallet.json"), "--pay-when", "refused",
        "call", "eth_blockNumber", "[]",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err
    assert json.loads(out).startswith("0x")
    assert "free call: nothing was charged" in err.decode()
    assert capacity_of(gateway).free_served == 1
