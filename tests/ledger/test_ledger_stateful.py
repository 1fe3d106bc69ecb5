"""Stateful test: a Ledger on a real SQLite file against an independent model.

The model keeps each client's numbers as plain ints with its own arithmetic, plus the
flows that made them (earned, spent, granted, taken, penalised), and knows which
accounts must have been written (those that ever held a credit). Restarts close the
store and open a new one with a new Ledger: afterwards the ledger must equal the model
with the never-credited accounts dropped, so no acknowledged change is lost and none
is applied twice.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from rpcpay.ledger.account import Account, PaymentRefusal, ShareOutcome
from rpcpay.ledger.ledger import Ledger
from rpcpay.ledger.sqlite_store import SqliteLedgerStore

MAX = 2**64 - 1
T0 = 1_700_000_000
CLIENTS = [bytes([i]) * 32 for i in range(1, 5)]
COUNTERS = (
    "credits_total",
    "credits_used",
    "nonces_good",
    "nonces_stale",
    "nonces_bad",
    "nonces_dupe",
)


@dataclass
class Model:
    """One client as the test believes it is."""

    client: bytes
    update_time: int
    balance: int = 0
    credits_total: int = 0
    credits_used: int = 0
    nonces_good: int = 0
    nonces_stale: int = 0
    nonces_bad: int = 0
    nonces_dupe: int = 0
    last_ts: int = 0
    stored: bool = False
    # Flows, to check conservation while no bound was hit.
    flows: dict[str, int] = field(
        default_factory=lambda: {"earned": 0, "spent": 0, "granted": 0, "taken": 0, "fined": 0}
    )
    bounded: bool = False  # a saturation or a clamp happened

    def as_account(self) -> Account:
        return Account(
            self.client,
            self.balance,
            self.credits_total,
            self.credits_used,
            self.nonces_good,
            self.nonces_stale,
            self.nonces_bad,
            self.nonces_dupe,
            self.last_ts,
            self.update_time,
        )

    def set_balance(self, value: int) -> None:
        if value > MAX or value < 0:
            self.bounded = True
        self.balance = min(max(value, 0), MAX)
        if self.balance or self.credits_total or self.credits_used:
            self.stored = True


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-stateful-"))
        self.path = self.dir / "data" / "ledger.db"
        self.now = T0
        self.models: dict[bytes, Model] = {}
        self.seen: dict[bytes, Account] = {}
        self.store = SqliteLedgerStore(self.path, synchronous="normal")
        self.ledger = Ledger(self.store, clock=lambda: self.now + 0.5)

    @initialize()
    def start(self) -> None:
        assert self.ledger.accounts() == []

    def model(self, client: bytes) -> Model:
        if client not in self.models:
            self.models[client] = Model(client, update_time=self.now)
        return self.models[client]

    @rule(
        client=st.sampled_from(CLIENTS),
        step=st.sampled_from([-1_000_000, -1, 0, 0, 1, 1, 7, 3_000_000]),
        fresh=st.booleans(),
        payment=st.one_of(st.integers(0, 300), st.just(MAX)),
        same_ts=st.booleans(),
    )
    def pay(self, client: bytes, step: int, fresh: bool, payment: int, same_ts: bool) -> None:
        m = self.model(client)
        ts = max(0, (self.now * 10**6 if fresh else m.last_ts) + step)
        result = self.ledger.pay(client, ts, payment, same_ts)
        if ts < m.last_ts or (ts == m.last_ts and not same_ts):
            assert (result.ok, result.reason, result.credits) == (
                False,
                PaymentRefusal.TIMESTAMP,
                0,
            )
        elif m.balance < payment:
            m.last_ts = ts
            assert (result.ok, result.reason, result.credits) == (
                False,
                PaymentRefusal.CREDITS,
                m.balance,
            )
        else:
            m.last_ts = ts
            m.flows["spent"] += payment
            m.set_balance(m.balance - payment)
            if m.credits_used + payment > MAX:
                m.bounded = True
            m.credits_used = min(m.credits_used + payment, MAX)
            m.stored = m.stored or m.credits_used > 0
            assert result.ok and result.reason is None and result.credits == m.balance
        assert result.balance == m.balance

    @rule(
        client=st.sampled_from(CLIENTS),
        outcome=st.sampled_from(list(ShareOutcome)),
        cphf=st.one_of(st.integers(0, 200), st.just(2**63)),
    )
    def share(self, client: bytes, outcome: ShareOutcome, cphf: int) -> None:
        m = self.model(client)
        got = self.ledger.record_share(client, outcome, cphf)
        if outcome is ShareOutcome.GOOD:
            m.nonces_good += 1
            m.flows["earned"] += cphf
            if m.credits_total + cphf > MAX:
                m.bounded = True
            m.credits_total = min(m.credits_total + cphf, MAX)
            m.set_balance(m.balance + cphf)
        else:
            fine = {ShareOutcome.STALE: 0, ShareOutcome.BAD: 20, ShareOutcome.DUPE: 20}[outcome]
            fine = (fine * cphf) % 2**64  # monerod's u64 product
            name = {
                ShareOutcome.STALE: "nonces_stale",
                ShareOutcome.BAD: "nonces_bad",
                ShareOutcome.DUPE: "nonces_dupe",
            }[outcome]
            setattr(m, name, getattr(m, name) + 1)
            m.flows["fined"] += fine
            m.set_balance(m.balance - fine)
        assert got == m.as_account()

    @rule(
        client=st.sampled_from(CLIENTS),
        delta=st.one_of(st.integers(-500, 500), st.sampled_from([2**63 - 1, -(2**63)])),
    )
    def adjust(self, client: bytes, delta: int) -> None:
        m = self.model(client)
        got = self.ledger.adjust_balance(client, delta)
        m.flows["granted" if delta > 0 else "taken"] += abs(delta)
        m.set_balance(m.balance + delta)
        assert got == m.as_account()

    @rule(client=st.sampled_from(CLIENTS))
    def touch(self, client: bytes) -> None:
        m = self.model(client)
        m.update_time = self.now
        assert self.ledger.touch(client) == m.as_account()

    @rule(seconds=st.sampled_from([0, 1, 60, 119, 121, 3600, 100 * 86400, 181 * 86400]))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @rule()
    def forget_idle(self) -> None:
        doomed = []
        for c, m in self.models.items():
            t = max(m.last_ts // 10**6, m.update_time)
            age = 120 if m.balance == 0 else 180 * 86400
            if t < max(self.now - age, 0):
                doomed.append(c)
        for c in doomed:
            del self.models[c]
            self.seen.pop(c, None)
        assert self.ledger.forget_idle() == len(doomed)

    @rule(sync=st.sampled_from(["normal", "full"]))
    def restart(self, sync: str) -> None:
        self.ledger.close()
        self.store = SqliteLedgerStore(
            self.path, synchronous="full" if sync == "full" else "normal"
        )
        self.ledger = Ledger(self.store, clock=lambda: self.now + 0.5)
        # Accounts that never held a credit were memory-only: they are gone, as intended.
        for c in [c for c, m in self.models.items() if not m.stored]:
            del self.models[c]
            self.seen.pop(c, None)

    @invariant()
    def store_holds_every_credited_account(self) -> None:
        # Read the file itself: what a crash right now would leave.
        on_disk = {a.client: a for a in self.store.iter_accounts()}
        assert on_disk == {c: m.as_account() for c, m in self.models.items() if m.stored}

    @invariant()
    def ledger_answers_like_model(self) -> None:
        # get() works whether or not the ledger has loaded the whole store yet.
        for c in CLIENTS:
            m = self.models.get(c)
            assert self.ledger.get(c) == (None if m is None else m.as_account())

    @rule()
    def scan(self) -> None:
        got = {a.client: a for a in self.ledger.accounts()}
        assert got == {c: m.as_account() for c, m in self.models.items()}
        assert self.ledger.totals().clients == len(self.models)

    @invariant()
    def credits_are_conserved(self) -> None:
        for m in self.models.values():
            if m.bounded:
                continue
            f = m.flows
            assert m.balance == f["earned"] + f["granted"] - f["spent"] - f["taken"] - f["fined"]
            assert m.credits_total == f["earned"]
            assert m.credits_used == f["spent"]

    @invariant()
    def counters_only_grow(self) -> None:
        for c in CLIENTS:
            a = self.ledger.get(c)
            if a is None:
                continue
            before = self.seen.get(a.client)
            if before is not None:
                for name in COUNTERS:
                    assert getattr(a, name) >= getattr(before, name), name
                assert a.last_request_timestamp_us >= before.last_request_timestamp_us
            self.seen[a.client] = a

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.dir, ignore_errors=True)


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase
