"""The stamper's durable record of every range it stamped, behind a small protocol.

The one property that matters: a stamp is returned only after its range is
committed, and a range, once committed, is seen by every later request, across
restarts and ``kill -9``. Then the stamper never stamps an overlap, and an overlap
is the only thing that can cost it its deposit.

``SqliteStampStore`` keeps it in one SQLite file (WAL). ``stamp`` runs in one
``BEGIN IMMEDIATE`` transaction: the write lock is taken before the overlap check,
so even two stamper processes pointed at the same file by mistake cannot both stamp
a range. Durability is ``synchronous=FULL`` by default: a commit is fsynced before
the stamp leaves, so it survives a power cut too (``normal`` survives a crash of the
process, not of the machine; a lost stamp record can cost the whole deposit, so the
stamper defaults to the safe side, unlike the gateway's ledger).

Layout: ``stamps`` keyed by ``(lottery, start)``; ``start`` and ``end`` are 16-byte
big-endian BLOBs (prizes are below 2^128), which SQLite compares bytewise, i.e. as
numbers. Stored ranges never overlap, so the ranges overlapping ``[s, e)`` are the
ones with ``start < e``, walked down from the largest start while ``end > s``: one
index descent. ``lotteries`` keeps each lottery's stamped total, checked against
the prize in the same transaction (``OVERSPEND``; with disjoint ranges inside the
space it cannot trigger, it is the last line of defence). ``meta`` binds the file to
one chain, contract and stamper: lottery ids of the same terms are equal across
chains, so a file must never serve two.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from rpcpay.errors import StampStoreError
from rpcpay.lottery.cheque import MAX_PRIZE, Cheque, Domain
from rpcpay.lottery.eip712 import cheque_hash
from rpcpay.lottery.stamper import (
    Conflict,
    Fresh,
    Repeat,
    StampRecord,
    judge_overlaps,
)

__all__ = [
    "LotteryUsage",
    "Overspend",
    "SqliteStampStore",
    "StampStore",
    "Stored",
]

SCHEMA_VERSION = 1
_NUM = 16  # bytes of a stored ticket number

_SCHEMA = (
    """CREATE TABLE meta (
        key TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE stamps (
        lottery BLOB NOT NULL CHECK (length(lottery) = 32),
        start BLOB NOT NULL CHECK (length(start) = 16),
        end BLOB NOT NULL CHECK (length(end) = 16 AND end > start),
        recipient BLOB NOT NULL CHECK (length(recipient) = 20),
        cheque_id BLOB NOT NULL UNIQUE CHECK (length(cheque_id) = 32),
        payer_sig BLOB NOT NULL CHECK (length(payer_sig) = 65),
        stamp_sig BLOB NOT NULL CHECK (length(stamp_sig) = 65),
        fee INTEGER NOT NULL CHECK (fee IN (0, 1)),
        stamped_at INTEGER NOT NULL,
        PRIMARY KEY (lottery, start)
    ) WITHOUT ROWID""",
    """CREATE TABLE lotteries (
        lottery BLOB PRIMARY KEY NOT NULL CHECK (length(lottery) = 32),
        prize BLOB NOT NULL CHECK (length(prize) = 16),
        stamped BLOB NOT NULL CHECK (length(stamped) = 16),
        next_start BLOB NOT NULL CHECK (length(next_start) = 16)
    ) WITHOUT ROWID""",
)


def _num(n: int) -> bytes:
    return n.to_bytes(_NUM, "big")


def _int(b: bytes) -> int:
    return int.from_bytes(b, "big")


@dataclass(frozen=True, slots=True)
class Stored:
    """The new records are committed: durable, and visible to every later request."""

    records: tuple[StampRecord, ...]


@dataclass(frozen=True, slots=True)
class Overspend:
    """The records would take the lottery's stamped total past its prize."""

    stamped: int
    prize: int


@dataclass(frozen=True, slots=True)
class LotteryUsage:
    """How much of a lottery is stamped, and where the highest stamped range ends."""

    stamped: int
    next_start: int


class StampStore(Protocol):
    """Durable stamped ranges, all of one chain, contract and stamper."""

    def stamp(
        self, prize: int, records: Sequence[StampRecord]
    ) -> Stored | Repeat | Conflict | Overspend:
        """Commit ``records`` (all of one lottery, disjoint) unless one overlaps a different
        cheque stored before, or they would stamp more than ``prize``. Atomic: all or none.
        When this returns ``Stored``, the records survive a crash."""
        ...

    def records(self, lottery: bytes) -> list[StampRecord]:
        """Every stored record of the lottery, by start."""
        ...

    def usage(self, lottery: bytes) -> LotteryUsage: ...

    def lotteries(self) -> list[bytes]:
        """Every lottery this stamper stamped in."""
        ...

    def close(self) -> None: ...


def _record(row: tuple[bytes, bytes, bytes, bytes, bytes, bytes, int, int]) -> StampRecord:
    lottery, start, end, recipient, payer_sig, stamp_sig, fee, stamped_at = row
    start_n = _int(start)
    cheque = Cheque(
        lottery=bytes(lottery), recipient=bytes(recipient), start=start_n, value=_int(end) - start_n
    )
    return StampRecord(cheque, bytes(payer_sig), bytes(stamp_sig), bool(fee), stamped_at)


_COLUMNS = "lottery, start, end, recipient, payer_sig, stamp_sig, fee, stamped_at"


class SqliteStampStore:
    """``StampStore`` on one SQLite file (see the module docstring). Thread-safe."""

    def __init__(
        self,
        path: Path,
        domain: Domain,
        stamper: bytes,
        *,
        synchronous: Literal["full", "normal"] = "full",
    ) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The file holds who was paid what: owner-only, created before SQLite opens it.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._open(domain, stamper)
        except sqlite3.Error as exc:
            raise StampStoreError(f"stamp store {path}: {exc}") from exc

    def _open(self, domain: Domain, stamper: bytes) -> None:
        want = {
            "chain_id": domain.chain_id.to_bytes(32, "big"),
            "contract": domain.contract,
            "stamper": stamper,
        }
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in _SCHEMA:
                    db.execute(statement)
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", want.items())
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # A file made by a newer rpcpay has a layout this one does not know.
            elif version != SCHEMA_VERSION:
                raise StampStoreError(f"{self.path} has schema {version}; this rpcpay reads 1")
            have = dict(db.execute("SELECT key, value FROM meta").fetchall())
            # The file is this stamper's, on this chain and contract.
            for key, value in want.items():
                if bytes(have.get(key, b"")) != value:
                    raise StampStoreError(
                        f"{self.path} records stamps of another {key.replace('_', ' ')}; "
                        "use a data directory of its own for each chain, contract and key"
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _overlapping(self, cheque: Cheque) -> list[StampRecord]:
        found: list[StampRecord] = []
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM stamps WHERE lottery = ? AND start < ? ORDER BY start DESC",
            (cheque.lottery, _num(cheque.end)),
        )
        for row in rows:
            record = _record(row)
            # Stored ranges are disjoint, so ends fall as starts do: stop at the first miss.
            if record.cheque.end <= cheque.start:
                break
            found.append(record)
        return found

    def stamp(
        self, prize: int, records: Sequence[StampRecord]
    ) -> Stored | Repeat | Conflict | Overspend:
        # A request is about one lottery, with a prize the store can hold.
        if not records or len({r.cheque.lottery for r in records}) != 1:
            raise ValueError("records must be of one lottery")
        if not 0 < prize < MAX_PRIZE:
            raise ValueError("prize out of range")
        # Ticket numbers fit the store's 16 bytes (the rules keep them below the prize).
        if any(r.cheque.end >= MAX_PRIZE for r in records):
            raise ValueError("range beyond 2**128")
        lottery = records[0].cheque.lottery
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    verdict = judge_overlaps(
                        [r.cheque for r in records],
                        [self._overlapping(r.cheque) for r in records],
                    )
                    if not isinstance(verdict, Fresh):
                        db.execute("ROLLBACK")
                        return verdict
                    row = db.execute(
                        "SELECT stamped, next_start FROM lotteries WHERE lottery = ?", (lottery,)
                    ).fetchone()
                    stamped, next_start = (_int(row[0]), _int(row[1])) if row else (0, 0)
                    total = stamped + sum(r.cheque.value for r in records)
                    # The sum of stamped ranges never exceeds the prize.
                    if total > prize:
                        db.execute("ROLLBACK")
                        return Overspend(stamped=stamped, prize=prize)
                    db.executemany(
                        f"INSERT INTO stamps ({_COLUMNS}, cheque_id) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            (
                                lottery,
                                _num(r.cheque.start),
                                _num(r.cheque.end),
                                r.cheque.recipient,
                                r.payer_sig,
                                r.stamp_sig,
                                int(r.fee),
                                r.stamped_at,
                                cheque_hash(r.cheque),
                            )
                            for r in records
                        ],
                    )
                    high = max(next_start, *(r.cheque.end for r in records))
                    db.execute(
                        "INSERT INTO lotteries (lottery, prize, stamped, next_start) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (lottery) DO UPDATE SET "
                        "stamped = excluded.stamped, next_start = excluded.next_start",
                        (lottery, _num(prize), _num(total), _num(high)),
                    )
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StampStoreError(f"stamp store {self.path}: {exc}") from exc
            return Stored(tuple(records))

    def records(self, lottery: bytes) -> list[StampRecord]:
        with self._lock:
            try:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM stamps WHERE lottery = ? ORDER BY start", (lottery,)
                ).fetchall()
            except sqlite3.Error as exc:
                raise StampStoreError(f"stamp store {self.path}: {exc}") from exc
        return [_record(row) for row in rows]

    def usage(self, lottery: bytes) -> LotteryUsage:
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT stamped, next_start FROM lotteries WHERE lottery = ?", (lottery,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise StampStoreError(f"stamp store {self.path}: {exc}") from exc
        if row is None:
            return LotteryUsage(0, 0)
        return LotteryUsage(stamped=_int(row[0]), next_start=_int(row[1]))

    def lotteries(self) -> list[bytes]:
        with self._lock:
            try:
                rows = self._db.execute("SELECT lottery FROM lotteries").fetchall()
            except sqlite3.Error as exc:
                raise StampStoreError(f"stamp store {self.path}: {exc}") from exc
        return [bytes(row[0]) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _conforms(store: SqliteStampStore) -> StampStore:
    """Never called: makes mypy prove that ``SqliteStampStore`` is a ``StampStore``."""
    return store
