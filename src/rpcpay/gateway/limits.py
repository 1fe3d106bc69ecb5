"""Bounds on what one client or one address can make the gateway do for free.

monerod verifies every submitted nonce, so anyone can burn its CPU with garbage shares, and a
penalty means nothing to a client id with no balance (ids are free). Here a bad share costs
a token from both the client's and the address's bucket; with either bucket empty, shares are
refused before any hashing. New client ids are rationed per address the same way, so switching
ids does not reset the budget: a flooder needs more addresses, not more keys.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


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
    """Operator-tunable limits (per address and per client)."""

    bad_shares_burst: float = 20.0
    bad_shares_per_second: float = 0.1
    new_clients_burst: float = 20.0
    new_clients_per_second: float = 0.2


class AbuseGuard:
    """Decides, before any hashing, whether a share or a new client id is allowed."""

    def __init__(self, limits: AbuseLimits) -> None:
        self.limits = limits
        self._bad_by_address = BucketTable(limits.bad_shares_per_second, limits.bad_shares_burst)
        self._bad_by_client = BucketTable(limits.bad_shares_per_second, limits.bad_shares_burst)
        self._new_by_address = BucketTable(limits.new_clients_per_second, limits.new_clients_burst)

    def may_verify(self, address: str, client: bytes, now: float) -> bool:
        """A share is hashed only while both its address and its client have budget left."""
        return self._bad_by_address.has_token(address, now) and self._bad_by_client.has_token(
            client, now
        )

    def charge_bad_share(self, address: str, client: bytes, now: float) -> None:
        """A bad or duplicate share spends budget of both its address and its client."""
        self._bad_by_address.spend(address, now)
        self._bad_by_client.spend(client, now)

    def may_add_client(self, address: str, now: float) -> bool:
        """Ration client ids the gateway has never seen, per address."""
        return self._new_by_address.spend(address, now)
