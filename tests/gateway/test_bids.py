"""Bids (``--bids``, an extension of monerod's protocol): a paying client may offer more
credits per call in an ``X-Rpc-Bid`` header to go first among paid calls waiting for a slot.
monerod's clients never send it, and see nothing of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rpcpay.gateway.capacity import Capacity
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.client import PayingClient
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import Peer, gateway_config, post
from tests.support.monerod import TEST_ADDRESS, MonerodProcess

JSON = Any
pytestmark = pytest.mark.monerod


@pytest.fixture
async def bidding(monerod: MonerodProcess, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    config = gateway_config(
        monerod.url,
        tmp_path / "gw",
        upstream_kind="monero",
        payment_address=TEST_ADDRESS,
        upstream_concurrency=1,
        bids=True,
    )
    running = await start_gateway(config)
    yield running
    await running.close()


def capacity_of(running: RunningGateway) -> Capacity:
    assert running.core.capacity is not None
    return running.core.capacity


async def get_info(port: int, key: ClientKey, bid: int | None = None) -> JSON:
    headers = {} if bid is None else {"X-Rpc-Bid": str(bid)}
    status, answer = await post(port, "/get_info", {"client": key.client_id()}, headers)
    assert status == 200, answer
    return answer


async def test_a_bid_is_charged_and_goes_first(bidding: RunningGateway) -> None:
    port = bidding.public_port
    peer = Peer("rpcpay", port, bidding.admin_port)
    plain, bidder = ClientKey(), ClientKey()
    await peer.fund(plain, 100)
    await peer.fund(bidder, 100)
    queue = capacity_of(bidding).queue
    assert queue is not None
    await queue.acquire("paid", "127.0.0.1")
    first = asyncio.create_task(get_info(port, plain))
    while queue.waiting("paid") < 1:
        await asyncio.sleep(0.01)
    second = asyncio.create_task(get_info(port, bidder, bid=5))
    while queue.waiting("paid") < 2:
        await asyncio.sleep(0.01)
    # The slot frees: the bidder, who came second, is handed it before the earlier call.
    queue.release("paid")
    assert queue.stats.overtakes == 1
    answers = await asyncio.gather(first, second)
    # get_info costs 1; the bid 5 more.
    assert answers[0]["credits"] == 99 and answers[1]["credits"] == 94
    assert queue.in_flight == {"paid": 0, "free": 0}


async def test_a_bid_beyond_the_balance_is_refused_not_charged(bidding: RunningGateway) -> None:
    port = bidding.public_port
    peer = Peer("rpcpay", port, bidding.admin_port)
    key = ClientKey()
    await peer.fund(key, 3)
    answer = await get_info(port, key, bid=10)
    assert answer["status"] == "PAYMENT REQUIRED"
    assert (await get_info(port, key))["credits"] == 2


@pytest.mark.parametrize("bad", ["-1", "x", "1e3", str(2**64)])
async def test_a_malformed_bid_is_refused_cleanly(bidding: RunningGateway, bad: str) -> None:
    port = bidding.public_port
    status, answer = await post(port, "/get_info", {}, {"X-Rpc-Bid": bad})
    assert status == 400 and "X-Rpc-Bid" in answer["status"], answer


async def test_without_bids_the_header_is_ignored(monerod: MonerodProcess, tmp_path: Path) -> None:
    config = gateway_config(
        monerod.url, tmp_path / "gw", upstream_kind="monero", payment_address=TEST_ADDRESS
    )
    running = await start_gateway(config)
    try:
        peer = Peer("rpcpay", running.public_port, running.admin_port)
        key = ClientKey()
        await peer.fund(key, 10)
        assert (await get_info(running.public_port, key, bid=5))["credits"] == 9
    finally:
        await running.close()


async def test_the_wallet_client_bids(bidding: RunningGateway) -> None:
    port = bidding.public_port
    key = ClientKey()
    await Peer("rpcpay", port, bidding.admin_port).fund(key, 20)
    async with PayingClient(f"http://127.0.0.1:{port}", key, bid=5) as client:
        result = await client.call("get_info", {})
        assert result["status"] == "OK" and client.credits == 14  # 1 + the bid
