"""The two engines behind ``TransactionalStore``, for one conformance suite to run on both.

A backend makes a fresh, empty ledger location (``fresh``) and opens any number of store
instances on one location (``open``): several instances on one location are what several
gateway processes on one database are. SQLite runs on a file in a temporary directory;
PostgreSQL on a new database of a private cluster (tests/support/postgres.py, about 0.2 s
per database).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Literal, Protocol

from rpcpay.ledger.pg_store import PostgresLedgerStore
from rpcpay.ledger.sqlite_async import ThreadedSqliteStore
from rpcpay.ledger.transactional import TransactionalStore
from tests.support.postgres import PostgresCluster


class StoreBackend(Protocol):
    name: str

    def fresh(self) -> str:
        """A new, empty ledger location."""
        ...

    async def open(self, location: str) -> TransactionalStore:
        """One more store instance on ``location``."""
        ...


class SqliteBackend:
    """``synchronous="full"`` commits on the store's thread; ``"normal"`` commits plain
    ``apply`` calls on the event loop's own connection (``sqlite_async``)."""

    def __init__(self, root: Path, synchronous: Literal["normal", "full"] = "full") -> None:
        self.root = root
        self.synchronous: Literal["normal", "full"] = synchronous
        self.name = "sqlite" if synchronous == "full" else "sqlite-normal"

    def fresh(self) -> str:
        return str(self.root / uuid.uuid4().hex / "ledger.sqlite3")

    async def open(self, location: str) -> TransactionalStore:
        return await ThreadedSqliteStore.open(Path(location), synchronous=self.synchronous)


class PostgresBackend:
    name = "postgres"

    def __init__(self, cluster: PostgresCluster, pool_size: int = 4) -> None:
        self.cluster = cluster
        self.pool_size = pool_size

    def fresh(self) -> str:
        return self.cluster.create_database("ledger_" + uuid.uuid4().hex[:16])

    async def open(self, location: str) -> TransactionalStore:
        return await PostgresLedgerStore.open(location, pool_size=self.pool_size)
