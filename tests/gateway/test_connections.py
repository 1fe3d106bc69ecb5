"""Connections are bounded: slow headers and bodies are cut off, idle sockets closed, and
2,000 idle connections neither exhaust the gateway's files nor keep good clients out.

A real ``rpcpay serve`` process (its open files counted in /proc) in front of the toy
backend; every socket is a real TCP connection, from several loopback addresses.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import ToyBackend, post, rpc
from tests.support.gateway_process import GatewayProcess, start_gateway_process

pytestmark = pytest.mark.slow

IDLE = 2000


@pytest.fixture
async def gateway(toy_backend: ToyBackend, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    running = start_gateway_process(
        toy_backend.url,
        tmp_path / "gw",
        "--upstream-kind",
        "jsonrpc",
        "--header-timeout",
        "1",
        "--idle-timeout",
        "3",
        "--body-timeout",
        "1",
        "--max-connections",
        "500",
        "--max-connections-per-address",
        "64",
    )
    yield running
    running.stop()


async def connect(port: int, source_ip: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source_ip, 0))


async def closed_after(reader: asyncio.StreamReader, limit: float) -> float | None:
    """Seconds until the gateway closes the connection (reading whatever it sent first),
    or None if it is still open after ``limit`` seconds."""
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(4096), limit - (time.monotonic() - started)):
            pass
    except TimeoutError:
        return None
    return time.monotonic() - started


async def good_calls(port: int, admin_port: int, count: int) -> list[float]:
    """A funded client's paid calls, one after another; the seconds each took."""
    key = ClientKey()
    body = rpc("rpc_access_account", {"client": key.public.hex(), "delta_balance": 1_000})
    await post(admin_port, "/json_rpc", body)
    took = []
    for _ in range(count):
        started = time.monotonic()
        status, answer = await post(port, "/", rpc("eth_call", [], client=key.client_id()))
        assert status == 200 and "result" in answer, answer
        took.append(time.monotonic() - started)
    return took


async def test_slow_headers_and_bodies_are_closed_within_seconds(
    gateway: GatewayProcess,
) -> None:
    async def slowloris(source_ip: str) -> float | None:
        reader, writer = await connect(gateway.port, source_ip)
        writer.write(b"POST / HTTP/1.1\r\nHost: gateway\r\n")

        async def trickle() -> None:
            for i in range(40):
                await asyncio.sleep(0.25)
                if writer.is_closing():
                    return
                writer.write(b"X-Slow-%d: x\r\n" % i)

        dripping = asyncio.create_task(trickle())
        try:
            return await closed_after(reader, 6)
        finally:
            dripping.cancel()
            writer.close()

    async def slow_body(source_ip: str) -> tuple[float | None, bytes]:
        reader, writer = await connect(gateway.port, source_ip)
        writer.write(b"POST / HTTP/1.1\r\nHost: gateway\r\nContent-Length: 1000\r\n\r\n{")
        started = time.monotonic()
        try:
            head = await asyncio.wait_for(reader.read(12), 6)
            await closed_after(reader, 6)
            return time.monotonic() - started, head
        except TimeoutError:
            return None, b""
        finally:
            writer.close()

    lorises = [slowloris(f"127.0.70.{1 + i % 5}") for i in range(50)]
    bodies = [slow_body("127.0.71.1") for _ in range(5)]
    results = await asyncio.gather(
        *lorises, *bodies, good_calls(gateway.port, gateway.admin_port, 5)
    )
    closes, body_results = results[:50], results[50:55]
    # Every slowloris is cut off about a second (the header timeout) after its first byte.
    assert all(c is not None and c < 3 for c in closes), closes
    # A trickling body gets 408 after the body timeout, and the connection is closed.
    for took, head in body_results:
        assert head == b"HTTP/1.1 408" and took is not None and took < 3, (took, head)


async def test_idle_connections_neither_exhaust_files_nor_lock_out_good_clients(
    gateway: GatewayProcess,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 3 * IDLE:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * IDLE), hard))
    before = gateway.open_files()
    # Half from one address (past its cap of 64), half from 20 others (past the total cap).
    sources = ["127.0.0.1"] * (IDLE // 2) + [f"127.0.80.{1 + i % 20}" for i in range(IDLE // 2)]
    opened = await asyncio.gather(
        *[connect(gateway.port, s) for s in sources], return_exceptions=True
    )
    # A connection refused at once may be reset before its connect() returns here.
    sockets = [s for s in opened if not isinstance(s, BaseException)]
    assert all(isinstance(s, (tuple, ConnectionError)) for s in opened), opened
    assert len(sockets) >= IDLE * 9 // 10
    try:
        await asyncio.sleep(0.5)
        held = gateway.open_files() - before
        # The gateway holds at most its total cap, whatever 2,000 sockets want.
        assert held <= 500 + 10, held
        # Past one address's 64, the answer is a clean 503 (sockets the kernel has not yet
        # handed to the gateway, and those closed to make room, see nothing or EOF).
        heads = await asyncio.gather(
            *[asyncio.wait_for(r.read(12), 1) for r, _ in sockets[: len(sockets) // 2]],
            return_exceptions=True,
        )
        assert heads.count(b"HTTP/1.1 503") >= 100, set(map(repr, heads))
        assert all(
            h in (b"HTTP/1.1 503", b"") or isinstance(h, (TimeoutError, ConnectionError))
            for h in heads
        ), heads
        # Good clients are served meanwhile, from an address of their own.
        took = await good_calls(gateway.port, gateway.admin_port, 20)
        assert max(took) < 1.0, took
        # After the idle timeout every idle socket is closed.
        await asyncio.sleep(3.5)
        assert gateway.open_files() - before <= 10
    finally:
        for _, writer in sockets:
            writer.close()


async def test_refusals_past_the_budget_are_answered_late_but_paid_calls_are_not(
    gateway: GatewayProcess,
) -> None:
    async with aiohttp.ClientSession() as session:

        async def junk() -> float:
            started = time.monotonic()
            url = f"http://127.0.0.1:{gateway.port}/json_rpc"
            async with session.post(url, data=b"{") as response:
                assert (await response.json(content_type=None))["error"]["code"] == -32700
            return time.monotonic() - started

        took = [await junk() for _ in range(140)]
        # The first 100 refusals go at once; past the budget (refilling at 10/s) most wait
        # 50 ms: 40 of them take at least a second.
        assert sorted(took[:50])[25] < 0.04, took[:50]
        assert sum(took[-40:]) >= 1.0, took[-40:]
    # The same address's paid calls are never delayed.
    assert max(await good_calls(gateway.port, gateway.admin_port, 5)) < 0.045
