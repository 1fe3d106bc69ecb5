"""The credit ledger: monerod 0.18's per-client balance rules, stored durably and shared by
every gateway process.

- ``account``: the ``Account`` record and the rules as pure functions.
- ``transactional``: the store seam: a pure rule applied in one transaction
  (``TransactionalStore.apply``), the ``ChequeBook``, nonce rows, and shared sessions.
- ``sqlite_store``: the SQLite file's layout and synchronous access (``SqliteLedgerStore``).
- ``sqlite_async``: ``ThreadedSqliteStore`` (that file on a thread of its own; the default).
- ``pg_store``: ``PostgresLedgerStore`` (asyncpg; the optional ``rpcpay[postgres]`` extra,
  so it is not imported here).
- ``session_rows``, ``sqlite_sessions``, ``pg_sessions``: clients' hashing sessions and jobs.
- ``shared_ledger``: ``SharedLedger``, what the gateway calls (``pay``, ``claim``, ...).
- ``location``, ``store_setup``: ``--ledger-url`` checked and opened.
- ``cheque_bridge``: the lottery desk's interim synchronous ledger on the SQLite file.
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
from rpcpay.ledger.shared_ledger import LedgerTotals, SharedLedger
from rpcpay.ledger.sqlite_store import SqliteLedgerStore
from rpcpay.ledger.transactional import TransactionalStore

__all__ = [
    "PENALTY_FOR_BAD_HASH",
    "PENALTY_FOR_DUPLICATE",
    "PENALTY_FOR_STALE",
    "U64_MAX",
    "Account",
    "LedgerTotals",
    "PaymentRefusal",
    "PaymentResult",
    "ShareOutcome",
    "SharedLedger",
    "SqliteLedgerStore",
    "TransactionalStore",
    "new_account",
]
