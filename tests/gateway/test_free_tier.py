"""The free tier's allowance rules: what one host can take is bounded by burst + rate x time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcpay.errors import ConfigError
from rpcpay.gateway.free_tier import (
    Allowance,
    FreeTable,
    FreeTierSettings,
    check_free_tier,
    fresh_allowance,
    give_back,
    owe,
    refill,
    take,
)

SETTINGS = FreeTierSettings(credits_per_second=10.0, burst=100.0, share=0.25)

steps = st.lists(
    st.tuples(
        st.sampled_from(["take", "owe", "back"]),
        st.floats(min_value=0, max_value=200, allow_nan=False),
        st.floats(min_value=0, max_value=5, allow_nan=False),
    ),
    max_size=60,
)


@given(steps)
def test_what_a_host_takes_is_bounded_by_burst_plus_rate_times_time(
    ops: list[tuple[str, float, float]],
) -> None:
    allowance, now, taken = fresh_allowance(SETTINGS, 0.0), 0.0, 0.0
    for op, amount, dt in ops:
        now += dt
        if op == "take":
            after = take(allowance, SETTINGS, amount, now)
            if after is not None:
                allowance, taken = after, taken + amount
        elif op == "owe":
            before = refill(allowance, SETTINGS, now).tokens
            allowance = owe(allowance, SETTINGS, amount, now)
            # Owed credits are booked up to one burst of debt; the rest is forgiven.
            booked = before - allowance.tokens
            assert booked == pytest.approx(min(amount, before + SETTINGS.burst))
            taken += booked
        # Tokens stay within [-burst, burst] whatever happens.
        assert -SETTINGS.burst <= allowance.tokens <= SETTINGS.burst
    # Credits booked free (up front and owed) never beat the bucket plus one burst of debt.
    assert taken <= 2 * SETTINGS.burst + SETTINGS.credits_per_second * now + 1e-6


@given(st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=100))
def test_a_refused_take_spends_nothing(tokens: float, amount: float) -> None:
    allowance = Allowance(tokens, 0.0)
    after = take(allowance, SETTINGS, amount, 0.0)
    if amount > tokens:
        assert after is None
    else:
        assert after is not None and after.tokens == pytest.approx(tokens - amount)


def test_refill_caps_at_the_burst_and_ignores_clock_steps_back() -> None:
    assert refill(Allowance(0, 0), SETTINGS, 5).tokens == 50
    assert refill(Allowance(0, 0), SETTINGS, 500).tokens == 100
    stepped = refill(Allowance(10, 100), SETTINGS, 50)
    assert stepped.tokens == 10 and stepped.stamp == 100


def test_a_debt_is_waited_out_and_never_deeper_than_one_burst() -> None:
    deep = owe(Allowance(0, 0), SETTINGS, 10_000, 0)
    assert deep.tokens == -100
    assert take(deep, SETTINGS, 1, 10.0) is None  # -100 + 100 = 0 < 1
    assert take(deep, SETTINGS, 1, 10.1) is not None


def test_give_back_never_passes_the_burst() -> None:
    assert give_back(Allowance(99, 0), SETTINGS, 5).tokens == 100


def test_table_groups_ipv6_by_64_and_ipv4_by_address() -> None:
    table = FreeTable(SETTINGS)
    assert table.take("2001:db8::1", 100, 0)
    assert not table.take("2001:db8::ffff:2", 1, 0)  # same /64
    assert table.take("2001:db8:0:1::1", 1, 0)  # next /64
    assert table.take("192.0.2.1", 100, 0)
    assert table.take("192.0.2.2", 100, 0)  # same /24, other host
    table.give_back("192.0.2.1", 30, 0)
    assert table.tokens("192.0.2.1", 0) == 30


def test_table_is_bounded() -> None:
    table = FreeTable(SETTINGS, max_hosts=10)
    for n in range(50):
        table.take(f"10.0.0.{n}", 1, 0)
    assert len(table) == 10


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        (FreeTierSettings(-1, 10), "--free-credits-per-second"),
        (FreeTierSettings(1, 0.5), "--free-burst"),
        (FreeTierSettings(1, 10, 0), "--free-share"),
        (FreeTierSettings(1, 10, 1.5), "--free-share"),
        (FreeTierSettings(1, 10, 0.5, -1), "--free-total-credits-per-second"),
    ],
)
def test_bad_settings_name_their_flag(settings: FreeTierSettings, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        check_free_tier(settings)


def test_off_by_default() -> None:
    assert not FreeTierSettings().on
    check_free_tier(FreeTierSettings())
