"""Hashing jobs: what a client hashes, and where the work comes from.

A ``JobSource`` hands each client a job whose blob no other client shares (the per-client extra
nonce) and which differs from that client's previous job (the timestamp moves on), so a nonce
can never be paid twice for the same work. Two sources exist: ``MonerodJobSource`` builds jobs
from the upstream's real block template, so a lucky share is a real block; ``SyntheticJobSource``
serves any other backend with jobs of the same shape and its own rotating RandomX seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rpcpay.wire.block import block_hashing_blob, client_template, parse_block, set_nonce
from rpcpay.wire.varint import decode_varint, encode_varint


@dataclass(frozen=True, slots=True)
class ChainTop:
    """The newest block the source knows: a new top means new jobs."""

    height: int
    top_hash: str


@dataclass(frozen=True, slots=True)
class Job:
    """One client's hashing job.

    ``hashing_blob`` is what the client hashes. ``template_blob`` is the upstream template the
    job was cut from; it is one bytes object shared by every client's job, so a tracked client
    costs a pointer, not a copy. It is empty for synthetic jobs, which can never be blocks.
    """

    hashing_blob: bytes
    template_blob: bytes
    reserved_offset: int
    height: int
    seed_hash: bytes
    seed_height: int
    next_seed_hash: bytes | None
    network_difficulty: int
    timestamp: int
    top_hash: str


class JobSource(Protocol):
    """Where jobs come from; the gateway needs nothing else of a chain."""

    async def start(self) -> None:
        """Begin following the chain (background polling, seed schedule)."""

    async def close(self) -> None:
        """Stop background work."""

    async def top(self) -> ChainTop:
        """The current chain top (cached; cheap enough for every paid call)."""

    async def new_job(self, client: bytes, min_timestamp: int) -> Job:
        """A fresh job for ``client`` whose timestamp is at least ``min_timestamp``."""

    async def submit_block(self, job: Job, client: bytes, nonce: int) -> bool:
        """Submit ``client``'s ``job`` with ``nonce`` as a block; True if it was accepted."""


def set_timestamp(blob: bytes, timestamp: int) -> bytes:
    """Rewrite a block's header timestamp (the third varint), keeping the rest of the blob."""
    _, pos = decode_varint(blob, 0)
    _, pos = decode_varint(blob, pos)
    start = pos
    _, end = decode_varint(blob, start)
    return blob[:start] + encode_varint(timestamp) + blob[end:]


def personalise_template(
    template_blob: bytes, reserved_offset: int, client: bytes, timestamp: int
) -> tuple[bytes, bytes]:
    """Make one client's (block blob, hashing blob) from a shared template, as monerod does.

    monerod asks for a template with four reserved extra-nonce bytes and fills them with the
    first four bytes of Keccak(client key ‖ 0x58); the timestamp is then moved so that a
    client's consecutive jobs never share a blob.
    """
    blob = client_template(template_blob, reserved_offset, client)
    if parse_block(blob).timestamp != timestamp:
        blob = set_timestamp(blob, timestamp)
    return blob, block_hashing_blob(blob)


def block_with_nonce(job: Job, client: bytes, nonce: int) -> bytes:
    """The block blob of ``client``'s ``job`` with ``nonce`` written in, for submit_block."""
    block_blob, _ = personalise_template(
        job.template_blob, job.reserved_offset, client, job.timestamp
    )
    return set_nonce(block_blob, nonce)
