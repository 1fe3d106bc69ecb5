"""monerod's share-check order, on a session snapshot alone (no hashing, no store).

The duplicate check between ``place_share`` and ``judge_slot`` asks the store for the
nonce's row; its cross-instance behaviour is tested in tests/ledger/test_store_sessions.py
and tests/gateway/test_instances.py."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from rpcpay.gateway.jobs import Job
from rpcpay.gateway.sessions import ClientSession, job_row
from rpcpay.gateway.shares import Admission, Slot, Verdict, judge_slot, place_share
from rpcpay.ledger.session_rows import JOB_LIFETIME_S, JobRow, nonce_slot


def _job(stamp: int, issued: float = 100.0) -> JobRow:
    job = Job(
        hashing_blob=stamp.to_bytes(76, "big"),
        template_blob=b"",
        reserved_offset=0,
        height=1,
        seed_hash=bytes(32),
        seed_height=0,
        next_seed_hash=None,
        network_difficulty=0,
        timestamp=stamp,
        top_hash="00" * 32,
    )
    return job_row(job, issued)


def _judge(session: ClientSession, cookie: int, now: float) -> Admission | Verdict:
    slot = place_share(session, cookie)
    return slot if isinstance(slot, Verdict) else judge_slot(session, slot, now)


def test_fresh_client_cookie_zero_is_not_initialized() -> None:
    session = ClientSession(update_time=100.0)
    assert _judge(session, 0, 100.0) is Verdict.NOT_INITIALIZED
    # The nonce is recorded under the cookie: a resend is a duplicate, as in monerod.
    slot = place_share(session, 0)
    assert isinstance(slot, Slot) and slot.key == nonce_slot(None, 0)


def test_fresh_client_previous_cookie_wraps_to_u32_max() -> None:
    session = ClientSession(update_time=100.0)
    assert session.previous_cookie() == 0xFFFFFFFF
    assert _judge(session, 0xFFFFFFFF, 100.0) is Verdict.NOT_INITIALIZED


def test_unknown_cookie_is_very_stale() -> None:
    session = ClientSession(update_time=100.0).with_job(_job(1), 100.0)
    assert _judge(session, 5, 100.0) is Verdict.VERY_STALE


def test_previous_job_is_accepted_for_15_seconds_after_last_info() -> None:
    session = ClientSession(update_time=100.0).with_job(_job(1), 100.0).with_job(_job(2), 101.0)
    session = dataclasses.replace(session, update_time=101.0)
    admitted = _judge(session, 1, 116.0)
    assert isinstance(admitted, Admission) and not admitted.is_current
    assert admitted.job.timestamp == 1
    assert _judge(session, 1, 116.5) is Verdict.STALE


def test_a_job_past_its_lifetime_is_very_stale() -> None:
    session = ClientSession(update_time=100.0).with_job(_job(1, issued=100.0), 100.0)
    assert isinstance(_judge(session, 1, 100.0 + JOB_LIFETIME_S), Admission)
    assert _judge(session, 1, 100.5 + JOB_LIFETIME_S) is Verdict.VERY_STALE


@given(st.lists(st.integers(1, 2**16), min_size=1, max_size=20, unique=True))
def test_each_job_has_its_own_nonce_space(stamps: list[int]) -> None:
    session = ClientSession(update_time=0.0)
    keys = set()
    for stamp in stamps:
        session = session.with_job(_job(stamp), 0.0)
        slot = place_share(session, session.cookie)
        assert isinstance(slot, Slot) and slot.is_current
        keys.add(slot.key)
    assert len(keys) == len(stamps)


def test_new_job_moves_cookie_and_previous_job() -> None:
    first, second = _job(1), _job(2)
    session = ClientSession(update_time=0.0).with_job(first, 0.0).with_job(second, 0.0)
    assert session.cookie == 2
    assert session.job is second and session.previous_job is first
    slot = place_share(session, 1)
    assert isinstance(slot, Slot) and slot.key == first.job_id and not slot.is_current


def test_job_refresh_rule() -> None:
    session = ClientSession(update_time=0.0)
    assert session.needs_job("aa", 0.0)
    session = dataclasses.replace(session.with_job(_job(1), 10.0), top="aa")
    assert not session.needs_job("aa", 24.9)
    assert session.needs_job("aa", 25.0)
    assert session.needs_job("bb", 11.0)
