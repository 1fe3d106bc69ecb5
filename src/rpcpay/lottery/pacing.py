"""How much of a cheque a payee credits at once, and the bound that gives (docs/lottery.md §9).

A colluding payer and stamper can stamp the same tickets to *k* gateways. A gateway only
learns of it when a peer's gossip shows the overlap, about one gossip delay *D* later
(the seed's argument: cheques are small and frequent, so fraud is caught within about
one interval). So a payee credits at once only what an honest payer could have spent by
now: a token bucket per lottery, ``burst`` wei deep, refilled at ``rate`` wei a minute
(the rate it announces in ``lottery_info``). A cheque that does not fit is **held**:
stored, gossiped, and credited only after ``hold`` seconds (≥ 3 D) if no overlap
surfaced and the stamper was not caught meanwhile. Held cheques do not take tokens.

``credit_bound`` is the resulting bound on what one lottery's double-assigned tickets
can buy over *k* gateways of one gossip mesh; ``tests/gateway/test_lottery_attack.py``
replays the attack against it. Pure functions over frozen values.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_BURST_WEI",
    "DEFAULT_HOLD_S",
    "DEFAULT_RATE_WEI_PER_MINUTE",
    "Bucket",
    "PacePolicy",
    "credit_bound",
    "pace_cheque",
]

DEFAULT_RATE_WEI_PER_MINUTE = 100 * 10**9
"""100 gwei a minute per lottery: the seed's (vipnode's) price of a server per minute."""
DEFAULT_BURST_WEI = 3 * DEFAULT_RATE_WEI_PER_MINUTE
"""Three minutes of the rate: a steady payer of the rate, a cheque a minute, never waits,
even when a round comes early or a retried cheque arrives with the next one."""
DEFAULT_HOLD_S = 15.0
"""Seconds a cheque beyond the bucket waits: three gossip delays of ≤ 5 s (a batch is sent
as soon as it is queued; 5 s covers a retry after one lost request)."""


@dataclass(frozen=True, slots=True)
class PacePolicy:
    """The payee's pace: the bucket's refill rate and depth (wei), and the hold (s)."""

    rate_wei_per_minute: int = DEFAULT_RATE_WEI_PER_MINUTE
    burst_wei: int = DEFAULT_BURST_WEI
    hold_s: float = DEFAULT_HOLD_S


@dataclass(frozen=True, slots=True)
class Bucket:
    """Wei a lottery may still be credited at once, as of ``at`` (seconds, monotonic)."""

    tokens: int
    at: float


def refill(bucket: Bucket | None, now: float, policy: PacePolicy) -> Bucket:
    """The bucket at ``now``: a lottery seen for the first time starts full."""
    # A new lottery may spend one burst at once.
    if bucket is None:
        return Bucket(policy.burst_wei, now)
    # Time only moves forward (a clock step back refills nothing).
    elapsed = max(0.0, now - bucket.at)
    gained = int(elapsed * policy.rate_wei_per_minute / 60)
    return Bucket(min(policy.burst_wei, bucket.tokens + gained), max(now, bucket.at))


def pace_cheque(
    bucket: Bucket | None, value: int, now: float, policy: PacePolicy
) -> tuple[bool, Bucket]:
    """(credit at once?, the bucket after): a cheque within the bucket is credited now and
    takes its value from it; any other is held whole and takes nothing."""
    full = refill(bucket, now, policy)
    # The whole cheque fits what an honest payer could have spent by now.
    if value <= full.tokens:
        return True, Bucket(full.tokens - value, full.at)
    return False, full


def credit_bound(k: int, lotteries: int, policy: PacePolicy, delay_s: float) -> int:
    """Wei of service *k* gateways of one gossip mesh credit, at most, for tickets stamped
    twice, over ``lotteries`` lotteries of one stamper, when a gossip batch reaches every
    peer within ``delay_s`` (and ``policy.hold_s ≥ 3 x delay_s``).

    Proof sketch (docs/lottery.md §9): a ticket can be credited twice only at two gateways
    that both accepted it before either saw the other's cheque, i.e. within ``delay_s``
    of each other; the pair then reaches both holders within another ``delay_s``, and they
    forward it to every peer within a third. So every gateway learns of the fraud within
    ``3 x delay_s`` of the first double credit; until then it credits at once at most a
    burst plus the rate over that window per lottery, and a held cheque matures only
    after ``hold_s ≥ 3 x delay_s``, by when the stamper is known to be caught.
    """
    # The hold must outlast detection, or held cheques are not covered.
    if policy.hold_s < 3 * delay_s:
        raise ValueError("the hold must be at least three gossip delays")
    window = 3 * delay_s
    per_gateway = policy.burst_wei + int(policy.rate_wei_per_minute * window / 60) + 1
    return k * lotteries * per_gateway
