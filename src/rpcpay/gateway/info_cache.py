"""A short-lived cache for monerod's get_info answer.

get_info is the call wallets make most, and its answer changes with the chain top and a few
slow counters (pool size, connections, adjusted time). Serving it from memory for at most
``ttl_s`` seconds, and never across a new top, saves a round trip to the upstream on every
paid call. The client still pays for every call; ``--info-cache-ms 0`` turns this off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rpcpay.gateway.jsoncodec import encode_json
from rpcpay.gateway.known_json import KnownObject

JSON = Any

#: The calls whose answers may be cached: JSON-RPC get_info and the /get_info endpoints.
CACHEABLE = frozenset({"get_info", "/get_info", "/getinfo"})


@dataclass(frozen=True, slots=True)
class _Entry:
    top_hash: str
    stored_at: float
    answer: dict[str, JSON]
    encoded: bytes  # the answer's JSON, made once (``known_json``)


class InfoCache:
    """Answers by call name, valid for one chain top and ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def get(self, name: str, top_hash: str) -> KnownObject | None:
        """A copy of the cached answer for ``name`` at ``top_hash``, or None (a
        ``KnownObject``: its encoding is reused when it is served)."""
        entry = self._entries.get(name)
        # Only a fresh answer for the current top may be served.
        if entry is None or entry.top_hash != top_hash:
            return None
        if self._clock() - entry.stored_at >= self._ttl:
            return None
        return KnownObject(entry.answer, entry.encoded)

    def put(self, name: str, top_hash: str, answer: dict[str, JSON]) -> None:
        """Remember an upstream answer (a copy, without our per-client fields)."""
        if self._ttl <= 0 or name not in CACHEABLE:
            return
        clean = {k: v for k, v in answer.items() if k not in ("credits", "top_hash")}
        self._entries[name] = _Entry(top_hash, self._clock(), clean, encode_json(clean))
