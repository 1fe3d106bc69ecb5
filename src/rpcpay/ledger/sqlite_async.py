"""``TransactionalStore`` on one SQLite file, without blocking the event loop.

Every call (but plain ``apply`` with ``synchronous=normal``, below) runs on one dedicated
thread that owns the ``SqliteLedgerStore`` (its connection is created there, as ``sqlite3``
wants), so an fsync of the WAL waits on that
thread while the event loop goes on serving. One thread per store keeps the calls in
order and needs no locking in Python; SQLite itself serializes writers across threads and
processes.

Transactions: a step runs inside ``BEGIN IMMEDIATE``, which takes the write lock before
the account is read, so no other writer (another store on the same file, another
process) can change it between the read and the write. Waiting for that lock is SQLite's
busy handler, bounded by the store's 5 s busy timeout, after which ``LedgerError`` is
raised: there are no serialization failures to retry in this engine.

Cost, measured by bench/ledger_store.py on the 2-core CI machine (one charging task, p50
per charge, against ``SqliteLedgerStore`` called straight from the loop): 0.065 ms against
0.020 ms with ``synchronous=normal``, 0.22 ms against 0.12 ms with ``full``; the hop to the
thread and back is the difference. That disk fsyncs in about 0.1 ms; on a disk whose fsync
takes milliseconds, the direct call would stall every connection of the process for that
long, while here only the charging request waits.

Plain ``apply`` calls (pay, refund, claim, touch...) go through ``group_commit``: calls
that queue while a transaction is on the thread share the next one (one ``BEGIN
IMMEDIATE``, one commit). With ``synchronous=normal`` a commit is an append to the WAL in
the OS's page cache, with no fsync, so those transactions run on the event loop itself, on
a second connection that never waits: ``busy_timeout`` 0 (a write lock held by another
process or by this store's thread fails at once; the batch is tried again after one turn
of the loop, ``INLINE_ATTEMPTS`` times, then goes to the thread, which waits for the lock
as every other call does) and no automatic checkpoint (the checkpoint's fsync runs on the
thread every ``CHECKPOINT_EVERY`` such commits). Durability is unchanged: a commit is in
the WAL before its caller hears, as ``normal`` always promised. The thread hop was most
of the ledger's cost per paid call: a queue put, a wake-up of the thread, a call back into
the loop through its self-pipe, and the two threads trading the GIL. Measured by
bench/paid_calls_wrk.py (paid ``get_info``, one process, against the code before in the
same run): server CPU per call 243/230/210 us at 1/4/16 connections against 339/275/303
us, and the ledger's p99 per charge under 0.2 ms against 3.8-13 ms.

A lone call on a row the loop's connection read or wrote before skips the read: one
compare-and-swap ``UPDATE`` (``sqlite_swap``), which falls back to the transaction above
whenever the row changed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from rpcpay.errors import LedgerError
from rpcpay.ledger import account as rules
from rpcpay.ledger import sqlite_sessions as sessions
from rpcpay.ledger.account import DEFAULT_FLUSH_AGE, DEFAULT_ZERO_FLUSH_AGE, Account
from rpcpay.ledger.group_commit import Answers, GroupCommit, Pending, settle_batch
from rpcpay.ledger.session_rows import JobCache, JobRow, SessionRow, StoredSession
from rpcpay.ledger.sqlite_store import (
    _INSERT_CHEQUE_OR_IGNORE,
    _SELECT,
    _UPSERT,
    ChequeRow,
    SqliteLedgerStore,
    _cheque_params,
    account_to_row,
    decode_u64,
    encode_u64,
    row_to_account,
)
from rpcpay.ledger.sqlite_swap import (
    UPDATE_IF_UNCHANGED,
    KnownRows,
    settle_known,
    swap_params,
)
from rpcpay.ledger.transactional import (
    Applied,
    ChequeJoin,
    CreditHeld,
    RecordCheque,
    RecordNonce,
    Step,
    settle,
)

R = TypeVar("R")
T = TypeVar("T")

log = logging.getLogger("rpcpay.ledger")

CHECKPOINT_EVERY = 500
"""Commits made on the event loop's connection between two checkpoints on the thread."""

INLINE_ATTEMPTS = 8
"""Tries on the loop's connection, one turn of the loop apart, before the thread waits."""

_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

_SELECT_ONE = _SELECT + " WHERE client = ?"


def _join_cheque(db: sqlite3.Connection, cheque: ChequeJoin) -> bool:
    """Write the cheque's side of a credit; False if the cheque book refuses it."""
    # A cheque is recorded once: a second insert of its id changes nothing.
    if isinstance(cheque, RecordCheque):
        return db.execute(_INSERT_CHEQUE_OR_IGNORE, _cheque_params(cheque.cheque)).rowcount == 1
    # A held cheque is released once, and only while it is still pending.
    assert isinstance(cheque, CreditHeld)
    cursor = db.execute(
        "UPDATE cheques SET outcome = NULL WHERE cheque_id = ? AND outcome = 'pending'",
        (cheque.cheque_id,),
    )
    return cursor.rowcount == 1


def _load_in(db: sqlite3.Connection, client: bytes) -> Account | None:
    """The stored account of ``client``, or None."""
    row = db.execute(_SELECT_ONE, (client,)).fetchone()
    return None if row is None else row_to_account(row)


def _settle_in(db: sqlite3.Connection, client: bytes, step: Step[R], now: int) -> Applied[R]:
    """Read the account, run ``step``, write the result if it must be written."""
    old = _load_in(db, client)
    new, outcome, write = settle(client, old, step, now)
    if write:
        db.execute(_UPSERT, account_to_row(new))
    return Applied(outcome, new, stored=write or old is not None)


def _apply_with_cheque_in(
    db: sqlite3.Connection, client: bytes, step: Step[R], cheque: ChequeJoin, now: int
) -> tuple[Applied[R] | None, bool]:
    """The body of one ``apply_with_cheque`` transaction: (what to return, commit?)."""
    # A refused cheque writes nothing, not even the cheque.
    if not _join_cheque(db, cheque):
        return None, False
    return _settle_in(db, client, step, now), True


def _apply_batch_in(db: sqlite3.Connection, batch: list[Pending]) -> tuple[Answers, bool]:
    """The body of one group transaction: read each client's row once, run the steps in
    queue order (``settle_batch``), write each changed row once."""
    # One call (the common case: nothing else was in flight) takes the single-row path.
    if len(batch) == 1:
        return _apply_one_in(db, batch[0])
    stored = {}
    for item in batch:
        if item.client not in stored:
            stored[item.client] = _load_in(db, item.client)
    settled = settle_batch(stored, batch)
    if len(settled.writes) == 1:
        db.execute(_UPSERT, account_to_row(settled.writes[0].account))
    elif settled.writes:
        db.executemany(_UPSERT, [account_to_row(w.account) for w in settled.writes])
    return settled.answers, True


def _apply_one_in(db: sqlite3.Connection, item: Pending) -> tuple[Answers, bool]:
    """A group transaction of one call (``_settle_in``, with the step's own failure
    reported to its caller, nothing written)."""
    old = _load_in(db, item.client)
    try:
        new, outcome, write = settle(item.client, old, item.step, item.now)
    except Exception as exc:  # the step's failure is its caller's; nothing to write
        return [exc], False
    if write:
        db.execute(_UPSERT, account_to_row(new))
    return [Applied(outcome, new, stored=write or old is not None)], True


def _apply_nonce_in(
    db: sqlite3.Connection,
    client: bytes,
    nonce: RecordNonce,
    fresh: Step[R],
    dupe: Step[R],
    now: int,
) -> tuple[Applied[R], bool]:
    """The body of one ``apply_with_nonce`` transaction."""
    cursor = db.execute(
        "INSERT OR IGNORE INTO nonces (client, job_id, nonce, expires) VALUES (?, ?, ?, ?)",
        (client, nonce.job_id, encode_u64(nonce.nonce), encode_u64(nonce.expires)),
    )
    # A nonce whose row was there already is a duplicate, whoever recorded it.
    step = fresh if cursor.rowcount == 1 else dupe
    return _settle_in(db, client, step, now), True


def _forget_nonces_in(db: sqlite3.Connection, now: int) -> tuple[int, bool]:
    """Delete expired nonces in SQL, by the expiry index (a share's nonce is a row, so there
    are many). A stored u64 of 2**63 or more reads as negative (``encode_u64``): it is never
    before ``now`` (itself below 2**63), so only the non-negative ones are compared."""
    # A time past 2**63 - 1 s would be no time at all: keep every row rather than misjudge.
    if now > 2**63 - 1:
        return 0, False
    cursor = db.execute("DELETE FROM nonces WHERE expires >= 0 AND expires < ?", (now,))
    return cursor.rowcount, True


def _forget_in(db: sqlite3.Connection, now: int, idle_s: int, zero_idle_s: int) -> tuple[int, bool]:
    """Delete the idle rows (decided in Python: u64 columns do not compare in SQLite)."""
    doomed = [
        (acct.client,)
        for acct in map(row_to_account, db.execute(_SELECT).fetchall())
        if rules.is_forgettable(acct, now, idle_s, zero_idle_s)
    ]
    db.executemany("DELETE FROM accounts WHERE client = ?", doomed)
    return len(doomed), True


def _take_lease_in(
    db: sqlite3.Connection, name: str, holder: str, now: int, ttl_s: int
) -> tuple[bool, bool]:
    """Take or renew a lease (decided in Python: u64 columns do not compare in SQLite)."""
    row = db.execute("SELECT holder, until FROM leases WHERE name = ?", (name,)).fetchone()
    # Another holder's lease that has not run out keeps the name.
    if row is not None and row[0] != holder and decode_u64(row[1]) >= now:
        return False, False
    until = encode_u64(min(now + ttl_s, rules.U64_MAX))
    db.execute(
        "INSERT INTO leases (name, holder, until) VALUES (?, ?, ?) ON CONFLICT (name) "
        "DO UPDATE SET holder = excluded.holder, until = excluded.until",
        (name, holder, until),
    )
    return True, True


def _is_busy(exc: LedgerError) -> bool:
    """Whether SQLite refused because another connection holds the lock."""
    cause = exc.__cause__
    return isinstance(cause, sqlite3.Error) and cause.sqlite_errorcode & 0xFF in _BUSY_CODES


class ThreadedSqliteStore:
    """Accounts and cheques in one SQLite file, served from a thread of their own."""

    BINDS_NO_TASK = True
    """``apply`` never binds the running task (no ``asyncio.timeout``, no ``wait_for``): it
    may be started eagerly in its caller's task (``gateway.eager``)."""

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        store: SqliteLedgerStore,
        inline: SqliteLedgerStore | None = None,
    ) -> None:
        self._executor = executor
        self._store = store
        self._inline = inline  # the loop's own connection (synchronous=normal only)
        self._inline_commits = 0
        self._checkpointing: asyncio.Task[None] | None = None
        self._closed = False
        self.path = store.path
        self.cheques = ThreadedSqliteChequeBook(self)
        self._jobs = JobCache()  # immutable job rows and templates: touched on the thread only
        self._group = GroupCommit(self._commit_batch)
        self._known = KnownRows()  # the loop connection's last view of each client's row

    @classmethod
    async def open(
        cls, path: Path, *, synchronous: Literal["normal", "full"] = "full"
    ) -> ThreadedSqliteStore:
        """Open (creating or migrating) the ledger at ``path`` on a new thread."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-sqlite")
        loop = asyncio.get_running_loop()
        try:
            store = await loop.run_in_executor(
                executor, partial(SqliteLedgerStore, path, synchronous=synchronous)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        inline = None
        # Without an fsync per commit, a transaction is cheaper than the hop to the thread.
        if synchronous == "normal":
            try:
                inline = SqliteLedgerStore(path, synchronous=synchronous)
                inline.never_wait()
            except BaseException:
                if inline is not None:
                    inline.close()
                await loop.run_in_executor(executor, store.close)
                executor.shutdown(wait=False)
                raise
        return cls(executor, store, inline)

    async def run(self, call: Callable[[SqliteLedgerStore], T]) -> T:
        """Run ``call`` with the synchronous store, on the store's thread."""
        # A closed store cannot be used again.
        if self._closed:
            raise LedgerError(f"ledger {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call, self._store)

    def apply(self, client: bytes, step: Step[R], *, now: int) -> Coroutine[Any, Any, Applied[R]]:
        """Run ``step`` on ``client``'s account in one ``BEGIN IMMEDIATE`` transaction,
        shared with the other ``apply`` calls queued meanwhile (``group_commit``). (The
        group's coroutine itself, rather than one more awaiting it: a frame per paid call.)"""
        return self._group.apply(client, step, now)

    async def _commit_batch(self, batch: list[Pending]) -> Answers:
        """One group transaction, on the loop's connection if it can have the write lock at
        once, else on the thread; its callers' answers once it committed."""
        inline = self._inline
        # One call on a row this connection knows: one UPDATE, no read (``sqlite_swap``).
        if len(batch) == 1 and inline is not None and not self._closed:
            swapped = self._swap_known(inline, batch[0])
            if swapped is not None:
                self._committed_inline()
                return swapped
        answers = await self._commit_batch_read(batch)
        # What a lone call left in the row is what the next swap compares against.
        if len(answers) == 1:
            answer = answers[0]
            if isinstance(answer, Applied) and answer.stored:
                self._known.remember(answer.account)
        return answers

    def _swap_known(self, inline: SqliteLedgerStore, item: Pending) -> Answers | None:
        """The call committed in one compare-and-swap UPDATE on the row remembered for its
        client; None (nothing written) when there is none, it no longer matches, the step
        writes nothing or fails, or the lock is held: the usual path then reads the row."""
        known = self._known.get(item.client)
        if known is None:
            return None
        settled = settle_known(item, known)
        if settled is None:
            return None
        new, answer = settled
        try:
            swapped = inline.write_once(UPDATE_IF_UNCHANGED, swap_params(known, new))
        except LedgerError as exc:
            if not _is_busy(exc):
                raise
            return None
        # The row changed meanwhile (or is gone): nothing was written; read it.
        if not swapped:
            self._known.forget(item.client)
            return None
        self._known.remember(new)
        return [answer]

    async def _commit_batch_read(self, batch: list[Pending]) -> Answers:
        """``_commit_batch`` with the rows read in the transaction (the usual path)."""
        inline = self._inline
        for _ in range(INLINE_ATTEMPTS):
            if inline is None or self._closed:
                break
            try:
                answers = inline.transaction(lambda db: _apply_batch_in(db, batch))
            except LedgerError as exc:
                # Another writer holds the lock (nothing was written): it holds it for tens
                # of microseconds, so serve other requests for one turn of the loop and try
                # again, rather than sleep in SQLite's busy handler (1 ms at least).
                if not _is_busy(exc):
                    raise
                await asyncio.sleep(0)
            else:
                self._committed_inline()
                return answers
        # Still locked (or no loop connection): wait on the thread, as every other call does.
        return await self.run(lambda s: s.transaction(lambda db: _apply_batch_in(db, batch)))

    def _committed_inline(self) -> None:
        """Count a commit on the loop's connection; checkpoint on the thread now and then."""
        self._inline_commits += 1
        busy = self._checkpointing is not None and not self._checkpointing.done()
        if self._inline_commits >= CHECKPOINT_EVERY and not busy:
            self._inline_commits = 0
            self._checkpointing = asyncio.get_running_loop().create_task(
                self._checkpoint(), name="rpcpay-ledger-checkpoint"
            )

    async def _checkpoint(self) -> None:
        try:
            await self.run(lambda s: s.checkpoint())
        except LedgerError as exc:  # the next one may succeed; the WAL only grows meanwhile
            log.warning("ledger checkpoint failed", extra={"error": str(exc)})

    async def apply_with_cheque(
        self, client: bytes, step: Step[R], cheque: ChequeJoin, *, now: int
    ) -> Applied[R] | None:
        """``apply`` with the cheque's row in the same transaction; None if it is refused."""
        return await self.run(
            lambda s: s.transaction(lambda db: _apply_with_cheque_in(db, client, step, cheque, now))
        )

    async def apply_with_nonce(
        self, client: bytes, nonce: RecordNonce, fresh: Step[R], dupe: Step[R], *, now: int
    ) -> Applied[R]:
        """Record ``nonce`` and run ``fresh`` (``dupe`` if it was recorded), one transaction."""
        return await self.run(
            lambda s: s.transaction(lambda db: _apply_nonce_in(db, client, nonce, fresh, dupe, now))
        )

    async def forget_nonces(self, now: int) -> int:
        """Delete the nonces of jobs expired before ``now``; how many."""
        return await self.run(lambda s: s.transaction(lambda db: _forget_nonces_in(db, now)))

    async def has_nonce(self, client: bytes, slot: bytes, nonce: int) -> bool:
        """Whether ``nonce`` was recorded for the job ``slot``."""
        return await self.run(
            lambda s: s.reading(lambda db: sessions.has_nonce(db, client, slot, nonce))
        )

    async def load_session(self, client: bytes) -> StoredSession | None:
        """The client's session and its jobs, read in one transaction."""
        return await self.run(
            lambda s: s.reading(lambda db: sessions.load_session(db, self._jobs, client))
        )

    async def save_session(
        self,
        row: SessionRow,
        *,
        expected_cookie: int | None,
        new_job: JobRow | None = None,
        template: bytes | None = None,
    ) -> bool:
        """Write the session if its cookie is still ``expected_cookie`` (``BEGIN IMMEDIATE``)."""
        return await self.run(
            lambda s: s.transaction(
                lambda db: sessions.save_session_in(
                    db, self._jobs, row, expected_cookie, new_job, template
                )
            )
        )

    async def template(self, template_id: bytes) -> bytes | None:
        """A stored block template's blob."""
        return await self.run(
            lambda s: s.reading(lambda db: sessions.load_template(db, self._jobs, template_id))
        )

    async def count_sessions(self) -> int:
        """How many client sessions are stored."""
        return await self.run(
            lambda s: s.reading(
                lambda db: int(db.execute("SELECT count(*) FROM sessions").fetchone()[0])
            )
        )

    async def forget_sessions(self, now: float) -> int:
        """Delete idle sessions with their jobs, in one transaction; how many."""
        return await self.run(
            lambda s: s.transaction(lambda db: sessions.forget_sessions_in(db, now))
        )

    async def get(self, client: bytes) -> Account | None:
        """The stored account of ``client``, or None."""
        return await self.run(lambda s: s.load(client))

    async def accounts(self) -> list[Account]:
        """Every stored account."""
        return await self.run(lambda s: list(s.iter_accounts()))

    async def count(self) -> int:
        """How many accounts are stored."""
        return await self.run(lambda s: s.count())

    async def forget_idle(
        self,
        now: int,
        idle_s: int = DEFAULT_FLUSH_AGE,
        zero_idle_s: int = DEFAULT_ZERO_FLUSH_AGE,
    ) -> int:
        """Delete the idle accounts in one transaction; how many."""
        return await self.run(
            lambda s: s.transaction(lambda db: _forget_in(db, now, idle_s, zero_idle_s))
        )

    async def probe(self) -> None:
        """Take and drop the write lock; ``LedgerError`` if the file cannot be written now."""
        await self.run(lambda s: s.probe_write())

    async def close(self) -> None:
        """Close the file on its thread, then end the thread. Idempotent."""
        # Closing twice is allowed and does nothing.
        if self._closed:
            return
        try:
            await self._group.wait_idle()
            if self._checkpointing is not None:
                await self._checkpointing
            if self._inline is not None:
                self._inline.close()
            await self.run(lambda s: s.close())
        finally:
            self._closed = True
            self._executor.shutdown(wait=False)


class ThreadedSqliteChequeBook:
    """The cheque book of a ``ThreadedSqliteStore`` (its file, its thread)."""

    def __init__(self, store: ThreadedSqliteStore) -> None:
        self._store = store

    async def hold_pending(self, cheque: ChequeRow) -> bool:
        return await self._store.run(lambda s: s.hold_pending(cheque))

    async def withhold_pending(self, cheque_id: bytes, outcome: str) -> None:
        await self._store.run(lambda s: s.withhold_pending(cheque_id, outcome))

    async def pending_cheque(self, cheque_id: bytes) -> ChequeRow | None:
        return await self._store.run(lambda s: s.pending_cheque(cheque_id))

    async def pending_cheques(self) -> list[ChequeRow]:
        return await self._store.run(lambda s: s.pending_cheques())

    async def hold_cheque(self, cheque: ChequeRow) -> bool:
        return await self._store.run(lambda s: s.hold_cheque(cheque))

    async def hold_evidence(self, cheque: ChequeRow, outcome: str) -> None:
        await self._store.run(lambda s: s.hold_evidence(cheque, outcome))

    async def hold_evidence_outcome(self, cheque_id: bytes, outcome: str) -> None:
        await self._store.run(lambda s: s.hold_evidence_outcome(cheque_id, outcome))

    async def cheques_with_outcome(self, outcome: str) -> list[ChequeRow]:
        return await self._store.run(lambda s: s.cheques_with_outcome(outcome))

    async def cheques_of(self, lottery: bytes) -> list[ChequeRow]:
        return await self._store.run(lambda s: s.cheques_of(lottery))

    async def open_lotteries(self) -> list[tuple[bytes, int]]:
        return await self._store.run(lambda s: s.open_lotteries())

    async def close_lottery(self, lottery: bytes, outcome: str) -> None:
        await self._store.run(lambda s: s.close_lottery(lottery, outcome))

    async def outcomes(self) -> dict[bytes, str]:
        return await self._store.run(lambda s: s.outcomes())

    async def take_lease(self, name: str, holder: str, now: int, ttl_s: int) -> bool:
        return await self._store.run(
            lambda s: s.transaction(lambda db: _take_lease_in(db, name, holder, now, ttl_s))
        )

    async def release_lease(self, name: str, holder: str) -> None:
        def release(db: sqlite3.Connection) -> tuple[None, bool]:
            db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
            return None, True

        await self._store.run(lambda s: s.transaction(release))
