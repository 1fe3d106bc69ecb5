"""SqliteLedgerStore: round trips, u64 edges, files, schema version, errors."""

from __future__ import annotations

import sqlite3
import stat
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest

from rpcpay.errors import LedgerError
from rpcpay.ledger.account import U64_MAX, Account, new_account
from rpcpay.ledger.sqlite_store import (
    SCHEMA_VERSION,
    ChequeRow,
    SqliteLedgerStore,
    decode_u64,
    encode_u64,
)


def key(i: int) -> bytes:
    return i.to_bytes(32, "big")


def sample(i: int, value: int = 5) -> Account:
    return Account(key(i), value, value + 1, value + 2, 3, 4, 5, 6, 7_000_000 + i, 8 + i)


@pytest.fixture(params=["full", "normal"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SqliteLedgerStore:
    mode: Literal["normal", "full"] = request.param
    s = SqliteLedgerStore(tmp_path / "data" / "ledger.sqlite3", synchronous=mode)
    request.addfinalizer(s.close)
    return s


@pytest.mark.parametrize("value", [0, 1, 2**63 - 1, 2**63, 2**64 - 2, U64_MAX])
def test_u64_encoding_round_trips_within_i64(value: int) -> None:
    stored = encode_u64(value)
    assert -(2**63) <= stored <= 2**63 - 1
    assert decode_u64(stored) == value


def test_small_values_are_stored_as_themselves() -> None:
    assert encode_u64(12345) == 12345
    assert encode_u64(U64_MAX) == -1


def test_save_load(store: SqliteLedgerStore) -> None:
    assert store.load(key(1)) is None
    store.save(sample(1))
    assert store.load(key(1)) == sample(1)
    assert store.count() == 1


def test_save_replaces(store: SqliteLedgerStore) -> None:
    store.save(sample(1, 5))
    store.save(sample(1, 9))
    assert store.load(key(1)) == sample(1, 9)
    assert store.count() == 1


def test_every_field_round_trips_u64_max(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    s = SqliteLedgerStore(path)
    big = Account(key(7), *([U64_MAX] * 9))
    mid = Account(key(8), *([2**63] * 9))
    s.save_many([big, mid])
    s.close()
    s = SqliteLedgerStore(path)
    assert s.load(key(7)) == big
    assert s.load(key(8)) == mid
    s.close()


def test_save_many_delete_iter(store: SqliteLedgerStore) -> None:
    store.save_many(sample(i) for i in range(10))
    assert store.count() == 10
    store.delete([key(2), key(3), key(99)])
    assert sorted(a.client for a in store.iter_accounts()) == [
        key(i) for i in range(10) if i not in (2, 3)
    ]
    store.delete([])
    store.save_many([])
    assert store.count() == 8


def test_save_many_is_all_or_nothing(store: SqliteLedgerStore) -> None:
    store.save(sample(1, 1))
    # A 31-byte key violates the table's CHECK and must roll the whole batch back.
    bogus = Account.__new__(Account)
    for name, value in zip(Account.__slots__, (bytes(31), *([0] * 9)), strict=True):
        object.__setattr__(bogus, name, value)
    with pytest.raises(LedgerError):
        store.save_many([sample(1, 50), sample(2), bogus])
    assert store.load(key(1)) == sample(1, 1)
    assert store.load(key(2)) is None
    # The store is still usable afterwards.
    store.save(sample(2))
    assert store.count() == 2


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    s = SqliteLedgerStore(path)
    s.save(sample(1))
    s.close()
    s.close()  # idempotent
    s = SqliteLedgerStore(path, synchronous="normal")
    assert s.load(key(1)) == sample(1)
    s.close()


def test_wal_and_sync_mode(tmp_path: Path) -> None:
    for mode, level in (("full", 2), ("normal", 1)):
        s = SqliteLedgerStore(tmp_path / f"{mode}.db", synchronous=mode)  # type: ignore[arg-type]
        db = s._conn()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == level
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        s.close()


def test_rejects_unknown_sync_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteLedgerStore(tmp_path / "x.db", synchronous="off")  # type: ignore[arg-type]


def test_files_are_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "a" / "data"
    s = SqliteLedgerStore(data / "ledger.db")
    s.save(sample(1))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    s.close()


def test_unknown_schema_version_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    SqliteLedgerStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="schema version"):
        SqliteLedgerStore(path)


def test_not_a_database_is_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError):
        SqliteLedgerStore(path)


def test_unopenable_path_is_ledger_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LedgerError):
        SqliteLedgerStore(blocker / "ledger.db")


def test_use_after_close_is_ledger_error(tmp_path: Path) -> None:
    s = SqliteLedgerStore(tmp_path / "l.db")
    s.close()
    with pytest.raises(LedgerError):
        s.save(new_account(key(1), 0))
    with pytest.raises(LedgerError):
        s.load(key(1))
    with pytest.raises(LedgerError):
        list(s.iter_accounts())
    with pytest.raises(LedgerError):
        s.count()


def test_write_failure_is_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    s = SqliteLedgerStore(path)
    # Another connection holding the write lock makes our write fail (after the timeout).
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    s._conn().execute("PRAGMA busy_timeout = 0")
    with pytest.raises(LedgerError):
        s.save(sample(1))
    with pytest.raises(LedgerError):
        s.save_many([sample(2)])
    other.execute("ROLLBACK")
    other.close()
    assert s.count() == 0
    s.close()


def _cheque_row(client: bytes | None, n: int = 1) -> ChequeRow:
    return ChequeRow(bytes([n]) * 32, b"\x02" * 32, b"w" * 274, client, 10, 500, 1)


def test_cheque_and_balance_commit_together_and_only_once(tmp_path: Path) -> None:
    store = SqliteLedgerStore(tmp_path / "l.db")
    key = b"\x01" * 32
    first = replace(new_account(key, 0), balance=10, credits_total=10)
    assert store.save_with_cheque(first, _cheque_row(key)) is True
    doubled = replace(first, balance=20, credits_total=20)
    assert store.save_with_cheque(doubled, _cheque_row(key)) is False
    assert store.hold_cheque(_cheque_row(None)) is False
    assert store.hold_cheque(_cheque_row(None, 2)) is True
    store.close()
    store = SqliteLedgerStore(tmp_path / "l.db")
    assert store.load(key) == first
    assert [r.client for r in store.cheques_of(b"\x02" * 32)] in ([key, None], [None, key])
    assert store.open_lotteries() == [(b"\x02" * 32, 500)]
    store.close_lottery(b"\x02" * 32, "lost")
    assert store.open_lotteries() == [] and store.outcomes() == {b"\x02" * 32: "lost"}
    store.close()


def test_version_1_file_gains_the_cheques_table(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    SqliteLedgerStore(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE cheques")
    db.execute("DROP TABLE nonces")
    db.execute("DROP TABLE leases")
    for table in ("sessions", "jobs", "templates"):
        db.execute(f"DROP TABLE {table}")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = SqliteLedgerStore(path)
    assert store.hold_cheque(_cheque_row(None)) is True
    store.close()


def test_version_2_file_gains_the_nonces_and_leases_tables(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    store = SqliteLedgerStore(path)
    store.save(sample(1))
    store.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE nonces")
    db.execute("DROP TABLE leases")
    for table in ("sessions", "jobs", "templates"):
        db.execute(f"DROP TABLE {table}")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    store = SqliteLedgerStore(path)
    assert store.load(key(1)) == sample(1)
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert db.execute("SELECT count(*) FROM nonces").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    db.close()


def test_version_3_file_gains_the_shared_sessions(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    store = SqliteLedgerStore(path)
    store.save(sample(1))
    store.close()
    db = sqlite3.connect(path)
    for table in ("sessions", "jobs", "templates"):
        db.execute(f"DROP TABLE {table}")
    db.execute("DROP INDEX nonces_by_expiry")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    store = SqliteLedgerStore(path)
    assert store.load(key(1)) == sample(1)
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
    db.close()


def test_a_held_cheque_is_credited_once_or_withheld(store: SqliteLedgerStore) -> None:
    """Issue 9: a cheque held by the payee's pace is recorded (pending) without credit,
    then credited once, in the same transaction as the account, or withheld for good."""
    from rpcpay.ledger.sqlite_store import ChequeRow

    def row(n: int) -> ChequeRow:
        return ChequeRow(bytes([n]) * 32, b"\x01" * 32, b"w", key(1), 10, 99, 1_000)

    assert store.hold_pending(row(1)) and store.hold_pending(row(2))
    assert not store.hold_pending(row(1))  # a replay
    assert [r.cheque_id for r in store.pending_cheques()] == [row(1).cheque_id, row(2).cheque_id]
    assert store.load(key(1)) is None  # nothing credited yet
    assert store.open_lotteries() == [(b"\x01" * 32, 99)]  # it still counts as ours
    credited = replace(sample(1), balance=10)
    assert store.credit_pending(credited, row(1).cheque_id)
    assert not store.credit_pending(replace(credited, balance=20), row(1).cheque_id)  # once
    loaded = store.load(key(1))
    assert loaded is not None and loaded.balance == 10
    store.withhold_pending(row(2).cheque_id, "withheld")
    assert not store.credit_pending(replace(credited, balance=20), row(2).cheque_id)
    assert store.pending_cheque(row(2).cheque_id) is None and store.pending_cheques() == []
    loaded = store.load(key(1))
    assert loaded is not None and loaded.balance == 10
