"""Jobs for backends that are not a coin: same blob shape, a seed the gateway rotates itself.

Clients written for monerod see nothing different: a 76-byte hashing blob with the nonce at
offset 39, a RandomX seed hash that changes on a schedule (announced ahead as
``next_seed_hash``), and a "top" that moves every ``block_time_s`` so clients refresh jobs as
they would on a chain. A share can never be a block here.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from rpcpay.gateway.jobs import ChainTop, Job
from rpcpay.wire.keccak import keccak256
from rpcpay.wire.varint import encode_varint

BLOCK_VERSION = 16  # a RandomX-era major version, so clients pick RandomX
SEED_ANNOUNCE_BLOCKS = 64  # like Monero, the next seed is known 64 blocks ahead


class SyntheticJobSource:
    """Makes jobs from a server secret, a clock, and a seed schedule."""

    def __init__(
        self,
        secret: bytes,
        *,
        block_time_s: int = 120,
        seed_rotation_blocks: int = 2048,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # The secret keeps other parties from predicting seeds and jobs.
        if len(secret) < 16:
            raise ValueError("synthetic job secret must be at least 16 bytes")
        # The schedule needs positive periods.
        if block_time_s <= 0 or seed_rotation_blocks <= SEED_ANNOUNCE_BLOCKS:
            raise ValueError("block time must be positive and rotation longer than 64 blocks")
        self._secret = secret
        self._block_time = block_time_s
        self._rotation = seed_rotation_blocks
        self._clock = clock
        self.blocks_found = 0
        self._tops: dict[int, bytes] = {}
        self._top_hex: dict[int, str] = {}
        self._seeds: dict[int, bytes] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _height(self) -> int:
        return int(self._clock()) // self._block_time

    def _top_hash(self, height: int) -> bytes:
        # One bytes object per height, shared by every job cut at it (memory per client).
        cached = self._tops.get(height)
        if cached is None:
            cached = keccak256(self._secret + b"rpcpay-top" + height.to_bytes(8, "little"))
            if len(self._tops) > 4:
                self._tops.clear()
            self._tops[height] = cached
            self._top_hex[height] = cached.hex()
        return cached

    def _seed(self, epoch: int) -> bytes:
        cached = self._seeds.get(epoch)
        if cached is None:
            cached = keccak256(self._secret + b"rpcpay-seed" + epoch.to_bytes(8, "little"))
            if len(self._seeds) > 4:
                self._seeds.clear()
            self._seeds[epoch] = cached
        return cached

    async def top(self) -> ChainTop:
        height = self._height()
        top = self._top_hash(height - 1)
        return ChainTop(height, self._top_hex.get(height - 1) or top.hex())

    async def new_job(self, client: bytes, min_timestamp: int) -> Job:
        height = self._height()
        timestamp = max(int(self._clock()), min_timestamp)
        epoch = height // self._rotation
        blocks_left = (epoch + 1) * self._rotation - height
        next_seed = self._seed(epoch + 1) if blocks_left <= SEED_ANNOUNCE_BLOCKS else None
        prev = self._top_hash(height - 1)
        root = keccak256(self._secret + b"rpcpay-job" + client + struct.pack("<Q", timestamp))
        blob = (
            encode_varint(BLOCK_VERSION)
            + encode_varint(BLOCK_VERSION)
            + encode_varint(timestamp)
            + prev
            + bytes(4)
            + root
            + encode_varint(1)
        )
        return Job(
            hashing_blob=blob,
            template_blob=b"",
            reserved_offset=0,
            height=height,
            seed_hash=self._seed(epoch),
            seed_height=epoch * self._rotation,
            next_seed_hash=next_seed,
            network_difficulty=0,
            timestamp=timestamp,
            top_hash=self._top_hex.get(height - 1) or prev.hex(),
        )

    async def submit_block(self, job: Job, client: bytes, nonce: int) -> bool:
        return False
