"""The free tier's per-address allowance: a token bucket of free credits per client host.

Contract: a call the ledger refuses (no client id, a forged or replayed id, too few credits) may
still be served free if its host's allowance holds the call's up-front price. The allowance
refills at ``--free-credits-per-second`` up to ``--free-burst``. A call whose price depends on
the answer (``/get_blocks.bin``: 0.05 per block) owes the rest afterwards: the allowance may go
into debt (at most one burst deep), which the host then waits out before its next free call.
An upstream failure gives the up-front price back. Past the allowance the call gets the
refusal it would have had (monerod's ``PAYMENT REQUIRED``, HTTP 402 on JSON-RPC backends), so
a client that can pay starts paying.

Grouping: one allowance per host as ``peers.host_key`` sees it: an IPv4 address, or a whole
IPv6 /64 (one subscriber usually holds all of it, so rotating inside it gains nothing).
Addresses are the real client's (``client_address``, behind ``--trusted-proxy``). A /24 is not
grouped: its 256 addresses are often 256 households (and CGNAT puts many behind one address
already); what many addresses together may take is bounded by the global share instead
(``priority.AdmissionQueue``'s free slots), which no rotation escapes.

The rules are pure functions over the frozen ``Allowance``; ``FreeTable`` only keeps one per
host, bounded (least recently used dropped first, which can only *give* a host a fresh, full
allowance: bounded memory is worth that).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rpcpay.errors import ConfigError
from rpcpay.gateway.peers import host_key

MAX_HOSTS = 100_000
"""Allowances kept (about 200 bytes each: 20 MB at most)."""


@dataclass(frozen=True, slots=True)
class FreeTierSettings:
    """The operator's free tier: credits per second and burst per host, and the fraction of
    upstream slots all free calls together may hold. ``credits_per_second`` 0 turns it off."""

    credits_per_second: float = 0.0
    burst: float = 0.0
    share: float = 0.25
    total_credits_per_second: float = 0.0  # all hosts together; 0: no global rate

    @property
    def on(self) -> bool:
        return self.credits_per_second > 0


def check_free_tier(settings: FreeTierSettings) -> None:
    """Refuse settings that cannot work, naming the flag."""
    # A rate is a finite non-negative number of credits per second.
    if not 0 <= settings.credits_per_second < 1e12:
        raise ConfigError("--free-credits-per-second must be 0 (off) or a positive number")
    # A burst is at least one call's worth (1 credit) when the tier is on.
    if settings.on and not 1 <= settings.burst < 1e15:
        raise ConfigError("--free-burst must be at least 1 credit when the free tier is on")
    # The share is a fraction of the upstream's slots, above 0 and at most all of them.
    if not 0 < settings.share <= 1:
        raise ConfigError("--free-share must be a fraction above 0 and at most 1")
    # A global rate is a finite non-negative number of credits per second.
    if not 0 <= settings.total_credits_per_second < 1e12:
        raise ConfigError("--free-total-credits-per-second must be 0 (none) or positive")


def total_settings(settings: FreeTierSettings) -> FreeTierSettings:
    """The global allowance's rules: the total rate, with one second of it as its burst."""
    rate = settings.total_credits_per_second
    return FreeTierSettings(rate, max(1.0, rate), settings.share)


@dataclass(frozen=True, slots=True)
class Allowance:
    """One host's free credits (negative: a debt being waited out) as of ``stamp``."""

    tokens: float
    stamp: float


def fresh_allowance(settings: FreeTierSettings, now: float) -> Allowance:
    """A host never seen (or forgotten) starts with a full burst."""
    return Allowance(settings.burst, now)


def refill(allowance: Allowance, settings: FreeTierSettings, now: float) -> Allowance:
    """The allowance with the credits earned since its stamp, up to the burst."""
    # Time never runs backwards for a bucket (a clock step back earns nothing).
    elapsed = max(0.0, now - allowance.stamp)
    tokens = min(settings.burst, allowance.tokens + elapsed * settings.credits_per_second)
    return Allowance(tokens, max(now, allowance.stamp))


def take(
    allowance: Allowance, settings: FreeTierSettings, amount: float, now: float
) -> Allowance | None:
    """Spend ``amount`` free credits for a call; None (nothing spent) if they are not there."""
    current = refill(allowance, settings, now)
    # The whole up-front price must be there: a free call never starts a debt.
    if current.tokens < amount:
        return None
    return Allowance(current.tokens - amount, current.stamp)


def owe(allowance: Allowance, settings: FreeTierSettings, amount: float, now: float) -> Allowance:
    """Book the rest of a served call's price (counted in its answer), into debt if need be;
    a debt never exceeds one burst, so a host is never shut out for longer than one refill."""
    current = refill(allowance, settings, now)
    return Allowance(max(-settings.burst, current.tokens - amount), current.stamp)


def give_back(allowance: Allowance, settings: FreeTierSettings, amount: float) -> Allowance:
    """Return a call's price after the upstream failed it (never above the burst)."""
    return Allowance(min(settings.burst, allowance.tokens + amount), allowance.stamp)


class FreeTable:
    """One ``Allowance`` per host (``host_key``), bounded; every change goes through the
    pure rules above."""

    def __init__(self, settings: FreeTierSettings, max_hosts: int = MAX_HOSTS) -> None:
        self.settings = settings
        self._max = max_hosts
        self._hosts: OrderedDict[str, Allowance] = OrderedDict()

    def _get(self, key: str, now: float) -> Allowance:
        found = self._hosts.get(key)
        if found is None:
            return fresh_allowance(self.settings, now)
        self._hosts.move_to_end(key)
        return found

    def _put(self, key: str, allowance: Allowance) -> None:
        self._hosts[key] = allowance
        if len(self._hosts) > self._max:
            self._hosts.popitem(last=False)

    def take(self, address: str, amount: float, now: float) -> bool:
        """Spend a call's up-front price from ``address``'s host; False if it cannot."""
        key = host_key(address)
        after = take(self._get(key, now), self.settings, amount, now)
        if after is None:
            return False
        self._put(key, after)
        return True

    def owe(self, address: str, amount: float, now: float) -> None:
        """Book the rest of a free call's price to ``address``'s host."""
        key = host_key(address)
        self._put(key, owe(self._get(key, now), self.settings, amount, now))

    def give_back(self, address: str, amount: float, now: float) -> None:
        """Return a failed free call's price to ``address``'s host."""
        key = host_key(address)
        self._put(key, give_back(self._get(key, now), self.settings, amount))

    def tokens(self, address: str, now: float) -> float:
        """What ``address``'s host has now (for tests and the operator)."""
        return refill(self._get(host_key(address), now), self.settings, now).tokens

    def __len__(self) -> int:
        return len(self._hosts)
