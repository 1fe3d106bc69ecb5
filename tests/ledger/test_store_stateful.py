"""Stateful test of ``TransactionalStore`` against an independent model, on both engines.

Two store instances share one ledger (two gateway processes on one database); each rule
goes to either. The model keeps each client's numbers with its own arithmetic, plus the
flows that made them, and whether a row must exist (the account held a credit once).
Restarts close an instance and open a new one. After every step the database must hold
exactly the model's stored accounts: nothing acknowledged is lost, nothing applied twice,
a cheque or a share's nonce credits once, and a pristine account leaves no row.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from rpcpay.ledger.account import Account, PaymentRefusal, ShareOutcome, apply_share
from rpcpay.ledger.sqlite_store import ChequeRow
from rpcpay.ledger.transactional import (
    RecordCheque,
    RecordNonce,
    Step,
    TransactionalStore,
    adjust_step,
    credit_step,
    pay_step,
    refund_step,
    share_step,
    touch_step,
)
from tests.support.ledger_stores import StoreBackend

MAX = 2**64 - 1
T0 = 1_700_000_000
CLIENTS = [bytes([i]) * 32 for i in range(1, 4)]
CHEQUES = [i.to_bytes(32, "big") for i in range(1, 5)]
FINES = {ShareOutcome.STALE: 0, ShareOutcome.BAD: 20, ShareOutcome.DUPE: 20}
COUNTER = {
    ShareOutcome.STALE: "nonces_stale",
    ShareOutcome.BAD: "nonces_bad",
    ShareOutcome.DUPE: "nonces_dupe",
}


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
    flows: dict[str, int] = field(
        default_factory=lambda: {"earned": 0, "spent": 0, "granted": 0, "taken": 0, "fined": 0}
    )
    bounded: bool = False  # a saturation or a clamp happened

    def as_account(self) -> Account:
        return Account(self.client, self.balance, self.credits_total, self.credits_used,
                       self.nonces_good, self.nonces_stale, self.nonces_bad, self.nonces_dupe,
                       self.last_ts, self.update_time)  # fmt: skip

    def clamp(self, name: str, value: int) -> None:
        if value > MAX or value < 0:
            self.bounded = True
        setattr(self, name, min(max(value, 0), MAX))

    def settle(self) -> None:
        """A row exists once a call marked the account (``is_pristine``): a credit, a counted
        share or a used client id."""
        marks = (self.balance, self.credits_total, self.credits_used, self.nonces_good,
                 self.nonces_stale, self.nonces_bad, self.nonces_dupe, self.last_ts)  # fmt: skip
        self.stored = self.stored or any(marks)


class StoreMachine(RuleBasedStateMachine):
    BACKEND: StoreBackend

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.location = self.BACKEND.fresh()
        self.now = T0
        self.models: dict[bytes, Model] = {}
        self.credited: set[bytes] = set()
        self.nonces: set[tuple[bytes, bytes, int]] = set()
        self.stores: list[TransactionalStore] = [self.run(self.BACKEND.open(self.location))]
        self.stores.append(self.run(self.BACKEND.open(self.location)))

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def model(self, client: bytes) -> Model:
        if client not in self.models:
            self.models[client] = Model(client, update_time=self.now)
        return self.models[client]

    def after(self, m: Model, got: Account) -> None:
        assert got == m.as_account()
        m.settle()
        # A pristine account has no row: the store forgets it at once.
        if not m.stored:
            del self.models[m.client]

    @rule(
        which=st.integers(0, 1),
        client=st.sampled_from(CLIENTS),
        step=st.sampled_from([-1_000_000, -1, 0, 1, 7, 3_000_000]),
        fresh=st.booleans(),
        payment=st.one_of(st.integers(0, 300), st.just(MAX)),
        same_ts=st.booleans(),
    )
    def pay(
        self, which: int, client: bytes, step: int, fresh: bool, payment: int, same_ts: bool
    ) -> None:
        m = self.model(client)
        ts = max(0, (self.now * 10**6 if fresh else m.last_ts) + step)
        applied = self.run(
            self.stores[which].apply(client, pay_step(ts, payment, same_ts), now=self.now)
        )
        result = applied.outcome
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
            m.clamp("balance", m.balance - payment)
            m.clamp("credits_used", m.credits_used + payment)
            assert result.ok and result.credits == m.balance
        self.after(m, applied.account)

    @rule(
        which=st.integers(0, 1),
        client=st.sampled_from(CLIENTS),
        outcome=st.sampled_from(list(ShareOutcome)),
        cphf=st.one_of(st.integers(0, 200), st.just(2**63)),
    )
    def share(self, which: int, client: bytes, outcome: ShareOutcome, cphf: int) -> None:
        m = self.model(client)
        applied = self.run(
            self.stores[which].apply(client, share_step(outcome, cphf), now=self.now)
        )
        if outcome is ShareOutcome.GOOD:
            m.nonces_good += 1
            m.flows["earned"] += cphf
            m.clamp("credits_total", m.credits_total + cphf)
            m.clamp("balance", m.balance + cphf)
        else:
            fine = (FINES[outcome] * cphf) % 2**64  # monerod's u64 product
            setattr(m, COUNTER[outcome], getattr(m, COUNTER[outcome]) + 1)
            m.flows["fined"] += fine
            m.clamp("balance", m.balance - fine)
        self.after(m, applied.account)

    @rule(
        which=st.integers(0, 1),
        client=st.sampled_from(CLIENTS),
        delta=st.one_of(st.integers(-500, 500), st.sampled_from([2**63 - 1, -(2**63)])),
    )
    def adjust(self, which: int, client: bytes, delta: int) -> None:
        m = self.model(client)
        applied = self.run(self.stores[which].apply(client, adjust_step(delta), now=self.now))
        m.flows["granted" if delta > 0 else "taken"] += abs(delta)
        m.clamp("balance", m.balance + delta)
        self.after(m, applied.account)

    @rule(which=st.integers(0, 1), client=st.sampled_from(CLIENTS), amount=st.integers(0, 300))
    def refund(self, which: int, client: bytes, amount: int) -> None:
        m = self.model(client)
        applied = self.run(self.stores[which].apply(client, refund_step(amount), now=self.now))
        # A refund returns what was spent: the flows forget that much spending.
        m.flows["spent"] -= amount
        if amount > m.credits_used:
            m.bounded = True
        m.clamp("balance", m.balance + amount)
        m.clamp("credits_used", m.credits_used - amount)
        self.after(m, applied.account)

    @rule(
        which=st.integers(0, 1),
        client=st.sampled_from(CLIENTS),
        cheque_id=st.sampled_from(CHEQUES),
        credits=st.integers(1, 1000),
    )
    def cheque(self, which: int, client: bytes, cheque_id: bytes, credits: int) -> None:
        row = ChequeRow(cheque_id, bytes([9]) * 32, b"w" * 274, client, credits, 7, self.now)
        applied = self.run(
            self.stores[which].apply_with_cheque(
                client, credit_step(credits), RecordCheque(row), now=self.now
            )
        )
        # A cheque id is credited the first time only, to whichever client presented it.
        if cheque_id in self.credited:
            assert applied is None
            return
        self.credited.add(cheque_id)
        m = self.model(client)
        m.flows["earned"] += credits
        m.clamp("balance", m.balance + credits)
        m.clamp("credits_total", m.credits_total + credits)
        assert applied is not None
        self.after(m, applied.account)

    @rule(
        which=st.integers(0, 1),
        client=st.sampled_from(CLIENTS),
        job=st.sampled_from([b"j1", b"j2"]),
        nonce=st.integers(0, 3),
        cphf=st.integers(0, 50),
    )
    def submit(self, which: int, client: bytes, job: bytes, nonce: int, cphf: int) -> None:
        def booked(outcome: ShareOutcome) -> Step[ShareOutcome]:
            return lambda acct: (apply_share(acct, outcome, cphf), outcome)

        join = RecordNonce(job, nonce, T0 + 10**9)
        applied = self.run(
            self.stores[which].apply_with_nonce(
                client, join, booked(ShareOutcome.GOOD), booked(ShareOutcome.DUPE), now=self.now
            )
        )
        m = self.model(client)
        # A nonce counts once per client and job, on whichever instance it arrives.
        if (client, job, nonce) in self.nonces:
            assert applied.outcome is ShareOutcome.DUPE
            m.nonces_dupe += 1
            m.flows["fined"] += 20 * cphf
            m.clamp("balance", m.balance - 20 * cphf)
        else:
            self.nonces.add((client, job, nonce))
            assert applied.outcome is ShareOutcome.GOOD
            m.nonces_good += 1
            m.flows["earned"] += cphf
            m.clamp("credits_total", m.credits_total + cphf)
            m.clamp("balance", m.balance + cphf)
        self.after(m, applied.account)

    @rule(which=st.integers(0, 1), client=st.sampled_from(CLIENTS))
    def touch(self, which: int, client: bytes) -> None:
        m = self.model(client)
        applied = self.run(self.stores[which].apply(client, touch_step(self.now), now=self.now))
        m.update_time = self.now
        self.after(m, applied.account)

    @rule(seconds=st.sampled_from([0, 1, 60, 121, 3600, 100 * 86400, 181 * 86400]))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @rule(which=st.integers(0, 1))
    def forget_idle(self, which: int) -> None:
        doomed = [
            c
            for c, m in self.models.items()
            if max(m.last_ts // 10**6, m.update_time)
            < max(self.now - (120 if m.balance == 0 else 180 * 86400), 0)
        ]
        for c in doomed:
            del self.models[c]
        assert self.run(self.stores[which].forget_idle(self.now)) == len(doomed)

    @rule(which=st.integers(0, 1))
    def restart(self, which: int) -> None:
        self.run(self.stores[which].close())
        self.stores[which] = self.run(self.BACKEND.open(self.location))

    @invariant()
    def database_holds_exactly_the_model(self) -> None:
        for store in self.stores:
            got = {a.client: a for a in self.run(store.accounts())}
            assert got == {c: m.as_account() for c, m in self.models.items()}

    @invariant()
    def credits_are_conserved(self) -> None:
        for m in self.models.values():
            if m.bounded:
                continue
            f = m.flows
            assert m.balance == f["earned"] + f["granted"] - f["spent"] - f["taken"] - f["fined"]
            assert m.credits_total == f["earned"]
            assert m.credits_used == f["spent"]

    def teardown(self) -> None:
        for store in self.stores:
            self.run(store.close())
        self.runner.close()


@pytest.mark.slow
def test_store_machine(store_backend: StoreBackend) -> None:
    machine = type("Machine", (StoreMachine,), {"BACKEND": store_backend})
    run_state_machine_as_test(
        machine, settings=settings(max_examples=40, stateful_step_count=30, deadline=None)
    )
