"""The shared sessions (``ledger.session_rows``) on PostgreSQL: statements over one pooled
connection of ``PostgresLedgerStore``.

``save_session`` locks the client's session row (``FOR UPDATE``) before comparing its
cookie, so two instances installing a job for one client at once are serialized and the
second is refused; a first session is inserted with ``ON CONFLICT DO NOTHING``, and losing
that race is a refusal too. The caller then reads the session again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

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

CREATE = (
    """CREATE TABLE sessions (
        client bytea PRIMARY KEY CHECK (length(client) = 32),
        cookie bigint NOT NULL,
        top text NOT NULL,
        update_time double precision NOT NULL,
        job_time double precision NOT NULL,
        job bytea,
        previous_job bytea
    )""",
    "CREATE INDEX sessions_by_update_time ON sessions (update_time)",
    """CREATE TABLE jobs (
        client bytea NOT NULL,
        job_id bytea NOT NULL,
        hashing_blob bytea NOT NULL,
        template_id bytea NOT NULL,
        reserved_offset u64 NOT NULL,
        height u64 NOT NULL,
        seed_hash bytea NOT NULL,
        seed_height u64 NOT NULL,
        next_seed_hash bytea NOT NULL,
        network_difficulty numeric(40) NOT NULL,
        timestamp u64 NOT NULL,
        top_hash text NOT NULL,
        issued u64 NOT NULL,
        PRIMARY KEY (client, job_id)
    )""",
    "CREATE TABLE templates (template_id bytea PRIMARY KEY, blob bytea NOT NULL)",
)
"""Schema version 2's additions to version 1."""


def _job(r: Sequence[Any]) -> JobRow:
    return JobRow(
        bytes(r[0]), bytes(r[1]), bytes(r[2]), int(r[3]), int(r[4]), bytes(r[5]), int(r[6]),
        bytes(r[7]), int(r[8]), int(r[9]), str(r[10]), int(r[11]),
    )  # fmt: skip


async def _job_of(
    conn: asyncpg.Connection, cache: JobCache, client: bytes, jid: bytes
) -> JobRow | None:
    cached = cache.job(client, jid)
    if cached is not None:
        return cached
    row = await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE client = $1 AND job_id = $2", client, jid
    )
    if row is None:
        return None
    job = _job(row)
    cache.add_job(client, job)
    return job


async def load_session(
    conn: asyncpg.Connection, cache: JobCache, client: bytes
) -> StoredSession | None:
    """The client's session and its jobs, read in one (repeatable-read) transaction."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE client = $1", client
        )
        if row is None:
            return None
        session = session_from_row(row)
        job = None if session.job is None else await _job_of(conn, cache, client, session.job)
        previous = (
            None
            if session.previous_job is None
            else await _job_of(conn, cache, client, session.previous_job)
        )
        return StoredSession(session, job, previous)


async def save_session_in(
    conn: asyncpg.Connection,
    cache: JobCache,
    row: SessionRow,
    expected_cookie: int | None,
    new_job: JobRow | None,
    template: bytes | None,
) -> bool:
    """The body of one ``save_session`` transaction; False means: roll back."""
    current = await conn.fetchval(
        "SELECT cookie FROM sessions WHERE client = $1 FOR UPDATE", row.client
    )
    # The session must still be the one the caller read: same cookie, or still absent.
    if current != expected_cookie:
        return False
    values = (row.client, row.cookie, row.top, row.update_time, row.job_time, row.job,
              row.previous_job)  # fmt: skip
    if current is None:
        status = await conn.execute(
            f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (client) DO NOTHING",
            *values,
        )
        # Another process created the session first.
        if status != "INSERT 0 1":
            return False
    else:
        await conn.execute(
            "UPDATE sessions SET cookie = $2, top = $3, update_time = $4, job_time = $5, "
            "job = $6, previous_job = $7 WHERE client = $1",
            *values,
        )
    if new_job is not None:
        j = new_job
        # A template is stored once, whichever client's job brought it first.
        if template is not None:
            await conn.execute(
                "INSERT INTO templates (template_id, blob) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                j.template_id,
                template,
            )
        await conn.execute(
            f"INSERT INTO jobs (client, {JOB_COLUMNS}) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING",
            row.client, j.job_id, j.hashing_blob, j.template_id, j.reserved_offset, j.height,
            j.seed_hash, j.seed_height, j.next_seed_hash, j.network_difficulty, j.timestamp,
            j.top_hash, j.issued,
        )  # fmt: skip
        # Only the current and previous jobs can be submitted: the rest go.
        await conn.execute(
            "DELETE FROM jobs WHERE client = $1 AND NOT (job_id = ANY($2::bytea[]))",
            row.client,
            list(kept_jobs(row)),
        )
    return True


async def load_template(conn: asyncpg.Connection, cache: JobCache, tid: bytes) -> bytes | None:
    """A stored block template's blob."""
    cached = cache.template(tid)
    if cached is not None:
        return cached
    blob = await conn.fetchval("SELECT blob FROM templates WHERE template_id = $1", tid)
    if blob is None:
        return None
    cache.add_template(tid, bytes(blob))
    return bytes(blob)


async def has_nonce(conn: asyncpg.Connection, client: bytes, slot: bytes, nonce: int) -> bool:
    """Whether a share's nonce was recorded for this job (by any process)."""
    found = await conn.fetchval(
        "SELECT 1 FROM nonces WHERE client = $1 AND job_id = $2 AND nonce = $3",
        client,
        slot,
        nonce,
    )
    return found is not None


async def forget_sessions_in(conn: asyncpg.Connection, now: float) -> int:
    """Delete sessions idle past a job's lifetime, their jobs, and unused templates."""
    idle = await conn.fetch(
        "DELETE FROM sessions WHERE update_time < $1 RETURNING client", now - JOB_LIFETIME_S
    )
    clients = [bytes(r[0]) for r in idle]
    await conn.execute("DELETE FROM jobs WHERE client = ANY($1::bytea[])", clients)
    await conn.execute(
        "DELETE FROM templates t WHERE NOT EXISTS "
        "(SELECT 1 FROM jobs j WHERE j.template_id = t.template_id)"
    )
    return len(clients)
