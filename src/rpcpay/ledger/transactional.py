"""The async, transactional store seam: one pure rule, one transaction, any number of writers.

A store that many gateway processes share cannot be fronted by an in-memory copy: another
process may change any account at any time. So the seam is aperture's ``ExecTx`` shape::

    applied = await store.apply(client, step, now=now)
    #   inside ONE transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE):
    #     old = the stored account, or None
    #     new, outcome = step(old or new_account(client, now))    -- a pure rule
    #     write new if ``must_write(old, new)``
    #   retried on a serialization failure, deadlock or lost first-insert race,
    #   at most ``MAX_ATTEMPTS`` times; then ``LedgerError``.

A share's nonce is recorded in its account's transaction too (``apply_with_nonce``): the
step for a new nonce runs if its row was inserted, the step for a duplicate if another
process (or an earlier call) recorded it, so the same nonce sent to two processes at once
is credited once and the other submission is booked as a duplicate.

A step is a pure function of the account (``pay_step``, ``share_step``... adapt the rules of
``rpcpay.ledger.account``), so running it again on a retry is harmless. When ``apply``
returns, the transaction has committed: what it reports may be told to the client.

The cheque book (``ChequeBook``) is an interface of its own. A credit paid by a cheque
joins the cheque's row to the account's transaction (``apply_with_cheque``): the cheque is
recorded (``RecordCheque``) or a held one released (``CreditHeld``) in the same transaction
as the credit, and if the cheque book refuses (recorded before, no longer pending) nothing
at all is written and the call returns None. "Credited once" is then the database's
uniqueness constraint, across every process.

Pristine accounts (``account.is_pristine``: no credit, no share counted, no client id
used) are not written unless a row exists already: anyone can make client keys for free.
Any other account is, even one that never held a credit, because another process must see
its used client ids (a signed id is accepted once across every process) and its share
counters (``rpc_access_data``, as monerod). Never-credited rows go after two idle minutes
(``forget_idle``), as monerod's ``flush_by_age`` forgets them, so they stay few.

Every failure raises ``rpcpay.errors.LedgerError``; a failed ``apply`` changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from rpcpay.ledger import account as rules
from rpcpay.ledger.account import (
    DEFAULT_FLUSH_AGE,
    DEFAULT_ZERO_FLUSH_AGE,
    Account,
    PaymentResult,
    ShareOutcome,
)
from rpcpay.ledger.session_rows import JobRow, SessionRow, StoredSession
from rpcpay.ledger.sqlite_store import ChequeRow

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

MAX_ATTEMPTS = 8
"""How often one ``apply`` runs its transaction before giving up on conflicts."""

Step = Callable[[Account], tuple[Account, R]]
"""A pure rule over one account: the new account and what to report."""


@dataclass(frozen=True, slots=True)
class Applied(Generic[R_co]):
    """A committed step: its outcome, the account after it, and whether a row holds it."""

    outcome: R_co
    account: Account
    stored: bool


@dataclass(frozen=True, slots=True)
class RecordCheque:
    """Join: record this credited cheque; refused if its id is recorded already."""

    cheque: ChequeRow


@dataclass(frozen=True, slots=True)
class CreditHeld:
    """Join: release a held (``pending``) cheque as credited; refused unless still pending."""

    cheque_id: bytes


ChequeJoin = RecordCheque | CreditHeld

MAX_JOB_ID_LENGTH = 64


@dataclass(frozen=True, slots=True)
class RecordNonce:
    """A share's nonce for one job of the client: recorded once across every process.

    ``expires`` (unix seconds) is when the job can no longer be submitted, after which the
    row is only clutter (``forget_nonces``)."""

    job_id: bytes
    nonce: int
    expires: int

    def __post_init__(self) -> None:
        # A job id is a short opaque key.
        if not 0 < len(self.job_id) <= MAX_JOB_ID_LENGTH:
            raise ValueError(f"job id must be 1 to {MAX_JOB_ID_LENGTH} bytes")
        # The nonce and the expiry are u64s.
        if not (0 <= self.nonce <= rules.U64_MAX and 0 <= self.expires <= rules.U64_MAX):
            raise ValueError("nonce and expires must be u64s")


def must_write(old: Account | None, new: Account) -> bool:
    """Whether a step's result is written: it changed, and it is stored or worth storing."""
    # An unchanged account needs no write.
    if new == old:
        return False
    # A stored account is rewritten on every change, even back to blank.
    if old is not None:
        return True
    # A new account gets a row once a call marked it (a used client id, a share counted, a
    # credit): another process must see that mark. Merely asking for a job leaves none.
    return not rules.is_pristine(new)


def settle(client: bytes, old: Account | None, step: Step[R], now: int) -> tuple[Account, R, bool]:
    """Run ``step`` on the stored account (or monerod's fresh one): (new, outcome, write?)."""
    current = old if old is not None else rules.new_account(client, now)
    new, outcome = step(current)
    # A step may not move an account to another client.
    if new.client != client:
        raise ValueError("a step must keep the account's client")
    return new, outcome, must_write(old, new)


def pay_step(ts_us: int, payment: int, same_ts: bool = False) -> Step[PaymentResult]:
    """``apply_payment`` as a step."""
    return lambda acct: rules.apply_payment(acct, ts_us, payment, same_ts)


def claim_step(ts_us: int) -> Step[bool]:
    """``claim_timestamp`` as a step: True if the id was fresh (and is now used up)."""

    def step(acct: Account) -> tuple[Account, bool]:
        claimed = rules.claim_timestamp(acct, ts_us)
        return (acct, False) if claimed is None else (claimed, True)

    return step


def share_step(outcome: ShareOutcome, credits_per_hash_found: int) -> Step[None]:
    """``apply_share`` as a step."""
    return lambda acct: (rules.apply_share(acct, outcome, credits_per_hash_found), None)


def credit_step(credits: int) -> Step[None]:
    """``apply_credit`` (a payment on another rail) as a step."""
    return lambda acct: (rules.apply_credit(acct, credits), None)


def adjust_step(delta: int) -> Step[None]:
    """``adjust_balance`` (admin grant or debit) as a step."""
    return lambda acct: (rules.adjust_balance(acct, delta), None)


def refund_step(amount: int) -> Step[None]:
    """``apply_refund`` as a step."""
    return lambda acct: (rules.apply_refund(acct, amount), None)


def touch_step(now: int) -> Step[None]:
    """``touch`` (the client asked for a job) as a step."""
    return lambda acct: (rules.touch(acct, now), None)


def idle_thresholds(now: int, idle_s: int, zero_idle_s: int) -> tuple[int, int]:
    """(threshold for empty accounts, for credited ones): ``is_forgettable`` as two cut-offs,
    for stores that delete idle rows with one SQL statement."""
    return max(now - zero_idle_s, 0), max(now - idle_s, 0)


class ChequeBook(Protocol):
    """The lottery rail's stamped cheques, shared like the accounts (docs/lottery.md §15).

    Crediting a cheque is not here: it joins an account's transaction through
    ``TransactionalStore.apply_with_cheque``.
    """

    async def hold_pending(self, cheque: ChequeRow) -> bool:
        """Record a cheque paid to a client but held; False if recorded already."""
        ...

    async def withhold_pending(self, cheque_id: bytes, outcome: str) -> None:
        """Never credit a held cheque: mark it ``outcome``."""
        ...

    async def pending_cheque(self, cheque_id: bytes) -> ChequeRow | None:
        """One held cheque, if it is still pending."""
        ...

    async def pending_cheques(self) -> list[ChequeRow]:
        """Cheques paid to clients and held, not yet credited."""
        ...

    async def hold_cheque(self, cheque: ChequeRow) -> bool:
        """Keep a peer's cheque (no credit); False if it is held already."""
        ...

    async def hold_evidence(self, cheque: ChequeRow, outcome: str) -> None:
        """Keep half of a fraud pair marked ``outcome`` (a credited cheque is left alone)."""
        ...

    async def hold_evidence_outcome(self, cheque_id: bytes, outcome: str) -> None:
        """Mark a held (uncredited) cheque's evidence ``outcome``."""
        ...

    async def cheques_with_outcome(self, outcome: str) -> list[ChequeRow]:
        """Held (uncredited) cheques marked ``outcome``."""
        ...

    async def cheques_of(self, lottery: bytes) -> list[ChequeRow]:
        """Every held cheque of one lottery, ours and peers'."""
        ...

    async def open_lotteries(self) -> list[tuple[bytes, int]]:
        """(lottery, reveal block) of every lottery we were paid in and have not closed."""
        ...

    async def close_lottery(self, lottery: bytes, outcome: str) -> None:
        """Mark our cheques of ``lottery`` as settled with ``outcome``."""
        ...

    async def outcomes(self) -> dict[bytes, str]:
        """Each closed lottery's outcome."""
        ...

    async def take_lease(self, name: str, holder: str, now: int, ttl_s: int) -> bool:
        """Hold ``name`` (e.g. "claim:<lottery>") until ``now + ttl_s`` if it is free, expired
        or ``holder``'s already (then renewed); False if another holder has it. One claimer
        at a time across every process, and a crashed holder's lease runs out."""
        ...

    async def release_lease(self, name: str, holder: str) -> None:
        """Give ``name`` up, if ``holder`` holds it."""
        ...


class TransactionalStore(Protocol):
    """Accounts shared by any number of processes; every change is one transaction."""

    @property
    def cheques(self) -> ChequeBook:
        """The cheque book on the same database."""
        ...

    async def apply(self, client: bytes, step: Step[R], *, now: int) -> Applied[R]:
        """Run ``step`` on ``client``'s account in one committed transaction."""
        ...

    async def apply_with_cheque(
        self, client: bytes, step: Step[R], cheque: ChequeJoin, *, now: int
    ) -> Applied[R] | None:
        """Like ``apply``, with ``cheque`` joined; None, nothing written, if it is refused."""
        ...

    async def apply_with_nonce(
        self, client: bytes, nonce: RecordNonce, fresh: Step[R], dupe: Step[R], *, now: int
    ) -> Applied[R]:
        """Record ``nonce`` and run ``fresh``, or run ``dupe`` if it was recorded before;
        one transaction either way."""
        ...

    async def forget_nonces(self, now: int) -> int:
        """Delete the nonces of jobs expired before ``now``; how many."""
        ...

    async def has_nonce(self, client: bytes, slot: bytes, nonce: int) -> bool:
        """Whether ``nonce`` was recorded for the job ``slot`` (``RecordNonce.job_id``)."""
        ...

    async def load_session(self, client: bytes) -> StoredSession | None:
        """The client's shared hashing session with its current and previous jobs."""
        ...

    async def save_session(
        self,
        row: SessionRow,
        *,
        expected_cookie: int | None,
        new_job: JobRow | None = None,
        template: bytes | None = None,
    ) -> bool:
        """Write a session, in one transaction, if its stored cookie is still
        ``expected_cookie`` (None: no session stored yet); False, nothing written, if another
        process changed it. With ``new_job`` (and its ``template`` blob, stored once per
        template), the job is stored and the client's jobs the row no longer names deleted."""
        ...

    async def template(self, template_id: bytes) -> bytes | None:
        """A stored block template's blob."""
        ...

    async def count_sessions(self) -> int:
        """How many client sessions are stored."""
        ...

    async def forget_sessions(self, now: float) -> int:
        """Delete sessions idle for ``JOB_LIFETIME_S``, with their jobs; how many."""
        ...

    async def get(self, client: bytes) -> Account | None:
        """The stored account of ``client``, or None."""
        ...

    async def accounts(self) -> list[Account]:
        """Every stored account, in no particular order."""
        ...

    async def count(self) -> int:
        """How many accounts are stored."""
        ...

    async def forget_idle(
        self,
        now: int,
        idle_s: int = DEFAULT_FLUSH_AGE,
        zero_idle_s: int = DEFAULT_ZERO_FLUSH_AGE,
    ) -> int:
        """Delete the rows ``is_forgettable`` at ``now``, in one transaction; how many."""
        ...

    async def probe(self) -> None:
        """Check that a write could be made now (``/readyz``); ``LedgerError`` if not."""
        ...

    async def close(self) -> None:
        """Release the store; it must not be used afterwards. Idempotent."""
        ...
