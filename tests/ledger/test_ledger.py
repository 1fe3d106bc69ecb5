"""Ledger: write-through persistence, blank accounts, forget_idle, totals, failures."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from rpcpay.errors import LedgerError
from rpcpay.ledger.account import Account, PaymentRefusal, ShareOutcome, new_account
from rpcpay.ledger.ledger import Ledger, LedgerTotals
from rpcpay.ledger.sqlite_store import SqliteLedgerStore
from rpcpay.ledger.store import LedgerStore

T0 = 1_700_000_000
DAY = 86400


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class MemoryStore:
    """A LedgerStore in a dict that counts writes and can be told to fail."""

    def __init__(self) -> None:
        self.rows: dict[bytes, Account] = {}
        self.saves = 0
        self.loads = 0
        self.fail = False

    def _check(self) -> None:
        if self.fail:
            raise LedgerError("disk on fire")

    def load(self, client: bytes) -> Account | None:
        self._check()
        self.loads += 1
        return self.rows.get(client)

    def save(self, account: Account) -> None:
        self._check()
        self.saves += 1
        self.rows[account.client] = account

    def save_many(self, accounts: Iterable[Account]) -> None:
        self._check()
        for a in accounts:
            self.save(a)

    def delete(self, clients: Iterable[bytes]) -> None:
        self._check()
        for c in clients:
            self.rows.pop(c, None)

    def iter_accounts(self) -> Iterator[Account]:
        self._check()
        return iter(list(self.rows.values()))

    def count(self) -> int:
        return len(self.rows)

    def close(self) -> None:
        pass


def key(i: int) -> bytes:
    return i.to_bytes(32, "big")


A = key(1)
B = key(2)


def make() -> tuple[Ledger, MemoryStore, Clock]:
    store, clock = MemoryStore(), Clock()
    store_: LedgerStore = store
    return Ledger(store_, clock=clock), store, clock


def test_unknown_client_pays_nothing_and_is_kept_in_memory_only() -> None:
    ledger, store, _ = make()
    r = ledger.pay(A, 1_000, 1)
    assert not r.ok and r.reason is PaymentRefusal.CREDITS and r.credits == 0
    # monerod creates the account on contact, with the timestamp burnt.
    got = ledger.get(A)
    assert got is not None and got.last_request_timestamp_us == 1_000 and got.update_time == T0
    assert store.saves == 0 and store.rows == {}
    assert ledger.pay(A, 1_000, 1).reason is PaymentRefusal.TIMESTAMP


def test_get_does_not_create() -> None:
    ledger, _, _ = make()
    assert ledger.get(A) is None
    assert ledger.accounts() == []


def test_credit_is_stored_before_return_and_pay_updates_row() -> None:
    ledger, store, _ = make()
    acct = ledger.record_share(A, ShareOutcome.GOOD, 50)
    assert store.rows[A] == acct and acct.balance == 50
    r = ledger.pay(A, 10, 20)
    assert r.ok and r.credits == 30
    assert store.rows[A].balance == 30 and store.rows[A].credits_used == 20
    # A refusal for credits still persists the burnt timestamp.
    r = ledger.pay(A, 11, 31)
    assert r.reason is PaymentRefusal.CREDITS and r.credits == 30
    assert store.rows[A].last_request_timestamp_us == 11
    # A timestamp refusal changes nothing, so writes nothing, and reports 0 credits.
    saves = store.saves
    r = ledger.pay(A, 11, 1)
    assert r.reason is PaymentRefusal.TIMESTAMP and r.credits == 0 and r.balance == 30
    assert store.saves == saves


def test_penalties_without_credit_stay_in_memory() -> None:
    ledger, store, _ = make()
    ledger.record_share(A, ShareOutcome.BAD, 10)
    ledger.record_share(A, ShareOutcome.DUPE, 10)
    acct = ledger.record_share(A, ShareOutcome.STALE, 10)
    assert (acct.nonces_bad, acct.nonces_dupe, acct.nonces_stale, acct.balance) == (1, 1, 1, 0)
    assert store.rows == {}
    # The first credit writes the whole account, counters included.
    acct = ledger.record_share(A, ShareOutcome.GOOD, 10)
    assert store.rows[A] == acct and acct.nonces_bad == 1


def test_stored_account_saved_even_back_at_zero() -> None:
    ledger, store, _ = make()
    ledger.adjust_balance(A, 5)
    ledger.adjust_balance(A, -5)
    assert store.rows[A].balance == 0
    # Unchanged accounts are not rewritten.
    saves = store.saves
    ledger.adjust_balance(A, 0)
    assert store.saves == saves


def test_touch_creates_and_updates_time() -> None:
    ledger, store, clock = make()
    assert ledger.touch(A).update_time == T0
    assert store.rows == {}
    ledger.adjust_balance(A, 1)
    clock.t = T0 + 30.9
    assert ledger.touch(A).update_time == T0 + 30
    assert store.rows[A].update_time == T0 + 30


def test_new_ledger_loads_lazily_from_store() -> None:
    ledger, store, _ = make()
    ledger.adjust_balance(A, 100)
    ledger.touch(B)  # blank: lost on restart, as intended
    second = Ledger(store, clock=Clock())
    loads = store.loads
    assert second.pay(A, 5, 40).credits == 60
    assert store.loads == loads + 1
    second.pay(A, 6, 1)
    assert store.loads == loads + 1  # cached after the first contact
    assert second.get(B) is None


def test_failed_write_changes_nothing() -> None:
    ledger, store, _ = make()
    ledger.adjust_balance(A, 100)
    before = ledger.get(A)
    store.fail = True
    with pytest.raises(LedgerError):
        ledger.pay(A, 5, 40)
    with pytest.raises(LedgerError):
        ledger.record_share(A, ShareOutcome.GOOD, 1)
    store.fail = False
    assert ledger.get(A) == before
    # The timestamp was not burnt either: the same call goes through once the store works.
    assert ledger.pay(A, 5, 40).credits == 60


def test_failed_first_credit_leaves_client_unknown() -> None:
    ledger, store, _ = make()
    store.fail = True
    with pytest.raises(LedgerError):
        ledger.adjust_balance(A, 100)
    store.fail = False
    assert ledger.get(A) is None


def test_blank_accounts_are_bounded_lru() -> None:
    store = MemoryStore()
    ledger = Ledger(store, clock=Clock(), max_transient=3)
    for i in range(3):
        ledger.touch(key(i))
    ledger.touch(key(0))  # key(0) is now the most recently used
    ledger.touch(key(3))  # evicts key(1)
    assert ledger.get(key(1)) is None
    assert {a.client for a in ledger.accounts()} == {key(0), key(2), key(3)}
    # Credited accounts are never evicted by the bound.
    ledger.adjust_balance(key(9), 1)
    for i in range(10, 20):
        ledger.touch(key(i))
    assert ledger.get(key(9)) is not None
    assert len(ledger.accounts()) == 4


def test_max_transient_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Ledger(MemoryStore(), max_transient=0)


def test_forget_idle_rules(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteLedgerStore(tmp_path / "l.db")
    ledger = Ledger(store, clock=clock)
    old_rich = key(1)
    recent_rich = key(2)
    zero_spent = key(3)
    blank = key(4)
    ledger.adjust_balance(old_rich, 10)
    ledger.adjust_balance(zero_spent, 5)
    ledger.pay(zero_spent, (T0 + 1) * 10**6, 5)
    ledger.touch(blank)
    clock.t = T0 + 100 * DAY
    ledger.adjust_balance(recent_rich, 10)
    ledger.touch(recent_rich)
    assert store.count() == 3
    # Just inside half a year for old_rich: only the empty accounts go.
    clock.t = T0 + 180 * DAY
    assert ledger.forget_idle() == 2
    assert ledger.get(zero_spent) is None and ledger.get(blank) is None
    assert ledger.get(old_rich) is not None
    clock.t = T0 + 180 * DAY + 1
    assert ledger.forget_idle() == 1
    assert ledger.get(old_rich) is None
    assert [a.client for a in ledger.accounts()] == [recent_rich]
    assert store.count() == 1
    # Gone from disk too: a fresh ledger does not see it.
    store.close()
    store = SqliteLedgerStore(tmp_path / "l.db")
    assert Ledger(store, clock=clock).get(old_rich) is None
    store.close()


def test_forget_idle_zero_balance_after_two_minutes() -> None:
    ledger, store, clock = make()
    ledger.adjust_balance(A, 1)
    ledger.adjust_balance(A, -1)
    ledger.adjust_balance(B, 1)
    clock.t = T0 + 120
    assert ledger.forget_idle() == 0
    clock.t = T0 + 121
    assert ledger.forget_idle() == 1
    assert A not in store.rows and B in store.rows
    assert ledger.get(A) is None


def test_totals() -> None:
    ledger, _, _ = make()
    ledger.record_share(A, ShareOutcome.GOOD, 100)
    ledger.record_share(A, ShareOutcome.GOOD, 100)
    ledger.pay(A, 1, 30)
    ledger.record_share(B, ShareOutcome.STALE, 100)
    ledger.record_share(B, ShareOutcome.BAD, 100)
    ledger.record_share(B, ShareOutcome.DUPE, 100)
    ledger.adjust_balance(key(3), 7)
    assert ledger.totals() == LedgerTotals(
        clients=3,
        balance=177,
        credits_total=200,
        credits_used=30,
        nonces_good=2,
        nonces_stale=1,
        nonces_bad=1,
        nonces_dupe=1,
    )


def test_accounts_includes_uncached_stored_rows() -> None:
    store = MemoryStore()
    store.rows[A] = new_account(A, T0)
    ledger = Ledger(store, clock=Clock())
    assert ledger.accounts() == [new_account(A, T0)]


def test_after_a_scan_unknown_clients_cost_no_disk_lookup() -> None:
    store = MemoryStore()
    store.rows[A] = new_account(A, T0)
    ledger = Ledger(store, clock=Clock())
    assert ledger.get(B) is None
    loads = store.loads
    ledger.accounts()
    assert ledger.get(B) is None
    ledger.touch(key(5))
    assert store.loads == loads
    # The loaded row is served from memory and updated through it.
    ledger.adjust_balance(A, 3)
    assert store.rows[A].balance == 3 and store.loads == loads


class NullStore(MemoryStore):
    def save(self, account: Account) -> None:
        pass


def test_memory_per_account_within_budget() -> None:
    import gc
    import os
    import tracemalloc

    ledger = Ledger(NullStore(), clock=Clock(1.8e9))
    keys = [os.urandom(32) for _ in range(20_000)]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i, k in enumerate(keys):
            ledger.record_share(k, ShareOutcome.GOOD, 10**6 + i)
            ledger.pay(k, 1_800_000_000_123_456 + i, 1)
        gc.collect()
        per_account = (tracemalloc.get_traced_memory()[0] - base) / len(keys)
    finally:
        tracemalloc.stop()
    # The gateway budget is 2 KiB per tracked client, key object (65 bytes) included.
    assert per_account + 65 <= 2048, per_account
    assert len(ledger.accounts()) == len(keys)
