"""The free tier and paid priority in front of a real monerod: each bound, shown.

A gateway with ``--free-credits-per-second``, ``--free-burst``, ``--free-share`` and
``--upstream-concurrency`` in front of a regtest monerod; clients from many addresses via
``--trusted-proxy 127.0.0.1`` and X-Forwarded-For (the real address behind a proxy).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rpcpay.gateway.capacity import Capacity
from rpcpay.gateway.client_address import parse_trusted_proxies
from rpcpay.gateway.free_tier import FreeTierSettings
from rpcpay.gateway.server import RunningGateway, start_gateway
from rpcpay.wallet.keys import ClientKey
from rpcpay.wire import epee
from rpcpay.wire.epee import Array, Int, Section, Type
from tests.gateway.conftest import Peer, gateway_config, post, post_bin, rpc
from tests.support.monerod import TEST_ADDRESS, MonerodProcess

JSON = Any
pytestmark = pytest.mark.monerod


async def start(monerod: MonerodProcess, tmp_path: Path, **overrides: Any) -> RunningGateway:
    config = gateway_config(
        monerod.url,
        tmp_path / "gw",
        upstream_kind="monero",
        payment_address=TEST_ADDRESS,
        proxies=parse_trusted_proxies(["127.0.0.1"]),
        **overrides,
    )
    return await start_gateway(config)


@pytest.fixture
async def free_gateway(monerod: MonerodProcess, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """Burst 3 credits per host, refilling 1 a thousand seconds; 2 slots, 1 of them free."""
    running = await start(
        monerod,
        tmp_path,
        free_tier=FreeTierSettings(credits_per_second=0.001, burst=3, share=0.5),
        upstream_concurrency=2,
    )
    yield running
    await running.close()


def capacity_of(running: RunningGateway) -> Capacity:
    capacity = running.core.capacity
    assert capacity is not None
    return capacity


async def get_info(port: int, address: str, body: JSON = None) -> JSON:
    status, answer = await post(port, "/get_info", body or {}, {"X-Forwarded-For": address})
    assert status == 200, answer
    return answer


async def post_epee(port: int, path: str, request: Section, address: str) -> Section:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}{path}",
            data=epee.encode(request),
            headers={"X-Forwarded-For": address},
        ) as response,
    ):
        assert response.status == 200
        return epee.decode(await response.read())


async def test_off_by_default_nothing_unpaid_is_served(
    monerod: MonerodProcess, tmp_path: Path
) -> None:
    running = await start(monerod, tmp_path)
    try:
        assert running.core.capacity is None
        answer = await get_info(running.public_port, "192.0.2.1")
        assert answer["status"] == "Client signature does not verify for get_info"
    finally:
        await running.close()


async def test_a_host_gets_its_burst_free_then_payment_required(
    free_gateway: RunningGateway,
) -> None:
    port = free_gateway.public_port
    # get_info costs 1: three are free, the fourth is refused as monerod refuses it.
    for _ in range(3):
        answer = await get_info(port, "192.0.2.1")
        assert answer["status"] == "OK" and answer["height"] > 0
    refused = await get_info(port, "192.0.2.1")
    assert refused["status"] == "Client signature does not verify for get_info"
    # Another IPv4 host, even in the same /24, has its own allowance.
    assert (await get_info(port, "192.0.2.2"))["status"] == "OK"
    # An IPv6 /64 is one host: rotating inside it gains nothing.
    for n in range(3):
        assert (await get_info(port, f"2001:db8::{n + 1}"))["status"] == "OK"
    assert (await get_info(port, "2001:db8::ffff"))["status"] != "OK"
    assert (await get_info(port, "2001:db8:0:1::1"))["status"] == "OK"
    capacity = capacity_of(free_gateway)
    assert capacity.free_served == 8 and capacity.refused_allowance == 2


async def test_forged_replayed_and_underfunded_ids_fall_to_the_free_class(
    free_gateway: RunningGateway,
) -> None:
    port = free_gateway.public_port
    peer = Peer("rpcpay", port, free_gateway.admin_port)
    key = ClientKey()
    await peer.fund(key, 10)
    signed = key.client_id()
    paid = await get_info(port, "198.51.100.7", {"client": signed})
    assert paid["status"] == "OK" and paid["credits"] == 9
    # The same id again (a replay): not charged, served free from the sender's allowance.
    replay = await get_info(port, "203.0.113.9", {"client": signed})
    assert replay["status"] == "OK"
    # A forged id (someone else's key, tampered signature): free class too.
    forged = signed[:-4] + ("0000" if signed[-4:] != "0000" else "1111")
    assert (await get_info(port, "203.0.113.9", {"client": forged}))["status"] == "OK"
    # A valid id with no credits: free while the allowance lasts, balance untouched.
    broke = ClientKey()
    answer = await get_info(port, "203.0.113.9", {"client": broke.client_id()})
    assert answer["status"] == "OK" and answer["credits"] == 0
    refused = await get_info(port, "203.0.113.9", {"client": broke.client_id()})
    assert refused["status"] == "PAYMENT REQUIRED"
    # Nothing was taken from the paying client by any of this.
    assert (await peer.entry(key))["balance"] == 9


async def test_rpc_access_pay_is_never_served_free(free_gateway: RunningGateway) -> None:
    key = ClientKey()
    params = {"client": key.client_id(), "paying_for": "a service", "payment": 1}
    _, answer = await post(free_gateway.public_port, "/json_rpc", rpc("rpc_access_pay", params))
    assert answer["result"]["status"] == "PAYMENT REQUIRED"


async def test_free_blocks_are_whole_and_their_price_is_owed(
    monerod: MonerodProcess, tmp_path: Path
) -> None:
    running = await start(
        monerod, tmp_path, free_tier=FreeTierSettings(credits_per_second=0.001, burst=2)
    )
    try:
        port = running.public_port
        _, genesis = await post(port, "/json_rpc", rpc("on_get_block_hash", [0]))
        request = {
            "block_ids": bytes.fromhex(genesis["result"]),
            "prune": True,
            "start_height": Int(Type.UINT64, 0),
        }
        status, answer = await post_bin(port, "/get_blocks.bin", request)
        assert status == 200 and isinstance(answer, dict), answer
        assert answer["status"] == b"OK"
        blocks = answer["blocks"]
        assert isinstance(blocks, Array) and len(blocks.items) == monerod.height()
        # 1 up front, then 0.05 a block owed: the host is in debt and waits.
        capacity = capacity_of(running)
        assert capacity.table.tokens("127.0.0.1", 0) < 1
        status, again = await post_bin(port, "/get_blocks.bin", request)
        assert isinstance(again, dict)
        assert again["status"] == b"Client signature does not verify for get_blocks"
    finally:
        await running.close()


async def test_paid_calls_go_first_and_free_ones_keep_to_their_share(
    monerod: MonerodProcess, tmp_path: Path
) -> None:
    running = await start(
        monerod,
        tmp_path,
        free_tier=FreeTierSettings(credits_per_second=100, burst=100, share=0.5),
        upstream_concurrency=2,
    )
    try:
        port = running.public_port
        queue = capacity_of(running).queue
        assert queue is not None and queue.settings.free_slots == 1
        capacity_of(running).share_refusal_delay_s = 0.2
        peer = Peer("rpcpay", port, running.admin_port)
        key = ClientKey()
        await peer.fund(key, 10)
        # The test holds both upstream slots, so every call must wait in line.
        await queue.acquire("paid", "127.0.0.1")
        await queue.acquire("paid", "127.0.0.1")
        done: list[str] = []

        async def call(name: str, address: str, body: JSON) -> None:
            answer = await get_info(port, address, body)
            assert answer["status"] == "OK", answer
            done.append(name)

        free = [asyncio.create_task(call(f"free{n}", f"10.0.{n}.1", {})) for n in range(3)]
        while queue.waiting("free") < 3:
            await asyncio.sleep(0.01)
        paid = asyncio.create_task(call("paid", "198.51.100.7", {"client": key.client_id()}))
        while queue.waiting("paid") < 1:
            await asyncio.sleep(0.01)
        # The free share is spent: 3 free calls wait for 1 free slot; the next free one
        # is refused for payment, not queued (4 rounds of 1 slot: 4 waiting).
        late = asyncio.create_task(call("free3", "10.0.3.1", {}))
        while queue.waiting("free") < 4:
            await asyncio.sleep(0.01)
        assert queue.free_backlogged()
        # ... and hears so only after the share refusal's delay (the flood's tarpit).
        began = time.monotonic()
        assert (await get_info(port, "10.0.4.1"))["status"] != "OK"
        assert time.monotonic() - began >= 0.2
        assert capacity_of(running).refused_share == 1
        # One slot frees: the paid call, queued after four free ones, is handed it.
        queue.release("paid")
        assert queue.waiting("paid") == 0 and queue.waiting("free") == 4
        queue.release("paid")
        await asyncio.gather(paid, *free, late)
        assert sorted(done) == ["free0", "free1", "free2", "free3", "paid"]
        assert queue.stats.shed == {"paid": 0, "free": 0}
        assert queue.in_flight == {"paid": 0, "free": 0}
    finally:
        await running.close()


async def test_a_full_line_sheds_free_calls_with_busy_at_no_cost(
    monerod: MonerodProcess, tmp_path: Path
) -> None:
    running = await start(
        monerod,
        tmp_path,
        free_tier=FreeTierSettings(credits_per_second=100, burst=100, share=1.0),
        upstream_concurrency=1,
        upstream_queue=2,
    )
    try:
        port = running.public_port
        queue = capacity_of(running).queue
        assert queue is not None
        await queue.acquire("paid", "127.0.0.1")
        waiting = [asyncio.create_task(get_info(port, f"10.1.{n}.1")) for n in range(2)]
        while queue.waiting() < 2:
            await asyncio.sleep(0.01)
        # JSON endpoint, JSON-RPC and epee: "BUSY" as monerod says it, nothing charged.
        assert (await get_info(port, "10.1.9.1"))["status"] == "BUSY"
        _, answer = await post(port, "/json_rpc", rpc("get_info"), {"X-Forwarded-For": "10.1.9.2"})
        assert answer["result"]["status"] == "BUSY"
        request: Section = {"heights": Array.of_ints(Type.UINT64, [1])}
        busy = await post_epee(port, "/get_blocks_by_height.bin", request, "10.1.9.3")
        assert busy["status"] == b"BUSY" and busy["credits"] == Int(Type.UINT64, 0)
        queue.release("paid")
        answers = await asyncio.gather(*waiting)
        assert all(a["status"] == "OK" for a in answers)
        assert queue.stats.shed == {"paid": 0, "free": 3}
        # A shed call spent nothing: the hosts still have their whole burst.
        for host in ("10.1.9.1", "10.1.9.2", "10.1.9.3"):
            assert capacity_of(running).table.tokens(host, 0) == 100
    finally:
        await running.close()


async def test_the_operator_sees_free_calls_shedding_queue_and_latency(
    free_gateway: RunningGateway,
) -> None:
    port, admin = free_gateway.public_port, free_gateway.admin_port
    for _ in range(4):
        await get_info(port, "192.0.2.77")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{admin}/metrics") as response,
    ):
        text = await response.text()
    assert 'rpcpay_free_calls_total{outcome="served"} 3.0' in text
    assert 'rpcpay_free_calls_total{outcome="refused_allowance"} 1.0' in text
    assert 'rpcpay_shed_calls_total{class="free"} 0.0' in text
    assert 'rpcpay_upstream_waiting{class="paid"} 0.0' in text
    assert 'rpcpay_call_seconds_by_class_count{class="free"} 3.0' in text
    assert 'rpcpay_call_seconds_by_class_count{class="refused"} 1.0' in text
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rpcpay",
        "payments",
        "--admin",
        f"http://127.0.0.1:{admin}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err
    lines = out.decode().splitlines()
    assert lines[-3].startswith("Free calls: 3 served, 1 refused (host allowance)")
    assert lines[-2].startswith("Upstream: 0/2 in flight (0/1 free), 0 waiting")
    assert lines[-1].startswith("Latency p50/p99: paid -/-, free <=")


async def test_a_line_full_of_paid_calls_sheds_a_paid_call_refunded(
    monerod: MonerodProcess, tmp_path: Path
) -> None:
    running = await start(
        monerod,
        tmp_path,
        free_tier=FreeTierSettings(credits_per_second=100, burst=100),
        upstream_concurrency=1,
        upstream_queue=1,
    )
    try:
        port = running.public_port
        queue = capacity_of(running).queue
        assert queue is not None
        peer = Peer("rpcpay", port, running.admin_port)
        first, second = ClientKey(), ClientKey()
        await peer.fund(first, 10)
        await peer.fund(second, 10)
        await queue.acquire("paid", "127.0.0.1")
        waiting = asyncio.create_task(get_info(port, "198.51.100.1", {"client": first.client_id()}))
        while queue.waiting("paid") < 1:
            await asyncio.sleep(0.01)
        # The line holds one paid call: the next paid call is shed, refunded, told so.
        status, answer = await post(
            port, "/get_info", {"client": second.client_id()}, {"X-Forwarded-For": "198.51.100.2"}
        )
        assert status == 502 and answer["credits"] == 10, answer
        assert (await peer.entry(second))["balance"] == 10
        queue.release("paid")
        assert (await waiting)["credits"] == 9
        assert queue.stats.shed == {"paid": 1, "free": 0}
    finally:
        await running.close()


async def test_a_global_free_rate_bounds_all_hosts_together(
    monerod: MonerodProcess, tmp_path: Path
) -> None:
    running = await start(
        monerod,
        tmp_path,
        free_tier=FreeTierSettings(100, 100, 1.0, total_credits_per_second=0.001),
    )
    try:
        capacity = capacity_of(running)
        capacity.share_refusal_delay_s = 0.01
        port = running.public_port
        # Burst: one second of the total rate, at least 1 credit: one get_info, from anyone.
        assert (await get_info(port, "192.0.2.10"))["status"] == "OK"
        assert (await get_info(port, "192.0.2.11"))["status"] != "OK"
        assert capacity.refused_share == 1 and capacity.refused_allowance == 0
        # The refused host spent nothing of its own allowance.
        assert capacity.table.tokens("192.0.2.11", 0) == 100
    finally:
        await running.close()
