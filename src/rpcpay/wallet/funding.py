"""Funders: what a ``PayingClient`` does when a node says "PAYMENT REQUIRED".

``MiningFunder`` mines shares for the client's current job until it has earned enough to try
again. It remembers how far it searched each job, so it never submits a nonce twice, even
across refusals, and it takes a new job when the node hands one out (a new cookie).
"""

from __future__ import annotations

import logging

from rpcpay.wallet.client import AccessInfo, PayingClient, ShareRefused
from rpcpay.wallet.miner import LightMiner

log = logging.getLogger("rpcpay.wallet")

U32 = 2**32
BATCH = 64  # nonces per search step: short enough to notice a new job quickly


class MiningFunder:
    """Mines ``shares`` good shares per refusal with a light-mode miner."""

    def __init__(self, miner: LightMiner | None = None, *, shares: int = 1) -> None:
        # A funder that earns nothing would retry forever.
        if shares < 1:
            raise ValueError("shares must be at least 1")
        self.miner = miner or LightMiner()
        self.shares = shares
        self._next: dict[tuple[int, bytes], int] = {}

    def _start(self, info: AccessInfo) -> int:
        return self._next.get((info.cookie, info.hashing_blob), 0)

    async def __call__(self, client: PayingClient, info: AccessInfo) -> None:
        earned = 0
        while earned < self.shares:
            key = (info.cookie, info.hashing_blob)
            start = self._start(info)
            # A job whose whole nonce space is spent needs a new job.
            if start >= U32:
                info = await client.access_info()
                continue
            found, after = await self.miner.find_share(
                info.seed_hash, info.hashing_blob, info.difficulty, start, BATCH
            )
            self._next = {key: after}  # only the current job's progress matters
            if found is None:
                continue
            try:
                await client.submit_nonce(found, info.cookie)
                earned += 1
            except ShareRefused as refusal:
                # Stale or duplicate: take the current job and keep mining.
                log.info("share refused", extra={"code": refusal.code})
            info = await client.access_info()

    def close(self) -> None:
        self.miner.close()
