"""Per-client job state: cookies, current and previous job, the nonces already paid.

This is monerod's ``client_info`` minus the balance (which lives in the ledger). It is kept in
memory only: after a restart a client simply asks for a new job, as it would after a new block.
The table is bounded; the least recently seen client is dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rpcpay.gateway.jobs import Job

_NO_NONCES: frozenset[int] = frozenset()  # shared by every job with no share yet (saves 216 B)
STALE_THRESHOLD_S = 15  # monerod: a previous-job share is accepted this long after the last info
JOB_MAX_AGE_S = 15  # monerod: a client gets a new job after this long, or on a new top
U32 = 0xFFFFFFFF


@dataclass(slots=True)
class ClientSession:
    """Mutable job state of one client."""

    update_time: float
    cookie: int = 0
    top: str = ""
    job: Job | None = None
    previous_job: Job | None = None
    payments: set[int] | frozenset[int] = _NO_NONCES
    previous_payments: set[int] | frozenset[int] = _NO_NONCES
    job_time: float = 0.0

    def remember_nonce(self, nonce: int, current: bool) -> bool:
        """Record ``nonce`` for the current (or previous) job; False if it was already seen."""
        seen = self.payments if current else self.previous_payments
        if nonce in seen:
            return False
        if isinstance(seen, frozenset):
            seen = {nonce}
            if current:
                self.payments = seen
            else:
                self.previous_payments = seen
        else:
            seen.add(nonce)
        return True

    def forget_nonce(self, nonce: int, current: bool) -> None:
        """Drop a nonce that was never checked, so the client may send it again."""
        seen = self.payments if current else self.previous_payments
        if isinstance(seen, set):
            seen.discard(nonce)

    def previous_cookie(self) -> int:
        """The cookie of the previous job (u32 arithmetic, as in monerod)."""
        return (self.cookie - 1) & U32

    def needs_job(self, top: str, now: float) -> bool:
        """monerod's rule: a new job on a new top, or when the job is 15 s old."""
        return top != self.top or now >= self.job_time + JOB_MAX_AGE_S

    def install_job(self, job: Job, now: float) -> None:
        """Make ``job`` current; the current job becomes the previous one."""
        self.previous_job = self.job
        self.job = job
        self.previous_payments = self.payments
        self.payments = _NO_NONCES
        self.cookie = (self.cookie + 1) & U32
        self.job_time = now


class SessionTable:
    """Bounded LRU map of client key -> ClientSession."""

    def __init__(self, max_sessions: int = 200_000) -> None:
        # The table needs room for at least one client.
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self._max = max_sessions
        self._sessions: OrderedDict[bytes, ClientSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def max_sessions(self) -> int:
        """The cap: past it the least recently seen client is dropped."""
        return self._max

    def __contains__(self, client: bytes) -> bool:
        return client in self._sessions

    def get_or_create(self, client: bytes, now: float) -> ClientSession:
        """The client's session, created as monerod creates one on first contact."""
        session = self._sessions.get(client)
        if session is None:
            session = ClientSession(update_time=now)
            self._sessions[client] = session
            if len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(client)
        return session

    def forget(self, client: bytes) -> None:
        """Drop a client's session (when the ledger forgets the client)."""
        self._sessions.pop(client, None)
