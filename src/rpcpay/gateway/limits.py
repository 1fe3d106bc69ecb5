"""Bounds on what one client or one address can make the gateway do for free.

monerod verifies every submitted nonce, so anyone can burn its CPU with garbage shares, and a
penalty means nothing to a client id with no balance (ids are free). Here a bad share costs
a token from both the client's and the address's bucket; with either bucket empty, shares are
refused before any hashing. New client ids are rationed per address the same way, so switching
ids does not reset the budget: a flooder needs more addresses, not more keys.

Bad shares are charged to the sending host only: a client id's budget could be spent by
anyone who replays its shares from elsewhere (issue 10), and a flooder rotates ids for free
anyway, so a per-id budget protected nothing. New ids are also rationed per network prefix
(/24, /64) and in total, so rotating over many addresses does not multiply the budget: with
the defaults a /24 gets 100 ids at once then 1 a second, and the whole gateway 2,000 then 50
a second. A new id's session and job are rows of the shared ledger, deleted after an hour
idle, so at that total rate there are at most about 180,000 of them (issue 11; the in-memory
session table these budgets once bounded is gone). Budgets are per instance: N instances
allow N times as many new ids.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rpcpay.gateway.peers import host_key, network_prefix


@dataclass(slots=True)
class TokenBucket:
    """Classic token bucket; time is passed in so tests control it."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last look, up to ``burst``."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now


class BucketTable:
    """Buckets by key (an address or a client key), bounded so the table itself can't grow."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self._rate, self._burst, self._max = rate, burst, max_keys
        self._buckets: OrderedDict[object, TokenBucket] = OrderedDict()

    def _bucket(self, key: object, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self._rate, self._burst, self._burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.refill(now)
        return bucket

    def has_token(self, key: object, now: float) -> bool:
        """True if ``key`` may spend a token now (spends nothing)."""
        return self._bucket(key, now).tokens >= 1.0

    def spend(self, key: object, now: float) -> bool:
        """Spend one token; False (and nothing spent) if none is left."""
        bucket = self._bucket(key, now)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True


@dataclass(frozen=True, slots=True)
class AbuseLimits:
    """Operator-tunable limits: bad shares per host, new client ids per host, per network
    prefix (/24, /64) and in total."""

    bad_shares_burst: float = 20.0
    bad_shares_per_second: float = 0.1
    new_clients_burst: float = 20.0
    new_clients_per_second: float = 0.2
    new_clients_prefix_burst: float = 100.0
    new_clients_prefix_per_second: float = 1.0
    new_clients_total_burst: float = 2000.0
    new_clients_total_per_second: float = 50.0


_EVERYONE = "*"


class AbuseGuard:
    """Decides, before any hashing, whether a share or a new client id is allowed.

    Addresses come from ``rpcpay.gateway.peers``; bad shares are charged to the host that
    sent them (``host_key``: an IPv4 address, an IPv6 /64), never to the client id, so
    shares replayed from elsewhere cannot spend the id owner's budget.
    """

    def __init__(self, limits: AbuseLimits) -> None:
        self.limits = limits
        self._bad_by_host = BucketTable(limits.bad_shares_per_second, limits.bad_shares_burst)
        self._new_by_host = BucketTable(limits.new_clients_per_second, limits.new_clients_burst)
        self._new_by_prefix = BucketTable(
            limits.new_clients_prefix_per_second, limits.new_clients_prefix_burst
        )
        self._new_total = BucketTable(
            limits.new_clients_total_per_second, limits.new_clients_total_burst, max_keys=1
        )

    def may_verify(self, address: str, now: float) -> bool:
        """A share is hashed only while its sending host has bad-share budget left."""
        return self._bad_by_host.has_token(host_key(address), now)

    def charge_bad_share(self, address: str, now: float) -> None:
        """A bad or duplicate share spends its sending host's budget."""
        self._bad_by_host.spend(host_key(address), now)

    def may_add_client(self, address: str, now: float) -> bool:
        """Ration client ids the gateway has never seen: per host, per network prefix and in
        total, spending from all three only when all three have a token."""
        host, prefix = host_key(address), network_prefix(address)
        # Each of the three budgets must have a token left; none is spent otherwise.
        if not (
            self._new_by_host.has_token(host, now)
            and self._new_by_prefix.has_token(prefix, now)
            and self._new_total.has_token(_EVERYONE, now)
        ):
            return False
        self._new_by_host.spend(host, now)
        self._new_by_prefix.spend(prefix, now)
        self._new_total.spend(_EVERYONE, now)
        return True
