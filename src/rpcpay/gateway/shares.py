"""monerod's share rules, in monerod's order, as small pure functions over a session snapshot.

The order matters because clients observe it: an unknown cookie is very stale; then a
duplicate is detected (the caller asks the store whether the nonce's row exists) before
staleness; a share for a client with no job yet is "not initialized". The nonce is recorded
for stale and not-initialized shares too, and before the hash is judged (in the booking
transaction), so re-sending such a nonce is a duplicate, as in monerod.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rpcpay.gateway.protocol import (
    ERROR_DUPLICATE_PAYMENT,
    ERROR_PAYMENT_TOO_LOW,
    ERROR_STALE_PAYMENT,
    ERROR_WRONG_BLOCKBLOB,
    MESSAGE_BAD_HASH,
)
from rpcpay.gateway.sessions import STALE_THRESHOLD_S, ClientSession
from rpcpay.ledger.session_rows import JobRow, job_expired, nonce_slot


class Verdict(enum.Enum):
    """What became of a submitted nonce."""

    GOOD = "good"
    VERY_STALE = "very stale"
    DUPLICATE = "duplicate"
    STALE = "stale"
    NOT_INITIALIZED = "not initialized"
    BAD = "bad"


#: The JSON-RPC error monerod answers for each refused share.
VERDICT_ERRORS: dict[Verdict, tuple[int, str]] = {
    Verdict.VERY_STALE: (ERROR_STALE_PAYMENT, "Very stale payment"),
    Verdict.DUPLICATE: (ERROR_DUPLICATE_PAYMENT, "Duplicate payment"),
    Verdict.STALE: (ERROR_STALE_PAYMENT, "stale payment"),
    Verdict.NOT_INITIALIZED: (ERROR_WRONG_BLOCKBLOB, "not initialized"),
    Verdict.BAD: (ERROR_PAYMENT_TOO_LOW, MESSAGE_BAD_HASH),
}


@dataclass(frozen=True, slots=True)
class Slot:
    """The job a share's cookie names (None: the client has no job under it yet), and the
    key its nonce is recorded under."""

    job: JobRow | None
    is_current: bool
    key: bytes


@dataclass(frozen=True, slots=True)
class Admission:
    """A share that passed the cheap checks and now needs its hash checked."""

    job: JobRow
    is_current: bool
    slot: Slot


def place_share(session: ClientSession, cookie: int) -> Slot | Verdict:
    """The job the cookie names; ``VERY_STALE`` if it names neither of the client's jobs."""
    # The cookie must name the current or the previous job.
    if cookie not in (session.cookie, session.previous_cookie()):
        return Verdict.VERY_STALE
    is_current = cookie == session.cookie
    job = session.job if is_current else session.previous_job
    return Slot(job, is_current, nonce_slot(job, cookie))


def judge_slot(session: ClientSession, slot: Slot, now: float) -> Admission | Verdict:
    """monerod's checks after the duplicate check, before hashing."""
    # A previous-job share must come soon after the client's last job request.
    if not slot.is_current and now > session.update_time + STALE_THRESHOLD_S:
        return Verdict.STALE
    # The named job must exist (a client that never asked for one has none).
    if slot.job is None:
        return Verdict.NOT_INITIALIZED
    # A job past its lifetime has had its nonce rows forgotten: it can no longer be paid.
    if job_expired(slot.job, now):
        return Verdict.VERY_STALE
    return Admission(slot.job, slot.is_current, slot)
