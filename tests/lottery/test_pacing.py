"""The payee's pace (issue 9): what a lottery is credited at once over any window is at
most a burst plus the rate over that window; a steady payer at the rate never waits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.lottery.pacing import Bucket, PacePolicy, credit_bound, pace_cheque, refill

POLICY = PacePolicy(rate_wei_per_minute=6_000, burst_wei=18_000, hold_s=15.0)


@given(st.lists(st.tuples(st.floats(0, 120, allow_nan=False), st.integers(1, 20_000)), max_size=60))
def test_credit_at_once_never_exceeds_burst_plus_rate_over_any_window(
    steps: list[tuple[float, int]],
) -> None:
    bucket: Bucket | None = None
    now = 0.0
    credited: list[tuple[float, int]] = []
    for gap, value in steps:
        now += gap
        at_once, bucket = pace_cheque(bucket, value, now, POLICY)
        if at_once:
            credited.append((now, value))
    # Every window [a, b] of the run.
    for i, (a, _) in enumerate(credited):
        for b, _ in credited[i:]:
            total = sum(v for t, v in credited if a <= t <= b)
            assert total <= POLICY.burst_wei + (b - a) * POLICY.rate_wei_per_minute / 60


def test_a_steady_payer_at_the_rate_never_waits_and_more_is_held() -> None:
    bucket = None
    per_minute = POLICY.rate_wei_per_minute
    for n in range(1_000):
        # A minute apart, give or take 5 seconds.
        now = 60.0 * n + (5 if n % 2 else -5)
        at_once, bucket = pace_cheque(bucket, per_minute // 60 * 60, now, POLICY)
        assert at_once, n
    at_once, after = pace_cheque(bucket, POLICY.burst_wei + 1, now, POLICY)
    assert not at_once and after == refill(bucket, now, POLICY)


def test_credit_bound_grows_only_by_the_per_gateway_allowance() -> None:
    one = credit_bound(1, 1, POLICY, 5.0)
    assert one == POLICY.burst_wei + 6_000 * 15 // 60 + 1
    assert credit_bound(8, 1, POLICY, 5.0) == 8 * one
    with pytest.raises(ValueError, match="three gossip delays"):
        credit_bound(1, 1, POLICY, 6.0)
