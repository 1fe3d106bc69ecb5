"""monerod's share rules, in monerod's order, as small pure functions over a session.

The order matters because clients observe it: a duplicate is detected before staleness, the
nonce is remembered before the hash is checked (so re-sending a bad nonce is a duplicate), and
a share for a client with no job yet is "not initialized".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rpcpay.gateway.jobs import Job
from rpcpay.gateway.protocol import (
    ERROR_DUPLICATE_PAYMENT,
    ERROR_PAYMENT_TOO_LOW,
    ERROR_STALE_PAYMENT,
    ERROR_WRONG_BLOCKBLOB,
    MESSAGE_BAD_HASH,
)
from rpcpay.gateway.sessions import STALE_THRESHOLD_S, ClientSession


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
class Admission:
    """A share that passed the cheap checks and now needs its hash checked."""

    job: Job
    is_current: bool


def admit_share(session: ClientSession, cookie: int, nonce: int, now: float) -> Admission | Verdict:
    """Apply monerod's checks that need no hashing; remember the nonce as monerod does."""
    # The cookie must name the current or the previous job.
    if cookie not in (session.cookie, session.previous_cookie()):
        return Verdict.VERY_STALE
    is_current = cookie == session.cookie
    # A nonce is paid once per job, even if its hash later turns out bad.
    if not session.remember_nonce(nonce, is_current):
        return Verdict.DUPLICATE
    # A previous-job share must come soon after the client's last job request.
    if not is_current and now > session.update_time + STALE_THRESHOLD_S:
        return Verdict.STALE
    job = session.job if is_current else session.previous_job
    # The named job must exist (a client that never asked for one has none).
    if job is None:
        return Verdict.NOT_INITIALIZED
    return Admission(job, is_current)
