"""Budgets for bad shares and new client ids."""

from __future__ import annotations

from rpcpay.gateway.limits import AbuseGuard, AbuseLimits


def test_bad_shares_exhaust_the_address_budget_across_client_ids() -> None:
    guard = AbuseGuard(AbuseLimits(bad_shares_burst=3, bad_shares_per_second=0.5))
    for i in range(3):
        assert guard.may_verify("10.0.0.1", bytes([i]), 0.0)
        guard.charge_bad_share("10.0.0.1", bytes([i]), 0.0)
    # A fresh client id from the same address gets no fresh budget.
    assert not guard.may_verify("10.0.0.1", b"new", 0.0)
    # Another address is unaffected.
    assert guard.may_verify("10.0.0.2", b"new", 0.0)
    # The budget refills with time.
    assert guard.may_verify("10.0.0.1", b"new", 2.0)


def test_bad_shares_exhaust_the_client_budget_across_addresses() -> None:
    guard = AbuseGuard(AbuseLimits(bad_shares_burst=2, bad_shares_per_second=0.01))
    guard.charge_bad_share("a", b"k", 0.0)
    guard.charge_bad_share("b", b"k", 0.0)
    assert not guard.may_verify("c", b"k", 0.0)


def test_new_client_ids_are_rationed_per_address() -> None:
    guard = AbuseGuard(AbuseLimits(new_clients_burst=2, new_clients_per_second=1.0))
    assert guard.may_add_client("x", 0.0)
    assert guard.may_add_client("x", 0.0)
    assert not guard.may_add_client("x", 0.0)
    assert guard.may_add_client("y", 0.0)
    assert guard.may_add_client("x", 1.0)
