"""The shared sessions of ``TransactionalStore`` (``ledger.session_rows``), on both engines:
what one instance writes another reads, a session changes only from the state it was read
in (so two instances never both install a job under one cookie), a template is stored once,
and idle sessions go with their jobs."""

from __future__ import annotations

import asyncio
import dataclasses

from rpcpay.ledger.session_rows import JOB_LIFETIME_S, JobRow, SessionRow, job_id, template_id
from rpcpay.ledger.transactional import RecordNonce, touch_step
from tests.ledger.conftest import MakeStore

A = bytes([1]) * 32
B = bytes([2]) * 32
T0 = 1_700_000_000.0
TEMPLATE = b"\x0e" * 300


def job(stamp: int, *, template: bytes = TEMPLATE, difficulty: int = 2**100) -> JobRow:
    blob = stamp.to_bytes(76, "big")
    return JobRow(job_id(blob), blob, template_id(template) if template else b"", 43, 7,
                  b"\x01" * 32, 0, b"", difficulty, stamp, "ab" * 32, int(T0))  # fmt: skip


def session(cookie: int, current: JobRow | None, previous: JobRow | None = None) -> SessionRow:
    return SessionRow(A, cookie, "ab" * 32, T0 + cookie, T0 + cookie,
                      None if current is None else current.job_id,
                      None if previous is None else previous.job_id)  # fmt: skip


async def test_a_session_written_by_one_instance_is_read_by_another(
    make_store: MakeStore,
) -> None:
    one, two = await make_store(), await make_store()
    assert await one.load_session(A) is None and await one.count_sessions() == 0
    first = job(1)
    assert await one.save_session(
        session(1, first), expected_cookie=None, new_job=first, template=TEMPLATE
    )
    stored = await two.load_session(A)
    assert stored is not None
    assert stored.row == session(1, first) and stored.job == first and stored.previous_job is None
    # The job's difficulty is wider than a u64 (monerod's are 128-bit): kept exactly.
    assert stored.job.network_difficulty == 2**100
    assert await two.template(first.template_id) == TEMPLATE
    assert await two.count_sessions() == 1
    # A second "first" write loses: the session exists now.
    assert not await two.save_session(session(1, first), expected_cookie=None)


async def test_a_session_changes_only_from_the_cookie_it_was_read_with(
    make_store: MakeStore,
) -> None:
    one, two = await make_store(), await make_store()
    first, second, third = job(1), job(2), job(3)
    assert await one.save_session(session(1, first), expected_cookie=None, new_job=first,
                                  template=TEMPLATE)  # fmt: skip
    assert not await two.save_session(session(2, second, first), expected_cookie=2,
                                      new_job=second, template=TEMPLATE)  # fmt: skip
    assert await two.save_session(session(2, second, first), expected_cookie=1,
                                  new_job=second, template=TEMPLATE)  # fmt: skip
    assert await one.save_session(session(3, third, second), expected_cookie=2,
                                  new_job=third, template=TEMPLATE)  # fmt: skip
    stored = await two.load_session(A)
    assert stored is not None and (stored.job, stored.previous_job) == (third, second)


async def test_two_instances_installing_at_once_one_wins(make_store: MakeStore) -> None:
    stores = [await make_store(), await make_store()]
    first = job(1)
    assert await stores[0].save_session(session(1, first), expected_cookie=None,
                                        new_job=first, template=TEMPLATE)  # fmt: skip
    for round_ in range(5):
        cookie = 1 + round_
        current = await stores[0].load_session(A)
        assert current is not None and current.row.cookie == cookie
        tries = [job(100 * round_ + 10 + i) for i in range(2)]
        won = await asyncio.gather(
            *(
                s.save_session(
                    session(cookie + 1, j, current.job),
                    expected_cookie=cookie,
                    new_job=j,
                    template=TEMPLATE,
                )
                for s, j in zip(stores, tries, strict=True)
            )
        )
        assert sorted(won) == [False, True]
        stored = await stores[1].load_session(A)
        assert stored is not None and stored.job == tries[won.index(True)]


async def test_a_template_is_stored_once_and_unused_ones_go(make_store: MakeStore) -> None:
    store = await make_store()
    first, second = job(1), job(2, template=b"")
    await store.save_session(session(1, first), expected_cookie=None, new_job=first,
                             template=TEMPLATE)  # fmt: skip
    other = dataclasses.replace(session(1, first), client=B)
    await store.save_session(other, expected_cookie=None, new_job=first, template=TEMPLATE)
    assert await store.template(first.template_id) == TEMPLATE
    # A job cut from no template (a synthetic one) names none.
    await store.save_session(session(2, second, first), expected_cookie=1, new_job=second)
    assert await store.template(template_id(b"nothing")) is None


async def test_idle_sessions_go_with_their_jobs(make_store: MakeStore) -> None:
    one, two = await make_store(), await make_store()
    first = job(1)
    await one.save_session(session(1, first), expected_cookie=None, new_job=first,
                           template=TEMPLATE)  # fmt: skip
    busy = dataclasses.replace(session(1, first), client=B, update_time=T0 + 2 * JOB_LIFETIME_S)
    await one.save_session(busy, expected_cookie=None, new_job=first, template=TEMPLATE)
    assert await two.forget_sessions(T0 + 1 + JOB_LIFETIME_S + 1) == 1
    assert await one.load_session(A) is None and await one.count_sessions() == 1
    assert (await one.load_session(B)) is not None


async def test_a_recorded_nonce_is_seen_by_every_instance(make_store: MakeStore) -> None:
    one, two = await make_store(), await make_store()
    slot = job(1).job_id
    assert not await two.has_nonce(A, slot, 7)
    await one.apply_with_nonce(A, RecordNonce(slot, 7, int(T0) + 60), touch_step(int(T0)),
                               touch_step(int(T0)), now=int(T0))  # fmt: skip
    assert await two.has_nonce(A, slot, 7)
    assert not await two.has_nonce(A, slot, 8) and not await two.has_nonce(B, slot, 7)
