"""The ``Ledger``: monerod's per-client balances, kept durably.

monerod holds its accounts in memory and loses every balance on restart. The ledger
applies the same rules (``rpcpay.ledger.account``) but writes each changed account to a
``LedgerStore`` *before* the method returns, so whatever the gateway then tells the
client (a new balance, a served call) is already on disk. If the store fails, the
method raises ``LedgerError`` and the in-memory state is left as it was: the new
account is adopted only after the store accepted it.

Memory: accounts are kept in a write-through dict, filled lazily from the store on a
client's first contact after start-up, so start-up reads nothing and the hot path
(``pay``) reads no disk. The first whole-ledger call (``accounts``, ``totals``,
``forget_idle``) loads every stored account once; from then on the dict is complete
(this ledger is the store's only writer), scans never touch the disk, and an unknown
client id costs no disk lookup either. Measured with tracemalloc: about 300 bytes per
tracked account plus its 65-byte key object (CPython 3.11, 100,000 accounts), well
under the gateway's 2 KiB per client budget.

Blank accounts: monerod creates an account on *any* contact, including from a client
that never earns anything. Anyone can make unlimited client keys for free, so writing a
row for each would let a flood of fresh ids bloat the database. An account is therefore
written to the store only once it has held a credit (balance, credits earned or
credits used not zero; see ``account.is_blank``). Until then it lives only in a
bounded LRU map (``max_transient`` entries, 100,000 by default); when the map is full
the least recently seen blank account is dropped, exactly as if monerod's two-minute
``flush_by_age`` had forgotten it early. Such an account has nothing to lose: its
nonce counters and its last charged timestamp are reset, and a refusal on a zero
balance answers the same either way. Share counters alone (stale, bad, dupe) do not make
an account worth storing, since any fresh key can collect them. Once stored, an account
is saved on every change, even if its balance returns to zero, until ``forget_idle``
deletes it.

Not thread-safe: meant to be called from the gateway's event loop only. One ``Ledger``
per store.
"""

from __future__ import annotations

import time
from collections import OrderedDict
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
from rpcpay.ledger.store import LedgerStore

DEFAULT_MAX_TRANSIENT = 100_000
"""How many never-credited accounts are remembered in memory only."""


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


class Ledger:
    """Per-client credit accounts with monerod's rules, durable before acknowledgement."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        clock: Callable[[], float] = time.time,
        max_transient: int = DEFAULT_MAX_TRANSIENT,
    ) -> None:
        # The blank-account map needs room for at least one client.
        if max_transient < 1:
            raise ValueError("max_transient must be at least 1")
        self._store = store
        self._clock = clock
        self._max_transient = max_transient
        # Accounts known to have a row in the store, identical to that row.
        self._stored: dict[bytes, Account] = {}
        # Blank accounts, never written, least recently used first.
        self._transient: OrderedDict[bytes, Account] = OrderedDict()
        # Whether _stored holds every stored account (after the first full scan).
        self._complete = False

    def _now(self) -> int:
        """The clock in whole unix seconds, as monerod's ``time(NULL)``."""
        return int(self._clock())

    def _lookup(self, client: bytes) -> Account | None:
        """The client's account from memory, else from the store, else None."""
        acct = self._stored.get(client)
        if acct is not None:
            return acct
        acct = self._transient.get(client)
        if acct is not None:
            self._transient.move_to_end(client)
            return acct
        # Once every stored account is in memory, a miss is a definite miss.
        if self._complete:
            return None
        acct = self._store.load(client)
        if acct is not None:
            self._stored[client] = acct
        return acct

    def _stored_accounts(self) -> list[Account]:
        """Every stored account, reading the store only the first time."""
        if not self._complete:
            for acct in self._store.iter_accounts():
                self._stored.setdefault(acct.client, acct)
            self._complete = True
        return list(self._stored.values())

    def _get_or_create(self, client: bytes) -> tuple[Account | None, Account]:
        """The current account (None if unknown) and the account to apply a rule to.

        An unknown client gets monerod's fresh account, created now.
        """
        old = self._lookup(client)
        return old, (old if old is not None else rules.new_account(client, self._now()))

    def _commit(self, old: Account | None, new: Account) -> None:
        """Adopt ``new`` as the client's account, writing it first if it must be stored."""
        client = new.client
        # A stored account is rewritten whenever it changed.
        if client in self._stored:
            if new != old:
                self._store.save(new)
                self._stored[client] = new
            return
        # A blank account stays in memory only, most recently used last.
        if rules.is_blank(new):
            self._transient[client] = new
            self._transient.move_to_end(client)
            if len(self._transient) > self._max_transient:
                self._transient.popitem(last=False)
            return
        # An account that now holds or held credits gets its row before we go on.
        self._store.save(new)
        self._stored[client] = new
        self._transient.pop(client, None)

    def pay(self, client: bytes, ts_us: int, payment: int, same_ts: bool = False) -> PaymentResult:
        """Charge a call signed at ``ts_us`` (monerod's ``check_payment``/``pay``).

        The result carries what to answer: on refusal the gateway replies "PAYMENT
        REQUIRED" with ``result.credits`` (0 for a timestamp refusal, as monerod).
        A refusal for lack of credits still records the timestamp, durably.
        """
        old, acct = self._get_or_create(client)
        new, result = rules.apply_payment(acct, ts_us, payment, same_ts)
        self._commit(old, new)
        return result

    def claim(self, client: bytes, ts_us: int) -> bool:
        """Use up the client id signed at ``ts_us`` for a share (``claim_timestamp``); False,
        and nothing changed, if the client already used that timestamp or a newer one. The
        timestamp is in the account row before this returns, so a replay after a restart
        is refused too."""
        old, acct = self._get_or_create(client)
        new = rules.claim_timestamp(acct, ts_us)
        if new is None:
            return False
        self._commit(old, new)
        return True

    def record_share(
        self, client: bytes, outcome: ShareOutcome, credits_per_hash_found: int
    ) -> Account:
        """Book a judged share: credit a good one, penalise a bad or duplicate one."""
        old, acct = self._get_or_create(client)
        new = rules.apply_share(acct, outcome, credits_per_hash_found)
        self._commit(old, new)
        return new

    def credit(
        self, client: bytes, credits: int, save: Callable[[Account], bool]
    ) -> Account | None:
        """Credit ``credits`` paid on another rail, written by ``save`` (the caller's atomic
        write of the account *and* of what paid for it, e.g. ``save_with_cheque``).

        ``save`` returns False when the payment was recorded before: then nothing changes
        and this returns None. The new account is adopted only after ``save`` returned.
        """
        _, acct = self._get_or_create(client)
        new = rules.apply_credit(acct, credits)
        # The payment was booked already: no second credit.
        if not save(new):
            return None
        self._stored[client] = new
        self._transient.pop(client, None)
        return new

    def adjust_balance(self, client: bytes, delta: int) -> Account:
        """Admin credit or debit (``rpc_access_account``), saturating/clamping."""
        old, acct = self._get_or_create(client)
        new = rules.adjust_balance(acct, delta)
        self._commit(old, new)
        return new

    def refund(self, client: bytes, amount: int) -> Account:
        """Give back a charge for a call the upstream failed to answer."""
        old, acct = self._get_or_create(client)
        new = rules.apply_refund(acct, amount)
        self._commit(old, new)
        return new

    def touch(self, client: bytes) -> Account:
        """Note that the client asked for a job (``rpc_access_info``), creating it if new."""
        old, acct = self._get_or_create(client)
        new = rules.touch(acct, self._now())
        self._commit(old, new)
        return new

    def get(self, client: bytes) -> Account | None:
        """The client's account, or None; never creates one."""
        return self._lookup(client)

    def accounts(self) -> list[Account]:
        """Every known account, stored and blank (what ``rpc_access_data`` lists)."""
        return self._stored_accounts() + list(self._transient.values())

    def totals(self) -> LedgerTotals:
        """Client count and sums of balances and counters over every known account."""
        return sum_totals(self.accounts())

    def forget_idle(
        self, idle_s: int = DEFAULT_FLUSH_AGE, zero_idle_s: int = DEFAULT_ZERO_FLUSH_AGE
    ) -> int:
        """Forget idle clients as monerod's ``flush_by_age`` does; return how many.

        Credited accounts go after ``idle_s`` (180 days) without activity, empty ones
        after ``zero_idle_s`` (2 minutes). Stored rows are deleted in one transaction
        before memory forgets them. Scans every account in memory (about 0.7 s per
        million accounts); run it about once a minute, as monerod's idle handler does.
        """
        now = self._now()
        doomed = [
            a.client
            for a in self._stored_accounts()
            if rules.is_forgettable(a, now, idle_s, zero_idle_s)
        ]
        # Nothing stored is idle: skip the write.
        if doomed:
            self._store.delete(doomed)
        for client in doomed:
            self._stored.pop(client, None)
        blank = [
            c
            for c, a in self._transient.items()
            if rules.is_forgettable(a, now, idle_s, zero_idle_s)
        ]
        for client in blank:
            del self._transient[client]
        return len(doomed) + len(blank)

    def close(self) -> None:
        """Close the store; blank accounts are dropped, as a restart would."""
        self._store.close()
