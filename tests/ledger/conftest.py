"""``make_store``: the conformance suite's one fixture, over SQLite and PostgreSQL.

Each test gets a fresh ledger location; ``await make_store()`` opens one more store
instance on it (call it twice for two "gateway processes" on one database, or after a
``close`` for a restart). Every instance is closed at the end of the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from rpcpay.ledger.transactional import TransactionalStore
from tests.support.ledger_stores import PostgresBackend, SqliteBackend, StoreBackend
from tests.support.postgres import PostgresCluster, start_postgres

MakeStore = Callable[[], Awaitable[TransactionalStore]]


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One private PostgreSQL cluster for the session (each test makes its own database)."""
    with start_postgres() as cluster:
        yield cluster


@pytest.fixture(
    params=["sqlite", "sqlite-normal", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    if request.param == "sqlite":
        return SqliteBackend(tmp_path)
    if request.param == "sqlite-normal":
        return SqliteBackend(tmp_path, "normal")
    return PostgresBackend(request.getfixturevalue("postgres_cluster"))


@pytest.fixture
async def make_store(store_backend: StoreBackend) -> AsyncIterator[MakeStore]:
    location = store_backend.fresh()
    opened: list[TransactionalStore] = []

    async def make() -> TransactionalStore:
        store = await store_backend.open(location)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()
