"""The pure balance rules against monerod 0.18's rpc_payment.cpp behaviour."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from rpcpay.ledger.account import (
    DEFAULT_FLUSH_AGE,
    DEFAULT_ZERO_FLUSH_AGE,
    PENALTY_FOR_BAD_HASH,
    PENALTY_FOR_DUPLICATE,
    PENALTY_FOR_STALE,
    U64_MAX,
    Account,
    PaymentRefusal,
    ShareOutcome,
    adjust_balance,
    apply_payment,
    apply_share,
    is_blank,
    is_forgettable,
    last_activity,
    new_account,
    touch,
)

KEY = bytes(range(32))
NOW = 1_700_000_000


def acct(**fields: Any) -> Account:
    return dataclasses.replace(new_account(KEY, NOW), **fields)


def test_new_account_is_zero_and_created_now() -> None:
    a = new_account(KEY, NOW)
    assert a == Account(KEY, 0, 0, 0, 0, 0, 0, 0, 0, NOW)
    assert is_blank(a)


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33)])
def test_client_key_must_be_32_bytes(bad: bytes) -> None:
    with pytest.raises(ValueError):
        new_account(bad, NOW)


@pytest.mark.parametrize("value", [-1, U64_MAX + 1])
def test_fields_must_be_u64(value: int) -> None:
    with pytest.raises(ValueError):
        acct(balance=value)


def test_constants_match_monerod() -> None:
    assert (PENALTY_FOR_STALE, PENALTY_FOR_BAD_HASH, PENALTY_FOR_DUPLICATE) == (0, 20, 20)
    assert DEFAULT_FLUSH_AGE == 180 * 86400
    assert DEFAULT_ZERO_FLUSH_AGE == 120


# --- pay -------------------------------------------------------------------------------


def test_pay_success_debits_and_counts_used() -> None:
    a = acct(balance=100, credits_used=5, last_request_timestamp_us=10)
    b, r = apply_payment(a, 11, 30)
    assert r.ok and r.reason is None and r.credits == 70 and r.balance == 70
    assert b == dataclasses.replace(a, balance=70, credits_used=35, last_request_timestamp_us=11)


def test_pay_exact_balance_reaches_zero() -> None:
    b, r = apply_payment(acct(balance=7), 1, 7)
    assert r.ok and b.balance == 0 and b.credits_used == 7


def test_pay_older_timestamp_refused_and_nothing_changes() -> None:
    a = acct(balance=100, last_request_timestamp_us=50)
    for same_ts in (False, True):
        b, r = apply_payment(a, 49, 1, same_ts)
        assert b == a
        assert not r.ok and r.reason is PaymentRefusal.TIMESTAMP
        # monerod leaves the response's credits at its default 0 here.
        assert r.credits == 0 and r.balance == 100


def test_pay_same_timestamp_refused_unless_same_ts() -> None:
    a = acct(balance=100, last_request_timestamp_us=50)
    b, r = apply_payment(a, 50, 1, same_ts=False)
    assert b == a and r.reason is PaymentRefusal.TIMESTAMP and r.credits == 0
    b, r = apply_payment(a, 50, 1, same_ts=True)
    assert r.ok and b.balance == 99 and b.last_request_timestamp_us == 50


def test_pay_zero_timestamp_on_fresh_account_is_a_replay() -> None:
    # last_request_timestamp starts at 0, so ts 0 equals it.
    a = new_account(KEY, NOW)
    assert apply_payment(a, 0, 0)[1].reason is PaymentRefusal.TIMESTAMP
    assert apply_payment(a, 0, 0, same_ts=True)[1].ok


def test_pay_without_credits_still_advances_timestamp() -> None:
    a = acct(balance=5, credits_used=3, last_request_timestamp_us=10)
    b, r = apply_payment(a, 20, 6)
    assert not r.ok and r.reason is PaymentRefusal.CREDITS
    assert r.credits == 5 and r.balance == 5
    assert b == dataclasses.replace(a, last_request_timestamp_us=20)
    # The burnt timestamp cannot be reused, even though the call was refused.
    assert apply_payment(b, 20, 1)[1].reason is PaymentRefusal.TIMESTAMP


def test_pay_zero_payment_only_moves_timestamp() -> None:
    a = acct(balance=0, last_request_timestamp_us=1)
    b, r = apply_payment(a, 2, 0)
    assert r.ok and r.credits == 0
    assert b == dataclasses.replace(a, last_request_timestamp_us=2)


def test_pay_credits_used_saturates() -> None:
    b, r = apply_payment(acct(balance=10, credits_used=U64_MAX - 3), 1, 10)
    assert r.ok and b.credits_used == U64_MAX and b.balance == 0


def test_pay_full_u64_balance() -> None:
    b, r = apply_payment(acct(balance=U64_MAX), U64_MAX, U64_MAX)
    assert r.ok and b.balance == 0 and b.credits_used == U64_MAX


@pytest.mark.parametrize(("ts", "payment"), [(-1, 1), (1, -1), (U64_MAX + 1, 1), (1, U64_MAX + 1)])
def test_pay_rejects_non_u64(ts: int, payment: int) -> None:
    with pytest.raises(ValueError):
        apply_payment(acct(balance=10), ts, payment)


# --- shares ----------------------------------------------------------------------------


def test_good_share_credits_balance_and_total() -> None:
    a = acct(balance=3, credits_total=4, nonces_good=1)
    b = apply_share(a, ShareOutcome.GOOD, 100)
    assert b == dataclasses.replace(a, balance=103, credits_total=104, nonces_good=2)


def test_good_share_saturates() -> None:
    a = acct(balance=U64_MAX - 1, credits_total=U64_MAX)
    b = apply_share(a, ShareOutcome.GOOD, 100)
    assert b.balance == U64_MAX and b.credits_total == U64_MAX and b.nonces_good == 1


@pytest.mark.parametrize(
    ("outcome", "field"), [(ShareOutcome.BAD, "nonces_bad"), (ShareOutcome.DUPE, "nonces_dupe")]
)
def test_bad_and_dupe_cost_twenty_shares(outcome: ShareOutcome, field: str) -> None:
    a = acct(balance=5000, credits_total=77)
    b = apply_share(a, outcome, 100)
    changes: dict[str, Any] = {"balance": 3000, field: 1}
    assert b == dataclasses.replace(a, **changes)
    # The penalty clamps at zero.
    c = apply_share(acct(balance=1999), outcome, 100)
    assert c.balance == 0 and getattr(c, field) == 1
    # One credit short of the penalty still ends at zero; exactly the penalty too.
    assert apply_share(acct(balance=2000), outcome, 100).balance == 0
    assert apply_share(acct(balance=2001), outcome, 100).balance == 1


def test_stale_share_is_counted_but_free() -> None:
    a = acct(balance=5000)
    b = apply_share(a, ShareOutcome.STALE, 100)
    assert b == dataclasses.replace(a, nonces_stale=1)


def test_penalty_multiplies_in_u64_like_monerod() -> None:
    # 20 * 2**62 wraps to 0 in uint64_t arithmetic: monerod then takes nothing.
    b = apply_share(acct(balance=1000), ShareOutcome.BAD, 2**62)
    assert b.balance == 1000 and b.nonces_bad == 1
    # 20 * (2**60 + 1) = 20 * 2**60 + 20 wraps to 4 * 2**60 + 20.
    c = apply_share(acct(balance=U64_MAX), ShareOutcome.DUPE, 2**60 + 1)
    assert c.balance == U64_MAX - (4 * 2**60 + 20)


def test_counters_saturate() -> None:
    b = apply_share(acct(nonces_bad=U64_MAX), ShareOutcome.BAD, 1)
    assert b.nonces_bad == U64_MAX


# --- admin adjustment, touch ------------------------------------------------------------


def test_adjust_balance_changes_only_balance() -> None:
    a = acct(balance=10, credits_total=3, credits_used=4)
    assert adjust_balance(a, 5) == dataclasses.replace(a, balance=15)
    assert adjust_balance(a, -4) == dataclasses.replace(a, balance=6)
    assert adjust_balance(a, 0) == a


def test_adjust_balance_saturates_and_clamps() -> None:
    assert adjust_balance(acct(balance=U64_MAX - 1), 2**63 - 1).balance == U64_MAX
    assert adjust_balance(acct(balance=10), -11).balance == 0
    assert adjust_balance(acct(balance=2**63), -(2**63)).balance == 0


@pytest.mark.parametrize("delta", [2**63, -(2**63) - 1])
def test_adjust_balance_delta_is_i64(delta: int) -> None:
    with pytest.raises(ValueError):
        adjust_balance(acct(), delta)


def test_touch_sets_update_time_only() -> None:
    a = acct(balance=9, last_request_timestamp_us=123)
    assert touch(a, NOW + 50) == dataclasses.replace(a, update_time=NOW + 50)


# --- idle flushing ----------------------------------------------------------------------


def test_last_activity_is_newest_of_request_and_update() -> None:
    assert last_activity(acct(last_request_timestamp_us=(NOW + 10) * 10**6 + 999_999)) == NOW + 10
    assert last_activity(acct(last_request_timestamp_us=(NOW - 10) * 10**6)) == NOW


def test_empty_account_forgotten_after_two_minutes() -> None:
    a = acct(balance=0, update_time=NOW)
    # monerod compares strictly: t < now - 120.
    assert not is_forgettable(a, NOW + 120)
    assert is_forgettable(a, NOW + 121)


def test_credited_account_kept_half_a_year() -> None:
    a = acct(balance=1, update_time=NOW)
    assert not is_forgettable(a, NOW + 121)
    assert not is_forgettable(a, NOW + 180 * 86400)
    assert is_forgettable(a, NOW + 180 * 86400 + 1)


def test_recent_request_keeps_account() -> None:
    a = acct(balance=0, update_time=NOW, last_request_timestamp_us=(NOW + 100) * 10**6)
    assert not is_forgettable(a, NOW + 220)
    assert is_forgettable(a, NOW + 221)


def test_threshold_clamps_at_epoch() -> None:
    # now - seconds would be negative: monerod uses 0, and nothing is older than 0.
    assert not is_forgettable(acct(update_time=0), 100)
    assert is_forgettable(acct(update_time=0), 121)


def test_custom_ages() -> None:
    a = acct(balance=5, update_time=NOW)
    assert is_forgettable(a, NOW + 11, idle_s=10, zero_idle_s=10)
    assert not is_forgettable(a, NOW + 10, idle_s=10, zero_idle_s=10)


def test_is_blank() -> None:
    assert is_blank(acct(nonces_bad=3, nonces_stale=2, nonces_dupe=1))
    assert not is_blank(acct(balance=1))
    assert not is_blank(acct(credits_total=1))
    assert not is_blank(acct(credits_used=1))


def test_refund_undoes_a_charge_exactly() -> None:
    from rpcpay.ledger.account import apply_payment, apply_refund, new_account

    acct = new_account(b"\x01" * 32, 0)
    acct = apply_refund(acct, 0)
    funded = acct.__class__(**{**{f: getattr(acct, f) for f in acct.__slots__}, "balance": 10})
    charged, result = apply_payment(funded, 5, 4)
    assert result.ok
    refunded = apply_refund(charged, 4)
    assert (refunded.balance, refunded.credits_used) == (funded.balance, funded.credits_used)
    assert refunded.last_request_timestamp_us == 5  # the timestamp stays burnt (no replay)
