"""``LedgerStore`` on one SQLite file, through the standard library's ``sqlite3``.

Why SQLite: one file, no server, and a commit in WAL mode is an append to the log,
which keeps ``save`` (called on every paid call) cheap while still being durable.

Layout: one ``WITHOUT ROWID`` table keyed by the 32-byte client key (a BLOB primary
key, so a lookup is one B-tree descent). The schema version is ``PRAGMA user_version``.
A second table, ``cheques``, holds the lottery rail's stamped cheques (docs/lottery.md
§15): a credited cheque and its client's new balance are written in one transaction
(``save_with_cheque``), so a crash can neither lose the credit nor credit it twice.

u64 values: SQLite integers are signed 64-bit, and monerod's counters are unsigned.
Each u64 is stored as the signed integer with the *same 64 bits* (two's complement):
values up to ``2**63 - 1`` (every balance a real client will have) are stored as
themselves and stay readable in the ``sqlite3`` shell; only values from ``2**63`` to
``2**64 - 1`` appear negative there. We chose this over TEXT or an offset so that the
common case is neither larger nor obscured. SQL ordering and SUM over these columns are
wrong above ``2**63 - 1``; the ledger never asks SQLite for either.

Durability (``synchronous``):

- ``"full"`` (default): each commit fsyncs the WAL, so an acknowledged change survives
  a crash of the process, of the OS and a power cut.
- ``"normal"``: commits reach the OS but are synced only at checkpoints. A change
  survives a crash or SIGKILL of the process; a power cut or OS crash can lose the
  last commits (never corrupts the file). Faster; for operators who accept that.

Files: the data directory is created ``0700`` if missing and the database ``0600``
(SQLite gives its ``-wal`` and ``-shm`` files the database file's permissions): the
file holds who paid what. Every ``sqlite3`` or OS error is raised as ``LedgerError``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from rpcpay.errors import LedgerError
from rpcpay.ledger.account import Account

SCHEMA_VERSION = 4
"""``PRAGMA user_version`` of the layout below; 0 means a new, empty file. Version 1
had only ``accounts``, version 2 no ``nonces`` nor ``leases``, version 3 no ``sessions``,
``jobs`` nor ``templates``; opening any of them adds what it lacks in place."""

T = TypeVar("T")

_TWO_64 = 2**64
_I64_MAX = 2**63 - 1

_COLUMNS = tuple(f.name for f in fields(Account))  # the row is the Account, in order

_CREATE = """
CREATE TABLE accounts (
    client BLOB PRIMARY KEY NOT NULL CHECK (length(client) = 32),
    balance INTEGER NOT NULL,
    credits_total INTEGER NOT NULL,
    credits_used INTEGER NOT NULL,
    nonces_good INTEGER NOT NULL,
    nonces_stale INTEGER NOT NULL,
    nonces_bad INTEGER NOT NULL,
    nonces_dupe INTEGER NOT NULL,
    last_request_timestamp_us INTEGER NOT NULL,
    update_time INTEGER NOT NULL
) WITHOUT ROWID
"""

_CREATE_CHEQUES = """
CREATE TABLE cheques (
    cheque_id BLOB PRIMARY KEY NOT NULL CHECK (length(cheque_id) = 32),
    lottery BLOB NOT NULL CHECK (length(lottery) = 32),
    wire BLOB NOT NULL,
    client BLOB,
    credits INTEGER NOT NULL,
    reveal_block INTEGER NOT NULL,
    received INTEGER NOT NULL,
    outcome TEXT
) WITHOUT ROWID
"""
_INDEX_CHEQUES = "CREATE INDEX cheques_by_lottery ON cheques (lottery)"

# A share's nonce, recorded in the transaction that books the share: the primary key is
# what makes a nonce count once across every process on this file.
_CREATE_NONCES = """
CREATE TABLE nonces (
    client BLOB NOT NULL CHECK (length(client) = 32),
    job_id BLOB NOT NULL,
    nonce INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (client, job_id, nonce)
) WITHOUT ROWID
"""

# Who may act alone for everyone on this file (e.g. claim a lottery's win), until when.
_CREATE_LEASES = """
CREATE TABLE leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    until INTEGER NOT NULL
) WITHOUT ROWID
"""
# Clients' hashing sessions, shared by every process on the file (ledger.session_rows).
_CREATE_SESSIONS = (
    """CREATE TABLE sessions (
    client BLOB PRIMARY KEY NOT NULL CHECK (length(client) = 32),
    cookie INTEGER NOT NULL,
    top TEXT NOT NULL,
    update_time REAL NOT NULL,
    job_time REAL NOT NULL,
    job BLOB,
    previous_job BLOB
) WITHOUT ROWID""",
    """CREATE TABLE jobs (
    client BLOB NOT NULL,
    job_id BLOB NOT NULL,
    hashing_blob BLOB NOT NULL,
    template_id BLOB NOT NULL,
    reserved_offset INTEGER NOT NULL,
    height INTEGER NOT NULL,
    seed_hash BLOB NOT NULL,
    seed_height INTEGER NOT NULL,
    next_seed_hash BLOB NOT NULL,
    network_difficulty TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    top_hash TEXT NOT NULL,
    issued INTEGER NOT NULL,
    PRIMARY KEY (client, job_id)
) WITHOUT ROWID""",
    """CREATE TABLE templates (
    template_id BLOB PRIMARY KEY NOT NULL,
    blob BLOB NOT NULL
) WITHOUT ROWID""",
)
CHEQUE_COLUMNS = "cheque_id, lottery, wire, client, credits, reveal_block, received"
"""``ChequeRow``'s fields, in order: the ``cheques`` columns (but ``outcome``) of both stores."""

_INSERT_CHEQUE = f"INSERT INTO cheques ({CHEQUE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_CHEQUE_OR_IGNORE = _INSERT_CHEQUE.replace("INSERT", "INSERT OR IGNORE", 1)

_UPSERT = (
    f"INSERT INTO accounts ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (client) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM accounts"

Row = tuple[bytes, int, int, int, int, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class ChequeRow:
    """A stamped cheque the payee holds: one it credited to ``client``, or a peer's
    (``client`` None) kept from gossip to catch overlaps. ``wire`` is its 274-byte form."""

    cheque_id: bytes
    lottery: bytes
    wire: bytes
    client: bytes | None
    credits: int
    reveal_block: int
    received: int


def cheque_from_row(r: Sequence[Any]) -> ChequeRow:
    """The cheque a ``CHEQUE_COLUMNS`` row of either store describes (SQLite keeps the u64
    credits as a signed integer; PostgreSQL's numeric is never negative, so decoding is the
    identity there)."""
    client = r[3]
    return ChequeRow(bytes(r[0]), bytes(r[1]), bytes(r[2]),
                     None if client is None else bytes(client),
                     decode_u64(int(r[4])), int(r[5]), int(r[6]))  # fmt: skip


def encode_u64(value: int) -> int:
    """The signed 64-bit integer with the same bits as the u64 ``value``."""
    return value - _TWO_64 if value > _I64_MAX else value


def decode_u64(value: int) -> int:
    """The u64 whose bits the stored signed integer ``value`` holds."""
    return value + _TWO_64 if value < 0 else value


def account_to_row(acct: Account) -> Row:
    """The column values of one account, in ``_COLUMNS`` order."""
    return (
        acct.client,
        encode_u64(acct.balance),
        encode_u64(acct.credits_total),
        encode_u64(acct.credits_used),
        encode_u64(acct.nonces_good),
        encode_u64(acct.nonces_stale),
        encode_u64(acct.nonces_bad),
        encode_u64(acct.nonces_dupe),
        encode_u64(acct.last_request_timestamp_us),
        encode_u64(acct.update_time),
    )


def row_to_account(row: Row) -> Account:
    """The account a stored row describes (positional, as this runs per row in scans)."""
    client, *numbers = row
    return Account(bytes(client), *[v + _TWO_64 if v < 0 else v for v in numbers])


def _cheque_params(c: ChequeRow) -> tuple[bytes, bytes, bytes, bytes | None, int, int, int]:
    return (c.cheque_id, c.lottery, c.wire, c.client, encode_u64(c.credits), c.reveal_block,
            c.received)  # fmt: skip


def create_private_file(path: Path) -> None:
    """Make sure ``path`` exists, creating it (and its directory) owner-only.

    Creating the file ourselves, before SQLite opens it, is the only way to choose its
    mode without touching the process-wide umask.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)


class SqliteLedgerStore:
    """Accounts in one SQLite file (see the module docstring). Single thread, single writer."""

    def __init__(self, path: Path, *, synchronous: Literal["normal", "full"] = "full") -> None:
        # Only the two durability levels documented above are offered.
        if synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous must be 'normal' or 'full', not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        try:
            create_private_file(self.path)
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self.path, isolation_level=None, timeout=5.0
            )
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc
        try:
            self._configure(self._db)
        except (sqlite3.Error, LedgerError) as exc:
            self._db.close()
            self._db = None
            if isinstance(exc, LedgerError):
                raise
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc

    def _configure(self, db: sqlite3.Connection) -> None:
        """Switch to WAL with the chosen sync level and create or check the schema."""
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        # WAL is what makes a commit a cheap append; refuse to run without it.
        if str(mode).lower() != "wal":
            raise LedgerError(f"cannot use WAL journal on {self.path} (got {mode})")
        db.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            # A new file gets the current schema.
            if version == 0:
                db.execute(_CREATE)
            # Version 1 lacks the cheques of the lottery rail; add them in place.
            if version in (0, 1):
                db.execute(_CREATE_CHEQUES)
                db.execute(_INDEX_CHEQUES)
            # Version 2 lacks the shared record of submitted nonces, and the leases.
            if version in (0, 1, 2):
                db.execute(_CREATE_NONCES)
                db.execute(_CREATE_LEASES)
            # Version 3 lacks the shared sessions, jobs and templates, and the nonces' expiry
            # index (every share's nonce is a row now; housekeeping deletes them by expiry).
            if version in (0, 1, 2, 3):
                for sql in _CREATE_SESSIONS:
                    db.execute(sql)
                db.execute("CREATE INDEX nonces_by_expiry ON nonces (expires)")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # Anything but the current schema is a file we do not understand.
            elif version != SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger {self.path} has schema version {version}, expected {SCHEMA_VERSION}"
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def probe_write(self) -> None:
        """Take and drop the write lock (what a durable write needs first); LedgerError if
        the ledger cannot be written now (closed, locked, read-only, disk gone)."""
        try:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {self.path} is not writable: {exc}") from exc

    def reading(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` (reads) on the connection; its SQLite errors become ``LedgerError``."""
        try:
            return work(self._conn())
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read ledger {self.path}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        """The open connection."""
        # A closed store cannot be used again.
        if self._db is None:
            raise LedgerError(f"ledger {self.path} is closed")
        return self._db

    def load(self, client: bytes) -> Account | None:
        """The stored account of ``client``, or None."""
        try:
            row = self._conn().execute(_SELECT + " WHERE client = ?", (client,)).fetchone()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read ledger {self.path}: {exc}") from exc
        return None if row is None else row_to_account(row)

    def save(self, account: Account) -> None:
        """Upsert one account; it is committed (durable per ``synchronous``) on return."""
        try:
            self._conn().execute(_UPSERT, account_to_row(account))
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write ledger {self.path}: {exc}") from exc

    def write_once(self, sql: str, params: Sequence[object]) -> bool:
        """Run one write statement as a transaction of its own (committed, durable per
        ``synchronous``, on return); whether it changed exactly one row."""
        try:
            return bool(self._conn().execute(sql, params).rowcount == 1)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write ledger {self.path}: {exc}") from exc

    def save_many(self, accounts: Iterable[Account]) -> None:
        """Upsert several accounts in one transaction."""
        rows = [account_to_row(a) for a in accounts]
        self._transact(_UPSERT, rows)

    def delete(self, clients: Iterable[bytes]) -> None:
        """Delete these clients' rows in one transaction."""
        self._transact("DELETE FROM accounts WHERE client = ?", [(c,) for c in clients])

    def _transact(self, sql: str, params: list[Row] | list[tuple[bytes]]) -> None:
        """Run ``sql`` once per parameter tuple, all in one transaction."""
        self.transaction(lambda db: (db.executemany(sql, params), True))

    def transaction(self, work: Callable[[sqlite3.Connection], tuple[T, bool]]) -> T:
        """Run ``work`` inside ``BEGIN IMMEDIATE``: it returns (result, commit?). Rolled back
        if it says so or raises. Other writers (processes, or stores on the same file) wait
        up to the 5 s busy timeout for the write lock, then this raises ``LedgerError``."""
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                result, commit = work(db)
                db.execute("COMMIT" if commit else "ROLLBACK")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write ledger {self.path}: {exc}") from exc
        return result

    def joined(self, work: Callable[[sqlite3.Connection], tuple[T, bool]]) -> T:
        """``transaction(work)``, or ``work`` inside the transaction already open on this
        connection (whose owner then commits, or rolls back if ``work`` says so)."""
        db = self._conn()
        # Inside an open transaction: its owner decides.
        if db.in_transaction:
            try:
                return work(db)[0]
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot write ledger {self.path}: {exc}") from exc
        return self.transaction(work)

    def save_with_cheque(self, account: Account, cheque: ChequeRow) -> bool:
        """Record a credited cheque and upsert its client's account in ONE transaction
        (the one open on this connection, if any).

        Returns False, writing nothing, if the cheque is already recorded: a cheque is
        credited once, even across a crash between the two writes (there is no between).
        """

        def work(db: sqlite3.Connection) -> tuple[bool, bool]:
            seen = db.execute(
                "SELECT 1 FROM cheques WHERE cheque_id = ?", (cheque.cheque_id,)
            ).fetchone()
            # A cheque already recorded is never credited again.
            if seen is not None:
                return False, False
            db.execute(_INSERT_CHEQUE, _cheque_params(cheque))
            db.execute(_UPSERT, account_to_row(account))
            return True, True

        return self.joined(work)

    def hold_pending(self, cheque: ChequeRow) -> bool:
        """Record a cheque paid to a client but held (not yet credited), outcome ``pending``;
        False, writing nothing, if the cheque is recorded already (a replay)."""
        try:
            cursor = self._conn().execute(
                f"INSERT OR IGNORE INTO cheques ({CHEQUE_COLUMNS}, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
                _cheque_params(cheque),
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write ledger {self.path}: {exc}") from exc
        return cursor.rowcount == 1

    def credit_pending(self, account: Account, cheque_id: bytes) -> bool:
        """Credit a held cheque: clear its ``pending`` mark and upsert its client's account in
        ONE transaction (the one open on this connection, if any); False, writing nothing,
        unless it is still pending."""

        def work(db: sqlite3.Connection) -> tuple[bool, bool]:
            cursor = db.execute(
                "UPDATE cheques SET outcome = NULL WHERE cheque_id = ? AND outcome = 'pending'",
                (cheque_id,),
            )
            # Only a cheque still pending is credited, and only once.
            if cursor.rowcount != 1:
                return False, False
            db.execute(_UPSERT, account_to_row(account))
            return True, True

        return self.joined(work)

    def withhold_pending(self, cheque_id: bytes, outcome: str) -> None:
        """Never credit a held cheque (its stamper was caught): mark it ``outcome``."""
        try:
            self._conn().execute(
                "UPDATE cheques SET outcome = ? WHERE cheque_id = ? AND outcome = 'pending'",
                (outcome, cheque_id),
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write ledger {self.path}: {exc}") from exc

    def pending_cheque(self, cheque_id: bytes) -> ChequeRow | None:
        """One held cheque, if it is still pending."""
        rows = self._cheques(
            "WHERE cheque_id = ? AND outcome = 'pending' AND client IS NOT NULL", (cheque_id,)
        )
        return rows[0] if rows else None

    def pending_cheques(self) -> list[ChequeRow]:
        """Cheques paid to clients and held, not yet credited."""
        return self._cheques("WHERE outcome = 'pending' AND client IS NOT NULL", ())

    def hold_cheque(self, cheque: ChequeRow) -> bool:
        """Keep a peer's cheque (no credit); False if it is held already."""
        try:
            cursor = self._conn().execute(_INSERT_CHEQUE_OR_IGNORE, _cheque_params(cheque))
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write ledger {self.path}: {exc}") from exc
        return cursor.rowcount == 1

    def hold_evidence(self, cheque: ChequeRow, outcome: str) -> None:
        """Keep a cheque (no credit) that is half of a fraud pair, marked ``outcome``, in one
        statement: the refusal that found it and the evidence cannot be parted by a crash.
        A cheque held already (from gossip) is marked; a credited one is left as it is."""
        try:
            self._conn().execute(
                f"INSERT INTO cheques ({CHEQUE_COLUMNS}, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (cheque_id) "
                "DO UPDATE SET outcome = excluded.outcome WHERE client IS NULL",
                (*_cheque_params(cheque), outcome),
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write ledger {self.path}: {exc}") from exc

    def hold_evidence_outcome(self, cheque_id: bytes, outcome: str) -> None:
        """Mark a held (uncredited) cheque's evidence ``outcome``, e.g. once it is proven."""
        try:
            self._conn().execute(
                "UPDATE cheques SET outcome = ? WHERE cheque_id = ? AND client IS NULL",
                (outcome, cheque_id),
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write ledger {self.path}: {exc}") from exc

    def cheques_with_outcome(self, outcome: str) -> list[ChequeRow]:
        """Held (uncredited) cheques marked ``outcome``: e.g. evidence not yet proven."""
        return self._cheques("WHERE outcome = ? AND client IS NULL", (outcome,))

    def cheques_of(self, lottery: bytes) -> list[ChequeRow]:
        """Every held cheque of one lottery, ours and peers'."""
        return self._cheques("WHERE lottery = ?", (lottery,))

    def open_lotteries(self) -> list[tuple[bytes, int]]:
        """(lottery, reveal block) of every lottery we were paid in and have not closed."""
        try:
            rows = (
                self._conn()
                .execute(
                    "SELECT DISTINCT lottery, reveal_block FROM cheques "
                    "WHERE client IS NOT NULL AND (outcome IS NULL OR outcome = 'pending')"
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read ledger {self.path}: {exc}") from exc
        return [(bytes(lottery), int(reveal)) for lottery, reveal in rows]

    def close_lottery(self, lottery: bytes, outcome: str) -> None:
        """Mark our cheques of ``lottery`` as settled with ``outcome``."""
        try:
            self._conn().execute(
                "UPDATE cheques SET outcome = ? WHERE lottery = ? AND client IS NOT NULL",
                (outcome, lottery),
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write ledger {self.path}: {exc}") from exc

    def outcomes(self) -> dict[bytes, str]:
        """Each closed lottery's outcome (for operators and tests)."""
        try:
            rows = (
                self._conn()
                .execute(
                    "SELECT DISTINCT lottery, outcome FROM cheques "
                    "WHERE outcome IS NOT NULL AND client IS NOT NULL"
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read ledger {self.path}: {exc}") from exc
        return {bytes(lottery): str(outcome) for lottery, outcome in rows}

    def _cheques(self, where: str, params: tuple[bytes | str, ...]) -> list[ChequeRow]:
        try:
            rows = (
                self._conn()
                .execute(
                    f"SELECT {CHEQUE_COLUMNS} FROM cheques {where}",
                    params,
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read ledger {self.path}: {exc}") from exc
        return [cheque_from_row(r) for r in rows]

    def iter_accounts(self) -> Iterator[Account]:
        """Every stored account, streamed from the table."""
        try:
            cursor = self._conn().execute(_SELECT)
            for row in cursor:
                yield row_to_account(row)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read ledger {self.path}: {exc}") from exc

    def count(self) -> int:
        """How many accounts are stored."""
        try:
            return int(self._conn().execute("SELECT count(*) FROM accounts").fetchone()[0])
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read ledger {self.path}: {exc}") from exc

    def never_wait(self) -> None:
        """For a connection used from the event loop: a write lock held elsewhere fails at
        once (``SQLITE_BUSY``, never a sleep in SQLite's busy handler), and its commits never
        checkpoint the WAL (that fsync is left to ``checkpoint``, called on another thread)."""
        try:
            db = self._conn()
            db.execute("PRAGMA busy_timeout = 0")
            db.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot configure ledger {self.path}: {exc}") from exc

    def checkpoint(self) -> None:
        """Copy the WAL into the database file as far as readers allow (``PASSIVE``: writers
        go on meanwhile)."""
        self.reading(lambda db: db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())

    def close(self) -> None:
        """Close the connection (checkpointing the WAL). Safe to call twice."""
        db, self._db = self._db, None
        # Closing twice is allowed and does nothing.
        if db is None:
            return
        try:
            db.close()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot close ledger {self.path}: {exc}") from exc
