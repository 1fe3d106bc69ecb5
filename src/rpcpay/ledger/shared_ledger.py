"""``SharedLedger``: the gateway's ledger calls, async, over a store other processes also write.

The calls of the former single-writer ``Ledger`` (``pay``, ``claim``, ``record_share``, ...), but no
account is held in memory: every call is one ``TransactionalStore.apply`` of the matching
pure rule, committed before the call returns ("durable before the client hears"), and
every read asks the store, so what another gateway process did is always seen. Credits
paid by a cheque join the cheque's row to the same transaction (``credit_cheque``,
``credit_held``), so a cheque is credited once across all processes.

Pristine accounts (no credit, no share counted, no client id used: a client that only
asked for a job) are not stored, nor remembered in memory: a per-process memory would differ
between processes. ``get`` is None for them. Every other account is stored, so that a used
client id or a share penalty is seen by every process (``transactional.must_write``).

Submitted shares carry their nonce (``record_submitted_share``): the nonce row is inserted
in the share's transaction, so a nonce sent to two processes at once is credited once and
booked as a duplicate by the other.

The gateway's ``PaymentService``, admin listener, dashboard and metrics call this (or
``MeteredLedger``, which times it), the lottery desk included (``credit_held``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rpcpay.ledger import account as rules
from rpcpay.ledger.account import (
    DEFAULT_FLUSH_AGE,
    DEFAULT_ZERO_FLUSH_AGE,
    Account,
    PaymentResult,
    ShareOutcome,
)
from rpcpay.ledger.sqlite_store import ChequeRow
from rpcpay.ledger.transactional import (
    CreditHeld,
    RecordCheque,
    RecordNonce,
    Step,
    TransactionalStore,
    adjust_step,
    claim_step,
    credit_step,
    pay_step,
    refund_step,
    share_step,
    touch_step,
)


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """Sums over every known account, for the admin view (monerod's ``rpc_payments``)."""

    clients: int
    balance: int
    credits_total: int
    credits_used: int
    nonces_good: int
    nonces_stale: int
    nonces_bad: int
    nonces_dupe: int


def sum_totals(accounts: list[Account]) -> LedgerTotals:
    """Add up the accounts' balances and counters (unbounded ints: sums may pass u64)."""
    return LedgerTotals(
        clients=len(accounts),
        balance=sum(a.balance for a in accounts),
        credits_total=sum(a.credits_total for a in accounts),
        credits_used=sum(a.credits_used for a in accounts),
        nonces_good=sum(a.nonces_good for a in accounts),
        nonces_stale=sum(a.nonces_stale for a in accounts),
        nonces_bad=sum(a.nonces_bad for a in accounts),
        nonces_dupe=sum(a.nonces_dupe for a in accounts),
    )


def booked_share_step(outcome: ShareOutcome, credits_per_hash_found: int) -> Step[ShareOutcome]:
    """``apply_share`` as a step that reports the outcome it booked."""
    return lambda acct: (rules.apply_share(acct, outcome, credits_per_hash_found), outcome)


class SharedLedger:
    """Per-client credit accounts with monerod's rules, on a store shared by processes."""

    def __init__(self, store: TransactionalStore, *, clock: Callable[[], float] = time.time):
        self.store = store
        self._clock = clock

    def _now(self) -> int:
        """The clock in whole unix seconds, as monerod's ``time(NULL)``."""
        return int(self._clock())

    async def pay(
        self, client: bytes, ts_us: int, payment: int, same_ts: bool = False
    ) -> PaymentResult:
        """Charge a call signed at ``ts_us`` (``Ledger.pay``)."""
        applied = await self.store.apply(client, pay_step(ts_us, payment, same_ts), now=self._now())
        return applied.outcome

    async def claim(self, client: bytes, ts_us: int) -> bool:
        """Use up the client id signed at ``ts_us`` for a share; False if it was used."""
        return (await self.store.apply(client, claim_step(ts_us), now=self._now())).outcome

    async def record_share(
        self, client: bytes, outcome: ShareOutcome, credits_per_hash_found: int
    ) -> Account:
        """Book a judged share: credit a good one, penalise a bad or duplicate one."""
        step = share_step(outcome, credits_per_hash_found)
        return (await self.store.apply(client, step, now=self._now())).account

    async def record_submitted_share(
        self, client: bytes, nonce: RecordNonce, outcome: ShareOutcome, credits_per_hash_found: int
    ) -> tuple[Account, ShareOutcome]:
        """Book a judged share with its nonce recorded in the same transaction: if any
        process recorded that nonce for that job before, it is booked as ``DUPE`` instead.
        Returns the account and the outcome booked."""
        applied = await self.store.apply_with_nonce(
            client,
            nonce,
            booked_share_step(outcome, credits_per_hash_found),
            booked_share_step(ShareOutcome.DUPE, credits_per_hash_found),
            now=self._now(),
        )
        return applied.account, applied.outcome

    async def record_unbooked_nonce(
        self, client: bytes, nonce: RecordNonce, credits_per_hash_found: int
    ) -> bool:
        """Record the nonce of a share refused without a penalty (monerod's "not
        initialized"): True if it is new; one recorded before, by any process, is booked as a
        duplicate instead, in the same transaction, and False returned."""
        applied = await self.store.apply_with_nonce(
            client,
            nonce,
            lambda acct: (acct, True),
            lambda acct: (
                rules.apply_share(acct, ShareOutcome.DUPE, credits_per_hash_found),
                False,
            ),
            now=self._now(),
        )
        return applied.outcome

    async def forget_nonces(self) -> int:
        """Delete the recorded nonces of expired jobs; how many."""
        return await self.store.forget_nonces(self._now())

    async def credit_cheque(self, client: bytes, credits: int, cheque: ChequeRow) -> Account | None:
        """Credit a cheque and record it in one transaction; None if it was recorded before."""
        applied = await self.store.apply_with_cheque(
            client, credit_step(credits), RecordCheque(cheque), now=self._now()
        )
        return None if applied is None else applied.account

    async def credit_held(self, client: bytes, credits: int, cheque_id: bytes) -> Account | None:
        """Credit a held cheque and release it in one transaction; None unless still held."""
        applied = await self.store.apply_with_cheque(
            client, credit_step(credits), CreditHeld(cheque_id), now=self._now()
        )
        return None if applied is None else applied.account

    async def adjust_balance(self, client: bytes, delta: int) -> Account:
        """Admin credit or debit (``rpc_access_account``), saturating/clamping."""
        return (await self.store.apply(client, adjust_step(delta), now=self._now())).account

    async def refund(self, client: bytes, amount: int) -> Account:
        """Give back a charge for a call the upstream failed to answer."""
        return (await self.store.apply(client, refund_step(amount), now=self._now())).account

    async def touch(self, client: bytes) -> Account:
        """Note that the client asked for a job (``rpc_access_info``)."""
        now = self._now()
        return (await self.store.apply(client, touch_step(now), now=now)).account

    async def get(self, client: bytes) -> Account | None:
        """The client's stored account, or None; never creates one."""
        return await self.store.get(client)

    async def accounts(self) -> list[Account]:
        """Every stored account, whichever process wrote it."""
        return await self.store.accounts()

    async def totals(self) -> LedgerTotals:
        """Client count and sums over every stored account."""
        return sum_totals(await self.store.accounts())

    async def forget_idle(
        self, idle_s: int = DEFAULT_FLUSH_AGE, zero_idle_s: int = DEFAULT_ZERO_FLUSH_AGE
    ) -> int:
        """Delete idle accounts as monerod's ``flush_by_age`` does; how many."""
        return await self.store.forget_idle(self._now(), idle_s, zero_idle_s)

    async def close(self) -> None:
        """Close the store."""
        await self.store.close()
