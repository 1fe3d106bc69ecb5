"""Subprocess for test_crash: applies ledger changes forever (``SharedLedger`` on the
SQLite file, as the gateway), acknowledging each.

Usage: crash_worker.py DB_PATH SYNC CLIENTS

Operation n goes to client n % CLIENTS; a client's k-th operation is a payment of 1
when k % 4 == 3, otherwise a good share worth 3 credits. After each call returns, the
line "n balance" is printed and flushed: that is the acknowledgement a client would get.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from rpcpay.ledger.account import ShareOutcome
from rpcpay.ledger.shared_ledger import SharedLedger
from rpcpay.ledger.sqlite_async import ThreadedSqliteStore

CREDIT = 3
PRICE = 1


def client_key(c: int) -> bytes:
    return (c + 1).to_bytes(32, "big")


def balance_after(k: int) -> int:
    """A client's balance after its operations 0..k (k = -1: none)."""
    n = k + 1
    pays = n // 4
    return (n - pays) * CREDIT - pays * PRICE


async def run(path: Path, sync: str, clients: int) -> None:
    store = await ThreadedSqliteStore.open(path, synchronous="full" if sync == "full" else "normal")
    ledger = SharedLedger(store)
    n = 0
    while True:
        c, k = n % clients, n // clients
        if k % 4 == 3:
            result = await ledger.pay(client_key(c), n + 1, PRICE)
            assert result.ok
            balance = result.credits
        else:
            account = await ledger.record_share(client_key(c), ShareOutcome.GOOD, CREDIT)
            balance = account.balance
        print(n, balance, flush=True)
        n += 1


def main() -> None:
    asyncio.run(run(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))


if __name__ == "__main__":
    main()
