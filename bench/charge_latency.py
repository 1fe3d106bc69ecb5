"""The ledger's latency per charge inside a running gateway, SQLite against PostgreSQL.

A real gateway (in-process, its own listeners) in front of a toy JSON-RPC backend, on the
default SQLite ledger (``--data-dir``, ``--ledger-sync normal``) or on a private PostgreSQL
cluster (``--ledger-url``, fsync on). Paid ``eth_call``s are sent over HTTP by C concurrent
loops (each its own funded client, ids signed beforehand), and every ``SharedLedger.pay`` the
gateway makes is timed: that is the charge's ledger transaction as a client waits for it,
queueing for the store's thread or pool included. Reference: the SQLite gateway, in the same
run, rounds alternating which store goes first. Reported per store and concurrency: p50 and
p99 per charge, and the ratio of PostgreSQL's p50 to SQLite's.

    .venv/bin/python bench/charge_latency.py                   # 2 rounds, 2,000 calls a cell
    .venv/bin/python bench/charge_latency.py --rounds 4 --calls 4000 --concurrency 1,4,16

The load generator shares this process (and so the CPU) with the gateway; the ratio is the
figure to read, the absolute numbers are upper bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from _common import percentile  # also puts the repo and src/ on sys.path
from tests.support.postgres import start_postgres

from rpcpay.gateway.limits import AbuseLimits
from rpcpay.gateway.server import GatewayConfig, RunningGateway, start_gateway
from rpcpay.ledger.account import PaymentResult
from rpcpay.testing import ToyBackend
from rpcpay.wallet.keys import ClientKey

MAX_SECONDS_PER_CELL = 120.0


def timed_pay(gateway: RunningGateway, latencies: list[float]) -> None:
    """Record the duration of every ledger charge the gateway makes."""
    ledger = gateway.core.payment.ledger
    pay = ledger.pay

    async def timed(
        client: bytes, ts_us: int, payment: int, same_ts: bool = False
    ) -> PaymentResult:
        started = time.perf_counter()
        try:
            return await pay(client, ts_us, payment, same_ts)
        finally:
            latencies.append((time.perf_counter() - started) * 1000)

    ledger.pay = timed  # type: ignore[method-assign]


async def cell(
    backend: ToyBackend, root: Path, url: str | None, concurrency: int, calls: int
) -> list[float]:
    config = GatewayConfig(
        upstream=backend.url,
        upstream_kind="jsonrpc",
        bind_port=0,
        admin_bind_port=None,
        data_dir=root / uuid.uuid4().hex,
        pow_mode="light",
        verify_threads=1,
        ledger_url=url,
        metrics=False,
        limits=AbuseLimits(),
    )
    gateway = await start_gateway(config)
    latencies: list[float] = []
    try:
        keys = [ClientKey() for _ in range(concurrency)]
        for key in keys:
            await gateway.core.payment.ledger.adjust_balance(key.public, 10**9)
        per_loop = calls // concurrency
        ids = [[key.client_id() for _ in range(per_loop)] for key in keys]
        body = b'{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[]}'
        target = f"http://127.0.0.1:{gateway.public_port}/"
        deadline = time.monotonic() + MAX_SECONDS_PER_CELL
        timed_pay(gateway, latencies)

        async def loop(http: aiohttp.ClientSession, mine: list[str]) -> None:
            for client in mine:
                if time.monotonic() > deadline:
                    return
                headers = {"X-Rpc-Client": client, "Content-Type": "application/json"}
                async with http.post(target, data=body, headers=headers) as reply:
                    assert reply.status == 200, await reply.text()
                    await reply.read()

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(loop(http, mine) for mine in ids))
    finally:
        await gateway.close()
    return latencies


async def run(args: argparse.Namespace) -> dict[tuple[str, int], list[float]]:
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[tuple[str, int], list[float]] = {}
    with start_postgres() as cluster, tempfile.TemporaryDirectory() as tmp:
        async with ToyBackend() as backend:
            for round_ in range(args.rounds):
                order = ["sqlite", "postgres"] if round_ % 2 == 0 else ["postgres", "sqlite"]
                for level in levels:
                    for store in order:
                        url = None
                        if store == "postgres":
                            url = cluster.create_database("bench_" + uuid.uuid4().hex[:12])
                        got = await cell(backend, Path(tmp), url, level, args.calls)
                        results.setdefault((store, level), []).extend(got)
                        backend.requests.clear()
                        backend.paths.clear()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--calls", type=int, default=2000, help="paid calls per cell (2000)")
    parser.add_argument("--concurrency", default="1,8", help="concurrent clients (1,8)")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20 or not 10 <= args.calls <= 100_000:
        print("need 1 <= --rounds <= 20 and 10 <= --calls <= 100000", file=sys.stderr)
        return 2
    results = asyncio.run(run(args))
    print("| store | clients | charges | p50 ms | p99 ms | p50 vs SQLite |")
    print("|---|---|---|---|---|---|")
    for (store, level), lat in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        reference: Any = statistics.median(results[("sqlite", level)])
        ratio = statistics.median(lat) / reference
        print(f"| {store} | {level} | {len(lat)} | {statistics.median(lat):.3f} | "
              f"{percentile(lat, 0.99):.3f} | {ratio:.2f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
