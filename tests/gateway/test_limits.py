"""Budgets for bad shares and new client ids."""

from __future__ import annotations

from rpcpay.gateway.limits import AbuseGuard, AbuseLimits


def test_bad_shares_exhaust_the_address_budget_across_client_ids() -> None:
    guard = AbuseGuard(AbuseLimits(bad_shares_burst=3, bad_shares_per_second=0.5))
    for _ in range(3):
        assert guard.may_verify("10.0.0.1", 0.0)
        guard.charge_bad_share("10.0.0.1", 0.0)
    # Whatever client id it uses next, the address gets no fresh budget.
    assert not guard.may_verify("10.0.0.1", 0.0)
    # Another address is unaffected.
    assert guard.may_verify("10.0.0.2", 0.0)
    # The budget refills with time.
    assert guard.may_verify("10.0.0.1", 2.0)


def test_bad_shares_from_one_ipv6_64_share_one_budget() -> None:
    guard = AbuseGuard(AbuseLimits(bad_shares_burst=2, bad_shares_per_second=0.001))
    guard.charge_bad_share("2001:db8::1", 0.0)
    guard.charge_bad_share("2001:db8::2", 0.0)
    # Rotating within the /64 gets no new budget; another /64 has its own.
    assert not guard.may_verify("2001:db8::ffff", 0.0)
    assert guard.may_verify("2001:db8:0:1::1", 0.0)


def test_new_client_ids_are_rationed_per_address() -> None:
    guard = AbuseGuard(AbuseLimits(new_clients_burst=2, new_clients_per_second=1.0))
    assert guard.may_add_client("10.0.0.1", 0.0)
    assert guard.may_add_client("10.0.0.1", 0.0)
    assert not guard.may_add_client("10.0.0.1", 0.0)
    assert guard.may_add_client("10.0.1.1", 0.0)
    assert guard.may_add_client("10.0.0.1", 1.0)


def test_new_client_ids_are_rationed_per_prefix_and_in_total() -> None:
    guard = AbuseGuard(
        AbuseLimits(
            new_clients_burst=5,
            new_clients_prefix_burst=10,
            new_clients_prefix_per_second=0.001,
            new_clients_total_burst=25,
            new_clients_total_per_second=0.001,
        )
    )
    # Rotating over the addresses of one /24 stops at the prefix budget.
    granted = sum(guard.may_add_client(f"10.1.1.{i}", 0.0) for i in range(1, 100))
    assert granted == 10
    # A refusal by one budget spends nothing from the others.
    assert guard.may_add_client("10.1.2.1", 0.0)
    # Rotating over prefixes stops at the total budget.
    granted = sum(guard.may_add_client(f"10.2.{i}.1", 0.0) for i in range(100))
    assert granted == 25 - 11
    assert not guard.may_add_client("192.0.2.1", 0.0)
