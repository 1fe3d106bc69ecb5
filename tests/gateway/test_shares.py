"""monerod's share-check order, on the session alone (no hashing)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rpcpay.gateway.jobs import Job
from rpcpay.gateway.sessions import ClientSession, SessionTable
from rpcpay.gateway.shares import Admission, Verdict, admit_share


def _job(stamp: int) -> Job:
    return Job(
        hashing_blob=bytes(76),
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


def test_fresh_client_cookie_zero_is_not_initialized_then_duplicate() -> None:
    session = ClientSession(update_time=100.0)
    assert admit_share(session, 0, 7, 100.0) is Verdict.NOT_INITIALIZED
    # monerod remembers the nonce before finding there is no job: a resend is a duplicate.
    assert admit_share(session, 0, 7, 100.0) is Verdict.DUPLICATE


def test_fresh_client_previous_cookie_wraps_to_u32_max() -> None:
    session = ClientSession(update_time=100.0)
    assert session.previous_cookie() == 0xFFFFFFFF
    assert admit_share(session, 0xFFFFFFFF, 1, 100.0) is Verdict.NOT_INITIALIZED


def test_unknown_cookie_is_very_stale() -> None:
    session = ClientSession(update_time=100.0)
    session.install_job(_job(1), 100.0)
    assert admit_share(session, 5, 1, 100.0) is Verdict.VERY_STALE


def test_previous_job_is_accepted_for_15_seconds_after_last_info() -> None:
    session = ClientSession(update_time=100.0)
    session.install_job(_job(1), 100.0)
    session.install_job(_job(2), 101.0)
    session.update_time = 101.0
    admitted = admit_share(session, 1, 9, 116.0)
    assert isinstance(admitted, Admission) and not admitted.is_current
    assert admitted.job.timestamp == 1
    assert admit_share(session, 1, 10, 116.5) is Verdict.STALE


def test_duplicate_is_detected_before_staleness() -> None:
    session = ClientSession(update_time=100.0)
    session.install_job(_job(1), 100.0)
    session.install_job(_job(2), 100.0)
    assert isinstance(admit_share(session, 1, 3, 100.0), Admission)
    assert admit_share(session, 1, 3, 500.0) is Verdict.DUPLICATE


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=50))
def test_a_nonce_is_admitted_at_most_once_per_job(nonces: list[int]) -> None:
    session = ClientSession(update_time=0.0)
    session.install_job(_job(1), 0.0)
    admitted = [n for n in nonces if isinstance(admit_share(session, 1, n, 0.0), Admission)]
    assert sorted(admitted) == sorted(set(nonces))


def test_new_job_moves_cookie_and_nonce_sets() -> None:
    session = ClientSession(update_time=0.0)
    session.install_job(_job(1), 0.0)
    assert isinstance(admit_share(session, 1, 42, 0.0), Admission)
    session.install_job(_job(2), 0.0)
    assert session.cookie == 2
    assert isinstance(admit_share(session, 2, 42, 0.0), Admission)  # new job, new nonce space
    assert admit_share(session, 1, 42, 0.0) is Verdict.DUPLICATE


def test_job_refresh_rule() -> None:
    session = ClientSession(update_time=0.0)
    assert session.needs_job("aa", 0.0)
    session.install_job(_job(1), 10.0)
    session.top = "aa"
    assert not session.needs_job("aa", 24.9)
    assert session.needs_job("aa", 25.0)
    assert session.needs_job("bb", 11.0)


def test_session_table_is_bounded_lru() -> None:
    table = SessionTable(max_sessions=2)
    table.get_or_create(b"a", 0)
    table.get_or_create(b"b", 0)
    table.get_or_create(b"a", 0)
    table.get_or_create(b"c", 0)
    assert b"a" in table and b"c" in table and b"b" not in table
    assert len(table) == 2
