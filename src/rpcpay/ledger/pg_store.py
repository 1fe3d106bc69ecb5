"""``TransactionalStore`` on PostgreSQL, through asyncpg: one ledger for many gateways.

Driver: asyncpg rather than psycopg 3, by measurement (bench/ledger_driver.py, the charge
transaction on a private cluster): asyncpg spent 0.13-0.24 ms of client CPU per charge
against psycopg's 0.18-0.30 ms, and the gateway's CPU is what it is short of; throughput
was mixed within the noise of the shared machine.

Plain ``apply`` (every paid call's charge, refunds, claims, touches) goes through
``group_commit`` and ``pg_cas``: the batch's steps run on the store's cached rows and ONE
statement, in autocommit, writes every changed row as a compare-and-set on the version of
the row it was computed from (its ``xmin``; and checks the rows a step only read); a client
whose row another writer changed, deleted or created meanwhile is read again and its steps
run again, ``MAX_ATTEMPTS`` times at most, then ``LedgerError`` for that client's calls. A
cached row costs one round trip and one commit per batch (with ``synchronous="normal"``, a
batch that only debits does not wait for the fsync: ``pg_cas``); a row not cached costs one
plain ``SELECT`` more. The cache (``pg_cas.AccountCache``, 32,768 rows at most) is never
authoritative: the statement checks the version of every row it relies on. One batch is in
flight per store at a time (``group_commit``), so steps on one client run in queue
order; the calls that arrive meanwhile make the next batch. Two in flight (the locking
path overlapped one batch's fsync with the next one's round trips) measured worse with one
statement per batch: with paid ``get_info`` at 16 connections, one process, 7,600 against
6,800 calls/s, and worse at 1 and 4 and with ``--workers 2`` too, because smaller batches
cost more CPU per call (docs/benchmarks.md). For the
same reason a call that finds nothing in flight does not start its batch at once but at
the loop's next turn (``gather``), with the calls the same turn read: with ``--workers 2``
at 16 connections that was 7,200 against 6,600 calls/s, neutral for one process.

``apply_with_nonce`` and ``apply_with_cheque`` run a transaction at READ COMMITTED: read
the account ``FOR UPDATE``, which holds every other writer of that row until commit, run
the pure step, write the row back, and put the result in the cache. A missing row cannot
be locked, so a new account is inserted with ``ON CONFLICT DO NOTHING``: if another
process inserted it first, the transaction rolls back and runs again. That,
serialization failures and deadlocks are retried, ``MAX_ATTEMPTS`` times in all, with a
short random pause. A lost connection is NOT retried: whether the commit (or the
autocommit statement) happened is unknown, so the caller gets ``LedgerError`` and the
client a clean error; the unique rows make a client's retry safe. Only a commit whose
reply was lost with the connection is ambiguous: it may have applied although the caller
saw ``LedgerError`` (at most the calls in flight when the server went away; the client
then paid for a call it was refused, and never the other way round). The cache forgets
the batch's rows after any failure.

Schema: ``rpcpay_schema`` holds the layout's version (``SCHEMA_VERSION``). Opening a
store creates the tables, or checks the version, under a transaction-scoped advisory lock
so that instances starting together do not race. Tables: ``accounts``, ``cheques``,
``nonces`` (a share's nonce, unique per client and job) and ``leases`` (one claimer at a
time), the same as the SQLite file's. Every u64 is a ``numeric(20)`` domain
checked to ``[0, 2**64 - 1]``: stored exactly, compared and summed correctly by SQL.

Cost (docs/benchmarks.md, "PostgreSQL charge in one statement"; against the locking
path this replaced, same cluster, fsync on, rounds alternating, on a shared and loaded
2-core VM): one task charging in a loop, 151 us of this process's CPU per charge against
410 us; 16 tasks, 42 against 86 us, and 2.4x the charges/s. In a gateway (paid
``get_info``, one process, 16 connections) ~270 us of gateway CPU per call against ~400.

Pool: ``pool_size`` connections per store (per process), opened lazily up to that bound
(``pg_pool``: a free connection costs a list pop; ``asyncpg.Pool``'s acquire and release
cost ~50-100 us of CPU per call).
A call waits for a free connection at most ``acquire_timeout_s``, and at most
``max_waiters`` calls wait (or are being handed a connection) at once; past either bound
the call gets ``LedgerBusy`` at once, which the gateway answers as a clean "busy" error
(tests/gateway/test_faults.py exhausts the pool). Without the bound, a database that
slows down would let every connection's request pile up, each holding its client for the
whole timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields
from typing import Any, Literal, TypeVar

import asyncpg

from rpcpay.errors import LedgerBusy, LedgerError
from rpcpay.ledger import pg_cas, pg_sessions
from rpcpay.ledger.account import DEFAULT_FLUSH_AGE, DEFAULT_ZERO_FLUSH_AGE, U64_MAX, Account
from rpcpay.ledger.group_commit import Answers, GroupCommit, Pending
from rpcpay.ledger.pg_pool import ConnectionPool
from rpcpay.ledger.session_rows import JobCache, JobRow, SessionRow, StoredSession
from rpcpay.ledger.sqlite_store import CHEQUE_COLUMNS, ChequeRow, cheque_from_row
from rpcpay.ledger.transactional import (
    MAX_ATTEMPTS,
    Applied,
    ChequeJoin,
    CreditHeld,
    RecordCheque,
    RecordNonce,
    Step,
    idle_thresholds,
    settle,
)

R = TypeVar("R")
T = TypeVar("T")

SCHEMA_VERSION = 2
"""The version of the layout below, recorded in ``rpcpay_schema`` (one row per version the
database went through). Version 1 lacks the shared sessions, jobs and templates
(``pg_sessions.CREATE``); ``_migrate`` adds them in place."""

_MIGRATION_LOCK = 0x7270_6370_6179_0001  # an advisory lock id: b"rpcpay" + 1
_COLUMNS = tuple(f.name for f in fields(Account))

_CREATE = (
    "CREATE DOMAIN u64 AS numeric(20) CHECK (VALUE >= 0 AND VALUE <= 18446744073709551615)",
    """CREATE TABLE accounts (
        client bytea PRIMARY KEY CHECK (length(client) = 32),
        balance u64 NOT NULL,
        credits_total u64 NOT NULL,
        credits_used u64 NOT NULL,
        nonces_good u64 NOT NULL,
        nonces_stale u64 NOT NULL,
        nonces_bad u64 NOT NULL,
        nonces_dupe u64 NOT NULL,
        last_request_timestamp_us u64 NOT NULL,
        update_time u64 NOT NULL
    )""",
    """CREATE TABLE cheques (
        cheque_id bytea PRIMARY KEY CHECK (length(cheque_id) = 32),
        lottery bytea NOT NULL CHECK (length(lottery) = 32),
        wire bytea NOT NULL,
        client bytea,
        credits u64 NOT NULL,
        reveal_block u64 NOT NULL,
        received u64 NOT NULL,
        outcome text
    )""",
    "CREATE INDEX cheques_by_lottery ON cheques (lottery)",
    """CREATE TABLE nonces (
        client bytea NOT NULL CHECK (length(client) = 32),
        job_id bytea NOT NULL CHECK (length(job_id) BETWEEN 1 AND 64),
        nonce u64 NOT NULL,
        expires u64 NOT NULL,
        PRIMARY KEY (client, job_id, nonce)
    )""",
    "CREATE INDEX nonces_by_expiry ON nonces (expires)",
    "CREATE TABLE leases (name text PRIMARY KEY, holder text NOT NULL, until u64 NOT NULL)",
    "CREATE TABLE rpcpay_schema (version integer NOT NULL)",
)

_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM accounts"
_INSERT = (
    f"INSERT INTO accounts ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))}) "
    "ON CONFLICT (client) DO NOTHING RETURNING xmin::text"
)
_UPDATE = (
    "UPDATE accounts SET "
    + ", ".join(f"{c} = ${i}" for i, c in enumerate(_COLUMNS[1:], start=2))
    + " WHERE client = $1 RETURNING xmin::text"
)
_SELECT_ONE = f"SELECT xmin::text, {', '.join(_COLUMNS)} FROM accounts WHERE client = $1 FOR UPDATE"
_INSERT_CHEQUE = f"INSERT INTO cheques ({CHEQUE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
_CONNECTION_FAILURES = (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)
_FAILURES = (asyncpg.PostgresError, *_CONNECTION_FAILURES)


DEFAULT_QUEUE_TIMEOUT_S = 5.0
DEFAULT_MAX_WAITERS = 64


class _InsertRace(Exception):
    """Another process created the account first: run the transaction again."""


def _account(row: Sequence[Any]) -> Account:
    # numeric columns come back as Decimal; int() converts them exactly.
    client, *numbers = row
    return Account(bytes(client), *[int(v) for v in numbers])


def _params(acct: Account) -> tuple[Any, ...]:
    return (acct.client, *(getattr(acct, c) for c in _COLUMNS[1:]))


def _cheque_params(c: ChequeRow) -> tuple[Any, ...]:
    return (c.cheque_id, c.lottery, c.wire, c.client, c.credits, c.reveal_block, c.received)


def _affected(status: str) -> int:
    """The row count at the end of a command status such as ``UPDATE 1``."""
    return int(status.rsplit(" ", 1)[-1])


async def _migrate(conn: asyncpg.Connection) -> None:
    """Create the schema, or check its version, holding the migration lock."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        exists = await conn.fetchval("SELECT to_regclass('rpcpay_schema') IS NOT NULL")
        # A new database gets the current schema, with its version recorded.
        if not exists:
            for sql in (*_CREATE, *pg_sessions.CREATE):
                await conn.execute(sql)
            await conn.execute("INSERT INTO rpcpay_schema (version) VALUES ($1)", SCHEMA_VERSION)
            return
        version = await conn.fetchval("SELECT max(version) FROM rpcpay_schema")
        # Version 1 lacks the shared sessions: add them in place.
        if version == 1:
            for sql in pg_sessions.CREATE:
                await conn.execute(sql)
            await conn.execute("INSERT INTO rpcpay_schema (version) VALUES ($1)", SCHEMA_VERSION)
            version = SCHEMA_VERSION
        # Anything but the current schema is a layout this code does not understand.
        if version != SCHEMA_VERSION:
            raise LedgerError(f"ledger schema version {version}, expected {SCHEMA_VERSION}")


async def _join_cheque(conn: asyncpg.Connection, cheque: ChequeJoin) -> bool:
    """Write the cheque's side of a credit; False if the cheque book refuses it."""
    # A cheque is recorded once: a second insert of its id changes nothing.
    if isinstance(cheque, RecordCheque):
        status = await conn.execute(
            _INSERT_CHEQUE + " ON CONFLICT (cheque_id) DO NOTHING", *_cheque_params(cheque.cheque)
        )
        return _affected(status) == 1
    # A held cheque is released once, and only while it is still pending.
    assert isinstance(cheque, CreditHeld)
    status = await conn.execute(
        "UPDATE cheques SET outcome = NULL WHERE cheque_id = $1 AND outcome = 'pending'",
        cheque.cheque_id,
    )
    return _affected(status) == 1


class PostgresLedgerStore:
    """Accounts and cheques in one PostgreSQL database, shared by every gateway process."""

    BINDS_NO_TASK = True
    """``apply`` never binds the running task: it queues its call for the group commit
    (which gathers, so a batch always runs in the group's own task, never the caller's) and
    waits for a future. It may be started eagerly in its caller's task (``gateway.eager``);
    the driver and its timeouts only ever run in the batch's task."""

    def __init__(
        self,
        pool: ConnectionPool,
        acquire_timeout_s: float,
        max_waiters: int = DEFAULT_MAX_WAITERS,
        synchronous: Literal["normal", "full"] = "full",
    ) -> None:
        # Only two levels exist; anything else is a caller's typo, not a third level.
        if synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous must be 'normal' or 'full', not {synchronous!r}")
        self._lazy_debits = synchronous == "normal"
        self._pool = pool
        self._acquire_timeout_s = acquire_timeout_s
        self._max_waiters = max_waiters
        self._waiting = 0
        self._closed = False
        self.cheques = PostgresChequeBook(self)
        self._jobs = JobCache()  # immutable job rows and templates
        self._rows = pg_cas.AccountCache()  # never authoritative: every use is checked
        # The group's queue is bounded as the pool's is: at most max_waiters calls wait.
        self._group = GroupCommit(
            self._commit_batch,
            max_waiting=max_waiters,
            gather=True,
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_size: int = 8,
        acquire_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S,
        max_waiters: int = DEFAULT_MAX_WAITERS,
        synchronous: Literal["normal", "full"] = "full",
    ) -> PostgresLedgerStore:
        """Connect to ``url`` (``postgresql://USER@HOST:PORT/DB``), creating or checking
        the schema. ``synchronous``: ``full``, every commit waits for the server's WAL
        flush; ``normal``, a batch that only takes from its clients does not (``pg_cas``:
        a crash of PostgreSQL itself may then lose the last debits, never a credit)."""
        # A pool needs at least one connection.
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        # No floor of open connections: a call connects on demand (none while the server
        # is down).
        pool = ConnectionPool(url, pool_size)
        try:
            conn = await pool.acquire(acquire_timeout_s)
            try:
                await _migrate(conn)
            finally:
                pool.release(conn)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, (*_FAILURES, ValueError)):
                raise LedgerError(f"cannot prepare the ledger database: {exc}") from exc
            raise
        return cls(pool, acquire_timeout_s, max_waiters, synchronous)

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection; driver and network errors are LedgerError.

        Once ``work`` has returned, its outcome stands: a connection that breaks while it is
        handed back (the server went away after the commit) is dropped by the pool, and the
        result is still returned.
        """
        # A closed store cannot be used again.
        if self._closed:
            raise LedgerError("ledger store is closed")
        conn = await self._acquire()
        try:
            result = await work(conn)
        except _FAILURES as exc:
            self._hand_back(conn, exc)
            raise LedgerError(f"ledger database failed: {type(exc).__name__}: {exc}") from exc
        except BaseException as exc:
            self._hand_back(conn, exc)
            raise
        self._pool.release(conn)
        return result

    def _hand_back(self, conn: asyncpg.Connection, exc: BaseException) -> None:
        """Return a connection after ``work`` raised: reused after an error the server
        answered (a constraint, a refusal, a conflict: the transaction was rolled back);
        closed after a network or driver error or a cancellation (it may be mid-reply)."""
        if isinstance(exc, Exception) and not isinstance(exc, _CONNECTION_FAILURES):
            self._pool.release(conn)
        else:
            self._pool.discard(conn)

    async def _acquire(self) -> asyncpg.Connection:
        """A pooled connection, within the queue's bounds (``LedgerBusy`` past them)."""
        # A full queue refuses at once: one more waiter would only wait longer.
        if self._waiting >= self._max_waiters:
            raise LedgerBusy(f"ledger busy: {self._waiting} calls already wait for a connection")
        self._waiting += 1
        try:
            return await self._pool.acquire(self._acquire_timeout_s)
        except TimeoutError:
            raise LedgerBusy(
                f"ledger busy: no connection free within {self._acquire_timeout_s:g} s"
            ) from None
        except _FAILURES as exc:
            raise LedgerError(f"ledger database unavailable: {type(exc).__name__}: {exc}") from exc
        finally:
            self._waiting -= 1

    async def _transact(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction, again on a conflict, ``MAX_ATTEMPTS`` at most."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await self.run(lambda conn: _in_transaction(conn, work))
            except LedgerError as exc:
                conflict = isinstance(exc.__cause__, _RETRYABLE)
                # Only a conflict is worth another attempt, and only a bounded number.
                if not conflict or attempt == MAX_ATTEMPTS:
                    raise
            except _InsertRace:
                # The row exists now; with too many losses in a row, give up cleanly.
                if attempt == MAX_ATTEMPTS:
                    raise LedgerError("ledger conflict: too many concurrent writers") from None
            await asyncio.sleep(random.uniform(0, 0.002 * attempt))
        raise AssertionError("unreachable")

    async def apply_with_nonce(
        self, client: bytes, nonce: RecordNonce, fresh: Step[R], dupe: Step[R], *, now: int
    ) -> Applied[R]:
        """Record ``nonce`` and run ``fresh`` (``dupe`` if it was recorded), one transaction.
        A concurrent insert of the same nonce waits for the first to commit, then conflicts:
        the second submission is the duplicate."""

        async def work(conn: asyncpg.Connection) -> tuple[Applied[R], pg_cas.Version | None]:
            status = await conn.execute(
                "INSERT INTO nonces (client, job_id, nonce, expires) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT DO NOTHING",
                client,
                nonce.job_id,
                nonce.nonce,
                nonce.expires,
            )
            # A nonce whose row was there already is a duplicate, whoever recorded it.
            step = fresh if _affected(status) == 1 else dupe
            return await _settle_in(conn, client, step, now)

        return self._remember(await self._transact(work))

    async def forget_nonces(self, now: int) -> int:
        """Delete the nonces of jobs expired before ``now``; how many."""
        status = await self.run(
            lambda c: c.execute("DELETE FROM nonces WHERE expires < $1::numeric", now)
        )
        return _affected(status)

    async def apply(self, client: bytes, step: Step[R], *, now: int) -> Applied[R]:
        """Run ``step`` on ``client``'s account in one committed transaction, shared with
        the other ``apply`` calls queued meanwhile (``group_commit``)."""
        return await self._group.apply(client, step, now)

    async def _commit_batch(self, batch: list[Pending]) -> Answers:
        """One batch through ``pg_cas`` (one statement, in autocommit); the answers once it
        committed. Batches run one at a time (``group_commit``), so steps on one client run
        in queue order."""
        clients = {item.client for item in batch}
        slots: pg_cas.Slots = [None] * len(batch)
        try:
            await self.run(
                lambda conn: pg_cas.commit_batch(conn, self._rows, batch, slots, self._lazy_debits)
            )
        except LedgerError as exc:
            # The rows' stored values are unknown now (the write may have applied).
            self._rows.drop(clients)
            # Nothing final: the whole batch failed. Otherwise earlier attempts' answers stand.
            if all(s is None for s in slots):
                raise
            return [exc if s is None else s for s in slots]
        except BaseException:
            self._rows.drop(clients)
            raise
        return [s for s in slots if s is not None]

    async def apply_with_cheque(
        self, client: bytes, step: Step[R], cheque: ChequeJoin, *, now: int
    ) -> Applied[R] | None:
        """``apply`` with the cheque's row in the same transaction; None if it is refused."""

        async def work(conn: asyncpg.Connection) -> tuple[Applied[R], pg_cas.Version | None]:
            # A refused cheque writes nothing (the transaction rolls back).
            if not await _join_cheque(conn, cheque):
                raise _Refused
            return await _settle_in(conn, client, step, now)

        try:
            return self._remember(await self._transact(work))
        except _Refused:
            return None

    def _remember(self, committed: tuple[Applied[R], pg_cas.Version | None]) -> Applied[R]:
        """Cache what a transaction committed (the account, and the version of its row;
        None: no row), so that the next charge finds the row."""
        applied, version = committed
        if version is not None:
            self._rows.put(applied.account, version)
        else:
            self._rows.drop((applied.account.client,))
        return applied

    async def has_nonce(self, client: bytes, slot: bytes, nonce: int) -> bool:
        """Whether ``nonce`` was recorded for the job ``slot``."""
        return await self.run(lambda c: pg_sessions.has_nonce(c, client, slot, nonce))

    async def load_session(self, client: bytes) -> StoredSession | None:
        """The client's session and its jobs, read in one transaction."""
        return await self.run(lambda c: pg_sessions.load_session(c, self._jobs, client))

    async def save_session(
        self,
        row: SessionRow,
        *,
        expected_cookie: int | None,
        new_job: JobRow | None = None,
        template: bytes | None = None,
    ) -> bool:
        """Write the session if its cookie is still ``expected_cookie``, one transaction."""

        async def work(conn: asyncpg.Connection) -> bool:
            saved = await pg_sessions.save_session_in(
                conn, self._jobs, row, expected_cookie, new_job, template
            )
            # Refused: roll the transaction back.
            if not saved:
                raise _Refused
            return True

        try:
            saved = await self._transact(work)
        except _Refused:
            return False
        if new_job is not None:
            self._jobs.add_job(row.client, new_job)
        return saved

    async def template(self, template_id: bytes) -> bytes | None:
        """A stored block template's blob."""
        return await self.run(lambda c: pg_sessions.load_template(c, self._jobs, template_id))

    async def count_sessions(self) -> int:
        """How many client sessions are stored."""
        return int(await self.run(lambda c: c.fetchval("SELECT count(*) FROM sessions")))

    async def forget_sessions(self, now: float) -> int:
        """Delete idle sessions with their jobs, in one transaction; how many."""
        return await self.run(
            lambda c: _in_transaction(c, lambda conn: pg_sessions.forget_sessions_in(conn, now))
        )

    async def get(self, client: bytes) -> Account | None:
        """The stored account of ``client``, or None."""
        row = await self.run(lambda c: c.fetchrow(_SELECT + " WHERE client = $1", client))
        return None if row is None else _account(row)

    async def accounts(self) -> list[Account]:
        """Every stored account."""
        rows = await self.run(lambda c: c.fetch(_SELECT))
        return [_account(r) for r in rows]

    async def count(self) -> int:
        """How many accounts are stored."""
        return int(await self.run(lambda c: c.fetchval("SELECT count(*) FROM accounts")))

    async def forget_idle(
        self,
        now: int,
        idle_s: int = DEFAULT_FLUSH_AGE,
        zero_idle_s: int = DEFAULT_ZERO_FLUSH_AGE,
    ) -> int:
        """Delete the idle accounts in one statement; how many. A row another transaction
        is changing is judged again once that commits (READ COMMITTED's recheck)."""
        empty_cut, credited_cut = idle_thresholds(now, idle_s, zero_idle_s)
        status = await self.run(
            lambda c: c.execute(
                "DELETE FROM accounts WHERE GREATEST(div(last_request_timestamp_us, 1000000), "
                "update_time) < CASE WHEN balance = 0 THEN $1::numeric ELSE $2::numeric END",
                empty_cut,
                credited_cut,
            )
        )
        return _affected(status)

    async def probe(self) -> None:
        """One round trip on a pooled connection; ``LedgerError`` if the database is gone."""
        await self.run(lambda c: c.fetchval("SELECT 1"))

    async def close(self) -> None:
        """Close the pool. Idempotent."""
        # Closing twice is allowed and does nothing.
        if self._closed:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._group.wait_idle(), timeout=10)
        self._closed = True
        await self._pool.close()


async def _settle_in(
    conn: asyncpg.Connection, client: bytes, step: Step[R], now: int
) -> tuple[Applied[R], pg_cas.Version | None]:
    """Lock and read the account, run ``step``, write the result if it must be written;
    what was applied, and the version of the row once committed (None: no row)."""
    row = await conn.fetchrow(_SELECT_ONE, client)
    old = None if row is None else _account(row[1:])
    version: pg_cas.Version | None = None if row is None else row[0]
    new, outcome, write = settle(client, old, step, now)
    if write:
        version = await _write_one(conn, old, new)
    return Applied(outcome, new, stored=write or old is not None), version


async def _write_one(conn: asyncpg.Connection, old: Account | None, new: Account) -> str:
    """Update the locked row, or insert the new one (``_InsertRace`` if another process
    inserted it since our read: run the whole transaction again); the row's new version."""
    sql = _UPDATE if old is not None else _INSERT
    version: str | None = await conn.fetchval(sql, *_params(new))
    # No row came back: an insert lost to another process's first insert.
    if version is None:
        raise _InsertRace
    return version


class _Refused(Exception):
    """The cheque book refused the joined cheque: roll back, report None."""


async def _in_transaction(
    conn: asyncpg.Connection, work: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    async with conn.transaction():
        return await work(conn)


class PostgresChequeBook:
    """The cheque book of a ``PostgresLedgerStore`` (same database, same pool)."""

    def __init__(self, store: PostgresLedgerStore) -> None:
        self._store = store

    async def _execute(self, sql: str, *args: Any) -> int:
        status = await self._store.run(lambda c: c.execute(sql, *args))
        return _affected(status)

    async def _cheques(self, where: str, *args: Any) -> list[ChequeRow]:
        sql = f"SELECT {CHEQUE_COLUMNS} FROM cheques {where}"
        rows = await self._store.run(lambda c: c.fetch(sql, *args))
        return [cheque_from_row(r) for r in rows]

    async def hold_pending(self, cheque: ChequeRow) -> bool:
        sql = (
            f"INSERT INTO cheques ({CHEQUE_COLUMNS}, outcome) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, 'pending') ON CONFLICT (cheque_id) DO NOTHING"
        )
        return await self._execute(sql, *_cheque_params(cheque)) == 1

    async def withhold_pending(self, cheque_id: bytes, outcome: str) -> None:
        await self._execute(
            "UPDATE cheques SET outcome = $1 WHERE cheque_id = $2 AND outcome = 'pending'",
            outcome,
            cheque_id,
        )

    async def pending_cheque(self, cheque_id: bytes) -> ChequeRow | None:
        rows = await self._cheques(
            "WHERE cheque_id = $1 AND outcome = 'pending' AND client IS NOT NULL", cheque_id
        )
        return rows[0] if rows else None

    async def pending_cheques(self) -> list[ChequeRow]:
        return await self._cheques("WHERE outcome = 'pending' AND client IS NOT NULL")

    async def hold_cheque(self, cheque: ChequeRow) -> bool:
        sql = _INSERT_CHEQUE + " ON CONFLICT (cheque_id) DO NOTHING"
        return await self._execute(sql, *_cheque_params(cheque)) == 1

    async def hold_evidence(self, cheque: ChequeRow, outcome: str) -> None:
        await self._execute(
            f"INSERT INTO cheques ({CHEQUE_COLUMNS}, outcome) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (cheque_id) "
            "DO UPDATE SET outcome = excluded.outcome WHERE cheques.client IS NULL",
            *_cheque_params(cheque),
            outcome,
        )

    async def hold_evidence_outcome(self, cheque_id: bytes, outcome: str) -> None:
        await self._execute(
            "UPDATE cheques SET outcome = $1 WHERE cheque_id = $2 AND client IS NULL",
            outcome,
            cheque_id,
        )

    async def cheques_with_outcome(self, outcome: str) -> list[ChequeRow]:
        return await self._cheques("WHERE outcome = $1 AND client IS NULL", outcome)

    async def cheques_of(self, lottery: bytes) -> list[ChequeRow]:
        return await self._cheques("WHERE lottery = $1", lottery)

    async def open_lotteries(self) -> list[tuple[bytes, int]]:
        rows = await self._store.run(
            lambda c: c.fetch(
                "SELECT DISTINCT lottery, reveal_block FROM cheques "
                "WHERE client IS NOT NULL AND (outcome IS NULL OR outcome = 'pending')"
            )
        )
        return [(bytes(r[0]), int(r[1])) for r in rows]

    async def close_lottery(self, lottery: bytes, outcome: str) -> None:
        await self._execute(
            "UPDATE cheques SET outcome = $1 WHERE lottery = $2 AND client IS NOT NULL",
            outcome,
            lottery,
        )

    async def outcomes(self) -> dict[bytes, str]:
        rows = await self._store.run(
            lambda c: c.fetch(
                "SELECT DISTINCT lottery, outcome FROM cheques "
                "WHERE outcome IS NOT NULL AND client IS NOT NULL"
            )
        )
        return {bytes(r[0]): str(r[1]) for r in rows}

    async def take_lease(self, name: str, holder: str, now: int, ttl_s: int) -> bool:
        # One statement: a concurrent taker waits on the row, then sees it held.
        return (
            await self._execute(
                "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "until = excluded.until WHERE leases.holder = excluded.holder "
                "OR leases.until < $4::numeric",
                name,
                holder,
                min(now + ttl_s, U64_MAX),
                now,
            )
            == 1
        )

    async def release_lease(self, name: str, holder: str) -> None:
        await self._execute("DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder)
