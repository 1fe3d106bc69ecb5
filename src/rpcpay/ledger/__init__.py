"""The credit ledger: monerod 0.18's per-client balance rules, stored durably.

- ``account``: the ``Account`` record and the rules as pure functions.
- ``store``: the ``LedgerStore`` protocol (SQLite now, PostgreSQL later).
- ``sqlite_store``: ``SqliteLedgerStore``.
- ``ledger``: ``Ledger``, the object the gateway calls.
- ``transactional``: the async seam for many processes on one ledger: a pure rule applied
  in one transaction (``TransactionalStore.apply``), and the ``ChequeBook``.
- ``sqlite_async``: ``ThreadedSqliteStore`` (SQLite on a thread of its own).
- ``pg_store``: ``PostgresLedgerStore`` (asyncpg; the optional ``rpcpay[postgres]`` extra,
  so it is not imported here).
- ``shared_ledger``: ``SharedLedger``, the ``Ledger``'s calls over a ``TransactionalStore``
  (not yet wired into the gateway).
"""

from rpcpay.ledger.account import (
    PENALTY_FOR_BAD_HASH,
    PENALTY_FOR_DUPLICATE,
    PENALTY_FOR_STALE,
    U64_MAX,
    Account,
    PaymentRefusal,
    PaymentResult,
    ShareOutcome,
    new_account,
)
from rpcpay.ledger.ledger import Ledger, LedgerTotals
from rpcpay.ledger.sqlite_store import SqliteLedgerStore
from rpcpay.ledger.store import LedgerStore

__all__ = [
    "PENALTY_FOR_BAD_HASH",
    "PENALTY_FOR_DUPLICATE",
    "PENALTY_FOR_STALE",
    "U64_MAX",
    "Account",
    "Ledger",
    "LedgerStore",
    "LedgerTotals",
    "PaymentRefusal",
    "PaymentResult",
    "ShareOutcome",
    "SqliteLedgerStore",
    "new_account",
]
