"""Clients' hashing sessions, shared by every gateway process: the rows and their rules.

monerod keeps a ``client_info`` per client in memory: a cookie, the current and previous
job, when the client last asked for one, and the nonces paid per job. With several gateway
instances behind a load balancer, a job issued by one must be submittable to another, so
this state lives in the ledger's store:

- ``SessionRow``: one per client, mutable: cookie, top, job time, last request, and the
  ids of its current and previous jobs. Written only by ``save_session``, which compares
  the cookie it was read with (``expected_cookie``) and refuses if another process
  installed a job in between, so two instances never both bump a cookie.
- ``JobRow``: one per issued job, immutable once written; only a session's current and
  previous jobs are kept (installing a job deletes the one that falls off). A store may
  cache these rows: they never change under it.
- Block templates: one row per template, shared by every client's job cut from it
  (``JobRow.template_id``), so a template's blob is stored once, not once per client.
- Paid nonces are ``RecordNonce`` rows keyed by ``nonce_slot`` (the job's id, or the
  cookie for a client with no job yet): inserted in the transaction that books the share,
  so a nonce sent to two instances at once is credited once.

Lifetimes: a job can be submitted for ``JOB_LIFETIME_S`` after it was issued (monerod has no
such bound; a client that hashes one job for an hour without asking for another is the only
one that notices), and its nonce rows are kept until then plus a margin, so no nonce row is
forgotten while its job can still be paid. A session idle for that long is forgotten with its
jobs (``forget_sessions``), as monerod's ``flush_by_age`` forgets a client.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

JOB_LIFETIME_S = 3600
"""How long after it was issued a job can be submitted."""

NONCE_MARGIN_S = 120
"""Nonce rows outlive their job by this much (a share admitted just before the job's end
is booked just after)."""

U32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class JobRow:
    """One issued job: what the client hashes and what a block submission needs.

    ``template_id`` names the shared template row (empty for jobs that can never be blocks);
    ``next_seed_hash`` is empty when the seed does not change soon."""

    job_id: bytes
    hashing_blob: bytes
    template_id: bytes
    reserved_offset: int
    height: int
    seed_hash: bytes
    seed_height: int
    next_seed_hash: bytes
    network_difficulty: int
    timestamp: int
    top_hash: str
    issued: int


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A client's mutable job state (monerod's ``client_info`` minus nonces and balance)."""

    client: bytes
    cookie: int
    top: str
    update_time: float
    job_time: float
    job: bytes | None
    previous_job: bytes | None


SESSION_COLUMNS = "client, cookie, top, update_time, job_time, job, previous_job"
"""``SessionRow``'s fields, in order: the ``sessions`` columns of both stores."""

JOB_COLUMNS = (
    "job_id, hashing_blob, template_id, reserved_offset, height, seed_hash, seed_height, "
    "next_seed_hash, network_difficulty, timestamp, top_hash, issued"
)
"""``JobRow``'s fields, in order: the ``jobs`` columns (after ``client``) of both stores."""


def session_from_row(r: Sequence[Any]) -> SessionRow:
    """The session a ``SESSION_COLUMNS`` row of either store describes."""
    return SessionRow(
        bytes(r[0]), int(r[1]), str(r[2]), float(r[3]), float(r[4]),
        None if r[5] is None else bytes(r[5]), None if r[6] is None else bytes(r[6]),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session as read: its row and the rows of its current and previous jobs."""

    row: SessionRow
    job: JobRow | None
    previous_job: JobRow | None


def template_id(template_blob: bytes) -> bytes:
    """The id a template's row is stored under (its hash)."""
    return hashlib.blake2b(template_blob, digest_size=32).digest()


def job_id(hashing_blob: bytes) -> bytes:
    """The id of a job: the hash of its hashing blob, unique per client and job (the
    client's extra nonce is in it, and the timestamp moves on between a client's jobs)."""
    return hashlib.blake2b(hashing_blob, digest_size=16).digest()


def nonce_slot(job: JobRow | None, cookie: int) -> bytes:
    """The key a share's nonce is recorded under: its job, or (no job yet) its cookie."""
    return job.job_id if job is not None else b"\x00cookie" + (cookie & U32).to_bytes(4, "big")


def nonce_expiry(job: JobRow | None, now: int) -> int:
    """When a nonce row may be forgotten: once its job can no longer be submitted."""
    issued = job.issued if job is not None else now
    return issued + JOB_LIFETIME_S + NONCE_MARGIN_S


def job_expired(job: JobRow, now: float) -> bool:
    """Whether ``job`` is past its lifetime (a share for it is very stale)."""
    return now > job.issued + JOB_LIFETIME_S


def kept_jobs(row: SessionRow) -> tuple[bytes, ...]:
    """The job ids a session still refers to; every other job of the client can go."""
    return tuple(j for j in (row.job, row.previous_job) if j is not None)


class JobCache:
    """Job rows and templates this process has seen. Both are immutable once written, so a
    cached copy is never stale (a deleted job is only looked up again if a session names it,
    which it cannot once deleted); bounded, oldest first out."""

    def __init__(self, max_jobs: int = 100_000, max_templates: int = 64) -> None:
        self._jobs: dict[tuple[bytes, bytes], JobRow] = {}
        self._templates: dict[bytes, bytes] = {}
        self._max_jobs = max_jobs
        self._max_templates = max_templates

    def job(self, client: bytes, job: bytes) -> JobRow | None:
        return self._jobs.get((client, job))

    def add_job(self, client: bytes, row: JobRow) -> None:
        self._jobs[(client, row.job_id)] = row
        # Past the bound the oldest insertions go (dicts keep insertion order).
        if len(self._jobs) > self._max_jobs:
            del self._jobs[next(iter(self._jobs))]

    def template(self, tid: bytes) -> bytes | None:
        return self._templates.get(tid)

    def add_template(self, tid: bytes, blob: bytes) -> None:
        self._templates[tid] = blob
        if len(self._templates) > self._max_templates:
            del self._templates[next(iter(self._templates))]
