"""Per-client job state (monerod's ``client_info`` minus the balance), shared by every gateway
instance through the ledger's store, so no load balancer needs sticky sessions.

``ClientSession`` is a frozen snapshot of one client's stored session (cookie, top, job time,
last request, current and previous job as ``JobRow``). ``SharedSessions`` reads it and
writes a changed one back with ``TransactionalStore.save_session``, which refuses if another
instance changed the cookie since the read; the caller then reads again and decides again
(``SAVE_ATTEMPTS`` times at most), so two instances never hand one client two jobs under one
cookie. Nonces are not here: a paid nonce is a ``RecordNonce`` row, inserted in the share's
booking transaction (``SharedLedger.record_submitted_share``).

A job's block template is stored once per template (``JobRow.template_id``), and read back
only when a share is a block (``job_for_block``); job rows and templates are cached inside
the store, as they never change.

Cost per ``rpc_access_info``: one read of the session (its jobs from the store's cache) and
one write; per share: the session read, a nonce lookup, the booking transaction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rpcpay.errors import LedgerError
from rpcpay.gateway.jobs import Job
from rpcpay.ledger.session_rows import (
    JobRow,
    SessionRow,
    StoredSession,
    job_id,
    template_id,
)
from rpcpay.ledger.transactional import TransactionalStore

STALE_THRESHOLD_S = 15  # monerod: a previous-job share is accepted this long after the last info
JOB_MAX_AGE_S = 15  # monerod: a client gets a new job after this long, or on a new top
SAVE_ATTEMPTS = 4  # reads and writes of one session before giving up on concurrent changes
U32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ClientSession:
    """One client's job state as read from the store. ``stored_cookie`` is the cookie the
    stored row had (None: no row yet), which a write must still find."""

    update_time: float
    cookie: int = 0
    top: str = ""
    job: JobRow | None = None
    previous_job: JobRow | None = None
    job_time: float = 0.0
    stored_cookie: int | None = None

    def previous_cookie(self) -> int:
        """The cookie of the previous job (u32 arithmetic, as in monerod)."""
        return (self.cookie - 1) & U32

    def needs_job(self, top: str, now: float) -> bool:
        """monerod's rule: a new job on a new top, or when the job is 15 s old."""
        return top != self.top or now >= self.job_time + JOB_MAX_AGE_S

    def with_job(self, job: JobRow, now: float) -> ClientSession:
        """``job`` made current; the current job becomes the previous one."""
        return dataclasses.replace(
            self,
            previous_job=self.job,
            job=job,
            cookie=(self.cookie + 1) & U32,
            job_time=now,
        )

    def row(self, client: bytes) -> SessionRow:
        """The stored form."""
        return SessionRow(
            client,
            self.cookie,
            self.top,
            self.update_time,
            self.job_time,
            None if self.job is None else self.job.job_id,
            None if self.previous_job is None else self.previous_job.job_id,
        )


def job_row(job: Job, issued: float) -> JobRow:
    """What the store keeps of a job issued at ``issued``."""
    return JobRow(
        job_id=job_id(job.hashing_blob),
        hashing_blob=job.hashing_blob,
        template_id=template_id(job.template_blob) if job.template_blob else b"",
        reserved_offset=job.reserved_offset,
        height=job.height,
        seed_hash=job.seed_hash,
        seed_height=job.seed_height,
        next_seed_hash=job.next_seed_hash or b"",
        network_difficulty=job.network_difficulty,
        timestamp=job.timestamp,
        top_hash=job.top_hash,
        issued=int(issued),
    )


def from_stored(stored: StoredSession) -> ClientSession:
    """The snapshot of a stored session."""
    row = stored.row
    return ClientSession(
        update_time=row.update_time,
        cookie=row.cookie,
        top=row.top,
        job=stored.job,
        previous_job=stored.previous_job,
        job_time=row.job_time,
        stored_cookie=row.cookie,
    )


class SharedSessions:
    """Clients' sessions in the ledger's store, as every instance sees them."""

    def __init__(self, store: TransactionalStore) -> None:
        self.store = store

    async def get(self, client: bytes) -> ClientSession | None:
        """The client's stored session, or None if it has none."""
        stored = await self.store.load_session(client)
        return None if stored is None else from_stored(stored)

    async def save(
        self, client: bytes, read: ClientSession, new: ClientSession, template: bytes = b""
    ) -> ClientSession | None:
        """Write ``new`` if the stored session is still ``read``; the saved snapshot, or None
        if another instance changed it first (read it again). A job ``new`` installed is
        stored with it (``template``, its block template, once per template)."""
        installed = new.job if new.job is not None and new.job is not read.job else None
        saved = await self.store.save_session(
            new.row(client),
            expected_cookie=read.stored_cookie,
            new_job=installed,
            template=template if installed is not None and template else None,
        )
        return dataclasses.replace(new, stored_cookie=new.cookie) if saved else None

    async def job_for_block(self, job: JobRow) -> Job:
        """The full job, block template included, to submit a share as a block."""
        template = await self.store.template(job.template_id) if job.template_id else b""
        # A job names its template; a template missing would be a store that lost a row.
        if template is None:
            raise LedgerError("the job's block template is not in the ledger")
        return Job(
            hashing_blob=job.hashing_blob,
            template_blob=template,
            reserved_offset=job.reserved_offset,
            height=job.height,
            seed_hash=job.seed_hash,
            seed_height=job.seed_height,
            next_seed_hash=job.next_seed_hash or None,
            network_difficulty=job.network_difficulty,
            timestamp=job.timestamp,
            top_hash=job.top_hash,
        )

    async def forget_idle(self, now: float) -> int:
        """Forget sessions idle for a job's lifetime, with their jobs; how many."""
        return await self.store.forget_sessions(now)

    async def count(self) -> int:
        """How many sessions are stored (tests and the dashboard)."""
        return await self.store.count_sessions()
