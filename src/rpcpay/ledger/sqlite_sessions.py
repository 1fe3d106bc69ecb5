"""The shared sessions (``ledger.session_rows``) on the SQLite file: statements over one
connection, run on ``ThreadedSqliteStore``'s thread, writes inside ``BEGIN IMMEDIATE``.

u64 columns hold the same 64 bits as a signed integer (``encode_u64``), as the accounts do;
a network difficulty (up to 128 bits in monerod) is decimal text.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from rpcpay.ledger.session_rows import (
    JOB_COLUMNS,
    JOB_LIFETIME_S,
    SESSION_COLUMNS,
    JobCache,
    JobRow,
    SessionRow,
    StoredSession,
    kept_jobs,
    session_from_row,
)
from rpcpay.ledger.sqlite_store import decode_u64, encode_u64


def _job(row: Any) -> JobRow:
    return JobRow(
        bytes(row[0]), bytes(row[1]), bytes(row[2]), decode_u64(row[3]), decode_u64(row[4]),
        bytes(row[5]), decode_u64(row[6]), bytes(row[7]), int(row[8]), decode_u64(row[9]),
        str(row[10]), decode_u64(row[11]),
    )  # fmt: skip


def _job_params(client: bytes, j: JobRow) -> tuple[Any, ...]:
    return (
        client, j.job_id, j.hashing_blob, j.template_id, encode_u64(j.reserved_offset),
        encode_u64(j.height), j.seed_hash, encode_u64(j.seed_height), j.next_seed_hash,
        str(j.network_difficulty), encode_u64(j.timestamp), j.top_hash, encode_u64(j.issued),
    )  # fmt: skip


def _job_of(db: sqlite3.Connection, cache: JobCache, client: bytes, jid: bytes) -> JobRow | None:
    cached = cache.job(client, jid)
    if cached is not None:
        return cached
    row = db.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE client = ? AND job_id = ?", (client, jid)
    ).fetchone()
    if row is None:
        return None
    job = _job(row)
    cache.add_job(client, job)
    return job


def load_session(db: sqlite3.Connection, cache: JobCache, client: bytes) -> StoredSession | None:
    """The client's session and its jobs (read in one transaction, so they agree)."""
    db.execute("BEGIN")
    try:
        row = db.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE client = ?", (client,)
        ).fetchone()
        if row is None:
            return None
        session = session_from_row(row)
        job = None if session.job is None else _job_of(db, cache, client, session.job)
        previous = (
            None
            if session.previous_job is None
            else _job_of(db, cache, client, session.previous_job)
        )
        return StoredSession(session, job, previous)
    finally:
        db.execute("COMMIT")


def save_session_in(
    db: sqlite3.Connection,
    cache: JobCache,
    row: SessionRow,
    expected_cookie: int | None,
    new_job: JobRow | None,
    template: bytes | None,
) -> tuple[bool, bool]:
    """The body of one ``save_session`` transaction: (saved?, commit?)."""
    current = db.execute("SELECT cookie FROM sessions WHERE client = ?", (row.client,)).fetchone()
    # The session must still be the one the caller read: same cookie, or still absent.
    if (None if current is None else int(current[0])) != expected_cookie:
        return False, False
    if new_job is not None:
        # A template is stored once, whichever client's job brought it first.
        if template is not None:
            db.execute(
                "INSERT OR IGNORE INTO templates (template_id, blob) VALUES (?, ?)",
                (new_job.template_id, template),
            )
        db.execute(
            f"INSERT OR REPLACE INTO jobs (client, {JOB_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _job_params(row.client, new_job),
        )
        keep = kept_jobs(row)
        # Only the current and previous jobs can be submitted: the rest go.
        db.execute(
            f"DELETE FROM jobs WHERE client = ? AND job_id NOT IN ({', '.join('?' * len(keep))})",
            (row.client, *keep),
        )
    db.execute(
        f"INSERT OR REPLACE INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (row.client, row.cookie, row.top, row.update_time, row.job_time, row.job,
         row.previous_job),
    )  # fmt: skip
    if new_job is not None:
        cache.add_job(row.client, new_job)
    return True, True


def load_template(db: sqlite3.Connection, cache: JobCache, tid: bytes) -> bytes | None:
    """A stored block template's blob."""
    cached = cache.template(tid)
    if cached is not None:
        return cached
    row = db.execute("SELECT blob FROM templates WHERE template_id = ?", (tid,)).fetchone()
    if row is None:
        return None
    cache.add_template(tid, bytes(row[0]))
    return bytes(row[0])


def has_nonce(db: sqlite3.Connection, client: bytes, slot: bytes, nonce: int) -> bool:
    """Whether a share's nonce was recorded for this job (by any process)."""
    found = db.execute(
        "SELECT 1 FROM nonces WHERE client = ? AND job_id = ? AND nonce = ?",
        (client, slot, encode_u64(nonce)),
    ).fetchone()
    return found is not None


def forget_sessions_in(db: sqlite3.Connection, now: float) -> tuple[int, bool]:
    """Delete sessions idle past a job's lifetime, their jobs, and unused templates."""
    cut = now - JOB_LIFETIME_S
    idle = [r[0] for r in db.execute("SELECT client FROM sessions WHERE update_time < ?", (cut,))]
    db.executemany("DELETE FROM sessions WHERE client = ?", [(c,) for c in idle])
    db.executemany("DELETE FROM jobs WHERE client = ?", [(c,) for c in idle])
    db.execute(
        "DELETE FROM templates WHERE template_id NOT IN (SELECT DISTINCT template_id FROM jobs)"
    )
    return len(idle), True
