"""``rpcpay serve --ledger-url``: the store the gateway runs on, chosen and prepared at start.

SQLite in ``--data-dir`` stays the default and migrates the file of an older release in
place; a PostgreSQL URL makes every instance's admin listener show the one shared ledger;
a bad URL or an unreachable server is one line at start-up, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rpcpay.gateway.server import start_gateway
from rpcpay.ledger.account import Account
from rpcpay.ledger.sqlite_store import SCHEMA_VERSION, account_to_row
from rpcpay.testing import ToyBackend
from rpcpay.wallet.keys import ClientKey
from tests.gateway.conftest import gateway_config, post, rpc
from tests.support.monerod import free_port
from tests.support.postgres import PostgresCluster, start_postgres
from tests.test_startup_errors import assert_one_clear_line, serve

RPCPAY = [sys.executable, "-m", "rpcpay"]

# The layout of a release-2 ledger file (accounts and cheques, user_version 2), as that
# release's SqliteLedgerStore created it.
_RELEASE_2 = (
    """CREATE TABLE accounts (
        client BLOB PRIMARY KEY NOT NULL CHECK (length(client) = 32),
        balance INTEGER NOT NULL, credits_total INTEGER NOT NULL,
        credits_used INTEGER NOT NULL, nonces_good INTEGER NOT NULL,
        nonces_stale INTEGER NOT NULL, nonces_bad INTEGER NOT NULL,
        nonces_dupe INTEGER NOT NULL, last_request_timestamp_us INTEGER NOT NULL,
        update_time INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE cheques (
        cheque_id BLOB PRIMARY KEY NOT NULL CHECK (length(cheque_id) = 32),
        lottery BLOB NOT NULL CHECK (length(lottery) = 32), wire BLOB NOT NULL, client BLOB,
        credits INTEGER NOT NULL, reveal_block INTEGER NOT NULL, received INTEGER NOT NULL,
        outcome TEXT) WITHOUT ROWID""",
    "CREATE INDEX cheques_by_lottery ON cheques (lottery)",
    "PRAGMA user_version = 2",
)


@pytest.fixture(scope="module")
def postgres_cluster() -> Iterator[PostgresCluster]:
    with start_postgres() as cluster:
        yield cluster


async def payments(admin_port: int) -> dict[str, object]:
    """``rpcpay payments --json`` against an admin listener, as an operator runs it (in a
    subprocess that does not block this loop, which serves the gateways)."""
    proc = await asyncio.create_subprocess_exec(
        *RPCPAY, "payments", "--admin", f"http://127.0.0.1:{admin_port}", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    answer: dict[str, object] = json.loads(out)
    return answer


async def fund(admin_port: int, key: ClientKey, amount: int) -> int:
    body = rpc("rpc_access_account", {"client": key.public.hex(), "delta_balance": amount})
    _, answer = await post(admin_port, "/json_rpc", body)
    return int(answer["result"]["credits"])


def test_a_url_that_is_not_postgresql_is_one_line(tmp_path: Path) -> None:
    done = serve(tmp_path, "--ledger-url", "mysql://u@127.0.0.1:3306/ledger")
    assert_one_clear_line(done, "--ledger-url", "postgresql://")


def test_a_url_without_a_database_is_one_line(tmp_path: Path) -> None:
    done = serve(tmp_path, "--ledger-url", "postgresql://u@127.0.0.1:5432")
    assert_one_clear_line(done, "names no database")


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://u:secret@127.0.0.1:{free_port()}/ledger"
    done = serve(tmp_path, "--ledger-url", url)
    assert_one_clear_line(done, "not usable", "u:***@127.0.0.1")
    assert "secret" not in done.stderr


def test_the_url_may_come_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "rpcpay.toml"
    config.write_text('ledger-url = "postgresql://u@127.0.0.1:5432"\nledger-pool-size = 4\n')
    done = serve(tmp_path, "--config", str(config))
    assert_one_clear_line(done, "names no database")


def test_the_lottery_needs_sqlite_for_now(tmp_path: Path) -> None:
    done = serve(
        tmp_path,
        "--ledger-url",
        "postgresql://u@127.0.0.1:5432/ledger",
        "--lottery-contract",
        "0x" + "11" * 20,
        "--lottery-chain-url",
        "http://127.0.0.1:8545",
    )
    assert_one_clear_line(done, "--lottery-contract needs the SQLite ledger")


def test_pool_size_is_explained_and_checked(tmp_path: Path) -> None:
    help_text = subprocess.run([*RPCPAY, "serve", "--help"], capture_output=True, text=True)
    flat = " ".join(help_text.stdout.split())
    assert "--ledger-pool-size N" in flat and "--ledger-url URL" in flat
    assert "max_connections" in flat and "SQLite in --data-dir" in flat
    done = serve(tmp_path, "--ledger-pool-size", "0")
    assert done.returncode == 2 and "--ledger-pool-size" in done.stderr


async def test_a_release_2_sqlite_ledger_is_migrated_in_place(
    tmp_path: Path, toy_backend: ToyBackend
) -> None:
    """The ledger file of the current release keeps every balance through the upgrade."""
    data_dir = tmp_path / "gw"
    data_dir.mkdir(mode=0o700)
    path = data_dir / "ledger.sqlite3"
    key = ClientKey()
    db = sqlite3.connect(path)
    for sql in _RELEASE_2:
        db.execute(sql)
    rich = Account(key.public, 1234, 2000, 766, 40, 1, 2, 3, 1_700_000_000_000_000, 1_700_000_000)
    db.execute("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", account_to_row(rich))
    db.commit()
    db.close()
    running = await start_gateway(gateway_config(toy_backend.url, data_dir))
    try:
        assert await running.ledger.get(key.public) == rich
        assert await fund(running.admin_port, key, 1) == 1235
    finally:
        await running.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


@pytest.mark.postgres
async def test_every_admin_listener_shows_the_whole_shared_ledger(
    tmp_path: Path, toy_backend: ToyBackend, postgres_cluster: PostgresCluster
) -> None:
    url = postgres_cluster.create_database("gw_" + uuid.uuid4().hex[:12])
    first = await start_gateway(gateway_config(toy_backend.url, tmp_path / "a", ledger_url=url))
    second = await start_gateway(
        gateway_config(toy_backend.url, tmp_path / "b", ledger_url=url, ledger_pool_size=2)
    )
    try:
        alice, bob = ClientKey(), ClientKey()
        assert await fund(first.admin_port, alice, 100) == 100
        assert await fund(second.admin_port, bob, 7) == 7
        # Each instance sees the other's grant: one ledger, not two.
        assert await fund(second.admin_port, alice, 1) == 101
        for admin_port in (first.admin_port, second.admin_port):
            entries = (await payments(admin_port))["entries"]
            assert isinstance(entries, list)
            assert {(e["client"], e["balance"]) for e in entries} == {
                (alice.public.hex(), 101),
                (bob.public.hex(), 7),
            }
    finally:
        await second.close()
        await first.close()
    postgres_cluster.psql("SELECT 1")
    version = postgres_cluster.psql("SELECT max(version) FROM rpcpay_schema", url.rsplit("/", 1)[1])
    assert version.strip().isdigit()


async def test_a_ledger_file_of_the_previous_version_is_migrated_in_place(
    tmp_path: Path, toy_backend: ToyBackend
) -> None:
    """tests/ledger/data/ledger-v3.sqlite3 was written by the SqliteLedgerStore of the
    release before the shared sessions (schema 3): two accounts (one at u64 max) and a
    credited cheque. The gateway opens it, keeps all of it, and adds the session tables."""
    data_dir = tmp_path / "gw"
    data_dir.mkdir(mode=0o700)
    path = data_dir / "ledger.sqlite3"
    path.write_bytes(
        (Path(__file__).parents[1] / "ledger" / "data" / "ledger-v3.sqlite3").read_bytes()
    )
    path.chmod(0o600)
    running = await start_gateway(gateway_config(toy_backend.url, data_dir))
    try:
        first = await running.ledger.get(bytes([1]) * 32)
        assert first == Account(bytes([1]) * 32, 1234, 2000, 766, 40, 1, 2, 3,
                                1_700_000_000_000_000, 1_700_000_000)  # fmt: skip
        rich = await running.ledger.get(bytes([2]) * 32)
        assert rich is not None and rich.balance == 2**64 - 1
        # The new tables work: a client gets a job, kept in the ledger.
        key = ClientKey()
        _, answer = await post(running.public_port, "/json_rpc",
                               rpc("rpc_access_info", {"client": key.client_id()}))  # fmt: skip
        assert answer["result"]["cookie"] == 1
        assert await running.core.payment.sessions.count() == 1
    finally:
        await running.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert db.execute("SELECT count(*) FROM cheques").fetchone()[0] == 1
    db.close()
