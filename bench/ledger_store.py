"""The ledger's cost per charge on each store, against the former synchronous SQLite path.

Reference ("sqlite-sync"): what the gateway did until issue 11 (its ``Ledger``), the pure rule
plus ``SqliteLedgerStore.load``/``save`` called straight from the event loop. Measured against
it, in the same run, with rounds alternating which store goes first:

- "sqlite-thread": ``ThreadedSqliteStore.apply`` (the same file engine, on its own thread,
  in one ``BEGIN IMMEDIATE`` transaction);
- "postgres": ``PostgresLedgerStore.apply`` (asyncpg, one compare-and-set statement over the
  store's row cache, ``pg_cas``) on a private cluster (``fsync`` on);
- "postgres-ref" (with ``--postgres-reference FILE``): another version of ``pg_store.py``
  (e.g. ``git show b8b34b0:src/rpcpay/ledger/pg_store.py > /tmp/ref.py``, the locking
  path), on the same cluster, for a before/after in one run.

Each cell runs N concurrent charging tasks (each on its own clients) for a bounded time and
count. Reported per store and concurrency: charges/s, p50 and p99 latency per charge, the
process's CPU per 1,000 charges, and the event loop's longest stall (a 1 ms ticker's worst
lateness): the synchronous path blocks the loop for every commit.

    .venv/bin/python bench/ledger_store.py                  # 2 rounds of 2 s per cell
    .venv/bin/python bench/ledger_store.py --sync full --rounds 3 --seconds 3
    .venv/bin/python bench/ledger_store.py --postgres-reference /tmp/ref.py --tasks 1,16
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[1]
for _extra in (REPO, REPO / "src"):
    if str(_extra) not in sys.path:
        sys.path.append(str(_extra))

from tests.support.postgres import start_postgres  # noqa: E402

from rpcpay.ledger import account as rules  # noqa: E402
from rpcpay.ledger.pg_store import PostgresLedgerStore  # noqa: E402
from rpcpay.ledger.sqlite_async import ThreadedSqliteStore  # noqa: E402
from rpcpay.ledger.sqlite_store import SqliteLedgerStore  # noqa: E402
from rpcpay.ledger.transactional import adjust_step, pay_step  # noqa: E402

CLIENTS = 64
MAX_CHARGES_PER_CELL = 200_000
T0 = 1_700_000_000

Charge = Callable[[bytes, int], Awaitable[None]]
Opened = tuple[Charge, Callable[[], Awaitable[None]]]


@dataclass(frozen=True, slots=True)
class Cell:
    store: str
    tasks: int
    latencies_ms: list[float]
    seconds: float
    cpu_s: float
    stall_ms: float

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds


def percentile(data: list[float], q: float) -> float:
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def sync_sqlite(
    path: Path, sync: Literal["normal", "full"]
) -> tuple[Charge, Callable[[], Awaitable[None]]]:
    store = SqliteLedgerStore(path, synchronous=sync)

    async def charge(client: bytes, ts: int) -> None:
        acct = store.load(client) or rules.new_account(client, T0)
        new, result = rules.apply_payment(acct, ts, 1)
        assert result.ok
        store.save(new)

    async def close() -> None:
        store.close()

    return charge, close


async def threaded_sqlite(
    path: Path, sync: Literal["normal", "full"]
) -> tuple[Charge, Callable[[], Awaitable[None]]]:
    store = await ThreadedSqliteStore.open(path, synchronous=sync)

    async def charge(client: bytes, ts: int) -> None:
        assert (await store.apply(client, pay_step(ts, 1), now=T0)).outcome.ok

    return charge, store.close


async def postgres(
    url: str, tasks: int, store_class: type[PostgresLedgerStore] = PostgresLedgerStore
) -> tuple[Charge, Callable[[], Awaitable[None]]]:
    store = await store_class.open(url, pool_size=max(tasks, 1))

    async def charge(client: bytes, ts: int) -> None:
        assert (await store.apply(client, pay_step(ts, 1), now=T0)).outcome.ok

    return charge, store.close


async def fund(url: str, path: Path) -> None:
    """Give every bench client credits, through the transactional stores' own seam."""
    store = await PostgresLedgerStore.open(url)
    for i in range(CLIENTS):
        await store.apply(i.to_bytes(32, "big"), adjust_step(2**62), now=T0)
    await store.close()
    sq = await ThreadedSqliteStore.open(path)
    for i in range(CLIENTS):
        await sq.apply(i.to_bytes(32, "big"), adjust_step(2**62), now=T0)
    await sq.close()


async def run_cell(name: str, charge: Charge, tasks: int, seconds: float) -> Cell:
    keys = [i.to_bytes(32, "big") for i in range(CLIENTS)]
    latencies: list[float] = []
    ts = [time.time_ns() // 1000]
    stall = [0.0]
    deadline = time.perf_counter() + seconds
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            stall[0] = max(stall[0], (time.perf_counter() - t) * 1000 - 1)

    async def worker(index: int) -> None:
        mine = keys[index::tasks]
        i = 0
        while time.perf_counter() < deadline and len(latencies) < MAX_CHARGES_PER_CELL:
            ts[0] += 1
            t0 = time.perf_counter()
            await charge(mine[i % len(mine)], ts[0])
            latencies.append((time.perf_counter() - t0) * 1000)
            i += 1
            # Yield between charges, as a server does between requests.
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    done.set()
    await tick
    return Cell(name, tasks, latencies, elapsed, cpu, stall[0])


def load_reference(path: Path) -> type[PostgresLedgerStore]:
    """``PostgresLedgerStore`` from another version of ``pg_store.py``."""
    spec = importlib.util.spec_from_file_location("pg_store_reference", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store_class: type[PostgresLedgerStore] = module.PostgresLedgerStore
    return store_class


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per cell (default 2)")
    parser.add_argument("--tasks", default="1,8", help="concurrency levels (default 1,8)")
    parser.add_argument(
        "--sync", choices=["normal", "full"], default="normal",
        help="SQLite synchronous level for both SQLite stores (default normal, the gateway's)",
    )  # fmt: skip
    parser.add_argument(
        "--postgres-reference", type=Path, metavar="FILE",
        help="also measure the PostgresLedgerStore of this pg_store.py (\"postgres-ref\")",
    )  # fmt: skip
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.tasks.split(",")]
    sync: Literal["normal", "full"] = args.sync
    results: dict[tuple[str, int], list[Cell]] = {}
    with tempfile.TemporaryDirectory(prefix="rpcpay-bench-") as tmp, start_postgres() as pg:
        path = Path(tmp) / "ledger.sqlite3"
        url = pg.create_database("bench")
        asyncio.run(fund(url, path))
        makers: dict[str, Callable[[int], Awaitable[Opened]]] = {
            "sqlite-sync": lambda _n: sync_sqlite(path, sync),
            "sqlite-thread": lambda _n: threaded_sqlite(path, sync),
            "postgres": lambda n: postgres(url, n),
        }  # fmt: skip
        if args.postgres_reference is not None:
            ref_class = load_reference(args.postgres_reference)
            makers["postgres-ref"] = lambda n: postgres(url, n, ref_class)
        order = list(makers)
        print(f"ledger_store: SQLite synchronous={sync}, PostgreSQL on 127.0.0.1:{pg.port}")
        for rnd in range(args.rounds):
            for name in order if rnd % 2 == 0 else list(reversed(order)):
                for tasks in levels:

                    async def one(name: str = name, tasks: int = tasks) -> Cell:
                        charge, close = await makers[name](tasks)
                        try:
                            return await run_cell(name, charge, tasks, args.seconds)
                        finally:
                            await close()

                    cell = asyncio.run(one())
                    results.setdefault((name, tasks), []).append(cell)
                    print(f"  round {rnd + 1} {name:13} {tasks:2} tasks: {cell.rate:7.0f}/s",
                          flush=True)  # fmt: skip
    print()
    print(f"{'tasks':>5} {'store':13} {'charges/s':>9} {'ratio':>6} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'CPU ms/1k':>9} {'stall ms':>8}")  # fmt: skip
    for tasks in levels:
        reference = statistics.median(c.rate for c in results[("sqlite-sync", tasks)])
        for name in makers:
            cells = results[(name, tasks)]
            rate = statistics.median(c.rate for c in cells)
            lat = [x for c in cells for x in c.latencies_ms]
            cpu = sum(c.cpu_s for c in cells) / len(lat) * 1e6
            stall = max(c.stall_ms for c in cells)
            print(f"{tasks:>5} {name:13} {rate:>9.0f} {rate / reference:>5.2f}x "
                  f"{percentile(lat, 0.5):>7.3f} {percentile(lat, 0.99):>7.3f} {cpu:>9.1f} "
                  f"{stall:>8.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
