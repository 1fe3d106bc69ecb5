"""Subprocess for test_crash: applies ledger changes forever, acknowledging each.

Usage: crash_worker.py DB_PATH SYNC CLIENTS

Operation n goes to client n % CLIENTS; a client's k-th operation is a payment of 1
when k % 4 == 3, otherwise a good share worth 3 credits. After each call returns, the
line "n balance" is printed and flushed: that is the acknowledgement a client would get.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rpcpay.ledger.account import ShareOutcome
from rpcpay.ledger.ledger import Ledger
from rpcpay.ledger.sqlite_store import SqliteLedgerStore

CREDIT = 3
PRICE = 1


def client_key(c: int) -> bytes:
    return (c + 1).to_bytes(32, "big")


def balance_after(k: int) -> int:
    """A client's balance after its operations 0..k (k = -1: none)."""
    n = k + 1
    pays = n // 4
    return (n - pays) * CREDIT - pays * PRICE


def main() -> None:
    path, sync, clients = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    store = SqliteLedgerStore(path, synchronous="full" if sync == "full" else "normal")
    ledger = Ledger(store)
    n = 0
    while True:
        c, k = n % clients, n // clients
        if k % 4 == 3:
            result = ledger.pay(client_key(c), n + 1, PRICE)
            assert result.ok
            balance = result.credits
        else:
            balance = ledger.record_share(client_key(c), ShareOutcome.GOOD, CREDIT).balance
        print(n, balance, flush=True)
        n += 1


if __name__ == "__main__":
    main()
