"""Finding shares for a job with RandomX, off the event loop.

Every nonce is tried once per job: each search starts where the previous one stopped, so a
client never submits a nonce twice. Each worker thread owns its VM and its own copy of the
blob (monero-wallet-cli 0.18's threads all wrote into one shared blob).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from rpcpay.pow.difficulty import check_hash
from rpcpay.pow.randomx import RandomXCache, RandomXVM
from rpcpay.wire.block import set_nonce

U32 = 2**32


@dataclass
class LightMiner:
    """A single-threaded light-mode miner that keeps one cache per seed."""

    _cache: RandomXCache | None = None
    _vm: RandomXVM | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    hashes: int = 0

    def _vm_for(self, seed: bytes) -> RandomXVM:
        if self._cache is None or self._cache.key != seed:
            self.close()
            self._cache = RandomXCache(seed)
            self._vm = RandomXVM(self._cache)
        assert self._vm is not None
        return self._vm

    def search(
        self, seed: bytes, blob: bytes, difficulty: int, start: int, count: int
    ) -> tuple[int | None, int]:
        """Try nonces ``start .. start+count``; (winning nonce or None, next nonce to try)."""
        with self._lock:
            vm = self._vm_for(seed)
            nonce = start
            for nonce in range(start, min(start + count, U32)):
                self.hashes += 1
                if check_hash(vm.hash(set_nonce(blob, nonce)), difficulty):
                    return nonce, nonce + 1
            return None, min(start + count, U32)

    async def find_share(
        self, seed: bytes, blob: bytes, difficulty: int, start: int, count: int
    ) -> tuple[int | None, int]:
        """``search`` on a worker thread, so the event loop keeps serving."""
        return await asyncio.to_thread(self.search, seed, blob, difficulty, start, count)

    def close(self) -> None:
        if self._vm is not None:
            self._vm.close()
            self._vm = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None
