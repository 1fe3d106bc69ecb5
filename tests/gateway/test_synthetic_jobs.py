"""Jobs for non-Monero backends: monerod's blob shape, unique per client and per job, and a
seed that rotates on schedule with the next one announced ahead."""

from __future__ import annotations

from rpcpay.gateway.synthetic_jobs import SEED_ANNOUNCE_BLOCKS, SyntheticJobSource
from rpcpay.wire.block import nonce_offset, set_nonce
from rpcpay.wire.varint import decode_varint

SECRET = b"s" * 32


async def test_blob_has_monerods_shape() -> None:
    source = SyntheticJobSource(SECRET, clock=lambda: 1_700_000_000.0)
    job = await source.new_job(b"\x01" * 32, 0)
    assert len(job.hashing_blob) == 76
    assert nonce_offset(job.hashing_blob) == 39
    assert decode_varint(job.hashing_blob, 0)[0] >= 12  # a RandomX-era major version
    assert set_nonce(job.hashing_blob, 0xDEADBEEF)[39:43] == (0xDEADBEEF).to_bytes(4, "little")
    assert job.network_difficulty == 0 and not await source.submit_block(job, b"", 1)


async def test_jobs_differ_per_client_and_per_job() -> None:
    source = SyntheticJobSource(SECRET, clock=lambda: 1_700_000_000.0)
    a1 = await source.new_job(b"\x01" * 32, 0)
    b1 = await source.new_job(b"\x02" * 32, 0)
    a2 = await source.new_job(b"\x01" * 32, a1.timestamp + 1)
    assert len({a1.hashing_blob, b1.hashing_blob, a2.hashing_blob}) == 3
    assert a2.timestamp == a1.timestamp + 1


async def test_seed_rotates_and_is_announced_ahead() -> None:
    now = [0.0]
    source = SyntheticJobSource(
        SECRET, block_time_s=10, seed_rotation_blocks=100, clock=lambda: now[0]
    )
    now[0] = 10 * 10  # height 10 of epoch 0
    early = await source.new_job(b"\x01" * 32, 0)
    assert early.next_seed_hash is None and early.seed_height == 0
    now[0] = 10 * (100 - SEED_ANNOUNCE_BLOCKS)  # 64 blocks before the switch
    late = await source.new_job(b"\x01" * 32, 0)
    assert late.seed_hash == early.seed_hash
    assert late.next_seed_hash is not None and late.next_seed_hash != late.seed_hash
    now[0] = 10 * 100  # first block of epoch 1
    rotated = await source.new_job(b"\x01" * 32, 0)
    assert rotated.seed_hash == late.next_seed_hash and rotated.seed_height == 100
    # The top moves with the synthetic block time.
    assert (await source.top()).height == 100


async def test_another_secret_gives_other_seeds() -> None:
    a = await SyntheticJobSource(SECRET, clock=lambda: 5e8).new_job(b"\x01" * 32, 0)
    b = await SyntheticJobSource(b"t" * 32, clock=lambda: 5e8).new_job(b"\x01" * 32, 0)
    assert a.seed_hash != b.seed_hash
