"""Group commit (``rpcpay.ledger.group_commit``) on both stores, and its queue on its own.

On SQLite and PostgreSQL: ``apply`` calls made at once (on the same and on different
clients) give exactly what the same calls made one after another give, answers and rows;
a store failure in the middle of a batch writes nothing and fails every caller of it with
``LedgerError``; a step that raises fails its own caller only.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpcpay.errors import LedgerBusy, LedgerError
from rpcpay.ledger.account import U64_MAX, Account
from rpcpay.ledger.group_commit import Answers, GroupCommit, Pending, settle_batch
from rpcpay.ledger.transactional import (
    Applied,
    Step,
    TransactionalStore,
    adjust_step,
    claim_step,
    pay_step,
    refund_step,
    touch_step,
)
from tests.support.ledger_stores import StoreBackend

T0 = 1_700_000_000
CLIENTS = [bytes([i]) * 32 for i in range(1, 4)]

# One call: (client index, kind, amount, timestamp offset, same_ts, clock offset).
Op = tuple[int, str, int, int, bool, int]

ops_strategy = st.lists(
    st.tuples(
        st.integers(0, len(CLIENTS) - 1),
        st.sampled_from(["adjust", "pay", "refund", "claim", "touch", "broken"]),
        st.sampled_from([0, 1, 5, 40, 1000, U64_MAX]),
        st.integers(0, 6),
        st.booleans(),
        st.integers(0, 300),
    ),
    min_size=1,
    max_size=40,
)


def step_of(op: Op) -> Step[Any]:
    _, kind, amount, ts, same_ts, now = op
    if kind == "adjust":
        return adjust_step(amount)
    if kind == "pay":
        return pay_step(ts + 1, amount, same_ts)
    if kind == "refund":
        return refund_step(amount)
    if kind == "claim":
        return claim_step(ts + 1)
    if kind == "touch":
        return touch_step(T0 + now)
    return pay_step(1, U64_MAX + 1)  # "broken": the rule refuses it with ValueError


Answer = Applied[Any] | type[BaseException]


async def apply_all(store: TransactionalStore, ops: list[Op], at_once: bool) -> list[Answer]:
    async def one(op: Op) -> Answer:
        try:
            return await store.apply(CLIENTS[op[0]], step_of(op), now=T0 + op[5])
        except (ValueError, LedgerError) as exc:
            return type(exc)

    if at_once:
        return list(await asyncio.gather(*(one(op) for op in ops)))
    return [await one(op) for op in ops]


async def rows(store: TransactionalStore) -> dict[bytes, Account]:
    return {a.client: a for a in await store.accounts()}


@pytest.mark.slow
def test_concurrent_applies_give_the_sequential_result(store_backend: StoreBackend) -> None:
    examples = 40 if store_backend.name.startswith("sqlite") else 15

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(ops=ops_strategy)
    def check(ops: list[Op]) -> None:
        async def run() -> None:
            at_once = await store_backend.open(store_backend.fresh())
            one_by_one = await store_backend.open(store_backend.fresh())
            try:
                got = await apply_all(at_once, ops, at_once=True)
                want = await apply_all(one_by_one, ops, at_once=False)
                assert got == want
                assert await rows(at_once) == await rows(one_by_one)
            finally:
                await at_once.close()
                await one_by_one.close()

        asyncio.run(run())

    check()


async def poison(backend: StoreBackend, location: str, client: bytes) -> None:
    """A trigger that makes the database refuse any write of ``client``'s row."""
    if backend.name.startswith("sqlite"):
        db = sqlite3.connect(location)
        for event in ("INSERT", "UPDATE"):
            db.execute(
                f"CREATE TRIGGER poison_{event.lower()} BEFORE {event} ON accounts "
                f"WHEN NEW.client = X'{client.hex()}' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
            )
        db.commit()
        db.close()
        return
    conn = await asyncpg.connect(location)
    try:
        await conn.execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.client = '\\x{client.hex()}'::bytea THEN RAISE EXCEPTION 'poisoned'; "
            "END IF; RETURN NEW; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT OR UPDATE ON accounts "
            "FOR EACH ROW EXECUTE FUNCTION poison()"
        )
    finally:
        await conn.close()


def hold_write_lock(backend: StoreBackend, location: str) -> sqlite3.Connection | None:
    """On SQLite, a connection holding the file's write lock (None on PostgreSQL)."""
    if not backend.name.startswith("sqlite"):
        return None
    db = sqlite3.connect(location, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    return db


async def test_a_failure_mid_batch_writes_nothing(store_backend: StoreBackend) -> None:
    location = store_backend.fresh()
    store = await store_backend.open(location)
    try:
        a, poisoned, c = CLIENTS
        await store.apply(a, adjust_step(100), now=T0)
        before = await rows(store)
        await poison(store_backend, location, poisoned)
        # Calls at once: the first commits alone, the rest queue behind it into one batch,
        # whose write of ``poisoned`` the database refuses. On SQLite another connection
        # holds the write lock meanwhile, so the first waits on the store's thread (with
        # synchronous=normal, the event loop's own connection finds the lock taken and
        # hands it over) and the rest queue behind it.
        holder = hold_write_lock(store_backend, location)
        alone = asyncio.ensure_future(store.apply(c, adjust_step(1), now=T0))
        # Its transaction is under way (PostgreSQL's group gathers for one loop turn first).
        for _ in range(3):
            await asyncio.sleep(0)
        calls = asyncio.gather(
            alone,
            store.apply(a, adjust_step(5), now=T0),
            store.apply(poisoned, adjust_step(7), now=T0),
            store.apply(c, adjust_step(9), now=T0),
            store.apply(a, pay_step(1, 3), now=T0),
            return_exceptions=True,
        )
        await asyncio.sleep(0.3)
        if holder is not None:
            holder.rollback()
            holder.close()
        results = await calls
        first, batch = results[0], results[1:]
        assert isinstance(first, Applied) and first.account.balance == 1
        assert all(isinstance(r, LedgerError) for r in batch), batch
        after = await rows(store)
        assert after.pop(c).balance == 1
        assert after == before
        # The store goes on serving the clients the database accepts.
        applied = await store.apply(a, adjust_step(5), now=T0)
        assert applied.account.balance == 105
    finally:
        await store.close()


async def test_a_raising_step_fails_its_caller_only(store_backend: StoreBackend) -> None:
    store = await store_backend.open(store_backend.fresh())
    try:
        a, b, _ = CLIENTS
        results = await asyncio.gather(
            store.apply(a, adjust_step(10), now=T0),
            store.apply(a, pay_step(1, U64_MAX + 1), now=T0),
            store.apply(b, adjust_step(4), now=T0),
            store.apply(a, pay_step(2, 3), now=T0),
            return_exceptions=True,
        )
        assert isinstance(results[1], ValueError)
        assert [r.account.balance for r in (results[0], results[2], results[3])] == [10, 4, 7]  # type: ignore[union-attr]
        assert {k: v.balance for k, v in (await rows(store)).items()} == {a: 7, b: 4}
    finally:
        await store.close()


async def test_a_call_queued_behind_a_new_accounts_insert_sees_it(
    store_backend: StoreBackend,
) -> None:
    store = await store_backend.open(store_backend.fresh())
    try:
        a = CLIENTS[0]
        # The first creates the row; the touch (which writes nothing itself) must see it,
        # although no lock could be taken on a row that did not exist yet.
        created, touched = await asyncio.gather(
            store.apply(a, adjust_step(10), now=T0), store.apply(a, touch_step(T0 + 5), now=T0)
        )
        assert created.account.balance == 10
        assert touched.account.balance == 10 and touched.stored
    finally:
        await store.close()


# -- the queue on its own (a recording commit stands in for a store) ------------------------


class Recorder:
    """Commits by settling on a dict; records each batch's size; can be held or broken."""

    def __init__(self) -> None:
        self.rows: dict[bytes, Account | None] = {}
        self.batches: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.broken = False
        self.busy = False

    async def commit(self, batch: list[Pending]) -> Answers:
        await self.gate.wait()
        self.batches.append(len(batch))
        if self.broken:
            raise OSError("disk gone")
        if self.busy:
            raise LedgerBusy("ledger busy: no connection free")
        stored = {p.client: self.rows.get(p.client) for p in batch}
        settled = settle_batch(stored, batch)
        for write in settled.writes:
            self.rows[write.account.client] = write.account
        return settled.answers


async def test_calls_queued_during_a_commit_share_the_next_one() -> None:
    rec = Recorder()
    group = GroupCommit(rec.commit, max_batch=4)
    rec.gate.clear()
    first = asyncio.ensure_future(group.apply(CLIENTS[0], adjust_step(1), T0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(group.apply(CLIENTS[0], adjust_step(1), T0)) for _ in range(6)]
    await asyncio.sleep(0)
    rec.gate.set()
    answers = await asyncio.gather(first, *rest)
    # The first alone, then the six that queued behind it in batches of at most four.
    assert rec.batches == [1, 4, 2]
    assert [a.account.balance for a in answers] == list(range(1, 8))


@pytest.mark.parametrize(("gather", "batches"), [(False, [1, 4]), (True, [5])])
async def test_gather_starts_the_first_batch_with_the_calls_of_the_same_turn(
    gather: bool, batches: list[int]
) -> None:
    rec = Recorder()
    group = GroupCommit(rec.commit, gather=gather)
    clients = [bytes([i]) * 32 for i in range(10, 15)]
    rec.gate.clear()  # a commit takes a while, as a database round trip does
    # Five calls reach apply in one turn of the loop, as five requests read together do.
    calls = [asyncio.ensure_future(group.apply(c, adjust_step(1), T0)) for c in clients]
    for _ in range(3):
        await asyncio.sleep(0)
    rec.gate.set()
    answers = await asyncio.gather(*calls)
    assert rec.batches == batches
    assert [a.account.balance for a in answers] == [1] * 5
    # Alone, a gathering call still commits (one loop turn later).
    again = await group.apply(clients[0], adjust_step(1), T0)
    assert rec.batches[-1] == 1 and again.account.balance == 2


async def test_a_failed_commit_fails_every_caller_with_ledger_error() -> None:
    rec = Recorder()
    rec.broken = True
    group = GroupCommit(rec.commit)
    results = await asyncio.gather(
        *(group.apply(c, adjust_step(1), T0) for c in CLIENTS), return_exceptions=True
    )
    assert all(isinstance(r, LedgerError) for r in results)
    assert rec.rows == {}


async def test_a_caller_cancelled_before_its_batch_is_left_out() -> None:
    rec = Recorder()
    group = GroupCommit(rec.commit)
    rec.gate.clear()
    first = asyncio.ensure_future(group.apply(CLIENTS[0], adjust_step(1), T0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(group.apply(CLIENTS[1], adjust_step(1), T0))
    await asyncio.sleep(0)
    gone.cancel()
    rec.gate.set()
    await first
    assert rec.batches == [1]
    assert CLIENTS[1] not in rec.rows


async def test_the_queue_is_bounded_and_a_busy_store_refuses_the_queue_too() -> None:
    rec = Recorder()
    group = GroupCommit(rec.commit, max_waiting=2)
    rec.gate.clear()
    first = asyncio.ensure_future(group.apply(CLIENTS[0], adjust_step(1), T0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.ensure_future(group.apply(CLIENTS[1], adjust_step(1), T0))
    await asyncio.sleep(0)
    # One call in flight and one queued: a third is refused without waiting.
    with pytest.raises(LedgerBusy, match="2 calls already wait"):
        await group.apply(CLIENTS[2], adjust_step(1), T0)
    # The store gives the first no connection: the one queued behind it is refused too.
    rec.busy = True
    rec.gate.set()
    for call in (first, second):
        with pytest.raises(LedgerBusy, match="no connection"):
            await call
    assert rec.batches == [1] and rec.rows == {}


def test_a_batch_needs_room_for_one_call() -> None:
    async def commit(batch: list[Pending]) -> Answers:
        return []

    with pytest.raises(ValueError):
        GroupCommit(commit, max_batch=0)


def test_settle_batch_chains_steps_on_one_client_in_order() -> None:
    loop = asyncio.new_event_loop()
    try:
        a = CLIENTS[0]
        batch = [
            Pending(a, adjust_step(10), T0, loop.create_future()),
            Pending(a, pay_step(5, 4), T0, loop.create_future()),
            Pending(a, pay_step(5, 4), T0, loop.create_future()),  # a replayed timestamp
        ]
        settled = settle_batch({a: None}, batch)
        outcomes = [ans.outcome for ans in settled.answers if isinstance(ans, Applied)]
        assert [o is None or o.ok for o in outcomes] == [True, True, False]
        assert len(settled.writes) == 1 and not settled.writes[0].existed
        assert settled.writes[0].account.balance == 6
    finally:
        loop.close()


@pytest.mark.parametrize(("gather", "batches"), [(False, [1, 1, 1]), (True, [1, 2])])
async def test_gather_also_lets_the_next_batch_collect_the_calls_of_the_turn_it_ends_in(
    gather: bool, batches: list[int]
) -> None:
    """A batch that follows one that just committed starts a loop turn later too: a call
    that reaches ``apply`` in the turn the commit ended in (here, a task the commit started,
    as a request read in that turn is) joins the calls already queued."""
    rec = Recorder()
    late: list[asyncio.Task[Applied[None]]] = []

    async def commit(batch: list[Pending]) -> Answers:
        answers = await rec.commit(batch)
        if not late:  # the first commit ends: a new call arrives in this turn
            late.append(asyncio.ensure_future(group.apply(CLIENTS[2], adjust_step(1), T0)))
        return answers

    group = GroupCommit(commit, gather=gather)
    rec.gate.clear()
    first = asyncio.ensure_future(group.apply(CLIENTS[0], adjust_step(1), T0))
    for _ in range(3):
        await asyncio.sleep(0)
    queued = asyncio.ensure_future(group.apply(CLIENTS[1], adjust_step(1), T0))
    await asyncio.sleep(0)
    rec.gate.set()
    await asyncio.gather(first, queued)
    await late[0]
    assert rec.batches == batches
