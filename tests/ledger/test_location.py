"""Choosing the ledger: a checked ``--ledger-url`` or the embedded SQLite default."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rpcpay.errors import ConfigError, LedgerError
from rpcpay.ledger.location import check_ledger_url, open_transactional_store, redacted
from rpcpay.ledger.pg_store import PostgresLedgerStore
from rpcpay.ledger.sqlite_async import ThreadedSqliteStore
from rpcpay.ledger.transactional import adjust_step
from tests.support.postgres import PostgresCluster


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("mysql://u@h/db", "must start with postgresql://"),
        ("u@h/db", "must start with postgresql://"),
        ("postgresql:///db", "names no host"),
        ("postgresql://u@/db?host=relative/dir", "names no host"),
        ("postgresql://u@/db?host=/a&host=/b", "names no host"),
        ("postgresql://u@h", "names no database"),
        ("postgresql://u@h/", "names no database"),
        ("postgresql://u@h:99999/db", "does not parse"),
        ("postgresql://u@[::1/db", "does not parse"),
    ],
)
def test_bad_urls_are_named(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        check_ledger_url(url)


def test_good_urls_pass() -> None:
    for url in (
        "postgresql://u@127.0.0.1:5432/ledger",
        "postgres://u:pw@db.example/ledger",
        "postgresql://u@/ledger?host=/run/postgresql&port=5433",  # this host's Unix socket
    ):
        assert check_ledger_url(url) == url


def test_passwords_never_reach_logs() -> None:
    assert redacted("postgresql://u:s3cret@h:5/db") == "postgresql://u:***@h:5/db"
    assert redacted("postgresql://u@h/db") == "postgresql://u@h/db"
    with pytest.raises(ConfigError) as err:
        check_ledger_url("postgresql://u:s3cret@h:99999/db")
    assert "s3cret" not in str(err.value)


async def test_without_a_url_the_ledger_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    store = await open_transactional_store(None, tmp_path)
    try:
        assert isinstance(store, ThreadedSqliteStore)
        assert (tmp_path / "ledger.sqlite3").exists()
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_url_opens_postgresql(postgres_cluster: PostgresCluster, tmp_path: Path) -> None:
    store = await open_transactional_store(postgres_cluster.create_database("loc"), tmp_path)
    try:
        assert isinstance(store, PostgresLedgerStore)
        assert await store.count() == 0
    finally:
        await store.close()
    with pytest.raises(LedgerError):
        await open_transactional_store(postgres_cluster.url("no_such_db"), tmp_path)


@pytest.mark.postgres
async def test_a_unix_socket_url_opens_postgresql(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    tcp = postgres_cluster.create_database("loc_socket")
    user = urlsplit(tcp).username
    url = (
        f"postgresql://{user}@/loc_socket?host={postgres_cluster.directory}"
        f"&port={postgres_cluster.port}"
    )
    store = await open_transactional_store(url, tmp_path)
    try:
        assert isinstance(store, PostgresLedgerStore)
        await store.apply(bytes(32), adjust_step(3), now=1)
        # The same database as over TCP.
        other = await open_transactional_store(tcp, tmp_path)
        try:
            acct = await other.get(bytes(32))
            assert acct is not None and acct.balance == 3
        finally:
            await other.close()
    finally:
        await store.close()
