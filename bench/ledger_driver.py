"""Choosing the PostgreSQL driver for the shared ledger: asyncpg against psycopg 3.

Both drivers run the ledger's hot transaction against the same private cluster (made by
``initdb`` in a temporary directory, ``fsync`` on): a paid call's charge, which reads one
account ``FOR UPDATE``, applies the rule in Python and writes it back, all in one
transaction, with the strictly-newer timestamp check as a conditional update. Each round
runs one driver at 1, 4 and 16 concurrent clients from one event loop (a pool of that many
connections), and the rounds alternate which driver goes first.

Reported per driver and concurrency: charges per second, p50 and p99 latency per charge,
and the client process's CPU seconds per 1,000 charges (what the gateway itself would
spend). Each level ends with asyncpg's throughput over psycopg's.

    .venv/bin/pip install "psycopg[binary,pool]"       # the contender (asyncpg comes with [dev])
    .venv/bin/python bench/ledger_driver.py            # 3 rounds of 4 s per cell
    .venv/bin/python bench/ledger_driver.py --rounds 1 --seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _extra in (REPO, REPO / "src"):
    if str(_extra) not in sys.path:
        sys.path.append(str(_extra))

import asyncpg  # noqa: E402
import psycopg_pool  # noqa: E402
from tests.support.postgres import start_postgres  # noqa: E402

SCHEMA = """
CREATE TABLE accounts (
    client bytea PRIMARY KEY,
    balance numeric(20) NOT NULL,
    credits_used numeric(20) NOT NULL,
    last_ts numeric(20) NOT NULL
)
"""
ACCOUNTS = 64
PRICE = 1
MAX_CHARGES_PER_CELL = 500_000


@dataclass(frozen=True, slots=True)
class Cell:
    driver: str
    clients: int
    charges: int
    seconds: float
    latencies_ms: list[float]
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.charges / self.seconds

    def percentile(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]


Charge = Callable[[bytes, int], Awaitable[None]]


def _rule(balance: int, used: int, price: int) -> tuple[int, int]:
    """The pure part: a stand-in with the shape of ``apply_payment`` (runs in Python)."""
    return balance - price, used + price


async def _asyncpg_charger(url: str, size: int) -> tuple[Charge, Callable[[], Awaitable[None]]]:
    pool = await asyncpg.create_pool(url, min_size=size, max_size=size)

    async def charge(client: bytes, ts: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT balance, credits_used, last_ts FROM accounts WHERE client = $1 FOR UPDATE",
                client,
            )
            assert row is not None
            balance, used = _rule(int(row[0]), int(row[1]), PRICE)
            await conn.execute(
                "UPDATE accounts SET balance = $2, credits_used = $3, last_ts = $4 "
                "WHERE client = $1 AND last_ts < $4",
                client,
                balance,
                used,
                ts,
            )

    return charge, pool.close


async def _psycopg_charger(url: str, size: int) -> tuple[Charge, Callable[[], Awaitable[None]]]:
    pool = psycopg_pool.AsyncConnectionPool(url, min_size=size, max_size=size, open=False)
    await pool.open(wait=True)

    async def charge(client: bytes, ts: int) -> None:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT balance, credits_used, last_ts FROM accounts WHERE client = %s FOR UPDATE",
                (client,),
            )
            row = await cur.fetchone()
            assert row is not None
            balance, used = _rule(int(row[0]), int(row[1]), PRICE)
            await conn.execute(
                "UPDATE accounts SET balance = %s, credits_used = %s, last_ts = %s "
                "WHERE client = %s AND last_ts < %s",
                (balance, used, ts, client, ts),
            )

    return charge, pool.close


MAKERS: dict[str, Callable[[str, int], Awaitable[tuple[Charge, Callable[[], Awaitable[None]]]]]] = {
    "asyncpg": _asyncpg_charger,
    "psycopg": _psycopg_charger,
}


async def _run_cell(driver: str, url: str, clients: int, seconds: float) -> Cell:
    charge, close = await MAKERS[driver](url, clients)
    keys = [i.to_bytes(32, "big") for i in range(ACCOUNTS)]
    latencies: list[float] = []
    ts_counter = [time.time_ns()]
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        # Each worker owns its own accounts, so no two transactions wait on one row lock.
        mine = keys[index::clients] or [keys[index % ACCOUNTS]]
        i = 0
        while time.perf_counter() < deadline and len(latencies) < MAX_CHARGES_PER_CELL:
            ts_counter[0] += 1
            t0 = time.perf_counter()
            await charge(mine[i % len(mine)], ts_counter[0])
            latencies.append((time.perf_counter() - t0) * 1000)
            i += 1

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await close()
    return Cell(driver, clients, len(latencies), elapsed, latencies, cpu)


def _setup(cluster_url: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(cluster_url)
        await conn.execute(SCHEMA)
        await conn.executemany(
            "INSERT INTO accounts VALUES ($1, $2, 0, 0)",
            [(i.to_bytes(32, "big"), 10**15) for i in range(ACCOUNTS)],
        )
        await conn.close()

    asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="measured seconds per cell (default 4)"
    )
    parser.add_argument(
        "--clients",
        default="1,4,16",
        help="comma-separated concurrency levels (default 1,4,16)",
    )
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.clients.split(",")]
    results: dict[tuple[str, int], list[Cell]] = {}
    with start_postgres() as cluster:
        url = cluster.create_database("bench")
        _setup(url)
        print(f"ledger_driver: PostgreSQL on 127.0.0.1:{cluster.port}, pid {os.getpid()}")
        order = list(MAKERS)
        for rnd in range(args.rounds):
            for driver in order if rnd % 2 == 0 else reversed(order):
                for clients in levels:
                    cell = asyncio.run(_run_cell(driver, url, clients, args.seconds))
                    results.setdefault((driver, clients), []).append(cell)
                    print(
                        f"  round {rnd + 1} {driver:8} {clients:2} clients: "
                        f"{cell.rate:7.0f} charges/s, p99 {cell.percentile(0.99):.2f} ms",
                        flush=True,
                    )
    print()
    print(
        f"{'clients':>7} {'driver':8} {'charges/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'CPU s/1k':>8}"
    )
    for clients in levels:
        rates: dict[str, float] = {}
        for driver in MAKERS:
            cells = results[(driver, clients)]
            rate = statistics.median(c.rate for c in cells)
            rates[driver] = rate
            lat = [x for c in cells for x in c.latencies_ms]
            merged = Cell(driver, clients, 0, 1, lat, 0)
            cpu_per_k = sum(c.cpu_s for c in cells) / sum(c.charges for c in cells) * 1000
            print(
                f"{clients:>7} {driver:8} {rate:>10.0f} {merged.percentile(0.5):>7.2f} "
                f"{merged.percentile(0.99):>7.2f} {cpu_per_k:>8.3f}"
            )
        print(f"{'':>7} asyncpg/psycopg throughput: {rates['asyncpg'] / rates['psycopg']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
