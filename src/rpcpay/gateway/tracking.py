"""Per-method call statistics (rpc_access_tracking) and the mined hash rate (rpc_access_data)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

HASHRATE_WINDOW_S = 600  # monerod reports hashes found over the last 10 minutes / 600


@dataclass(slots=True)
class MethodStats:
    """Count, total time (µs) and credits of one RPC name, as monerod's RPCTracker keeps."""

    count: int = 0
    time_us: int = 0
    credits: int = 0


class Tracker:
    """Call statistics by RPC name; cleared on request."""

    def __init__(self) -> None:
        self._stats: dict[str, MethodStats] = {}

    def record(self, rpc: str, elapsed_us: int, credits: int) -> None:
        """Count one call of ``rpc``."""
        stats = self._stats.get(rpc)
        if stats is None:
            stats = self._stats[rpc] = MethodStats()
        stats.count += 1
        stats.time_us += elapsed_us
        stats.credits += credits

    def rows(self) -> list[dict[str, int | str]]:
        """Rows in rpc_access_tracking's shape."""
        return [
            {"rpc": name, "count": s.count, "time": s.time_us, "credits": s.credits}
            for name, s in sorted(self._stats.items())
        ]

    def clear(self) -> None:
        self._stats.clear()


class HashRate:
    """Difficulty-weighted good shares over a sliding window: an estimate of hashes done.

    monerod divides by the whole 600 s window even when it has been up for less, so right
    after the first shares it says 0 H/s; here the divisor is the time actually watched (at
    least 1 s, at most the window), and any share in the window shows as at least 1 H/s."""

    def __init__(self, window_s: int = HASHRATE_WINDOW_S, *, since: float | None = None) -> None:
        self._window = window_s
        self._events: deque[tuple[float, int]] = deque()
        self._total = 0
        self._since = time.time() if since is None else since

    def add(self, now: float, difficulty: int) -> None:
        """One good share at ``difficulty`` stands for that many hashes on average."""
        self._events.append((now, difficulty))
        self._total += difficulty
        self._prune(now)

    def _prune(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self._window:
            self._total -= self._events.popleft()[1]

    def rate(self, now: float) -> float:
        """Hashes per second over the window, or over the time watched if shorter."""
        self._prune(now)
        watched = min(float(self._window), max(1.0, now - self._since))
        return self._total / watched

    def hashes_per_second(self, now: float) -> int:
        """``rate`` as rpc_access_data's integer; 1 rather than 0 while shares are counted."""
        rate = self.rate(now)
        return max(int(rate), 1 if self._total else 0)
