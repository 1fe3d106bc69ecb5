"""Following monerod's chain top: a monerod that goes down is polled less and less often."""

from __future__ import annotations

from rpcpay.gateway.monerod_jobs import POLL_BACKOFF_MAX_S, next_poll_delay


def test_a_down_monerod_is_polled_with_backoff() -> None:
    delays = [next_poll_delay(1.0, failures) for failures in range(1, 8)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert next_poll_delay(1.0, 10_000) == POLL_BACKOFF_MAX_S
