"""Opening the gateway's ledger from its settings, with one-line errors.

``--ledger-url`` unset: the embedded SQLite file in ``--data-dir`` (``ThreadedSqliteStore``),
so the README's first command needs no server. Set: the shared PostgreSQL database
(``PostgresLedgerStore``, ``--ledger-pool-size`` connections per process). Either store
creates its schema, or migrates an older one in place, with the version recorded
(SQLite: ``PRAGMA user_version``; PostgreSQL: ``rpcpay_schema``), before the gateway
listens. A bad URL, a database that cannot be reached, or a schema from a newer rpcpay is a
``ConfigError`` naming the problem, which ``rpcpay serve`` prints as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from rpcpay.errors import ConfigError, LedgerError
from rpcpay.ledger.location import check_ledger_url, open_transactional_store, redacted
from rpcpay.ledger.transactional import TransactionalStore

MAX_POOL_SIZE = 1000


def check_ledger_settings(ledger_url: str | None, pool_size: int, lottery: bool) -> None:
    """Refuse ledger settings that cannot work, before anything is opened."""
    # A pool needs a connection, and more than a server would accept is a typo.
    if not 1 <= pool_size <= MAX_POOL_SIZE:
        raise ConfigError(f"--ledger-pool-size must be between 1 and {MAX_POOL_SIZE}")
    if ledger_url is None:
        return
    check_ledger_url(ledger_url)
    # The lottery desk still writes the SQLite file directly (it moves onto the shared
    # cheque book next); on PostgreSQL its credits would not be shared.
    if lottery:
        raise ConfigError("--lottery-contract needs the SQLite ledger for now (no --ledger-url)")


async def open_gateway_store(
    ledger_url: str | None,
    data_dir: Path,
    synchronous: Literal["normal", "full"],
    pool_size: int,
    queue_timeout_s: float = 5.0,
    max_waiters: int = 64,
) -> TransactionalStore:
    """The store the settings name, schema ready; ``ConfigError`` if it cannot be used."""
    try:
        return await open_transactional_store(
            ledger_url,
            data_dir,
            synchronous=synchronous,
            pool_size=pool_size,
            queue_timeout_s=queue_timeout_s,
            max_waiters=max_waiters,
        )
    except LedgerError as exc:
        where = redacted(ledger_url) if ledger_url else str(data_dir / "ledger.sqlite3")
        # asyncpg's messages can span lines; the operator gets one.
        reason = " ".join(str(exc).split())
        raise ConfigError(f"ledger {where} is not usable: {reason}") from None
